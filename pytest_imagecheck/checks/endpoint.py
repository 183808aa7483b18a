"""Readiness: an HTTP endpoint of the running service answers as expected, polled with retries."""

from __future__ import annotations

import json as jsonlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import requests
import tenacity

from ..container import health_of, stop_reason
from ..errors import ImageCheckError
from ..evidence import record
from ..units import format_duration, parse_duration

if TYPE_CHECKING:
    from ..container import RunningContainer

#: How much of a response body messages and evidence carry.
BODY_LIMIT = 300


@dataclass(frozen=True)
class Answer:
    """One poll of an endpoint: the HTTP status and body, or the connection error."""

    status: int | None
    body: str
    error: str | None = None
    matches: bool = False
    #: Set when polling must stop without waiting for the timeout: why.
    stopped: str | None = None

    def describe(self) -> str:
        """``503 {"status": "not_ready"}`` or ``connection refused``."""
        if self.error is not None:
            return self.error
        return f"{self.status} {truncate(self.body)}".rstrip()


def truncate(text: str, limit: int = BODY_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def json_contains(actual: Any, expected: Any) -> bool:
    """Whether ``expected`` is a (nested) subset of ``actual``: dict keys recursively, else equal.

    >>> json_contains({"status": "ready", "components": {"model": "ok", "gpu": "ok"}},
    ...               {"components": {"model": "ok"}})
    True
    """
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and json_contains(actual[key], value) for key, value in expected.items()
        )
    return bool(actual == expected)


_REASONS = (
    ("Connection refused", "connection refused"),
    ("RemoteDisconnected", "connection closed without an answer (is the service listening?)"),
    ("Connection aborted", "connection closed without an answer (is the service listening?)"),
    ("Connection reset", "connection reset (is the service listening?)"),
    ("timed out", "no answer within the request timeout"),
)


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    return next((plain for known, plain in _REASONS if known in text), type(exc).__name__)


def named_duration(name: str, value: str | float | timedelta) -> timedelta:
    """``parse_duration(value)``; its error names the argument: ``timeout: bad duration ...``."""
    try:
        return parse_duration(value)
    except ImageCheckError as exc:
        raise ImageCheckError(f"{name}: {exc}") from None


def default_port(container: RunningContainer) -> int | str:
    """The image's single exposed port; a clear error when it exposes none or several."""
    exposed = container.image.exposed_ports
    if len(exposed) == 1:
        return exposed[0]
    if not exposed:
        raise ImageCheckError(
            f"image {container.image.ref} exposes no port: pass port= to name the one to poll"
        )
    raise ImageCheckError(
        f"image {container.image.ref} exposes {', '.join(exposed)}: pass port= to choose one"
    )


def stopped_early(container: RunningContainer, waiting_for: str) -> str | None:
    """Why waiting for ``waiting_for`` is pointless (the container exited or is unhealthy).

    One inspect of the container.
    """
    state = container.attrs["State"]
    stopped = stop_reason(state)
    if stopped is not None:
        return (
            f"container {container.name} {stopped} before {waiting_for}; last log lines:\n"
            f"{container.log_tail()}"
        )
    if health_of(state) == "unhealthy":
        return (
            f"container {container.name} turned unhealthy before {waiting_for}; "
            f"last probes:\n{probe_lines(container)}"
        )
    return None


def probe_lines(container: RunningContainer, last: int = 3) -> str:
    """The last health probes as indented lines: exit code and the end of their output.

    The end, because that is where a probe's error (or a traceback's last line) is.
    """
    lines = []
    for probe in container.health_log[-last:]:
        output = [line for line in probe.output.strip().splitlines() if line.strip()]
        lines.append(f"  exit {probe.exit_code}: {output[-1][-200:] if output else '(no output)'}")
    return "\n".join(lines) or "  (no probes logged)"


def assert_endpoint_ready(
    container: RunningContainer,
    path: str = "/health",
    *,
    port: int | str | None = None,
    status: int | Iterable[int] = 200,
    json: Mapping[str, Any] | None = None,
    timeout: str | float | timedelta = "60s",
    interval: str | float | timedelta = "250ms",
) -> Answer:
    """Poll ``path`` on the container's published ``port`` until it answers as expected.

    ``status`` is a code or a set of codes; ``json`` a dict that must be a (nested) subset of
    the body, so ``{"status": "ready"}`` checks a readiness document. After a wrong answer
    (or none) it looks at the container, and fails at once when it exited or turned unhealthy,
    with the exit code and log tail; an expected answer passes whatever the health status.
    On timeout, says what the last answer was. Returns the matching answer.
    """
    __tracebackhide__ = True
    if not path.startswith("/"):
        raise ImageCheckError(f"endpoint path {path!r} must start with '/', e.g. '/{path}'")
    wanted = {status} if isinstance(status, int) else set(status)
    deadline, pause = named_duration("timeout", timeout), named_duration("interval", interval)
    url = container.url(port if port is not None else default_port(container), path)
    session = requests.Session()
    attempts = 0
    started = time.monotonic()

    def poll() -> Answer:
        nonlocal attempts
        attempts += 1
        answer = ask()
        if not answer.matches:
            # Only a wrong answer costs an inspect: did the container exit or turn unhealthy?
            stopped = stopped_early(container, f"{path} answered")
            if stopped is not None:
                return Answer(answer.status, answer.body, stopped=stopped)
        return answer

    def ask() -> Answer:
        try:
            response = session.get(url, timeout=max(pause.total_seconds(), 2.0))
        except requests.RequestException as exc:
            return Answer(None, "", error=_reason(exc))
        ok = response.status_code in wanted
        if ok and json is not None:
            try:
                ok = json_contains(response.json(), json)
            except ValueError:
                ok = False
        return Answer(response.status_code, response.text, matches=ok)

    last = tenacity.Retrying(
        stop=tenacity.stop_after_delay(deadline.total_seconds()),
        wait=tenacity.wait_fixed(pause.total_seconds()),
        retry=tenacity.retry_if_result(lambda answer: not answer.matches and not answer.stopped),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )(poll)
    waited = timedelta(seconds=round(time.monotonic() - started, 3))
    record(
        "endpoint",
        endpoint=f"{path} on {url.split(path)[0]}",
        expected_status=sorted(wanted),
        expected_json=jsonlib.dumps(json) if json is not None else None,
        final_status=last.status if last else None,
        final_body=truncate(last.body) if last else None,
        attempts=attempts,
        time_to_ready=waited if last and last.matches else None,
        waited=waited,
    )
    if last is not None and last.stopped:
        raise AssertionError(last.stopped)
    if last is None or not last.matches:
        expectation = "/".join(map(str, sorted(wanted))) + (
            f" with {jsonlib.dumps(json)}" if json else ""
        )
        raise AssertionError(
            f"{path} not ready after {format_duration(deadline)}: last answer "
            f"{last.describe() if last else 'none'} (expected {expectation}; {attempts} attempts)"
        )
    return last
