"""Issue 15, goals 2 and 3: the example's acceptance suite (its images built) and the
20-criteria suite, with containers started ahead (the default), with ``--no-start-ahead``,
and with the plugin of an earlier commit (``--against DIR``, a checkout of it), in one run
with rotated rounds; then where the example's time goes.

    git worktree add /tmp/before15 3c7dc8e
    python3 bench/speed.py --repeat 5 --against /tmp/before15   # results/issue15-speed.json

The example runs as scripts/run-example runs it (``-n 2``, the family file, the evidence
report), after scripts/run-example has built its images once. The suite runs in the venv
that holds only pytest-imagecheck (bench/.cache/venv), as a CI job would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import (  # type: ignore[import-not-found]
    BENCH,
    REPO,
    RESULTS,
    SUITE_IMAGE,
    Stats,
    child_env,
    ensure_suite_image,
    fresh_venv,
    machine,
    measure,
)

#: The suite's command line (bench/suite_times.py's, in the venv).
SUITE_ARGS = [f"--image={SUITE_IMAGE}", "bench/suite", "-q"]


def example_args(digest: str, report: Path) -> list[str]:
    """scripts/run-example's pytest command line (default variant)."""
    return [
        "-p",
        "no:cacheprovider",
        "-v",
        "-n",
        "2",
        "--family=example_project/imagecheck.yaml",
        "--build-arg",
        f"BASE_DIGEST={digest}",
        f"--imagecheck-report={report}",
        "--durations=0",
        "example_project/tests",
    ]


def base_digest() -> str:
    """The example base's digest in the local registry (example_project/bases.py)."""
    out = subprocess.run(
        [sys.executable, "example_project/bases.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


_DURATION = re.compile(r"^(\d+\.\d+)s (setup|call|teardown)\s+(.+?)\s*$")
_WORKER = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] \w+ (.+?)\s*$")
_SESSION = re.compile(r" in (\d+\.\d+)s")


def _group(nodeid: str) -> str:
    """A test's kind, for the breakdown: the criterion's check, or the Python test's name."""
    name = nodeid.split("::")[-1].split("[")[0]
    return name.split(" ")[0]


def breakdown(output: str, wall: float) -> dict:
    """Where the example's time goes, from one run's ``-v --durations=0`` output: per
    worker, the seconds of set-up (builds, images, waiting for containers), calls by
    check and teardown; and what is outside the tests."""
    worker_of = {m[2]: m[1] for m in map(_WORKER.match, output.splitlines()) if m}
    per_worker: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in output.splitlines():
        found = _DURATION.match(line)
        if not found:
            continue
        seconds, phase, nodeid = float(found[1]), found[2], found[3]
        worker = worker_of.get(nodeid, "?")
        key = phase if phase != "call" else f"call: {_group(nodeid)}"
        per_worker[worker][key] += seconds
    session = _SESSION.search(output.splitlines()[-1] if output else "")
    return {
        "wall_s": round(wall, 2),
        "pytest_session_s": float(session[1]) if session else None,
        "per_worker_s": {
            worker: dict(sorted(((k, round(v, 2)) for k, v in phases.items()), key=lambda x: -x[1]))
            for worker, phases in sorted(per_worker.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", type=Path, help="a checkout of an earlier commit")
    args = parser.parse_args()

    import docker

    client = docker.from_env()
    ensure_suite_image(client)
    venv = fresh_venv()
    suite_python = str(venv) if venv is not None else sys.executable
    digest = base_digest()
    report = Path(tempfile.mkdtemp()) / "report.md"
    example = [sys.executable, "-m", "pytest", *example_args(digest, report)]
    suite = [suite_python, "-m", "pytest", *SUITE_ARGS]
    here = child_env()
    runs: dict[str, tuple[list[str], dict[str, str], Path]] = {
        "example": (example, here, REPO),
        "example, --no-start-ahead": ([*example, "--no-start-ahead"], here, REPO),
        "suite": (suite, here, REPO),
        "suite, --no-start-ahead": ([*suite, "--no-start-ahead"], here, REPO),
        "suite floor": ([suite_python, str(BENCH / "floor.py"), SUITE_IMAGE], here, REPO),
        "suite floor, commands in one exec": (
            [suite_python, str(BENCH / "floor.py"), "--batched", SUITE_IMAGE],
            here,
            REPO,
        ),
    }
    if args.against is not None:
        before = child_env(PYTHONPATH=str(args.against.resolve()), PYTHONSAFEPATH="1")
        name = args.against.name
        # The earlier commit's own example tests, in its checkout: same images, same tags.
        runs[f"example at {name}"] = (example, before, args.against.resolve())
        runs[f"suite at {name}"] = (suite, before, REPO)
    for name, (argv, env, cwd) in runs.items():  # warm-up; each must pass
        done = measure(argv, env=env, cwd=cwd)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    walls: dict[str, list[float]] = {name: [] for name in runs}
    loads = []
    last_example, last_wall = "", 0.0
    names = list(runs)
    for round_ in range(args.repeat):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            argv, env, cwd = runs[name]
            done = measure(argv, env=env, cwd=cwd).check()
            walls[name].append(done.wall)
            if name == "example":
                last_example = done.stdout
                last_wall = done.wall
        loads.append(os.getloadavg()[0])
        print(
            f"round {round_ + 1}/{args.repeat}: "
            + ", ".join(f"{n} {walls[n][-1]:.2f} s" for n in names),
            file=sys.stderr,
        )
    stats = {name: Stats(tuple(values)) for name, values in walls.items()}
    results = {
        "machine": machine(client),
        "repeat": args.repeat,
        "wall_s": {name: s.as_dict() for name, s in stats.items()},
        "ratios": {
            "suite_over_floor": stats["suite"].median / stats["suite floor"].median,
            "suite_over_batched_floor": stats["suite"].median
            / stats["suite floor, commands in one exec"].median,
        },
        "load_average_1min": loads,
        "example_breakdown": breakdown(last_example, last_wall),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "issue15-speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| run | median | min-max | n |")
    print("|---|---|---|---|")
    for name, s in stats.items():
        print(f"| {name} | {s.median:.2f} s | {s.low:.2f}-{s.high:.2f} s | {len(s.values)} |")
    for key, value in results["ratios"].items():
        print(f"{key}: {value:.2f}x")
    print(json.dumps(results["example_breakdown"], indent=2))


if __name__ == "__main__":
    main()
