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
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from common import BENCH, REPO, Run, Tool, child_env, find_tool, measure, pytest_argv

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
    """The image checks of bench/large/imagecheck.yaml through pytest; per-check seconds.
    ``env``: the child's environment (another source tree on PYTHONPATH, say)."""
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
        ),
        env=env,
    ).check()
    checks = {
        case.get("name"): float(case.get("time", 0))
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    return Measured(run, {"checks": checks})


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


def run(client, repeat: int = 1, progress=print, against: Path | None = None) -> dict:
    """Measure each run on the large image; dive's is left out, with the reason in
    ``not_run``, when it cannot run. ``against``: another source tree of the plugin (a
    checkout of an earlier commit), whose suite run is measured in the same rounds as
    ``suite_against``."""
    dive = find_tool("dive")
    not_run = {} if dive.runs else {"dive": dive.reason}
    if not dive.runs:
        progress(f"  {dive.line()}")
    image = ensure(client, progress=progress)
    names = ("save", "size_only", "suite", "dive") + (("suite_against",) if against else ())
    against_env = (
        child_env(PYTHONPATH=str(against.resolve()), PYTHONSAFEPATH="1")
        if against is not None
        else None
    )
    results: dict[str, list[Measured]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(repeat):
            for name, function in (
                ("save", measure_save),
                ("size_only", measure_size_only),
                ("suite", lambda: measure_suite(Path(tmp) / "large.xml")),
                ("suite_against", lambda: measure_suite(Path(tmp) / "before.xml", against_env)),
                ("dive", lambda: measure_dive(dive)),
            ):
                if name in not_run or name not in names:
                    continue
                progress(f"  large image: {name} (round {round_ + 1}/{repeat})")
                try:
                    results[name].append(function())
                except RuntimeError as exc:
                    if name != "dive":
                        raise
                    not_run["dive"] = str(exc).splitlines()[0]
                    progress(f"  dive: not run: {not_run['dive']}")
    return {
        "image": image,
        "expected_wasted_bytes": EXPECTED_WASTED,
        "tools": {"dive": dive.as_dict()},
        "not_run": not_run,
        **{
            name: [
                {"wall": m.run.wall, "cpu": m.run.cpu, "peak_rss": m.run.peak_rss, **m.facts}
                for m in runs
            ]
            for name, runs in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="only build the image")
    parser.add_argument("--remove", action="store_true", help="remove the image")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--against", type=Path, help="another source tree of the plugin, measured in turn"
    )
    args = parser.parse_args()
    from pytest_imagecheck.engine import connect

    client = connect(timeout=600)
    if args.remove:
        print("removed" if remove(client) else "not there")
    elif args.build:
        print(json.dumps(ensure(client)))
    else:
        print(json.dumps(run(client, args.repeat, against=args.against), indent=2, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
