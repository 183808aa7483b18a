"""pytest-xdist: one build for all workers, and the wall time of 2 workers against 1.

A suite of many criteria (generated into a temporary folder: metadata, file and command
checks, and one size check) runs with ``--build-context bench/images/suite``, so each run
asks for a build. The builds are counted from the engine's events: each build ends by
tagging the image, so the number of ``tag`` events for the run's own tag is the number of
builds (the layer cache makes a repeated build quick, but it still tags); the plugin's own
"built TAG" progress lines are counted too, as a cross-check.

    python3 bench/xdist_build.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH, Stats, ensure_service, measure, pytest_argv

COMMANDS = [
    ("[python3, --version]", "stdout_contains: Python"),
    ("[id, -u]", "stdout_contains: '1000'"),
    ("[uname, -s]", "stdout_contains: Linux"),
    ("[ls, /srv]", "stdout_contains: app.py"),
    ("[sh, -c, 'echo $APP_ENV']", "stdout_contains: prod"),
    ("[test, -d, /home/svc]", ""),
    ("[getent, passwd, svc]", "stdout_contains: /home/svc"),
    ("[cat, /etc/hostname]", ""),
]
KEEP = "imagecheck-bench/xdist:cache"
FILES = ["/srv/app.py", "/etc/passwd", "/etc/group", "/etc/os-release", "/usr/bin/python3"]


def suite_yaml(commands: int = 40, files: int = 20, metadata: int = 20) -> str:
    """Many criteria: ``commands`` command checks, ``files`` file checks, ``metadata`` more."""
    lines = ["version: 1", "criteria:"]
    for index in range(commands):
        run, expect = COMMANDS[index % len(COMMANDS)]
        lines += ["  - check: command", f"    name: command {index}", f"    run: {run}"]
        lines += [f"    {expect}"] if expect else []
    for index in range(files):
        lines += [
            "  - check: file",
            f"    name: file {index}",
            f"    path: {FILES[index % len(FILES)]}",
        ]
    meta = [
        ("env", "    expect: {APP_ENV: prod}"),
        ("labels", "    expect: {org.opencontainers.image.title: bench-suite}"),
        ("exposed_ports", "    expect: [8000]"),
        ("config", "    user: svc"),
    ]
    for index in range(metadata):
        check, body = meta[index % len(meta)]
        lines += [f"  - check: {check}", f"    name: {check} {index}", body]
    lines += ["  - check: size", "    total: 500MB"]
    return "\n".join(lines) + "\n"


def _builds(client, tag: str, since: float, until: float) -> int:
    events = client.events(
        since=int(since) - 1,
        until=int(until) + 2,
        decode=True,
        filters={"type": "image", "event": "tag"},
    )
    return sum(
        1
        for event in events
        if (event.get("Actor", {}).get("Attributes", {}).get("name") or "") == tag
    )


def run(client, repeat: int = 3, progress=print) -> dict:
    ensure_service(client)
    modes = {"no xdist": ["-p", "no:xdist"], "xdist -n 1": ["-n", "1"], "xdist -n 2": ["-n", "2"]}
    walls: dict[str, list[float]] = {mode: [] for mode in modes}
    builds: dict[str, list[int]] = {mode: [] for mode in modes}
    built_lines: dict[str, list[int]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "imagecheck.yaml").write_text(suite_yaml())
        (folder / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
        criteria = suite_yaml().count("- check:")
        for round_ in range(repeat + 1):  # the first round warms caches and is not counted
            for mode, extra in modes.items():
                # A fresh tag each run, so that its tag events are this run's builds only.
                tag = f"imagecheck-bench/xdist:{secrets.token_hex(4)}"
                started = time.time()
                result = measure(
                    pytest_argv(
                        f"--build-context={BENCH / 'images' / 'suite'}",
                        f"--image={tag}",
                        str(folder),
                        "-q",
                        "-p",
                        "no:hypothesispytest",
                        "-p",
                        "no:benchmark",
                        *extra,
                    )
                ).check()
                counted = _builds(client, tag, started, time.time())
                said = (result.stdout + result.stderr).count(f"built {tag} (")
                # Keep the result under a fixed tag, so that untagging this run's tag leaves
                # the image (and the layer cache the next run builds from) on the engine.
                client.images.get(tag).tag(KEEP)
                client.images.remove(tag)
                if round_ == 0:
                    continue
                walls[mode].append(result.wall)
                builds[mode].append(counted)
                built_lines[mode].append(said)
                progress(
                    f"  xdist: {mode}: {result.wall:.2f} s, builds: {counted} by the "
                    f"engine's events, {said} by the plugin's output ({round_}/{repeat})"
                )
    return {
        "criteria": criteria,
        "wall_s": {mode: Stats(tuple(values)).as_dict() for mode, values in walls.items()},
        "builds": builds,
        "built_lines": built_lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from pytest_imagecheck.engine import connect

    print(json.dumps(run(connect(), args.repeat), indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
