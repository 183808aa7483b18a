"""The ready-to-copy CI gates: well-formed, running the command the README documents, on the
example project's image family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_imagecheck.family import load_family
from pytest_imagecheck.spec import load_spec

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "example_project"
CI = EXAMPLE / "ci"
#: Run in a repository laid out like example_project/ (its tests under tests/acceptance).
GATE = (
    "pytest --family=imagecheck.yaml --junitxml=report.xml "
    "--imagecheck-report=imagecheck-report.md -o junit_logging=system-out tests/acceptance"
)


def _load(name: str) -> Any:
    # PyYAML reads GitHub's `on:` key as True, as YAML 1.1 says.
    return yaml.safe_load((CI / name).read_text())


def test_the_gate_command_is_the_one_the_readme_documents() -> None:
    assert GATE in (ROOT / "README.md").read_text()


def test_github_workflow_runs_the_gate_and_publishes_on_failure_too() -> None:
    workflow = _load("github-actions.yml")
    assert set(workflow[True]) == {"pull_request", "push"}
    steps = workflow["jobs"]["acceptance"]["steps"]
    runs = [step["run"] for step in steps if "run" in step]
    assert GATE in runs
    junit = next(s for s in steps if s.get("uses", "").startswith("mikepenz/action-junit-report"))
    artifact = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    for step in (junit, artifact):
        assert step["if"] == "always()"
    assert junit["with"]["report_paths"] == "report.xml"
    kept = artifact["with"]["path"].split()
    assert {"report.xml", "imagecheck-report.md", "imagecheck-report-layers.svg"} <= set(kept)


def test_gitlab_job_runs_the_gate_and_keeps_reports_on_failure_too() -> None:
    job = _load("gitlab-ci.yml")["image-acceptance"]
    assert GATE in job["script"]
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "report.xml"
    assert "imagecheck-report.md" in job["artifacts"]["paths"]


def test_every_option_of_the_gate_is_one_pytest_accepts(pytester: pytest.Pytester) -> None:
    words = GATE.split()[1:]
    config = pytester.parseconfig(*words)
    assert config.getoption("imagecheck_family") == "imagecheck.yaml"
    assert config.getoption("imagecheck_report") == "imagecheck-report.md"
    assert config.getoption("xmlpath") == "report.xml"


def test_the_gates_family_file_builds_the_services_after_their_base() -> None:
    family = load_family(EXAMPLE / "imagecheck.yaml")
    assert family is not None
    assert family.ids == ["base", "cpu", "cuda"]
    deps = family.dependencies()
    assert {member: set(on) for member, on in deps.items()} == {
        "base": set(),
        "cpu": {"base"},
        "cuda": {"base"},
    }


def test_the_example_criteria_judge_every_member_and_cuda_only_where_it_applies() -> None:
    family = load_family(EXAMPLE / "imagecheck.yaml")
    assert family is not None
    criteria = load_spec(EXAMPLE / "tests" / "imagecheck.yaml", family.ids).criteria
    assert {criterion.member for criterion in criteria} == set(family.ids)
    assert [c.member for c in criteria if c.check == "cuda_torch"] == ["cuda"]
    assert {c.member for c in criteria if c.check == "endpoint"} == {"cpu", "cuda"}
