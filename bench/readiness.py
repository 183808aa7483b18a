"""Readiness: how long after a service turns ready ``assert_endpoint_ready`` notices.

The service (tests/images/service) answers 503 on /health/ready until READY_AFTER seconds
after its start, then 200. Its start is the engine's timestamp of its first log line
("listening on :8000", printed right after the moment READY_AFTER counts from), so it turned
ready at that timestamp + READY_AFTER, on the host's clock; the check returns at a moment the
same clock reads. READY_AFTER varies by up to one interval between runs so that the polls fall
at every phase of the interval.

    python3 bench/readiness.py --runs 20 --interval 250ms
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime

from common import REPO, SERVICE, ensure_service, percentile

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _timestamp(text: str) -> float:
    """Docker's RFC 3339 nanosecond timestamp as epoch seconds."""
    whole, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{whole}.{fraction}+00:00").timestamp()


def run(client, runs: int = 20, interval: str = "250ms", progress=print) -> dict:
    from pytest_imagecheck import assert_endpoint_ready
    from pytest_imagecheck.engine import Engine, new_session_id
    from pytest_imagecheck.evidence import collecting
    from pytest_imagecheck.units import parse_duration

    ensure_service(client)
    pause = parse_duration(interval).total_seconds()
    engine = Engine(client, f"bench-{new_session_id()}")
    image = engine.image(SERVICE)
    samples = []
    try:
        for index in range(runs):
            ready_after = 1.0 + random.uniform(0, pause)
            container = engine.run(image, env={"READY_AFTER": f"{ready_after:.3f}"})
            try:
                with collecting() as evidence:
                    assert_endpoint_ready(
                        container, "/health/ready", interval=interval, timeout="30s"
                    )
                noticed = time.time()
                first_line = container._container.logs(timestamps=True).decode().splitlines()[0]
                started = _timestamp(first_line.split(" ", 1)[0])
            finally:
                engine.remove(container)
            facts = {k: v for e in evidence for k, v in e.facts.items()}
            latency = noticed - (started + ready_after)
            samples.append(
                {
                    "latency": latency,
                    "attempts": facts["attempts"],
                    "waited": facts["waited"].total_seconds(),
                }
            )
            progress(
                f"  readiness run {index + 1}/{runs}: noticed {latency * 1000:.0f} ms "
                f"after ready ({facts['attempts']} attempts)"
            )
    finally:
        engine.cleanup()
    latencies = [s["latency"] for s in samples]
    # Time between polls: the waits plus each poll's own work (inspects, HTTP).
    periods = [s["waited"] / (s["attempts"] - 1) for s in samples if s["attempts"] > 1]
    return {
        "interval_s": pause,
        "runs": runs,
        "latency_s": {
            "min": min(latencies),
            "p10": percentile(latencies, 0.1),
            "median": percentile(latencies, 0.5),
            "p90": percentile(latencies, 0.9),
            "max": max(latencies),
            "values": latencies,
        },
        "poll_period_s": {"median": percentile(periods, 0.5), "max": max(periods)}
        if periods
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval", default="250ms")
    args = parser.parse_args()
    from pytest_imagecheck.engine import connect

    print(json.dumps(run(connect(), args.runs, args.interval), indent=2))


if __name__ == "__main__":
    main()
