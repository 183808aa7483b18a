"""Evidence reaches the junit XML: per-test properties and the image identity per suite."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from pytest_imagecheck.evidence import as_text, collecting, record


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_checks_evidence_becomes_junit_properties(pytester, sample_image, family) -> None:
    pytester.makepyfile(
        """
        from pytest_imagecheck import assert_healthcheck, assert_non_root

        def test_non_root(image):
            assert_non_root(image)

        def test_healthcheck_fails(image):
            assert_healthcheck(image, interval="<=1s")
        """
    )
    result = pytester.runpytest(
        f"--image={sample_image}", "--junitxml=report.xml", "-o", f"junit_family={family}"
    )
    result.assert_outcomes(passed=1, failed=1)
    assert "PytestWarning" not in result.stdout.str()
    suite = ET.parse(pytester.path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    identity = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert identity["imagecheck.image.ref"] == sample_image
    assert identity["imagecheck.image.id"].startswith("sha256:")
    assert int(identity["imagecheck.image.size_bytes"]) > 1_000_000
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    facts = {p.get("name"): p.get("value") for p in cases["test_non_root"].iter("property")}
    assert facts["imagecheck.user"] == "svc"
    assert facts["imagecheck.uid"] == "1000"
    assert facts["imagecheck.resolved_by"] == "/etc/passwd in the image maps 'svc' to uid 1000"
    failed = cases["test_healthcheck_fails"]
    facts = {p.get("name"): p.get("value") for p in failed.iter("property")}
    assert facts["imagecheck.healthcheck_interval"] == "2s"
    failure = failed.find("failure")
    assert failure is not None
    assert "healthcheck interval is 2s, expected <=1s" in (failure.get("message") or "")


def test_record_outside_a_test_is_a_no_op_and_merges_per_check() -> None:
    record("outside", x=1)
    with collecting() as evidence:
        record("size", size_bytes=10)
        record("size", budget="2GB")
        record("user", uid=0)
    assert [(e.check, e.facts) for e in evidence] == [
        ("size", {"size_bytes": 10, "budget": "2GB"}),
        ("user", {"uid": 0}),
    ]


def test_facts_read_as_text() -> None:
    assert as_text(timedelta(seconds=90)) == "1m30s"
    assert as_text(["a", "b"]) == "a, b"
    assert as_text(None) == "none"


# Plain tests carry evidence too: what the test body read and ran.
PLAIN_TESTS = """
import requests
from pytest_imagecheck import assert_non_root

def test_env(image):
    assert image.env["APP_MODE"] == "prod"

def test_gcc_absent(container):
    assert container.exec(["sh", "-c", "command -v gcc"]).exit_code != 0

def test_http(container):
    assert requests.get(container.url(8080, "/index.html"), timeout=5).status_code == 200

def test_reads_a_file(image, container):
    assert b"svc" in image.read_file("/etc/passwd")
    assert b"sample" in container.read_file("/srv/www/index.html")

def test_polls_many_times(container):
    for _ in range(60):
        assert container.exec(["true"]).exit_code == 0

def test_check_only(image):
    assert_non_root(image)

def test_exec_printing_a_token(container):
    assert container.exec(["echo", "token ghp_" + "Q1w2E3r4T5" * 4]).exit_code == 0

def test_other_http_is_not_observed(container):
    try:
        requests.get("http://127.0.0.1:9/", timeout=2)
    except requests.ConnectionError:
        pass
"""


@pytest.fixture
def evidence_image(build_image, sample_image: str) -> str:
    """The sample image with a secret and a plain value in its ENV."""
    token = "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8"
    return build_image(f"FROM {sample_image}\nENV APP_MODE=prod GITHUB_TOKEN={token}\n")


def test_plain_tests_carry_what_they_read_and_ran_as_evidence(pytester, evidence_image) -> None:
    pytester.makepyfile(PLAIN_TESTS)
    result = pytester.runpytest(f"--image={evidence_image}", "--junitxml=report.xml")
    result.assert_outcomes(passed=8)
    suite = ET.parse(pytester.path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    facts = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in suite.findall("testcase")
    }
    env = facts["test_env"]["imagecheck.read.image.env"]
    assert "APP_MODE=prod" in env
    assert "GITHUB_TOKEN=ghp_… (40 chars)" in env and "a1B2c3" not in env  # masked
    assert facts["test_gcc_absent"]["imagecheck.exec.1"] == (
        '["sh", "-c", "command -v gcc"] -> exit 127'
    )
    http = facts["test_http"]["imagecheck.http.1"]
    assert http.startswith("GET http://127.0.0.1:") and http.endswith(
        "/index.html -> 200 <h1>sample</h1>"
    )
    assert (
        facts["test_reads_a_file"]["imagecheck.file.1"].startswith("/etc/passwd -> ")
        and "bytes, read from image" in facts["test_reads_a_file"]["imagecheck.file.1"]
    )
    assert "bytes, read from container" in facts["test_reads_a_file"]["imagecheck.file.2"]
    polled = facts["test_polls_many_times"]
    assert polled["imagecheck.exec.1"] == '["true"] -> exit 0'
    assert "imagecheck.exec.2" not in polled  # the same answer is kept once
    # A check's own reads are its evidence; they are not repeated as observations.
    assert not [k for k in facts["test_check_only"] if k.startswith("imagecheck.read.")]
    assert facts["test_check_only"]["imagecheck.uid"] == "1000"
    assert not [k for k in facts["test_other_http_is_not_observed"] if "http" in k]
    # Credential formats in what a command printed are masked, not only the image's ENV.
    printed = facts["test_exec_printing_a_token"]["imagecheck.exec.1"]
    assert "Q1w2E3r4T5" not in printed and "ghp_… (44 chars)" in printed


def test_observations_are_bounded_per_test() -> None:
    from pytest_imagecheck.evidence import MAX_OBSERVATIONS, observe

    with collecting() as collected:
        for index in range(MAX_OBSERVATIONS + 25):
            observe("exec", f"cmd {index}", "x" * 1000)
    assert len(collected.observations) == MAX_OBSERVATIONS
    assert collected.dropped == 25
    assert all(len(seen.text) < 260 for seen in collected.observations)
