"""Docker health: wait for the engine's health status to turn ``healthy``."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

import tenacity

from ..evidence import record
from ..units import format_duration
from .endpoint import probe_lines, probe_not_run, time_limit

if TYPE_CHECKING:
    from ..container import RunningContainer
    from ..image import Healthcheck

#: Added to the default wait so a probe that just started can finish.
SLACK = timedelta(seconds=5)


def default_health_timeout(health: Healthcheck) -> timedelta:
    """How long the engine may take to call a container healthy, from its own settings.

    The start period, then one full probe cycle per retry plus one.
    """
    return health.start_period + (health.retries + 1) * (health.interval + health.timeout) + SLACK


def assert_healthy(
    container: RunningContainer, *, timeout: str | float | timedelta | None = None
) -> None:
    """Wait until the engine reports the container ``healthy``.

    Fails at once on ``unhealthy`` (with the last probes' exit codes and output) or when the
    container stops (with its exit code and log tail). The default timeout follows from the
    image's own start period, interval, timeout and retries. An image without HEALTHCHECK
    fails at once: the engine would never report health. When the engine could not start the
    probe at all (a ``curl`` or ``/bin/sh`` the image lacks), the message says so: the service
    itself was never probed; so it does when a shell-form probe's shell finds no such program
    (``/bin/sh: curl: not found``, whatever the exit code ``|| exit 1`` turns it into).
    ``timeout`` must be above 0 (:class:`ImageCheckError` otherwise).
    """
    __tracebackhide__ = True
    health = container.image.healthcheck
    if health is None:
        raise AssertionError(
            f"image {container.image.ref} has no HEALTHCHECK, so the engine never reports its "
            "health: add a HEALTHCHECK, or use assert_endpoint_ready"
        )
    deadline = (
        time_limit("timeout", timeout, leaves="to wait for health", example="60s")
        if timeout is not None
        else default_health_timeout(health)
    )
    started = time.monotonic()

    def poll() -> tuple[str | None, str | None]:
        """The health status, and why to stop waiting early (``None`` to go on)."""
        stopped = container.stopped()
        if stopped is not None:
            return None, (
                f"container {container.name} {stopped} before it turned healthy; "
                f"last log lines:\n{container.log_tail()}"
            )
        current = container.health
        if current == "unhealthy":
            return current, (
                f"container {container.name} turned unhealthy (`{health.command}`)"
                f"{probe_not_run(container)}; last probes:\n{probe_lines(container)}"
            )
        return current, None

    try:
        final, stop = tenacity.Retrying(
            stop=tenacity.stop_after_delay(deadline.total_seconds()),
            wait=tenacity.wait_fixed(min(health.interval.total_seconds(), 0.5)),
            retry=tenacity.retry_if_result(lambda result: result[0] != "healthy" and not result[1]),
            retry_error_callback=lambda state: (
                state.outcome.result() if state.outcome else (None, None)
            ),
        )(poll)
    finally:
        probes = container.health_log
        record(
            "healthy",
            health_status=container.health,
            waited=timedelta(seconds=round(time.monotonic() - started, 3)),
            probes=len(probes),
            last_probe_exit_code=probes[-1].exit_code if probes else None,
        )
    if stop:
        raise AssertionError(stop)
    if final != "healthy":
        raise AssertionError(
            f"container {container.name} not healthy after {format_duration(deadline)}: "
            f"health is {final}{probe_not_run(container)}; "
            f"last probes:\n{probe_lines(container)}"
        )
