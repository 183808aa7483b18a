"""imagecheck.yaml collected as tests, waivers, and the evidence report, on real images."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

CRITERIA = """\
version: 1
criteria:
  - check: non_root
    runtime: true
  - check: healthcheck
    interval: "<=2s"
    retries: 2
  - check: exposed_ports
    expect: [8080]
    exactly: true
  - check: env
    expect: {APP_ENV: prod}
  - check: file
    path: /srv/www/index.html
    contains: sample
  - check: command
    run: [id, -u]
    stdout_matches: '^1000$'
  - check: endpoint
    path: /index.html
  - check: size
    total: 1MB
  - check: config
    workdir: /tmp
    waive: "workdir moves in OPS-7"
"""


def _junit_cases(path) -> dict[str, ET.Element]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return {case.get("name"): case for case in suite.findall("testcase")}


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_yaml_criteria_run_as_tests_with_evidence_in_junit(pytester, sample_image, family):
    pytester.makefile(".yaml", imagecheck=CRITERIA)
    result = pytester.runpytest(
        f"--image={sample_image}", "--junitxml=report.xml", "-o", f"junit_family={family}", "-rx"
    )
    result.assert_outcomes(passed=7, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*imagecheck.yaml:21: image imagecheck-test/sample:1 is * budget 1 MB (total=1MB)*",
            "XFAIL imagecheck.yaml::config workdir=/tmp - waived: workdir moves in OPS-7",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    cases = _junit_cases(pytester.path / "report.xml")
    facts = {p.get("name"): p.get("value") for p in cases["non_root"].iter("property")}
    assert (facts["imagecheck.uid"], facts["imagecheck.pid1_uid"]) == ("1000", "1000")
    endpoint = next(case for name, case in cases.items() if name.startswith("endpoint"))
    assert any(p.get("name") == "imagecheck.time_to_ready" for p in endpoint.iter("property"))
    waived = next(case for name, case in cases.items() if name.startswith("config"))
    skipped = waived.find("skipped")
    assert skipped is not None and "waived: workdir moves in OPS-7" in skipped.get("message", "")


def test_k_selects_yaml_criteria_by_name(pytester, sample_image) -> None:
    pytester.makefile(".yaml", imagecheck=CRITERIA)
    result = pytester.runpytest(f"--image={sample_image}", "-k", "env or exposed_ports", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*imagecheck.yaml::env APP_ENV PASSED*"])


def test_invalid_yaml_fails_collection_with_file_line_and_fix(pytester) -> None:
    pytester.makefile(".yaml", imagecheck="criteria:\n  - check: healthcheck\n    intervall: 30s\n")
    result = pytester.runpytest("--image=whatever:1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    unknown = 'unknown key "intervall" for check healthcheck (did you mean interval?)'
    result.stdout.fnmatch_lines([f"*imagecheck.yaml:3: {unknown}*"])
    assert "Traceback" not in result.stdout.str()


def test_an_unexpected_error_in_a_criterion_is_reported_as_an_error_of_it(pytester) -> None:
    # A bug reaching the criterion (here a container fixture, overridden by the conftest,
    # whose exec raises) is that criterion's failure with its traceback, not pytest's crash.
    pytester.makeconftest(
        """
        import pytest

        class Broken:
            def exec(self, *args, **kwargs):
                raise RuntimeError("exec broke")

        @pytest.fixture(scope="session")
        def container():
            return Broken()
        """
    )
    pytester.makefile(".yaml", imagecheck="criteria:\n  - check: command\n    run: [id]\n")
    result = pytester.runpytest("--image=whatever:1", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: exec broke*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_ini_pattern_collects_other_file_names(pytester, sample_image) -> None:
    pytester.makeini("[pytest]\nimagecheck_yaml = *.criteria.yaml\n")
    pytester.makefile(
        ".criteria.yaml", web="criteria:\n  - check: env\n    expect: {APP_ENV: prod}\n"
    )
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=1)


def test_waive_marker_needs_a_reason_and_shows_it(pytester, sample_image) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.waive("root until the base image moves, SEC-9")
        def test_root(image):
            assert image.user == "root"
        """
    )
    result = pytester.runpytest(f"--image={sample_image}", "-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(
        ["XFAIL *test_root - waived: root until the base image moves, SEC-9"]
    )
    pytester.makepyfile("import pytest\n\n@pytest.mark.waive\ndef test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*@pytest.mark.waive needs a reason*"])


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_report_holds_each_verdict_and_its_evidence(
    pytester, sample_image, client, workers
) -> None:
    pytester.makefile(".yaml", imagecheck=CRITERIA)
    pytester.makepyfile(
        """
        import pytest

        def test_gpu_less(run_container):
            pytest.skip("needs a GPU host")
        """
    )
    result = pytester.runpytest_subprocess(
        f"--image={sample_image}", "--imagecheck-report=out/report.json", *workers
    )
    result.assert_outcomes(passed=7, failed=1, xfailed=1, skipped=1)
    data = json.loads((pytester.path / "out" / "report.json").read_text())
    assert data["format"] == "pytest-imagecheck-report"
    assert data["image"]["ref"] == sample_image
    assert data["image"]["id"].startswith("sha256:")
    by_name = {c["name"]: c for c in data["criteria"]}
    assert len(by_name) == 10
    assert by_name["non_root"]["outcome"] == "passed"
    assert {"name": "imagecheck.user", "value": "svc"} in by_name["non_root"]["facts"]
    assert by_name["size total=1MB"]["outcome"] == "failed"
    assert "budget 1 MB" in by_name["size total=1MB"]["reason"]
    assert by_name["config workdir=/tmp"]["outcome"] == "waived"
    assert by_name["config workdir=/tmp"]["reason"] == "workdir moves in OPS-7"
    assert by_name["test_gpu_less"]["outcome"] == "skipped"
    assert by_name["test_gpu_less"]["reason"] == "needs a GPU host"
    assert data["size_budget_bytes"] == 1_000_000
    assert len(data["layers"]) == len(client.api.history(sample_image))


def test_markdown_report_with_layer_chart(pytester, sample_image) -> None:
    pytester.makefile(".yaml", imagecheck=CRITERIA)
    result = pytester.runpytest(f"--image={sample_image}", "--imagecheck-report=report.md")
    result.stdout.fnmatch_lines(["*imagecheck evidence report: *report.md*"])
    markdown = (pytester.path / "report.md").read_text()
    assert "0 NOT VERIFIED" in markdown
    assert "WAIVED" in markdown and "FAIL" in markdown and "PASS" in markdown
    assert "report-layers.svg" in markdown
    svg = ET.parse(pytester.path / "report-layers.svg").getroot()
    assert svg.tag.endswith("svg")
