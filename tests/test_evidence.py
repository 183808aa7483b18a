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
