"""Readiness: an HTTP endpoint of the running service answers as expected, polled with retries."""

from __future__ import annotations

import http.client
import json as jsonlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ..container import health_of, stop_reason
from ..errors import ImageCheckError
from ..evidence import record
from ..text import shorten
from ..units import format_duration, parse_duration

if TYPE_CHECKING:
    from ..container import RunningContainer

#: How much of a response body messages and evidence carry.
BODY_LIMIT = 300


@dataclass(frozen=True)
class Answer:
    """One poll of an endpoint: the HTTP status and body, or what went wrong in words.

    ``error`` is set when no complete answer came (``status`` and ``body`` then hold what did
    come, if anything); ``timed_out`` when that was because the request's time ran out.
    """

    status: int | None
    body: str
    error: str | None = None
    matches: bool = False
    #: Set when polling must stop without waiting for the timeout: why.
    stopped: str | None = None
    timed_out: bool = False

    def describe(self) -> str:
        """``503 {"status": "not_ready"}`` or ``connection refused``."""
        if self.error is not None:
            return self.error
        return f"{self.status} {shorten(self.body, BODY_LIMIT, count=True)}".rstrip()


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


#: The least time one request gets, even the last one at the deadline: it may end this much
#: past the overall timeout, never more (and never past ``request_timeout``).
LEAST_REQUEST_TIME = 1.0
#: Redirects followed, as requests follows them for a GET; one more is a wrong answer.
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Late(Exception):
    """The request's time ran out before the answer was complete."""


def _left(ends: float) -> float:
    """Seconds until ``ends`` (a ``time.monotonic()`` value); :class:`_Late` when none."""
    left = ends - time.monotonic()
    if left <= 0:
        raise _Late
    return left


def shown_seconds(seconds: float) -> str:
    """``2s``, ``250ms``: a time budget as messages show it (to 0.1 s above one second)."""
    return format_duration(timedelta(seconds=round(seconds, 1 if seconds >= 1 else 3)))


def fetch(url: str, seconds: float) -> Answer:
    """One ``GET url``, all of it within ``seconds``: connection, status, headers, body, and
    redirects (followed, up to :data:`MAX_REDIRECTS`). Returns the status and body, or what
    went wrong in words.

    Not requests: its ``timeout=`` bounds each socket read, not the whole request, so a body
    that trickles in runs on past any deadline. Here every read of the body waits only for
    the time left. (The status line and headers are read with the time left when they begin.)
    """
    ends = time.monotonic() + seconds
    for _ in range(MAX_REDIRECTS + 1):
        answer, location = _get(url, ends, seconds)
        if location is None:
            return answer
        url = urljoin(url, location)
    return replace(answer, error=f"more than {MAX_REDIRECTS} redirects, the last to {url}")


def _get(url: str, ends: float, seconds: float) -> tuple[Answer, str | None]:
    """One GET of ``url`` until ``ends``; the answer, and where it redirects (or ``None``)."""
    late = f"timed out after {shown_seconds(seconds)}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Answer(None, "", error=f"redirected to {url}, which is not an http(s) URL"), None
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=max(ends - time.monotonic(), 1e-3))
    response: http.client.HTTPResponse | None = None
    received = bytearray()
    length: int | None = None
    try:
        connection.connect()
        # Kept: http.client drops its own reference once the server says it will close.
        sock = connection.sock
        target = parts.path or "/"
        connection.request(
            "GET",
            f"{target}?{parts.query}" if parts.query else target,
            headers={"Accept": "application/json, */*;q=0.5"},
        )
        sock.settimeout(_left(ends))
        response = connection.getresponse()
        location = response.getheader("Location")
        if response.status in _REDIRECTS and location:
            return Answer(response.status, ""), location
        length = response.length
        while True:
            sock.settimeout(_left(ends))
            chunk = response.read1(1 << 16)
            if not chunk:
                break
            received += chunk
        if response.length:
            return _answer(
                response,
                received,
                f"connection closed in the body of a {response.status} answer "
                f"({len(received)} of {length} bytes)",
            ), None
        return _answer(response, received), None
    except (_Late, TimeoutError):
        if response is not None:
            of = f" of {length}" if length is not None else ""
            return _answer(
                response,
                received,
                f"{late} in the body of a {response.status} answer "
                f"({len(received)}{of} bytes came)",
                timed_out=True,
            ), None
        if connection.sock is None:
            return Answer(None, "", error=f"{late} connecting", timed_out=True), None
        return Answer(None, "", error=f"{late} waiting for the answer", timed_out=True), None
    except ConnectionRefusedError:
        return Answer(None, "", error="connection refused"), None
    except (http.client.RemoteDisconnected, BrokenPipeError):
        closed = "connection closed without an answer (is the service listening?)"
        return Answer(None, "", error=closed), None
    except ConnectionResetError:
        return Answer(None, "", error="connection reset (is the service listening?)"), None
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, "", error=f"{type(exc).__name__}: {exc}".rstrip(": ")), None
    finally:
        if response is not None:
            response.close()
        connection.close()


def _answer(
    response: http.client.HTTPResponse,
    body: bytes | bytearray,
    error: str | None = None,
    *,
    timed_out: bool = False,
) -> Answer:
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        text = bytes(body).decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        text = bytes(body).decode("utf-8", "replace")
    return Answer(response.status, text, error=error, timed_out=timed_out)


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
    request_timeout: str | float | timedelta | None = None,
) -> Answer:
    """Poll ``path`` on the container's published ``port`` until it answers as expected.

    ``status`` is a code or a set of codes; ``json`` a dict that must be a (nested) subset of
    the body, so ``{"status": "ready"}`` checks a readiness document. ``timeout`` bounds the
    whole wait; ``interval`` is the pause between polls; ``request_timeout`` bounds one request
    (connection, answer and body), by default the time left of ``timeout``, so a slow answer
    that comes within ``timeout`` passes. No request runs past ``timeout`` by more than
    :data:`LEAST_REQUEST_TIME`, the least time the last one gets. After a wrong answer (or
    none) it looks at the container, and fails at once when it exited or turned unhealthy,
    with the exit code and log tail; an expected answer passes whatever the health status.
    On timeout, says what the last attempt got. Returns the matching answer.
    """
    __tracebackhide__ = True
    if not path.startswith("/"):
        raise ImageCheckError(f"endpoint path {path!r} must start with '/', e.g. '/{path}'")
    wanted = {status} if isinstance(status, int) else set(status)
    deadline, pause = named_duration("timeout", timeout), named_duration("interval", interval)
    per_request = (
        named_duration("request_timeout", request_timeout) if request_timeout is not None else None
    )
    if per_request is not None and per_request <= timedelta(0):
        raise ImageCheckError(
            f"request_timeout: {format_duration(per_request)} leaves no time for a request: "
            'give a duration above 0, e.g. "10s"'
        )
    url = container.url(port if port is not None else default_port(container), path)
    attempts = 0
    started = time.monotonic()
    ends = started + deadline.total_seconds()

    def budget() -> float:
        """Seconds the next request may take: the time left, at least LEAST_REQUEST_TIME,
        never more than request_timeout."""
        most = per_request.total_seconds() if per_request is not None else float("inf")
        return min(most, max(ends - time.monotonic(), LEAST_REQUEST_TIME))

    def poll() -> Answer:
        nonlocal attempts
        attempts += 1
        answer = fetch(url, budget())
        if answer.error is None:
            answer = replace(answer, matches=matches(answer))
        if not answer.matches:
            # Only a wrong answer costs an inspect: did the container exit or turn unhealthy?
            stopped = stopped_early(container, f"{path} answered")
            if stopped is not None:
                return replace(answer, stopped=stopped)
        return answer

    def matches(answer: Answer) -> bool:
        if answer.status not in wanted:
            return False
        if json is None:
            return True
        try:
            return json_contains(jsonlib.loads(answer.body), json)
        except ValueError:
            return False

    last = poll()
    answered = None if last.timed_out else last
    while not (last.matches or last.stopped) and time.monotonic() < ends:
        time.sleep(min(pause.total_seconds(), max(ends - time.monotonic(), 0)))
        last = poll()
        answered = answered if last.timed_out else last
    waited = timedelta(seconds=round(time.monotonic() - started, 3))
    record(
        "endpoint",
        endpoint=f"{path} on {url.split(path)[0]}",
        expected_status=sorted(wanted),
        expected_json=jsonlib.dumps(json) if json is not None else None,
        request_timeout=per_request if per_request is not None else "the time left",
        final_status=last.status,
        final_body=shorten(last.body, BODY_LIMIT, count=True),
        final_error=last.error,
        attempts=attempts,
        time_to_ready=waited if last.matches else None,
        waited=waited,
    )
    if last.stopped:
        raise AssertionError(last.stopped)
    if not last.matches:
        expectation = "/".join(map(str, sorted(wanted))) + (
            f" with {jsonlib.dumps(json)}" if json else ""
        )
        counted = f"(expected {expectation}; {attempts} attempt{'s' if attempts != 1 else ''})"
        if not last.timed_out:
            raise AssertionError(
                f"{path} not ready after {format_duration(deadline)}: last answer "
                f"{last.describe()} {counted}"
            )
        limit = (
            f"request timeout {format_duration(per_request)}"
            if per_request is not None
            else "request timeout: the time left"
        )
        before = (
            f"; the last attempt that did not time out got {answered.describe()}"
            if answered is not None
            else ""
        )
        fix = (
            "raise request_timeout if the service is slow to answer"
            if per_request is not None and per_request < deadline
            else "raise timeout if the service is slow to answer"
        )
        raise AssertionError(
            f"{path} not ready after {format_duration(deadline)} ({limit}): "
            f"last attempt {last.error}{before} {counted}: {fix}"
        )
    return last
