"""assert_healthcheck: presence, exact values and bounds, defaults, the probe command."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from pytest_imagecheck import Dockerfile, assert_healthcheck
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import collecting

FULL = (
    "HEALTHCHECK --interval=30s --timeout=10s --start-period=40s --retries=3 "
    "CMD wget -q -O /dev/null http://127.0.0.1:5000/health || exit 1"
)


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-healthcheck")


@pytest.fixture(scope="module")
def healthy(build_image, busybox, engine):
    return engine.image(build_image(f"FROM {busybox}\n{FULL}\n"))


def test_exact_values_in_every_form_pass(healthy) -> None:
    assert_healthcheck(
        healthy, interval="30s", timeout=10, start_period=timedelta(seconds=40), retries=3
    )
    assert_healthcheck(healthy, interval="0m30s", timeout="10000ms")


def test_bounds_pass_and_fail_with_the_numbers(healthy) -> None:
    assert_healthcheck(healthy, interval="<=30s", retries=">=3", start_period=">30s")
    with pytest.raises(AssertionError, match=r"healthcheck interval is 30s, expected <15s"):
        assert_healthcheck(healthy, interval="<15s")
    with pytest.raises(AssertionError, match=r"healthcheck retries is 3, expected >=5"):
        assert_healthcheck(healthy, retries=">=5")


def test_every_mismatch_is_listed_with_the_dockerfile_line(healthy) -> None:
    dockerfile = Dockerfile.from_string(f"FROM scratch\nUSER 1\n{FULL}\n")
    with pytest.raises(AssertionError) as failure:
        assert_healthcheck(healthy, interval="<=15s", timeout="5s", dockerfile=dockerfile)
    message = str(failure.value)
    assert "healthcheck interval is 30s, expected <=15s" in message
    assert "healthcheck timeout is 10s, expected 5s" in message
    assert message.endswith(
        "(Dockerfile:3 HEALTHCHECK --interval=30s --timeout=10s "
        "--start-period=40s --retries=3 CMD wget -q -O /dev/null "
        "http://127.0.0.1:5000/health || exit 1)"
    )


def test_probe_must_contain_a_substring_or_match_a_regex(healthy) -> None:
    assert_healthcheck(healthy, test="5000/health")
    assert_healthcheck(healthy, test=re.compile(r":\d+/health\b"))
    with pytest.raises(AssertionError, match=r'probe `wget .*` does not contain "/health/ready"'):
        assert_healthcheck(healthy, test="/health/ready")


def test_unset_values_use_the_engines_defaults_and_say_so(build_image, busybox, engine) -> None:
    image = engine.image(build_image(f"FROM {busybox}\nHEALTHCHECK CMD true\n"))
    with collecting() as evidence:
        assert_healthcheck(image, interval="30s", retries=3)
    assert evidence[0].facts["healthcheck_defaults"] == [
        "interval",
        "retries",
        "start_period",
        "timeout",
    ]
    with pytest.raises(AssertionError, match=r"interval is 30s \(the engine's default; the image"):
        assert_healthcheck(image, interval="<=10s")


def test_missing_healthcheck_fails(build_image, busybox, engine) -> None:
    image = engine.image(build_image(f"FROM {busybox}\nLABEL x=1\n"))
    with pytest.raises(AssertionError, match=r"has no HEALTHCHECK: add one, e.g. HEALTHCHECK"):
        assert_healthcheck(image)


def test_healthcheck_none_fails_as_disabled(build_image, busybox, engine) -> None:
    image = engine.image(build_image(f"FROM {busybox}\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n"))
    with pytest.raises(AssertionError, match=r"disables its healthcheck \(HEALTHCHECK NONE\)"):
        assert_healthcheck(image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": "30 seconds"}, 'bad duration "30 seconds"'),
        ({"retries": "three"}, 'bad retries "three": use a whole number or a bound like ">=3"'),
        ({"interval": "=>30s"}, 'bad bound "=>30s"'),
    ],
)
def test_bad_expectation_is_a_one_line_error(healthy, kwargs, message) -> None:
    with pytest.raises(ImageCheckError, match=re.escape(message)):
        assert_healthcheck(healthy, **kwargs)


def test_plain_asserts_on_the_facts_work(healthy) -> None:
    assert healthy.healthcheck.retries == 3
    assert healthy.healthcheck.interval == timedelta(seconds=30)
