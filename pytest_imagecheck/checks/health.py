"""Docker health: the image's own HEALTHCHECK passing, or the engine's status ``healthy``.

The engine runs a HEALTHCHECK's first probe one interval after the container starts, and
production intervals are 30 s to minutes: waiting for its status makes the suite as slow as
that setting. :func:`assert_healthy` also runs the same probe itself, as the engine would, a
few times a second, and the first pass is the verdict; the engine's status still ends the
wait when it comes first, and ``unhealthy`` from the engine still fails at once.
"""

from __future__ import annotations

import concurrent.futures
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from .. import kinds
from ..container import health_of
from ..declaration import Check, Key
from ..errors import ImageCheckError
from ..evidence import record
from ..units import format_duration
from .waiting import probe_lines, probe_not_run, stopped_early, time_limit, wait_until

if TYPE_CHECKING:
    from ..container import RunningContainer
    from ..image import Healthcheck

#: Added to the default wait so a probe that just started can finish.
SLACK = timedelta(seconds=5)
#: How often :func:`assert_healthy` runs the image's HEALTHCHECK itself, in seconds.
PROBE_INTERVAL = 0.25


def probe_argv(health: Healthcheck, shell: list[str] | None = None) -> list[str]:
    """The HEALTHCHECK's command as the engine execs it: ``CMD``'s words as they are,
    ``CMD-SHELL``'s string through the image's ``SHELL`` (``Config.Shell``), else
    ``/bin/sh -c`` (moby's ``daemon/health.go``).

    >>> from pytest_imagecheck.image import Healthcheck
    >>> probe_argv(Healthcheck(("CMD-SHELL", "curl -f localhost || exit 1"), *[None] * 4))
    ['/bin/sh', '-c', 'curl -f localhost || exit 1']
    """
    kind, *words = health.test
    if kind == "CMD-SHELL":
        return [*(shell or ["/bin/sh", "-c"]), " ".join(words)]
    return list(words)


class _OwnProbe:
    """The image's HEALTHCHECK, run in the container as the engine runs it: an exec of
    :func:`probe_argv` as the container's user, in its environment and working directory,
    given the HEALTHCHECK's timeout (a probe that runs longer failed). One at a time: a probe
    still running past its timeout is not started again beside itself."""

    def __init__(self, container: RunningContainer, health: Healthcheck) -> None:
        self.container = container
        self.argv = probe_argv(health, container.image.attrs.get("Config", {}).get("Shell"))
        self.timeout = health.timeout.total_seconds()
        self.passed_after: float | None = None
        self.runs = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, "imagecheck-health")
        self._running: concurrent.futures.Future[int] | None = None

    def passes(self) -> bool:
        """Run the probe once (unless one is still running); whether it exited 0 in time.

        A probe the engine refuses to exec is no verdict: the engine's probes will fail the
        same way, and its ``unhealthy`` says so.
        """
        if self._running is not None and not self._running.done():
            return False
        self._running = self._pool.submit(lambda: self.container.exec(self.argv).exit_code)
        self.runs += 1
        try:
            return self._running.result(timeout=self.timeout) == 0
        except (concurrent.futures.TimeoutError, ImageCheckError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def default_health_timeout(health: Healthcheck) -> timedelta:
    """How long the engine may take to call a container healthy, from its own settings.

    The start period, then one full probe cycle per retry plus one.
    """
    return health.start_period + (health.retries + 1) * (health.interval + health.timeout) + SLACK


def assert_healthy(
    container: RunningContainer,
    *,
    timeout: str | float | timedelta | None = None,
    wait_for_engine: bool = False,
) -> None:
    """Wait until the container is healthy: its image's HEALTHCHECK passes when run as the
    engine runs it, or the engine reports it ``healthy``, whichever comes first.

    The probe runs every :data:`PROBE_INTERVAL` seconds whatever the image's interval: an
    exec of the HEALTHCHECK (``CMD`` as its words, ``CMD-SHELL`` through the image's shell),
    as the container's user, with the HEALTHCHECK's timeout; exit 0 is healthy, as for the
    engine. ``wait_for_engine=True`` waits for the engine's own status only. The evidence
    says which it was (``verdict_by``: ``probe`` or ``engine``) and the engine's status then.

    Fails at once on the engine's ``unhealthy`` (with the last probes' exit codes and output) or
    when the container stops (with its exit code and log tail). The default timeout follows from
    the image's own start period, interval, timeout and retries. An image without HEALTHCHECK
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
    ends = container.wait_ends(deadline.total_seconds())
    started = time.monotonic()
    own = None if wait_for_engine else _OwnProbe(container, health)

    def poll() -> tuple[str | None, str | None, str]:
        """The health status, why to stop waiting early (``None`` to go on), and whose
        verdict it is."""
        state = container.attrs["State"]
        status, stop = health_of(state), stopped_early(container, None, state)
        if status != "healthy" and stop is None and own is not None and own.passes():
            return "healthy", None, "probe"
        return status, stop, "engine"

    try:
        final, stop, verdict_by = wait_until(
            poll,
            lambda result: result[0] == "healthy" or result[1] is not None,
            seconds=deadline.total_seconds(),
            until=ends,
            interval=PROBE_INTERVAL if own else min(health.interval.total_seconds(), 0.5),
        )
        answered = time.monotonic()
    finally:
        if own is not None:
            own.close()
        probes = container.health_log
        record(
            "healthy",
            verdict_by=verdict_by if final == "healthy" else "none",
            health_status=container.health,
            waited=timedelta(seconds=round(time.monotonic() - started, 3)),
            probes=len(probes),
            last_probe_exit_code=probes[-1].exit_code if probes else None,
            **({"own_probes": own.runs} if own is not None else {}),
        )
    if stop:
        raise AssertionError(stop)
    if final != "healthy":
        raise AssertionError(
            f"container {container.name} not healthy after {format_duration(deadline)}: "
            f"health is {final}{probe_not_run(container)}; "
            f"last probes:\n{probe_lines(container)}"
        )
    hidden = container.head_start_hides(ends, answered)
    if hidden:
        raise AssertionError(f"container {container.name} is healthy, but {hidden}")
    container.waited()


# --- imagecheck.yaml -----------------------------------------------------------------------

HEALTHY = Check(
    "healthy",
    "The session container's HEALTHCHECK passes, or the engine reports it healthy "
    "(assert_healthy).",
    assert_healthy,
    "container",
    (
        Key("timeout", kinds.TIMEOUT, "How long to wait; default: from the image's HEALTHCHECK."),
        Key(
            "wait_for_engine",
            kinds.BOOL,
            "Wait for the engine's own status only, not the HEALTHCHECK run by the plugin.",
        ),
    ),
)
