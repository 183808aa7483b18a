"""Issue 17: a family spread over two engines against the same family on one. Two real Docker
engines are started in network namespaces (tests/netns.py), each loaded with the family's
images; the family session runs with ``-n 2`` against one of them (``--engine A``), and
against both (``--engine A --engine B``: one engine per worker), and the same with ``-n 4``,
in rotated rounds. Each
figure is a child pytest process from spawn to exit.

    python3 bench/engines.py --repeat 5     # writes bench/results/issue17-engines.json

The family: 4 members, each the readiness service (tests/images/service) with a label of its
own and ``READY_AFTER`` seconds before ``/health/ready`` answers 200; each member is judged on
its readiness endpoint, ``non_root`` and its size (a layer read). Both engines run on this
machine's cores, so what a second engine can save is the engine's own serial work (exports,
container starts), not CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from common import REPO, RESULTS, Stats, child_env, ensure_service, machine, measure

MEMBERS = ("m1", "m2", "m3", "m4")
READY_AFTER = 2
CRITERIA = """\
version: 1
criteria:
  - check: endpoint
    path: /health/ready
    timeout: 60s
  - check: non_root
  - check: size
    total: 1GB
"""


def _member_images(client, service: str) -> dict[str, str]:
    """One image per member: the service with its member's label and READY_AFTER."""
    tags = {}
    for member in MEMBERS:
        tag = f"imagecheck-bench/engines-{member}:1"
        dockerfile = f"FROM {service}\nLABEL member={member}\nENV READY_AFTER={READY_AFTER}\n"
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
        tags[member] = tag
    return tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "issue17-engines.json")
    args = parser.parse_args()

    import docker

    from tests.netns import namespaced_engine, unavailable

    reason = unavailable()
    if reason:
        sys.exit(f"cannot start namespaced engines: {reason}")
    client = docker.from_env()
    tags = _member_images(client, ensure_service(client))
    work = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    (work / "imagecheck.yaml").write_text(CRITERIA)
    images = [f"--image={member}={tag}" for member, tag in tags.items()]
    env = {k: v for k, v in child_env().items() if not k.startswith("DOCKER_")}
    with (
        namespaced_engine(work / "engine-a") as one,
        namespaced_engine(work / "engine-b") as two,
    ):
        print(f"engines answered in {one.started_in:.1f} s and {two.started_in:.1f} s")
        for engine in (one, two):
            engine.load(client, *tags.values())
        base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *images]
        base += ["--publish-host=engine", "imagecheck.yaml"]
        both = [f"--engine={one.tcp_url}", f"--engine={two.tcp_url}"]
        runs = {
            "one engine, -n 2": [*base, "-n", "2", f"--engine={one.tcp_url}"],
            "two engines, -n 2": [*base, "-n", "2", *both],
            "one engine, -n 4": [*base, "-n", "4", f"--engine={one.tcp_url}"],
            "two engines, -n 4": [*base, "-n", "4", *both],
        }
        for name, argv in runs.items():  # warm-up; each must pass
            done = measure(argv, env=env, cwd=work)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        walls: dict[str, list[float]] = {name: [] for name in runs}
        loads = []
        names = list(runs)
        for round_ in range(args.repeat):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                walls[name].append(measure(runs[name], env=env, cwd=work).check().wall)
            loads.append(round(os.getloadavg()[0], 2))
            print(
                f"round {round_ + 1}/{args.repeat}: "
                + ", ".join(f"{n} {walls[n][-1]:.2f} s" for n in names),
                file=sys.stderr,
            )
        started_in = [one.started_in, two.started_in]
    for tag in tags.values():
        client.images.remove(tag, noprune=True)
    stats = {name: Stats(tuple(values)) for name, values in walls.items()}
    results = {
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(client),
        "members": len(MEMBERS),
        "ready_after_s": READY_AFTER,
        "criteria": CRITERIA,
        "engines_answered_in_s": started_in,
        "repeat": args.repeat,
        "wall_s": {name: s.as_dict() for name, s in stats.items()},
        "two_over_one": {
            workers: stats[f"two engines, -n {workers}"].median
            / stats[f"one engine, -n {workers}"].median
            for workers in (2, 4)
        },
        "load_average_1min": loads,
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| run | median | min-max | n |")
    print("|---|---|---|---|")
    for name, s in stats.items():
        print(f"| {name} | {s.median:.2f} s | {s.low:.2f}-{s.high:.2f} s | {len(s.values)} |")
    for workers, ratio in results["two_over_one"].items():
        print(f"two engines / one, -n {workers}: {ratio:.2f}x")


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    main()
