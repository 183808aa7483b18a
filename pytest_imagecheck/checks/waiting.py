"""Waiting on a running container: time limits, one polling loop, and stopping early when
the container stopped or turned unhealthy, with what its health probes said.

The readiness (:mod:`.endpoint`) and health (:mod:`.health`) checks wait the same way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import tenacity

from .. import units
from ..container import ExecResult, health_of
from ..errors import ImageCheckError
from ..secret_rules import mask_text

if TYPE_CHECKING:
    from ..container import RunningContainer

T = TypeVar("T")


def named_duration(name: str, value: str | float | timedelta) -> timedelta:
    """``parse_duration(value)``; its error names the argument: ``timeout: bad duration ...``."""
    try:
        return units.parse_duration(value)
    except ImageCheckError as exc:
        raise ImageCheckError(f"{name}: {exc}") from None


def time_limit(
    name: str, value: str | float | timedelta, *, leaves: str, example: str
) -> timedelta:
    """:func:`units.time_limit` (a duration above 0) for the argument ``name``, whose errors
    name it: ``timeout: 0s leaves no time to wait: give a duration above 0, e.g. "60s"``."""
    try:
        return units.time_limit(value, leaves=leaves, example=example)
    except ImageCheckError as exc:
        raise ImageCheckError(f"{name}: {exc}") from None


def wait_until(
    poll: Callable[[], T],
    done: Callable[[T], bool],
    *,
    seconds: float,
    interval: float,
    until: float | None = None,
) -> T:
    """Call ``poll`` until ``done(result)`` holds or ``seconds`` have passed (or the
    ``time.monotonic()`` ``until`` has come, when given); the last result.

    The first call is at once. The pause between calls is ``interval`` seconds, cut to the
    time left, so the last call falls at the deadline, not a pause after it.
    """
    ends = time.monotonic() + seconds if until is None else until
    retrying: tenacity.Retrying = tenacity.Retrying(
        stop=lambda state: time.monotonic() >= ends,
        wait=lambda state: min(interval, max(ends - time.monotonic(), 0.0)),
        retry=tenacity.retry_if_result(lambda result: not done(result)),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    result: T = retrying(poll)
    return result


def stopped_early(
    container: RunningContainer, waiting_for: str | None, state: dict[str, object] | None = None
) -> str | None:
    """Why waiting is pointless: the container stopped, or turned unhealthy; else ``None``.

    ``waiting_for`` is what the wait is for (``"/health answered"``); ``None`` when it is for
    the container's health itself, and then an unhealthy container names its probe instead.
    ``state`` is the container's inspect ``State`` when already read; else one inspect (and
    one more to read the probes when it is unhealthy).
    """
    if state is None:
        state = container.attrs["State"]
    stopped = container.stopped_message(state, f"before {waiting_for or 'it turned healthy'}")
    if stopped is not None:
        return stopped
    if health_of(state) == "unhealthy":
        health = container.image.healthcheck
        which = (
            f"before {waiting_for}" if waiting_for else f"(`{health.command if health else ''}`)"
        )
        return (
            f"container {container.name} turned unhealthy {which}"
            f"{probe_not_run(container)}; last probes:\n{probe_lines(container)}"
        )
    return None


def probe_lines(container: RunningContainer, last: int = 3) -> str:
    """The last health probes as indented lines: exit code and the end of their output.

    The end, because that is where a probe's error (or a traceback's last line) is. The
    image's secret ENV values are masked, should a probe print them.
    """
    lines = []
    for probe in container.health_log[-last:]:
        text = mask_text(probe.output.strip(), container.image.env)
        output = [line for line in text.splitlines() if line.strip()]
        lines.append(f"  exit {probe.exit_code}: {output[-1][-200:] if output else '(no output)'}")
    return "\n".join(lines) or "  (no probes logged)"


#: What a shell says when it finds no program of that name, one line per program:
#: busybox ash ``/bin/sh: curl: not found``, dash ``/bin/sh: 1: curl: not found``,
#: bash ``bash: curl: command not found`` (``/bin/sh: line 1: curl: ...`` as sh),
#: zsh ``zsh:1: command not found: curl``.
_SHELL_NOT_FOUND = re.compile(
    r"(?:\S*/)?(?:sh|ash|bash|dash|ksh|mksh)(?:: line \d+|: \d+)?: (?P<program>\S+): "
    r"(?:command )?not found"
    r"|(?:\S*/)?zsh:\d+: command not found: (?P<zsh>\S+)"
)


def shell_not_found(output: str) -> list[str] | None:
    """The programs a shell said it could not find, when that is all ``output`` says; else
    ``None``. Several lines name several programs (``curl ... || wget ...``, both missing).

    >>> shell_not_found("/bin/sh: 1: curl: not found")
    ['curl']
    >>> shell_not_found("curl: (7) Failed to connect to localhost port 8000") is None
    True
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    found = [_SHELL_NOT_FOUND.fullmatch(line) for line in lines]
    if not lines or not all(found):
        return None
    return list(dict.fromkeys(m["program"] or m["zsh"] for m in found if m))


def probe_not_run(container: RunningContainer) -> str:
    """``: ... so the service itself was never probed; <fix>`` when the container's last
    HEALTHCHECK probe could not run its program at all, else ``""``.

    Two ways: the engine could not start the probe (exit code -1 and the engine's refusal,
    ``exec: "curl": executable file not found in $PATH``), or a shell-form probe's shell
    found no such program (``/bin/sh: curl: not found``, with 127 or, behind ``|| exit 1``,
    any other code). Either way the service was not asked, so a message must not read as
    if it answered badly. One inspect of the container.
    """
    attrs = container.attrs
    test = list(((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or ["NONE"])
    probes = (attrs["State"].get("Health") or {}).get("Log") or []
    if not probes:
        return ""
    code, output = int(probes[-1].get("ExitCode", -1)), str(probes[-1].get("Output", ""))
    form = test[0]
    refused = ExecResult.start_refused(output) if code == -1 else None
    if refused is not None:
        fix = (
            'use the exec form, HEALTHCHECK CMD ["program", "arg"], with a program the image has'
            if form == "CMD-SHELL"
            else "probe with a program the image has"
        )
        return (
            f": the engine cannot run its HEALTHCHECK probe ({form}): {refused}, so the "
            f"service itself was never probed; {fix}"
        )
    missing = shell_not_found(output) if code != 0 else None
    if missing is None:
        return ""
    names = " or ".join(missing)
    said = "; ".join(line.strip() for line in output.splitlines() if line.strip())
    return (
        f": its HEALTHCHECK probe ({form}) could not run: its shell found no {names} in the "
        f"container ({said}; exit {code}), so the service itself was never probed; install "
        f"{names} in the image, or probe with a program the image has"
    )
