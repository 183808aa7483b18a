"""container-structure-test's own file, ``bench/cst.yaml`` (16 criteria in 13 tests), run two
ways on ``imagecheck-bench/suite:1``: natively by the plugin (issue 16: ``pytest
--image=IMG bench/cst.yaml``, pytest's start-up included) and by the real binary. Rounds
alternate which runs first; each figure is a child process from spawn to exit.

    python3 bench/cst_native.py --repeat 7     # writes bench/results/issue16-cst.json

Both must give every test the same verdict (all pass here); the plugin's junit report says
how each of its command tests ran (an exec in the shared container, or a container of its
own), and the engine's events count the containers each way created.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from common import (
    BENCH,
    RESULTS,
    SUITE_IMAGE,
    Stats,
    ensure_suite_image,
    find_tool,
    machine,
    measure,
    pytest_argv,
)

CST = "container-structure-test"
PLUGIN = "plugin (pytest, bench/cst.yaml natively)"
#: The same pytest run with only the metadata test selected: no container, so what is left
#: is pytest's and the session's fixed cost (start-up, image inspect, clean-up, exit).
FIXED = "plugin, metadataTest only (the fixed cost)"
#: Both again with --no-start-ahead: nothing starts before a test asks for it (the session
#: starts no container of its own ahead, and the CST tests do not run ahead).
ON_DEMAND = "plugin, --no-start-ahead"
FIXED_ON_DEMAND = "plugin, metadataTest only, --no-start-ahead"
CONFIG = BENCH / "cst.yaml"
#: As in suite_times.py: plugins of this development machine that pytest-imagecheck does not
#: bring are switched off.
PLUGIN_ARGS = [f"--image={SUITE_IMAGE}", str(CONFIG), "-q", "-p", "no:hypothesispytest"]
PLUGIN_ARGS += ["-p", "no:benchmark"]


def _verdicts_cst(stdout: str) -> dict[str, bool]:
    results = json.loads(stdout[stdout.find("{") :])["Results"]
    return {str(r["Name"]): bool(r["Pass"]) for r in results}


def _verdicts_plugin(report: Path) -> tuple[dict[str, bool], dict[str, str]]:
    verdicts, ran_in = {}, {}
    for case in ET.parse(report).getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        name = str(properties.get("imagecheck.cst_test"))
        verdicts[name] = case.find("failure") is None and case.find("error") is None
        if properties.get("imagecheck.cst_ran_in"):
            ran_in[name] = str(properties["imagecheck.cst_ran_in"])
    return verdicts, ran_in


#: The label of the suite image, which its containers carry: their events are counted.
SUITE_LABEL = "org.opencontainers.image.title=bench-suite"


class _Creates:
    """Counts the engine's ``create`` events of containers of the suite image in the block."""

    def __init__(self, client) -> None:
        self.client = client
        self.count = 0

    def __enter__(self) -> _Creates:
        self._since = int(time.time()) - 1
        return self

    def __exit__(self, *exc: object) -> None:
        until = int(time.time()) + 1
        events = self.client.events(
            since=self._since,
            until=until,
            decode=True,
            filters={"type": "container", "event": "create", "label": SUITE_LABEL},
        )
        self.count = sum(1 for _ in events)


def run(client, repeat: int = 7, progress=print) -> dict:
    """Measure both; the CST column is left out, with the reason, when the binary cannot run."""
    cst = find_tool(CST)
    ensure_suite_image(client)
    runs = {
        PLUGIN: pytest_argv(*PLUGIN_ARGS),
        FIXED: pytest_argv(*PLUGIN_ARGS, "-k", "metadataTest"),
        ON_DEMAND: pytest_argv(*PLUGIN_ARGS, "--no-start-ahead"),
        FIXED_ON_DEMAND: pytest_argv(*PLUGIN_ARGS, "-k", "metadataTest", "--no-start-ahead"),
    }
    not_run = {}
    if cst.runs and cst.argv0 is not None:
        runs[CST] = [cst.argv0, "test", "--image", SUITE_IMAGE, "--config", str(CONFIG)]
    else:
        not_run[CST] = cst.reason
        progress(f"  {cst.line()}")
    checks: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        with _Creates(client) as plugin_creates:
            measure([*runs[PLUGIN], f"--junitxml={report}"]).check()
        plugin_verdicts, ran_in = _verdicts_plugin(report)
        checks["plugin_verdicts"] = plugin_verdicts
        checks["plugin_ran_in"] = ran_in
        checks["plugin_containers_created"] = plugin_creates.count
    if CST in runs:
        with _Creates(client) as cst_creates:
            done = measure([*runs[CST], "--output", "json"])
        checks["cst_verdicts"] = _verdicts_cst(done.stdout)
        checks["cst_containers_created"] = cst_creates.count
        checks["verdicts_equal"] = checks["cst_verdicts"] == plugin_verdicts
    for argv in runs.values():  # warm-up
        measure(argv)
    walls: dict[str, list[float]] = {name: [] for name in runs}
    loads = []
    for round_ in range(repeat):
        names = list(runs)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in names:
            walls[name].append(measure(runs[name]).check().wall)
        loads.append(os.getloadavg()[0])
        shown = ", ".join(f"{name} {walls[name][-1]:.2f} s" for name in runs)
        progress(f"  round {round_ + 1}/{repeat}: {shown}")
    stats = {name: Stats(tuple(values)) for name, values in walls.items()}
    ratio = stats[CST].median / stats[PLUGIN].median if CST in stats else None
    beyond_fixed = stats[PLUGIN].median - stats[FIXED].median
    return {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(client),
        "image": SUITE_IMAGE,
        "config": "bench/cst.yaml",
        "tests": len(plugin_verdicts),
        "tools": {CST: cst.as_dict()},
        "not_run": not_run,
        "wall_s": {name: s.as_dict() for name, s in stats.items()},
        "cst_over_plugin": ratio,
        "plugin_beyond_fixed_cost_s": beyond_fixed,
        "goal": ">= 3x",
        "load_average_1min": loads,
        "checks": checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "issue16-cst.json")
    args = parser.parse_args()
    from pytest_imagecheck.engine import connect

    result = run(connect(), args.repeat, progress=lambda line: print(line, file=sys.stderr))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, wall in result["wall_s"].items():
        print(f"{name}: median {wall['median']:.2f} s ({wall['min']:.2f}-{wall['max']:.2f})")
    if result["cst_over_plugin"] is not None:
        print(f"container-structure-test / plugin: {result['cst_over_plugin']:.2f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
