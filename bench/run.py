"""Run every benchmark and print one table: ``python3 bench/run.py``.

Writes bench/results/latest.json (every measurement), latest.md (the tables) and bench.svg
(+ bench.png when rsvg-convert is installed). About 10 minutes on 2 cores, plus about 2-3
minutes the first time to build the large image.

    python3 bench/run.py                      # everything
    python3 bench/run.py --only suite,readiness
    python3 bench/run.py --clean              # remove the benchmark's images and caches
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime, timezone

from common import BENCH, PYCACHE, RESULTS, SUITE_IMAGE, Tool, machine

SECTIONS = ("suite", "large", "readiness", "xdist")


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def _ratio_line(name: str, value: float, goal: str, met: bool) -> str:
    return f"| {name} | {value:.2f}x | {goal} | {'met' if met else '**missed**'} |"


def suite_table(suite: dict) -> list[str]:
    walls = suite["wall_s"]
    plugin = walls["plugin"]["median"]
    lines = [
        "### Suite of 20 criteria (wall time, spawn to exit)",
        "",
        "| run | criteria | median | min-max | n | vs plugin |",
        "|---|---|---|---|---|---|",
    ]
    for name, stats in walls.items():
        criteria = suite["criteria"].get(name, 20)
        lines.append(
            f"| {name} | {criteria} | {stats['median']:.2f} s | {stats['min']:.2f}-"
            f"{stats['max']:.2f} s | {len(stats['values'])} | "
            f"{stats['median'] / plugin:.2f}x |"
        )
    for name, reason in (suite.get("not_run") or {}).items():
        lines.append(f"| {name} | {suite['criteria'].get(name, 20)} | not run: {reason} | | | |")
    ratios = suite["ratios"]
    cst_reason = (suite.get("not_run") or {}).get("container-structure-test")
    lines += [
        "",
        "| goal | measured | target | |",
        "|---|---|---|---|",
        _ratio_line(
            "container-structure-test / plugin",
            ratios["cst_over_plugin"],
            ">= 3x",
            ratios["cst_over_plugin"] >= 3,
        )
        if "cst_over_plugin" in ratios
        else f"| container-structure-test / plugin | not measured | >= 3x | {cst_reason} |",
        _ratio_line(
            "plugin / floor",
            ratios["plugin_over_floor"],
            "<= 1.3x",
            ratios["plugin_over_floor"] <= 1.3,
        ),
        f"| plugin / floor with commands in one exec | "
        f"{ratios['plugin_over_batched_floor']:.2f}x | (reference) | |",
        *(
            [
                f"| container-structure-test / plugin in a venv with only it | "
                f"{ratios['cst_over_fresh_venv']:.2f}x | (as a CI job runs it) | |",
                f"| plugin in a venv with only it / floor | "
                f"{ratios['fresh_venv_over_floor']:.2f}x | (as a CI job runs it) | |",
            ]
            if "cst_over_fresh_venv" in ratios
            else []
        ),
        *(
            [
                f"| plugin in a venv with only it / floor | "
                f"{ratios['fresh_venv_over_floor']:.2f}x | (as a CI job runs it) | |"
            ]
            if "fresh_venv_over_floor" in ratios and "cst_over_fresh_venv" not in ratios
            else []
        ),
    ]
    loads = suite.get("load_average_1min") or []
    if loads:
        lines += [
            "",
            f"1-minute load average during the rounds: {min(loads):.1f}-"
            f"{max(loads):.1f} (2 cores; other work shared the machine).",
        ]
    b = suite["breakdown"]
    m, spent = b["moments_s"], b["spent_s"]
    lines += [
        "",
        "### Where the plugin's time goes (median of 3 instrumented runs)",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| spawn to pytest's core imported (python start, pytest import) | {m['imported']:.2f} |",
        f"| plugins imported and configured (pytest-imagecheck, testinfra, xdist) | "
        f"{m['configured'] - m['imported']:.2f} |",
        f"| collection (imagecheck.yaml read and validated) | "
        f"{m['collected'] - m['configured']:.2f} |",
        f"| tests, first to last | {m['last_test'] - m['first_test']:.2f} |",
        f"| session end (cleanup, summary) to process exit | {m['exited'] - m['last_test']:.2f} |",
        f"| **total, spawn to exit** | **{m['exited']:.2f}** |",
        "",
        "| work inside the run, by kind | seconds |",
        "|---|---|",
    ]
    for name, seconds in spent.items():
        count = b["counts"].get(name)
        shown = f" ({count}x)" if count and count > 1 else ""
        lines.append(f"| {name}{shown} | {seconds:.2f} |")
    lines += [
        "",
        "| import alone (median of 3) | seconds |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {seconds:.2f} |" for name, seconds in b["imports_s"].items()]
    return lines


def large_table(large: dict) -> list[str]:
    image = large["image"]
    labels = {
        "save": "`docker save` > /dev/null (engine streaming alone)",
        "size_only": "`assert_size_within(total, layer, wasted)` in a child",
        "suite": "plugin, 5 image checks via pytest (size+wasted, no_secrets, non_root, ...)",
        "dive": "`dive --ci`",
    }
    lines = [
        f"### Large image: {image['tag']}, {image['size'] / 1e9:.2f} GB, {image['layers']} layers",
        "",
        "| run | wall | CPU (child) | peak RSS | wasted bytes |",
        "|---|---|---|---|---|",
    ]
    for key, label in labels.items():
        for index, r in enumerate(large.get(key) or []):
            wasted = r.get("wasted_bytes")
            shown = f"{wasted:,} ({wasted / 2**20:.1f} MiB)" if wasted else ""
            suffix = f" #{index + 1}" if len(large[key]) > 1 else ""
            lines.append(
                f"| {label}{suffix} | {r['wall']:.1f} s | {r['cpu']:.1f} s | "
                f"{_mib(r['peak_rss'])} | {shown} |"
            )
    for key, reason in (large.get("not_run") or {}).items():
        lines.append(f"| {labels.get(key, key)} | not run: {reason} | | | |")
    expected = large["expected_wasted_bytes"]
    lines += [
        "",
        f"Wasted bytes by construction (each superseded copy once): {expected:,} "
        f"({expected / 2**20:.1f} MiB). Peak RSS is against an image of "
        f"{_mib(image['size'])}.",
    ]
    checks = (large.get("suite") or [{}])[0].get("checks") or {}
    if checks:
        lines += ["", "| check (pytest, large image) | seconds |", "|---|---|"]
        lines += [f"| {name} | {seconds:.1f} |" for name, seconds in checks.items()]
    return lines


def readiness_table(ready: dict) -> list[str]:
    lat = ready["latency_s"]
    period = ready.get("poll_period_s") or {}
    return [
        f"### Readiness: ready to noticed, {ready['runs']} runs, interval "
        f"{ready['interval_s'] * 1000:.0f} ms",
        "",
        "| min | p10 | median | p90 | max | time between polls (median / max) |",
        "|---|---|---|---|---|---|",
        f"| {lat['min'] * 1000:.0f} ms | {lat['p10'] * 1000:.0f} ms | "
        f"{lat['median'] * 1000:.0f} ms | {lat['p90'] * 1000:.0f} ms | "
        f"{lat['max'] * 1000:.0f} ms | {period.get('median', 0) * 1000:.0f} / "
        f"{period.get('max', 0) * 1000:.0f} ms |",
    ]


def xdist_table(xdist: dict) -> list[str]:
    lines = [
        f"### pytest-xdist, {xdist['criteria']} criteria, --build-context (cached layers)",
        "",
        "| mode | median | min-max | builds per run (engine tag events) | "
        'builds per run (plugin\'s "built" lines) |',
        "|---|---|---|---|---|",
    ]
    for mode, stats in xdist["wall_s"].items():
        lines.append(
            f"| {mode} | {stats['median']:.2f} s | {stats['min']:.2f}-"
            f"{stats['max']:.2f} s | {', '.join(map(str, xdist['builds'][mode]))} | "
            f"{', '.join(map(str, xdist['built_lines'][mode]))} |"
        )
    return lines


def tables(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Measured {results['finished']} on {m['nproc']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, Docker engine "
        f"{m['engine']} ({m['storage_driver']}); load average at start "
        f"{', '.join(map(str, m['load_average_at_start']))}; "
        f"the whole run took {results['took_s'] / 60:.1f} min.",
        "",
    ]
    # The tools the sections compared against (each section found its own on PATH).
    tools = [
        Tool(name, **found)
        for key in ("suite", "large")
        for name, found in ((results.get(key) or {}).get("tools") or {}).items()
    ]
    if tools:
        lines += [f"Tools: {'; '.join(tool.line() for tool in tools)}.", ""]
    for key, render in (
        ("suite", suite_table),
        ("large", large_table),
        ("readiness", readiness_table),
        ("xdist", xdist_table),
    ):
        if key in results:
            lines += [*render(results[key]), ""]
    return "\n".join(lines)


def clean(client) -> None:
    import docker.errors
    import large_image
    import xdist_build

    for tag in (large_image.TAG, SUITE_IMAGE, xdist_build.KEEP):
        try:
            client.images.remove(tag, force=True)
            print(f"removed {tag}")
        except docker.errors.ImageNotFound:
            pass
    shutil.rmtree(PYCACHE.parent, ignore_errors=True)
    print(f"removed {PYCACHE.parent}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the suite runs")
    parser.add_argument("--large-repeat", type=int, default=1)
    parser.add_argument("--readiness-runs", type=int, default=20)
    parser.add_argument("--interval", default="250ms", help="readiness poll interval")
    parser.add_argument("--xdist-repeat", type=int, default=3)
    parser.add_argument(
        "--render",
        action="store_true",
        help="only write latest.md and the plot again from results/latest.json",
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="remove the benchmark's images (the large one too) and caches",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    if args.render:
        write_outputs(json.loads((RESULTS / "latest.json").read_text()))
        return
    from pytest_imagecheck.engine import connect

    client = connect(timeout=900)
    if args.clean:
        clean(client)
        return
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {', '.join(sorted(unknown))}: use {', '.join(SECTIONS)}")

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.time()
    results: dict = {"machine": machine(client)}
    if "suite" in only:
        import suite_times

        progress("suite: plugin vs container-structure-test vs floor")
        results["suite"] = suite_times.run(client, args.repeat, progress)
    if "large" in only:
        import large_image

        progress("large image")
        results["large"] = large_image.run(client, args.large_repeat, progress)
    if "readiness" in only:
        import readiness

        progress("readiness")
        results["readiness"] = readiness.run(client, args.readiness_runs, args.interval, progress)
    if "xdist" in only:
        import xdist_build

        progress("xdist")
        results["xdist"] = xdist_build.run(client, args.xdist_repeat, progress)
    results["took_s"] = time.time() - started
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_outputs(results)


def write_outputs(results: dict) -> None:
    """Print the tables; write them to latest.md and draw the plot."""
    import plot

    table = tables(results)
    (RESULTS / "latest.md").write_text(table + "\n")
    written = plot.write(results)
    print(table)
    print(f"written: {RESULTS / 'latest.md'}, {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
