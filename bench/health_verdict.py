"""Ready to verdict: how long after a service is ready ``assert_healthy`` calls it healthy,
for HEALTHCHECK intervals of 2 s, 30 s and 5 min, with the probe the plugin runs itself (the
default) and with the engine's own status only (``wait_for_engine=True``).

The image (busybox) becomes ready 3 s after its start (``/ready`` appears) and its
HEALTHCHECK tests for that file. Each measurement starts a fresh container, then times from
the moment it is ready to the verdict. The engine runs its first probe one interval after
the start, so its verdict for a 5 min interval is only waited for up to ``--cap`` seconds and
reported as later than that. Rounds rotate the order of the runs.

    python3 bench/health_verdict.py [--repeat 2] [--cap 45]   # results/issue15-health.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import RESULTS, machine  # type: ignore[import-not-found]

from pytest_imagecheck import assert_healthy
from pytest_imagecheck.engine import Engine, connect
from pytest_imagecheck.evidence import collecting

READY_AFTER = 3.0
INTERVALS = ("2s", "30s", "5m")
MODES = ("probe", "engine")
IMAGE = """FROM imagecheck-test/busybox:1
HEALTHCHECK --interval={interval} --timeout=3s CMD ["test", "-e", "/ready"]
CMD ["/bin/sh", "-c", "sleep {ready}; touch /ready; exec sleep 900"]
"""


def build(engine: Engine, interval: str) -> str:
    """The bench image for ``interval``, built once (the engine caches it)."""
    import io

    tag = f"imagecheck-bench/health:{interval}"
    text = IMAGE.format(interval=interval, ready=READY_AFTER)
    engine.client.images.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True)
    return tag


def _started_at(container: object) -> float:
    """The container's start, as the engine recorded it (``State.StartedAt``), in epoch s."""
    from datetime import datetime

    text = container.attrs["State"]["StartedAt"]  # type: ignore[attr-defined]
    whole, _, rest = text.rstrip("Z").partition(".")
    stamp = datetime.fromisoformat(whole + "+00:00").timestamp()
    return stamp + float(f"0.{rest or 0}")


def measure(engine: Engine, tag: str, mode: str, cap: float) -> tuple[float | None, str]:
    """Seconds from ready (the engine's start time plus the service's 3 s) to the verdict
    (None: no verdict within ``cap``), and whose verdict it was."""
    container = engine.run(engine.image(tag))
    try:
        ready = _started_at(container) + READY_AFTER
        with collecting() as evidence:
            try:
                assert_healthy(
                    container, timeout=cap + READY_AFTER, wait_for_engine=mode == "engine"
                )
            except AssertionError:
                return None, "none"
        return time.time() - ready, str(evidence[0].facts["verdict_by"])
    finally:
        engine.remove(container)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--cap", type=float, default=45.0, help="longest wait, s (default 45)")
    parser.add_argument("--out", type=Path, default=RESULTS / "issue15-health.json")
    args = parser.parse_args(argv)
    engine = Engine(connect(), "bench-health")
    tags = {interval: build(engine, interval) for interval in INTERVALS}
    runs = [(interval, mode) for interval in INTERVALS for mode in MODES]
    found: dict[str, list[float | None]] = {f"{i} {m}": [] for i, m in runs}
    by: dict[str, set[str]] = {key: set() for key in found}
    try:
        for round_ in range(args.repeat):
            shift = round_ % len(runs)
            for interval, mode in runs[shift:] + runs[:shift]:
                seconds, verdict_by = measure(engine, tags[interval], mode, args.cap)
                found[f"{interval} {mode}"].append(seconds)
                by[f"{interval} {mode}"].add(verdict_by)
                shown = f"{seconds:.2f} s" if seconds is not None else f"> {args.cap:.0f} s"
                print(
                    f"round {round_ + 1}: interval {interval:>3}, {mode:6}: {shown} ({verdict_by})"
                )
    finally:
        engine.cleanup()

    print(
        f"\nready to verdict, median of {args.repeat} "
        f"(the service is ready {READY_AFTER:.0f} s after its start)"
    )
    print(f"{'interval':>8} | {'probe run by the plugin':>24} | {'engine status only':>20}")
    rows = {}
    for interval in INTERVALS:
        cells = []
        for mode in MODES:
            values = found[f"{interval} {mode}"]
            done = [v for v in values if v is not None]
            cell = (
                f"{statistics.median(done):.2f} s"
                if len(done) == len(values)
                else f"> {args.cap:.0f} s"
            )
            cells.append(cell)
            rows[f"{interval} {mode}"] = {
                "seconds": values,
                "verdict_by": sorted(by[f"{interval} {mode}"]),
            }
        print(f"{interval:>8} | {cells[0]:>24} | {cells[1]:>20}")
    args.out.write_text(
        json.dumps(
            {
                "machine": machine(engine.client),
                "ready_after_s": READY_AFTER,
                "cap_s": args.cap,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
