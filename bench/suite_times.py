"""The 20-criteria suite three ways: the plugin (pytest start-up included), container-structure-
test (the 16 criteria it can express) and the floor (bench/floor.py), run in turns, each
several times; then where the plugin's time goes.

    python3 bench/suite_times.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    BENCH,
    SUITE_IMAGE,
    Stats,
    Tool,
    child_env,
    ensure_suite_image,
    find_tool,
    fresh_venv,
    measure,
    pytest_argv,
)

CST = "container-structure-test"

#: The plugin's command line. The two -p no: switch off plugins that this development machine
#: has installed (hypothesis, pytest-benchmark) but pytest-imagecheck does not bring; their
#: cost is measured on its own ("plugin, every plugin installed here").
PLUGIN_ARGS = [
    f"--image={SUITE_IMAGE}",
    "bench/suite",
    "-q",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:benchmark",
]


#: The plugin as a user's CI job runs it: a virtual environment with nothing else installed
#: (pytest loads fewer plugins' entry points, imports less).
FRESH_VENV = "plugin, in a venv with only pytest-imagecheck"


def commands(cst: Tool) -> dict[str, list[str]]:
    """The command lines measured in turns; container-structure-test only when it runs."""
    floor = str(BENCH / "floor.py")
    runs = {"plugin": pytest_argv(*PLUGIN_ARGS)}
    if cst.runs and cst.argv0 is not None:
        runs[CST] = [cst.argv0, "test", "--image", SUITE_IMAGE, "--config", str(BENCH / "cst.yaml")]
    runs["floor"] = [sys.executable, floor, SUITE_IMAGE]
    runs["floor, commands in one exec"] = [sys.executable, floor, "--batched", SUITE_IMAGE]
    return runs


def _median_of(documents: list[dict], *keys: str) -> float:
    values = []
    for document in documents:
        value = document
        for key in keys:
            value = value.get(key, 0.0) if isinstance(value, dict) else 0.0
        values.append(float(value))
    return statistics.median(values)


def breakdown(repeat: int = 3) -> dict:
    """Where the plugin's time goes, from runs with bench/imagecheck_timing.py loaded."""
    documents = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(repeat):
            out = Path(tmp) / f"timing-{index}.json"
            env = child_env(
                PYTHONPATH=str(BENCH), BENCH_TIMING_OUT=str(out), BENCH_T0=repr(time.time())
            )
            run = measure(pytest_argv("-p", "imagecheck_timing", *PLUGIN_ARGS), env=env).check()
            document = json.loads(out.read_text())
            document["moments"]["exited"] = run.wall
            documents.append(document)
    moments = {name: _median_of(documents, "moments", name) for name in documents[0]["moments"]}
    spent = {name: _median_of(documents, "spent", name) for name in documents[0]["spent"]}
    imports = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import pytest": [sys.executable, "-c", "import pytest"],
        "import docker": [sys.executable, "-c", "import docker"],
        "import pytest, pytest_imagecheck.plugin": [
            sys.executable,
            "-c",
            "import pytest, pytest_imagecheck.plugin",
        ],
    }
    import_times = {
        name: statistics.median(measure(argv).check().wall for _ in range(3))
        for name, argv in imports.items()
    }
    return {
        "moments_s": moments,
        "spent_s": spent,
        "counts": documents[0]["counts"],
        "imports_s": import_times,
    }


def run(client, repeat: int = 5, progress=print, against: Path | None = None) -> dict:
    """Measure the suite; container-structure-test's column is left out, with the reason in
    ``not_run``, when the tool cannot run. ``against``: another source tree of the plugin (a
    checkout of an earlier commit), measured in the same turns as "plugin at NAME"."""
    cst = find_tool(CST)
    if not cst.runs:
        progress(f"  {cst.line()}")
    ensure_suite_image(client)
    runs = commands(cst)
    envs: dict[str, dict[str, str]] = {}
    if against is not None:
        name = f"plugin at {against.name}"
        runs[name] = pytest_argv(*PLUGIN_ARGS)
        envs[name] = child_env(PYTHONPATH=str(against.resolve()), PYTHONSAFEPATH="1")
    # Extra plugin variants, measured as often as the main ones.
    extras = {
        "plugin, every plugin installed here": (
            pytest_argv(f"--image={SUITE_IMAGE}", "bench/suite", "-q"),
            None,
        ),
        "plugin, no bytecode cache (this machine's default)": (
            pytest_argv(*PLUGIN_ARGS),
            {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        ),
    }
    venv_python = fresh_venv(progress)
    if venv_python is not None:
        extras[FRESH_VENV] = ([str(venv_python), "-m", "pytest", *PLUGIN_ARGS], child_env())
    not_run = {} if cst.runs else {CST: cst.reason}
    for name, argv in list(runs.items()):  # warm-up: caches; a failing run of ours stops here
        warm = measure(argv, env=envs.get(name))
        if name == CST and warm.returncode != 0:
            last = (warm.stdout + warm.stderr).strip().splitlines() or ["no output"]
            not_run[CST] = f"`{CST} test` exited with {warm.returncode}: {last[-1].strip()}"
            progress(f"  {CST}: not run: {not_run[CST]}")
            del runs[CST]
        else:
            warm.check()
    walls: dict[str, list[float]] = {name: [] for name in [*runs, *extras]}
    loads = []
    for round_ in range(repeat):
        names = list(runs)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in names:
            walls[name].append(measure(runs[name], env=envs.get(name)).check().wall)
        for name, (argv, env) in extras.items():
            walls[name].append(measure(argv, env=env).check().wall)
        loads.append(os.getloadavg()[0])
        shown = ", ".join(f"{name} {walls[name][-1]:.2f} s" for name in runs)
        progress(f"  suite round {round_ + 1}/{repeat}: {shown}")
    stats = {name: Stats(tuple(values)) for name, values in walls.items()}
    plugin = stats["plugin"].median
    progress("  suite: breakdown runs")
    ratios = {
        "plugin_over_floor": plugin / stats["floor"].median,
        "plugin_over_batched_floor": plugin / stats["floor, commands in one exec"].median,
    }
    if CST in stats:
        ratios["cst_over_plugin"] = stats[CST].median / plugin
    if FRESH_VENV in stats:
        ratios["fresh_venv_over_floor"] = stats[FRESH_VENV].median / stats["floor"].median
        if CST in stats:
            ratios["cst_over_fresh_venv"] = stats[CST].median / stats[FRESH_VENV].median
    return {
        "image": SUITE_IMAGE,
        "criteria": {"plugin": 20, CST: 16, "floor": 20},
        "tools": {CST: cst.as_dict()},
        "not_run": not_run,
        "wall_s": {name: s.as_dict() for name, s in stats.items()},
        "ratios": ratios,
        "load_average_1min": loads,
        "breakdown": breakdown(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--against", type=Path, help="another source tree of the plugin, measured in turn"
    )
    args = parser.parse_args()
    from pytest_imagecheck.engine import connect

    print(json.dumps(run(connect(), args.repeat, against=args.against), indent=2))


if __name__ == "__main__":
    main()
