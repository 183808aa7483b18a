"""A large image (about 3 GB in 23 layers, with overwrites and deletions) and what checking it
costs: the plugin's image checks, ``assert_size_within(wasted=...)`` alone, ``dive --ci`` and
a bare ``docker save``, each timed with its peak memory.

The image is built once from generated data (random bytes from ``dd``) and kept on the engine
by its tag; ``python3 bench/large_image.py --remove`` (or ``bench/run.py --clean``) removes it.

    python3 bench/large_image.py            # build if missing, measure, print
    python3 bench/large_image.py --build    # only build
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from common import (
    BENCH,
    REPO,
    Run,
    Stats,
    Tool,
    child_env,
    find_tool,
    machine,
    measure,
    pytest_argv,
)

TAG = "imagecheck-bench/large:3g-v1"
BASE = "imagecheck-test/busybox:1"
MiB = 1 << 20
BLOB = 176  # MiB per large file
CONF = 16  # MiB, the file written in three layers
SMALL_FILES, SMALL_SIZE = 10_000, 2048  # many small files, deleted later


def _blob(path: str, mib: int = BLOB) -> str:
    return f"dd if=/dev/urandom of={path} bs=1M count={mib} 2>/dev/null"


#: The RUN steps, in order, and what each does to the waste.
STEPS: list[tuple[str, str]] = [
    (f"mkdir -p /data/cache && {_blob('/data/a.bin')}", "a.bin, first copy"),
    (_blob("/data/b.bin"), "b.bin, deleted in step 14"),
    (_blob("/data/c.bin"), ""),
    (_blob("/data/d.bin"), ""),
    (f"{_blob('/data/conf.bin', CONF)} && {_blob('/data/e.bin', BLOB - CONF)}", "conf.bin 1/3"),
    (_blob("/data/cache/f.bin"), "cache/, replaced in step 19"),
    (
        f"mkdir /data/small && s=$(printf '%0{SMALL_SIZE - 1}d' 0) && i=0 && "
        f"while [ $i -lt {SMALL_FILES} ]; do echo $s > /data/small/f$i; i=$((i+1)); done",
        f"{SMALL_FILES} small files, deleted in step 17",
    ),
    (_blob("/data/g.bin"), ""),
    (_blob("/data/h.bin"), ""),
    (f"{_blob('/data/conf.bin', CONF)} && {_blob('/data/i.bin', BLOB - CONF)}", "conf.bin 2/3"),
    (_blob("/data/j.bin"), ""),
    (_blob("/data/a.bin"), "a.bin overwritten"),
    (_blob("/data/k.bin"), ""),
    ("rm /data/b.bin", "b.bin deleted"),
    (f"{_blob('/data/conf.bin', CONF)} && {_blob('/data/l.bin', BLOB - CONF)}", "conf.bin 3/3"),
    (_blob("/data/m.bin"), ""),
    ("rm -rf /data/small", "small files deleted"),
    (_blob("/data/n.bin"), ""),
    (
        f"rm -rf /data/cache && mkdir /data/cache && {_blob('/data/cache/new.bin', 32)}",
        "rm -rf d && mkdir d",
    ),
    (_blob("/data/o.bin"), ""),
]

#: What the plan wastes, each superseded copy once (what the plugin should report):
#: a.bin's first copy, b.bin, cache/f.bin, the small files and two copies of conf.bin.
EXPECTED_WASTED = 3 * BLOB * MiB + 2 * CONF * MiB + SMALL_FILES * SMALL_SIZE


def dockerfile() -> str:
    lines = [f"FROM {BASE}"]
    lines += [f"RUN {command}" for command, _ in STEPS]
    lines += ['LABEL org.opencontainers.image.title="bench-large"', "USER svc"]
    return "\n".join(lines) + "\n"


def ensure(client, *, progress=print) -> dict:
    """Build the image unless the engine has it; its size and layer count."""
    import docker.errors

    from tests import images

    try:
        image = client.images.get(TAG)
    except docker.errors.ImageNotFound:
        image = None
    if image is None:
        with tempfile.TemporaryDirectory() as lock_dir:
            images.ensure_busybox(client, Path(lock_dir))
        progress(f"building {TAG} (about 3 GB of random data, once)...")
        for chunk in client.api.build(
            fileobj=io.BytesIO(dockerfile().encode()), tag=TAG, rm=True, forcerm=True, decode=True
        ):
            if "error" in chunk:
                raise RuntimeError(f"building {TAG} failed: {chunk['error']}")
            line = (chunk.get("stream") or "").strip()
            if line.startswith("Step "):
                progress(f"  {line[:100]}")
        image = client.images.get(TAG)
    return {"tag": TAG, "size": image.attrs["Size"], "layers": len(image.attrs["RootFS"]["Layers"])}


def remove(client) -> bool:
    import docker.errors

    try:
        client.images.remove(TAG, force=True)
        return True
    except docker.errors.ImageNotFound:
        return False


#: Run in a child: the wasted-bytes check alone, through the public API, its facts as JSON.
SIZE_ONLY = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from pytest_imagecheck import assert_size_within
from pytest_imagecheck.engine import Engine, connect
from pytest_imagecheck.evidence import collecting
image = Engine(connect(), "bench-large").image({TAG!r})
with collecting() as evidence:
    assert_size_within(image, total="4GB", layer="1GB", wasted="1GB")
print(json.dumps({{k: v for e in evidence for k, v in e.facts.items()}}, default=str))
"""


@dataclass
class Measured:
    run: Run
    facts: dict


def measure_size_only() -> Measured:
    run = measure([sys.executable, "-c", SIZE_ONLY]).check()
    return Measured(run, json.loads(run.stdout.strip().splitlines()[-1]))


def measure_suite(junit: Path, env: dict[str, str] | None = None) -> Measured:
    """The image checks of bench/large/imagecheck.yaml through pytest; per-check seconds and,
    from the plugin's JSON report, the wasted bytes its size check found. ``env``: the
    child's environment (another source tree on PYTHONPATH, say; its report is not asked
    for, as an older tree may not have the option)."""
    report = junit.with_suffix(".report.json")
    report.unlink(missing_ok=True)
    extra = [f"--imagecheck-report={report}"] if env is None else []
    run = measure(
        pytest_argv(
            f"--image={TAG}",
            "bench/large",
            "-q",
            "-p",
            "no:hypothesispytest",
            "-p",
            "no:benchmark",
            f"--junitxml={junit}",
            *extra,
        ),
        env=env,
    ).check()
    checks = {
        case.get("name"): float(case.get("time", 0))
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    facts: dict[str, object] = {"checks": checks}
    if report.exists():
        for criterion in json.loads(report.read_text()).get("criteria") or []:
            for fact in criterion.get("facts") or []:
                if str(fact.get("name", "")).endswith("wasted_bytes"):
                    facts["wasted_bytes"] = int(fact["value"])
    return Measured(run, facts)


_WASTED = re.compile(r"wastedBytes:\s*(\d+)")
_EFFICIENCY = re.compile(r"efficiency:\s*([\d.]+)")


def measure_dive(dive: Tool) -> Measured:
    """``dive --ci`` on the image (its rules turned off: only the figures count here)."""
    run = measure(
        [
            str(dive.argv0),
            TAG,
            "--ci",
            "--source",
            "docker",
            "--lowestEfficiency",
            "0",
            "--highestWastedBytes",
            "disabled",
            "--highestUserWastedPercent",
            "disabled",
        ]
    )
    text = run.stdout + run.stderr
    wasted = _WASTED.search(text)
    efficiency = _EFFICIENCY.search(text)
    if wasted is None:
        last = text.strip().splitlines() or ["no output"]
        raise RuntimeError(
            f"dive printed no wastedBytes (exit {run.returncode}): {last[-1].strip()}\n"
            f"{text[-2000:]}"
        )
    return Measured(
        run,
        {
            "wasted_bytes": int(wasted.group(1)),
            "efficiency": float(efficiency.group(1)) if efficiency else None,
        },
    )


def measure_save() -> Measured:
    """``docker save`` to /dev/null: the engine's own cost of streaming the image once."""
    run = measure(["sh", "-c", f"docker save {TAG} > /dev/null"]).check()
    return Measured(run, {})


#: Run in a child: the same stream received through docker-py, as the plugin receives it, and
#: dropped unread: what Python pays before any parsing.
STREAM_ONLY = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from pytest_imagecheck.engine import connect
streamed = 0
for chunk in connect(timeout=600).api.get_image({TAG!r}):
    streamed += len(chunk)
print(streamed)
"""


def measure_stream_only() -> Measured:
    """The save stream through docker-py, nothing parsed: the floor of a Python reader."""
    run = measure([sys.executable, "-c", STREAM_ONLY]).check()
    return Measured(run, {"bytes": int(run.stdout.strip().splitlines()[-1])})


#: The runs, in the order of the first round; each later round starts one further along.
RUNS = ("save", "stream_py", "size_only", "suite", "dive")

#: What each run is, for the console table.
LABELS = {
    "save": "docker save > /dev/null",
    "stream_py": "the stream through docker-py, unparsed",
    "size_only": "assert_size_within(wasted=) in a child",
    "suite": "plugin via pytest (5 image checks)",
    "dive": "dive --ci",
    "suite_against": "plugin via pytest, --against tree",
}


#: The ratios of walls reported, ``(ours, theirs)``: the goals' and their references.
PAIRS = (
    ("size_only", "save"),
    ("size_only", "dive"),
    ("size_only", "stream_py"),
    ("suite", "save"),
    ("suite", "dive"),
    ("suite", "suite_against"),
    ("dive", "save"),
)


def rotated(names: tuple[str, ...], round_: int) -> list[str]:
    """``names`` starting ``round_`` places along, so that each run goes first in turn."""
    shift = round_ % len(names)
    return list(names[shift:] + names[:shift])


def summary(results: dict[str, list[dict]]) -> dict[str, object]:
    """Medians and spreads of each run, and the ratios the goals name: the plugin's wall over
    the engine's own save and over dive's, as medians of the runs and as the median of the
    ratios within each round (the runs of a round share the machine's load)."""
    runs = {name: values for name, values in results.items() if values}
    stats = {
        name: {
            "wall": Stats(tuple(r["wall"] for r in values)).as_dict(),
            "cpu": Stats(tuple(r["cpu"] for r in values)).as_dict(),
            "peak_rss_max": max(r["peak_rss"] for r in values),
            "load1": [r["load1"] for r in values],
        }
        for name, values in runs.items()
    }
    ratios: dict[str, dict[str, object]] = {}
    for ours, theirs in PAIRS:
        if ours not in runs or theirs not in runs:
            continue
        by_round = {r["round"]: r["wall"] for r in runs[theirs]}
        paired = [r["wall"] / by_round[r["round"]] for r in runs[ours] if r["round"] in by_round]
        ratios[f"{ours}/{theirs}"] = {
            "of_medians": stats[ours]["wall"]["median"] / stats[theirs]["wall"]["median"],
            "per_round": paired,
            "median_per_round": Stats(tuple(paired)).median if paired else None,
            "rounds_faster": sum(1 for ratio in paired if ratio < 1),
        }
    return {"runs": stats, "ratios": ratios}


def pooled(documents: list[dict]) -> dict[str, object]:
    """:func:`summary` of the rounds of several runs of this script together (a round is
    named ``"RUN.ROUND"``, so only runs of one round are paired)."""
    merged: dict[str, list[dict]] = {}
    for number, document in enumerate(documents):
        for name in LABELS:
            for measured in document.get(name) or []:
                merged.setdefault(name, []).append(
                    {**measured, "round": f"{number}.{measured['round']}"}
                )
    return {"rounds": sum(d["rounds"] for d in documents), **summary(merged)}


def run(
    client,
    repeat: int = 1,
    progress=print,
    against: Path | None = None,
    runs: tuple[str, ...] = RUNS,
) -> dict:
    """Measure each run on the large image, ``repeat`` rounds, the order rotated each round;
    dive's is left out, with the reason in ``not_run``, when it cannot run. ``against``:
    another source tree of the plugin (a checkout of an earlier commit), whose suite run is
    measured in the same rounds as ``suite_against``. ``runs``: which of :data:`RUNS`.
    Each run records the round, its place in it and the 1-minute load average when it
    started."""
    dive = find_tool("dive")
    not_run = {} if dive.runs else {"dive": dive.reason}
    if not dive.runs:
        progress(f"  {dive.line()}")
    image = ensure(client, progress=progress)
    names = tuple(runs) + (("suite_against",) if against else ())
    against_env = (
        child_env(PYTHONPATH=str(against.resolve()), PYTHONSAFEPATH="1")
        if against is not None
        else None
    )
    results: dict[str, list[dict]] = {name: [] for name in names}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        functions = {
            "save": measure_save,
            "stream_py": measure_stream_only,
            "size_only": measure_size_only,
            "suite": lambda: measure_suite(Path(tmp) / "large.xml"),
            "suite_against": lambda: measure_suite(Path(tmp) / "before.xml", against_env),
            "dive": lambda: measure_dive(dive),
        }
        for round_ in range(repeat):
            for place, name in enumerate(rotated(names, round_)):
                if name in not_run:
                    continue
                load1 = round(os.getloadavg()[0], 2)
                progress(f"  large image: {name} (round {round_ + 1}/{repeat}, load {load1})")
                try:
                    measured = functions[name]()
                except RuntimeError as exc:
                    if name != "dive":
                        raise
                    not_run["dive"] = str(exc).splitlines()[0]
                    progress(f"  dive: not run: {not_run['dive']}")
                    continue
                results[name].append(
                    {
                        "wall": measured.run.wall,
                        "cpu": measured.run.cpu,
                        "peak_rss": measured.run.peak_rss,
                        "round": round_,
                        "place": place,
                        "load1": load1,
                        **measured.facts,
                    }
                )
    return {
        "image": image,
        "expected_wasted_bytes": EXPECTED_WASTED,
        "tools": {"dive": dive.as_dict()},
        "not_run": not_run,
        "rounds": repeat,
        "minutes": round((time.time() - started) / 60, 1),
        **results,
        "summary": summary(results),
    }


def table(documents: list[dict]) -> str:
    """The console table of one run of this script or several pooled: median wall
    (min-max), CPU, peak RSS and wasted bytes of each run, then the ratios of walls."""
    merged = {name: [r for d in documents for r in d.get(name) or []] for name in LABELS}
    summarized = pooled(documents)
    lines = [
        f"{summarized['rounds']} rounds",
        f"{'run':<42} {'wall median (min-max)':>24} {'CPU':>7} {'peak RSS':>9}  wasted bytes",
    ]
    for name, label in LABELS.items():
        values = merged[name]
        if not values:
            continue
        wall = Stats(tuple(r["wall"] for r in values))
        cpu = Stats(tuple(r["cpu"] for r in values))
        rss = max(r["peak_rss"] for r in values) / 2**20
        wasted = {r["wasted_bytes"] for r in values if r.get("wasted_bytes")}
        shown = ", ".join(f"{w:,}" for w in sorted(wasted))
        lines.append(
            f"{label:<42} {wall.median:>8.1f} s ({wall.low:.1f}-{wall.high:.1f}) "
            f"{cpu.median:>5.1f} s {rss:>5.0f} MiB  {shown}"
        )
    for document in documents:
        for key, reason in (document.get("not_run") or {}).items():
            lines.append(f"{LABELS.get(key, key):<42} not run: {reason}")
    for key, ratio in summarized["ratios"].items():
        per_round = ", ".join(f"{r:.2f}" for r in ratio["per_round"])
        lines.append(
            f"{key:<24} {ratio['of_medians']:.2f}x of medians; per round {per_round} "
            f"(median {ratio['median_per_round']:.2f}x, lower in "
            f"{ratio['rounds_faster']}/{len(ratio['per_round'])})"
        )
    loads = [r["load1"] for values in merged.values() for r in values]
    if loads:
        lines.append(f"1-minute load average at the runs' starts: {min(loads)}-{max(loads)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="only build the image")
    parser.add_argument("--remove", action="store_true", help="remove the image")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, each in rotated order")
    parser.add_argument(
        "--against", type=Path, help="another source tree of the plugin, measured in turn"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help='write {"runs": [this run], "pooled": ...} here (default: print the run)',
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="add this run to those already in --out; the pooled figures cover them all",
    )
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"which runs, comma-separated (default: {','.join(RUNS)})",
    )
    args = parser.parse_args()
    from pytest_imagecheck.engine import connect

    client = connect(timeout=600)
    if args.remove:
        print("removed" if remove(client) else "not there")
    elif args.build:
        print(json.dumps(ensure(client)))
    else:
        context = machine(client)
        runs = tuple(name for name in args.runs.split(",") if name)
        unknown = sorted(set(runs) - set(RUNS))
        if unknown:
            parser.error(f"unknown runs {', '.join(unknown)}: choose from {', '.join(RUNS)}")
        measured = run(client, args.repeat, against=args.against, progress=_stderr, runs=runs)
        document = {
            "machine": context,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **measured,
        }
        documents = [document]
        if args.out is not None:
            if args.append and args.out.exists():
                documents = [*json.loads(args.out.read_text())["runs"], document]
            combined = {"runs": documents, "pooled": pooled(documents)}
            args.out.write_text(json.dumps(combined, indent=2, default=str) + "\n")
            print(f"wrote {args.out}")
        else:
            print(json.dumps(document, indent=2, default=str))
        if len(documents) > 1:
            print("this run:\n" + table([document]) + "\n\nall runs in --out, pooled:")
        print(table(documents))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
