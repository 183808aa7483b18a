"""Docker health: wait for the engine's health status to turn ``healthy``."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

from .. import kinds
from ..container import health_of
from ..declaration import Check, Key
from ..evidence import record
from ..units import format_duration
from .waiting import probe_lines, probe_not_run, stopped_early, time_limit, wait_until

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
        state = container.attrs["State"]
        return health_of(state), stopped_early(container, None, state)

    try:
        final, stop = wait_until(
            poll,
            lambda result: result[0] == "healthy" or result[1] is not None,
            seconds=deadline.total_seconds(),
            interval=min(health.interval.total_seconds(), 0.5),
        )
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


# --- imagecheck.yaml -----------------------------------------------------------------------

HEALTHY = Check(
    "healthy",
    "The engine reports the session container healthy (assert_healthy).",
    assert_healthy,
    "container",
    (Key("timeout", kinds.TIMEOUT, "How long to wait; default: from the image's HEALTHCHECK."),),
)
