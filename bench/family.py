"""Image families (issue 14): the layers a family's members share are streamed once per
session. A base and 6 stages built on it are checked three ways, in turns: one pytest session
per image (what users did before families), one family session, and the family session with
``-n 2``. Measured: wall time, CPU, and the bytes of image exports streamed from the engine.

The images are built once from generated data (random bytes from ``dd``) and kept on the
engine by their tags; ``python3 bench/family.py --remove`` removes them.

    python3 bench/family.py                   # build if missing, measure, print, write results
    python3 bench/family.py --repeat 5
    python3 bench/family.py --build           # only build
    python3 bench/family.py --against DIR     # also another source tree of the plugin

Bytes are counted the same way in every run, outside the plugin: a small pytest plugin
(written beside the criteria, loaded with ``-p``, in the xdist workers too) counts the body
bytes of every image export response (``GET /images/{name}/get`` and ``GET /images/get``)
that docker-py reads, and each process writes its count when it ends. A family session's
count is checked against the plugin's own terminal line (``pytest-imagecheck: streamed ...``),
and the per-image sessions' counts against ``docker save`` of each image.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from common import BENCH, REPO, RESULTS, Run, Stats, child_env, machine, measure, pytest_argv

PREFIX = "imagecheck-bench/family-"
BASE = f"{PREFIX}base:1"
STAGES = 6
BASE_MIB = 40  # the base's own layer, on top of the Debian image
STAGE_MIB = 4  # each stage's own layer
OUT = RESULTS / "issue14-family.json"

#: Every session's criteria: both read every layer of the image (size with ``wasted``, and
#: no_secrets), so each session streams its image, and the family session streams the family.
CRITERIA = """\
version: 1
criteria:
  - check: size
    total: 1GB
    layer: 200MB
    wasted: 10MB
  - check: no_secrets
"""

#: The paths of the engine's image exports: ``/images/{name}/get`` (one image, docker-py's
#: ``get_image``) and ``/images/get?names=...`` (several in one request).
EXPORT_URL = re.compile(r"/images/(?:[^?]+/)?get(?:\?|$)")

#: Loaded in the children with ``-p imagecheck_bench_bytes``: counts image export bytes.
COUNTER = '''\
"""Counts the body bytes of the engine's image exports (docker save) read in this process."""
import json, os, re
import requests.models

_EXPORT = re.compile(@EXPORT@)
_exports = []
_iter_content = requests.models.Response.iter_content


def _counted(self, *args, **kwargs):
    chunks = _iter_content(self, *args, **kwargs)
    if not _EXPORT.search(self.url or ""):
        return chunks

    def counting():
        record = {"url": self.url, "bytes": 0}
        _exports.append(record)
        for chunk in chunks:
            record["bytes"] += len(chunk)
            yield chunk

    return counting()


requests.models.Response.iter_content = _counted


def pytest_unconfigure(config):
    folder = os.environ.get("BENCH_BYTES_DIR")
    if folder:
        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as handle:
            json.dump(_exports, handle)
'''.replace("@EXPORT@", repr(EXPORT_URL.pattern))

_STREAMED = re.compile(
    r"pytest-imagecheck: streamed .*? \(([\d,]+) bytes\) of image layers from the engine"
)


def members() -> dict[str, str]:
    """The family, id to tag: ``base`` and ``stage1`` .. ``stage6``."""
    return {"base": BASE, **{f"stage{n}": f"{PREFIX}stage{n}:1" for n in range(1, STAGES + 1)}}


def dockerfile(member: str) -> str:
    """The Dockerfile of ``member``: the base on the Debian test image, stages on the base."""
    from tests import images

    if member == "base":
        return (
            f"FROM {images.DEBIAN}\n"
            f"RUN mkdir /opt/family && dd if=/dev/urandom of=/opt/family/base.bin bs=1M "
            f"count={BASE_MIB} 2>/dev/null\n"
            'LABEL org.opencontainers.image.title="bench-family-base"\n'
        )
    return (
        f"FROM {BASE}\n"
        f"RUN dd if=/dev/urandom of=/opt/family/{member}.bin bs=1M count={STAGE_MIB} 2>/dev/null\n"
        f'LABEL org.opencontainers.image.title="bench-family-{member}"\n'
    )


def family_yaml(family: dict[str, str]) -> str:
    """The family file: every member by reference (nothing to build)."""
    return "images:\n" + "".join(f"  {member}: {tag}\n" for member, tag in family.items())


def streamed_bytes(output: str) -> int | None:
    """The byte count of the plugin's ``pytest-imagecheck: streamed X (N bytes) of image
    layers ...`` terminal line in ``output``; ``None`` when there is no such line (a
    single-image session does not print it)."""
    found = _STREAMED.search(output)
    return int(found.group(1).replace(",", "")) if found else None


def failure_line(output: str) -> str:
    """The line that says why a pytest run failed: its last ``error:`` line (pytest's usage
    errors end with the inifile and rootdir, which say nothing), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    return (errors or lines or ["no output"])[-1]


def ensure(client, *, progress=print) -> dict[str, dict]:
    """Build each member the engine lacks (the Debian test image first, when missing); each
    member's tag, image ID, size (the engine's ``Size``, bytes) and layer count."""
    import docker.errors

    from tests import images

    facts = {}
    for member, tag in members().items():
        try:
            image = client.images.get(tag)
        except docker.errors.ImageNotFound:
            if member == "base":
                with tempfile.TemporaryDirectory() as lock_dir:
                    images.ensure_debian(client, Path(lock_dir))
            progress(f"  building {tag}")
            for chunk in client.api.build(
                fileobj=io.BytesIO(dockerfile(member).encode()),
                tag=tag,
                rm=True,
                forcerm=True,
                decode=True,
            ):
                if "error" in chunk:
                    raise RuntimeError(f"building {tag} failed: {chunk['error']}") from None
            image = client.images.get(tag)
        facts[member] = {
            "tag": tag,
            "id": image.id,
            "size": image.attrs["Size"],
            "layers": len(image.attrs["RootFS"]["Layers"]),
        }
    return facts


def remove(client) -> list[str]:
    """Remove the family's images, stages first; the tags removed."""
    import docker.errors

    removed = []
    for tag in reversed(list(members().values())):
        try:
            client.images.remove(tag, force=True)
            removed.append(tag)
        except docker.errors.ImageNotFound:
            pass
    return removed


def save_size(*names: str) -> int:
    """Bytes of ``docker save NAMES...`` (the CLI, one request for all of them)."""
    process = subprocess.Popen(["docker", "save", *names], stdout=subprocess.PIPE)
    assert process.stdout is not None
    total = 0
    while chunk := process.stdout.read(1 << 20):
        total += len(chunk)
    if process.wait() != 0:
        raise RuntimeError(f"docker save {' '.join(names)} exited with {process.returncode}")
    return total


@dataclass
class Session:
    """One measured pytest process: its run, the export bytes its processes read (counted
    outside the plugin), each export's size, and the plugin's own streamed line."""

    run: Run
    counted: int
    exports: list[int]
    said: int | None
    report: dict = field(default_factory=dict)


@dataclass
class Setup:
    """Where a mode's files are: the criteria, the family file, the counter plugin."""

    folder: Path
    env: dict[str, str]
    sessions: int = 0  # sessions so far: each gets folders of its own


def _session(setup: Setup, name: str, args: list[str], env: dict[str, str]) -> Session:
    setup.sessions += 1
    name = f"{setup.sessions}-{name}"
    counts = setup.folder / "bytes" / name
    counts.mkdir(parents=True)
    report = setup.folder / "reports" / f"{name}.json"
    report.parent.mkdir(exist_ok=True)
    run = measure(
        pytest_argv(
            *args,
            str(setup.folder / "imagecheck.yaml"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "-p",
            "no:benchmark",
            "-p",
            "imagecheck_bench_bytes",
            f"--imagecheck-report={report}",
        ),
        env={**env, "BENCH_BYTES_DIR": str(counts)},
        # Not the repository: `python -m` puts the working directory first on sys.path, where
        # it would shadow the source tree on PYTHONPATH (--against).
        cwd=setup.folder,
    ).check()
    exports = [
        record["bytes"]
        for path in sorted(counts.glob("*.json"))
        for record in json.loads(path.read_text())
    ]
    return Session(
        run,
        sum(exports),
        exports,
        streamed_bytes(run.stdout + run.stderr),
        json.loads(report.read_text()) if report.exists() else {},
    )


@dataclass
class Mode:
    """The sessions of one way of checking the family, in one round."""

    sessions: list[Session]

    @property
    def wall(self) -> float:
        return sum(s.run.wall for s in self.sessions)

    @property
    def cpu(self) -> float:
        return sum(s.run.cpu for s in self.sessions)

    @property
    def counted(self) -> int:
        return sum(s.counted for s in self.sessions)

    @property
    def exports(self) -> int:
        return sum(len(s.exports) for s in self.sessions)

    @property
    def peak_rss(self) -> int:
        return max(s.run.peak_rss for s in self.sessions)

    @property
    def said(self) -> int | None:
        said = [s.said for s in self.sessions]
        return None if None in said else sum(s for s in said if s is not None)


PER_IMAGE = "one session per image"
FAMILY = "one family session"
FAMILY_N2 = "one family session, -n 2"


def modes(setup: Setup, family: dict[str, str], env: dict[str, str], suffix: str = "") -> dict:
    """The three ways, name to a function measuring one round of it."""
    family_file = str(setup.folder / "family.yaml")
    return {
        PER_IMAGE + suffix: lambda tag: Mode(
            [
                _session(setup, f"{member}-{tag}", [f"--image={ref}"], env)
                for member, ref in family.items()
            ]
        ),
        FAMILY + suffix: lambda tag: Mode(
            [_session(setup, f"family-{tag}", [f"--family={family_file}"], env)]
        ),
        FAMILY_N2 + suffix: lambda tag: Mode(
            [_session(setup, f"family-n2-{tag}", [f"--family={family_file}", "-n", "2"], env)]
        ),
    }


def run(client, repeat: int = 3, progress=print, against: Path | None = None) -> dict:
    """Measure the three ways ``repeat`` times in rotating order, after one warm-up round;
    with ``against``, the same three ways with that source tree of the plugin too (a way
    that fails there is recorded as not run, with its last line)."""
    facts = ensure(client, progress=progress)
    family = {member: f["tag"] for member, f in facts.items()}
    progress("  family: docker save sizes")
    each_save = {member: save_size(tag) for member, tag in family.items()}
    each_save_by_id = {member: save_size(facts[member]["id"]) for member in family}
    unique_by_tag = save_size(*family.values())
    unique_by_id = save_size(*(f["id"] for f in facts.values()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "imagecheck.yaml").write_text(CRITERIA)
        (folder / "family.yaml").write_text(family_yaml(family))
        (folder / "pytest.ini").write_text("[pytest]\n")
        plugins = folder / "plugins"
        plugins.mkdir()
        (plugins / "imagecheck_bench_bytes.py").write_text(COUNTER)
        setup = Setup(folder, child_env(PYTHONPATH=f"{REPO}:{plugins}"))
        ways = modes(setup, family, setup.env)
        not_run: dict[str, str] = {}
        if against is not None:
            other = child_env(PYTHONPATH=f"{against.resolve()}:{plugins}")
            ways.update(modes(setup, family, other, f", at {against.name}"))
        measured: dict[str, list[Mode]] = {name: [] for name in ways}
        loads = []
        for round_ in range(repeat + 1):  # round 0 warms caches and is not counted
            names = list(ways)
            names = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in names:
                if name in not_run:
                    continue
                try:
                    mode = ways[name](f"r{round_}")
                except RuntimeError as exc:
                    if against is None or not name.endswith(f", at {against.name}"):
                        raise
                    not_run[name] = failure_line(str(exc))
                    progress(f"  family: {name}: not run: {not_run[name]}")
                    continue
                if round_:
                    measured[name].append(mode)
                    progress(
                        f"  family round {round_}/{repeat}: {name}: {mode.wall:.2f} s, "
                        f"{mode.counted:,} bytes in {mode.exports} exports"
                    )
            if round_:
                loads.append(round(os.getloadavg()[0], 2))
    return {
        "members": facts,
        "criteria": CRITERIA,
        "docker_save_bytes": {
            "each_by_tag": each_save,
            "each_by_id": each_save_by_id,
            "sum_each_by_tag": sum(each_save.values()),
            "sum_each_by_id": sum(each_save_by_id.values()),
            "all_in_one_by_tag": unique_by_tag,
            "all_in_one_by_id": unique_by_id,
        },
        "sum_image_sizes": sum(f["size"] for f in facts.values()),
        "not_run": not_run,
        "modes": {name: _mode_dict(runs) for name, runs in measured.items() if runs},
        "load_average_1min": loads,
    }


def _mode_dict(runs: list[Mode]) -> dict:
    last = runs[-1].sessions[-1]
    return {
        "sessions": len(runs[0].sessions),
        "wall_s": Stats(tuple(m.wall for m in runs)).as_dict(),
        "cpu_s": Stats(tuple(m.cpu for m in runs)).as_dict(),
        "peak_rss_bytes": max(m.peak_rss for m in runs),
        "bytes_counted": [m.counted for m in runs],
        "exports": [m.exports for m in runs],
        "bytes_each_session": [[s.counted for s in m.sessions] for m in runs],
        "wall_each_session_s": [[round(s.run.wall, 3) for s in m.sessions] for m in runs],
        "plugin_line_bytes": [m.said for m in runs],
        "report_members": [
            {
                "id": member.get("id"),
                "ref": (member.get("image") or {}).get("ref"),
                **{key: member.get(key) for key in ("size_bytes", "wasted_bytes", "shared_bytes")},
                "summary": {k: v for k, v in (member.get("summary") or {}).items() if v},
            }
            for member in last.report.get("members", [])
        ],
    }


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f} MB"


def table(results: dict) -> str:
    """The figures as Markdown: the ways side by side, then the byte references."""
    saves = results["docker_save_bytes"]
    unique = saves["all_in_one_by_id"]
    lines = [
        f"#### A family of {len(results['members'])} images (base + {STAGES} stages)",
        "",
        "| run | pytest sessions | wall (median, min-max) | CPU (median) | bytes streamed "
        "(counted) | exports | vs unique bytes | plugin's streamed line |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, mode in results["modes"].items():
        wall, cpu = mode["wall_s"], mode["cpu_s"]
        counted = sorted(set(mode["bytes_counted"]))
        said = sorted({s for s in mode["plugin_line_bytes"] if s is not None})
        lines.append(
            f"| {name} | {mode['sessions']} | {wall['median']:.2f} s ({wall['min']:.2f}-"
            f"{wall['max']:.2f}) | {cpu['median']:.2f} s | "
            f"{' / '.join(f'{c:,}' for c in counted)} ({_mb(counted[-1])}) | "
            f"{'/'.join(str(e) for e in sorted(set(mode['exports'])))} | "
            f"{counted[-1] / unique:.2f}x | "
            f"{' / '.join(f'{s:,}' for s in said) if said else 'not printed'} |"
        )
    for name, reason in results["not_run"].items():
        lines.append(f"| {name} | not run: {reason} | | | | | | |")
    lines += [
        "",
        "| reference | bytes |",
        "|---|---|",
        f"| unique layer bytes: one `docker save` of the 7 image IDs (what the family session "
        f"asks for) | {unique:,} ({_mb(unique)}) |",
        f"| the same by tags | {saves['all_in_one_by_tag']:,} |",
        f"| sum of 7 `docker save`s, one per image ID (what the per-image sessions ask for) | "
        f"{saves['sum_each_by_id']:,} ({_mb(saves['sum_each_by_id'])}) |",
        f"| the same by tags | {saves['sum_each_by_tag']:,} |",
        f"| sum of the 7 images' sizes (the engine's `Size`) | {results['sum_image_sizes']:,} "
        f"({_mb(results['sum_image_sizes'])}) |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="only build the images")
    parser.add_argument("--remove", action="store_true", help="remove the images")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--against", type=Path, help="another source tree of the plugin, measured in turn"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"results JSON (default {OUT})")
    args = parser.parse_args()
    from pytest_imagecheck.engine import connect

    client = connect(timeout=600)
    if args.remove:
        print("\n".join(remove(client)) or "not there")
        return
    if args.build:
        print(json.dumps(ensure(client), indent=2))
        return
    started = time.perf_counter()
    context = machine(client)
    results = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": context,
        **run(
            client,
            args.repeat,
            progress=lambda line: print(line, file=sys.stderr),
            against=args.against,
        ),
    }
    results["took_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
