"""Docker health: the image's own HEALTHCHECK passing, or the engine's status ``healthy``.

The engine runs a HEALTHCHECK's first probe one interval after the container starts, and
production intervals are 30 s to minutes: waiting for its status makes the suite as slow as
that setting. :func:`assert_healthy` also runs the same probe itself, as the engine would, a
few times a second, and the first pass is the verdict; the engine's status still ends the
wait when it comes first, and ``unhealthy`` from the engine still fails at once.
"""

from __future__ import annotations

import threading
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
    from ..container import ExecResult, RunningContainer
    from ..image import Healthcheck

#: Added to the default wait so a probe that just started can finish.
SLACK = timedelta(seconds=5)
#: How often :func:`assert_healthy` runs the image's HEALTHCHECK itself, in seconds.
PROBE_INTERVAL = 0.25


def probe_argv(health: Healthcheck, shell: list[str] | None = None) -> list[str]:
    """The HEALTHCHECK's command as the engine execs it: ``CMD``'s words as they are,
    ``CMD-SHELL``'s words after the container's ``Config.Shell``, else ``/bin/sh -c``
    (moby's ``daemon/health.go``, ``getShell``). The engine does not copy an image's
    ``SHELL`` into a container's config, so that is ``/bin/sh -c`` for every container the
    plugin starts, whatever ``SHELL`` the Dockerfile set.

    >>> from pytest_imagecheck.image import Healthcheck
    >>> probe_argv(Healthcheck(("CMD-SHELL", "curl -f localhost || exit 1"), *[None] * 4))
    ['/bin/sh', '-c', 'curl -f localhost || exit 1']
    """
    kind, *words = health.test
    if kind == "CMD-SHELL":
        return [*(shell or ["/bin/sh", "-c"]), *words]
    return list(words)


class _OwnProbe:
    """The image's HEALTHCHECK, run in the container as the engine runs it: an exec of
    :func:`probe_argv` as the container's user, in its environment and working directory,
    its output kept to 4 KiB, given the HEALTHCHECK's timeout (a probe that runs longer
    failed). One at a time, in a daemon thread: a test's wait never blocks on a probe, and a
    probe that never ends keeps nobody from exiting."""

    def __init__(self, container: RunningContainer, health: Healthcheck) -> None:
        self.container = container
        shell = (container.attrs.get("Config") or {}).get("Shell")
        self.argv = probe_argv(health, shell)
        self.timeout = health.timeout.total_seconds()
        self.runs = 0
        #: The last finished probe's exit code and output (``None``: it timed out).
        self.last: tuple[int | None, str] | None = None
        self._done = threading.Event()
        self._done.set()
        self._result: ExecResult | Exception | None = None

    def _run(self) -> None:
        try:
            self._result = self.container.probe(self.argv, self.timeout)
        except Exception as exc:  # handed to the waiting thread (a stopped container)
            self._result = exc
        finally:
            self._done.set()

    def passes(self) -> bool:
        """Whether a probe passed since the last call: starts one when none runs, and
        waits for it at most :data:`PROBE_INTERVAL` seconds (the next call sees it end)."""
        if self._done.is_set():
            self._done.clear()
            self._result = None
            self.runs += 1
            threading.Thread(target=self._run, name="imagecheck-health", daemon=True).start()
        if not self._done.wait(PROBE_INTERVAL):
            return False
        result = self._result
        if isinstance(result, Exception):
            return False  # the container stopped: the wait says so
        if result is None:
            self.last = (None, f"did not end within its timeout ({self.timeout:g}s)")
            return False
        output = (result.stdout + result.stderr).strip()
        self.last = (result.exit_code, output)
        return result.exit_code == 0

    def describe(self) -> str:
        """The plugin's own probes, for a failure message."""
        times = "once" if self.runs == 1 else f"{self.runs} times"
        ran = f"; the plugin ran the HEALTHCHECK ({' '.join(self.argv)}) {times}"
        if self.last is None:
            return f"{ran}, and no probe finished"
        code, output = self.last
        said = f"exit code {code}" if code is not None else "no exit"
        shown = output.splitlines()[-1][:200] if output else "(no output)"
        return f"{ran}, last: {said}, {shown}"


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
    exec of the HEALTHCHECK (``CMD`` as its words, ``CMD-SHELL`` through ``/bin/sh -c``, as
    the engine runs it),
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
    if not isinstance(wait_for_engine, bool):
        raise ImageCheckError(f"wait_for_engine={wait_for_engine!r}: expected True or False")
    own = None if wait_for_engine else _OwnProbe(container, health)

    def poll() -> tuple[str | None, str | None, str]:
        """The health status, why to stop waiting early (``None`` to go on), and whose
        verdict it is."""
        state = container.attrs["State"]
        status, stop = health_of(state), stopped_early(container, None, state)
        if status != "healthy" and stop is None and own is not None and own.passes():
            return "healthy", None, "probe"
        return status, stop, "engine"

    final: str | None = None
    stop: str | None = None
    verdict_by = "none"
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
        state = container.attrs["State"]
        probes = (state.get("Health") or {}).get("Log") or []
        record(
            "healthy",
            verdict_by=verdict_by if final == "healthy" else "none",
            health_status=health_of(state),
            waited=timedelta(seconds=round(time.monotonic() - started, 3)),
            probes=len(probes),
            last_probe_exit_code=probes[-1].get("ExitCode") if probes else None,
            **({"own_probes": own.runs} if own is not None else {}),
        )
    if stop:
        raise AssertionError(stop)
    if final != "healthy":
        raise AssertionError(
            f"container {container.name} not healthy after {format_duration(deadline)}: "
            f"health is {final}{probe_not_run(container)}"
            f"{own.describe() if own is not None else ''}; "
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
