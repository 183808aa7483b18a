"""Readiness: an HTTP endpoint of the running service answers as expected, polled with retries."""

from __future__ import annotations

import http.client
import json as jsonlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import kinds
from ..declaration import Check, Key
from ..errors import ImageCheckError
from ..evidence import record
from ..secret_rules import mask_text
from ..text import shorten
from ..units import format_duration
from .waiting import named_duration, stopped_early, time_limit, wait_until

if TYPE_CHECKING:
    from ..container import RunningContainer

#: How much of a response body messages and evidence carry.
BODY_LIMIT = 300


@dataclass(frozen=True)
class Answer:
    """One poll of an endpoint: the HTTP status and body, or what went wrong in words.

    ``error`` is set when no complete answer came (``status`` and ``body`` then hold what did
    come, if anything); ``timed_out`` when that was because the request's time ran out.
    ``location`` is the ``Location`` header of a redirect (3xx), which is not followed.
    """

    status: int | None
    body: str
    error: str | None = None
    matches: bool = False
    #: Set when polling must stop without waiting for the timeout: why.
    stopped: str | None = None
    timed_out: bool = False
    location: str | None = None

    def describe(self, mask: Callable[[str], str] = str) -> str:
        """``503 {"status": "not_ready"}``, ``302 (Location: /login)`` or ``connection refused``.

        ``mask`` is applied to the body and the Location before they are shortened, so a
        secret is masked whole, never cut to a prefix that escapes the mask.
        """
        if self.error is not None:
            return self.error
        if self.location is not None:
            # A redirect's body is boilerplate; where it points is the news.
            return f"{self.status} (Location: {shorten(mask(self.location), BODY_LIMIT)})"
        return f"{self.status} {shorten(mask(self.body), BODY_LIMIT, count=True)}".rstrip()


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
    """One ``GET url``, all of it within ``seconds``: connection, status, headers and body.
    Returns the status and body, or what went wrong in words.

    A redirect is an answer, not followed: as a Docker HEALTHCHECK's ``curl`` without ``-L``
    sees it, so a health URL that redirects to a login page is not taken for ready, and
    ``status=302`` can match. Its ``Location`` is kept in :attr:`Answer.location`.

    Not requests: its ``timeout=`` bounds each socket read, not the whole request, so a body
    that trickles in runs on past any deadline. Here every read of the body waits only for
    the time left. (The status line and headers are read with the time left when they begin.)
    """
    ends = time.monotonic() + seconds
    late = f"timed out after {shown_seconds(seconds)}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Answer(None, "", error=f"{url} is not an http(s) URL")
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
            )
        return _answer(response, received)
    except (_Late, TimeoutError):
        if response is not None:
            of = f" of {length}" if length is not None else ""
            return _answer(
                response,
                received,
                f"{late} in the body of a {response.status} answer "
                f"({len(received)}{of} bytes came)",
                timed_out=True,
            )
        if connection.sock is None:
            return Answer(None, "", error=f"{late} connecting", timed_out=True)
        return Answer(None, "", error=f"{late} waiting for the answer", timed_out=True)
    except ConnectionRefusedError:
        return Answer(None, "", error="connection refused")
    except (http.client.RemoteDisconnected, BrokenPipeError):
        closed = "connection closed without an answer (is the service listening?)"
        return Answer(None, "", error=closed)
    except ConnectionResetError:
        return Answer(None, "", error="connection reset (is the service listening?)")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, "", error=f"{type(exc).__name__}: {exc}".rstrip(": "))
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
    location = response.getheader("Location") if 300 <= response.status < 400 else None
    return Answer(response.status, text, error=error, timed_out=timed_out, location=location)


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

    A redirect is an answer, not followed (as a HEALTHCHECK's ``curl`` without ``-L``): a
    3xx matches only a ``status`` that lists it, and a message shows where it points
    (``last answer 302 (Location: /login)``). ``timeout`` and ``request_timeout`` must be
    above 0 (:class:`ImageCheckError` otherwise). Bodies and Locations in messages and
    evidence have the image's secret ENV values masked; the returned answer is as it came.
    """
    __tracebackhide__ = True
    if not path.startswith("/"):
        raise ImageCheckError(f"endpoint path {path!r} must start with '/', e.g. '/{path}'")
    wanted = {status} if isinstance(status, int) else set(status)
    deadline = time_limit("timeout", timeout, leaves="to wait for an answer", example="60s")
    pause = named_duration("interval", interval)
    per_request = (
        time_limit("request_timeout", request_timeout, leaves="for a request", example="10s")
        if request_timeout is not None
        else None
    )
    env = container.image.env

    def masked(text: str) -> str:
        return mask_text(text, env)

    ends = container.wait_ends(deadline.total_seconds())
    url = container.url(port if port is not None else default_port(container), path)
    attempts = 0
    started = time.monotonic()

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

    answered: Answer | None = None

    def done(answer: Answer) -> bool:
        nonlocal answered
        answered = answered if answer.timed_out else answer
        return answer.matches or answer.stopped is not None

    last = wait_until(
        poll, done, seconds=deadline.total_seconds(), interval=pause.total_seconds(), until=ends
    )
    hidden = container.head_start_hides(ends, time.monotonic()) if last.matches else None
    if last.matches and hidden is None:
        container.waited()
    waited = timedelta(seconds=round(time.monotonic() - started, 3))
    record(
        "endpoint",
        endpoint=f"{path} on {url.removesuffix(path)}",
        expected_status=sorted(wanted),
        expected_json=jsonlib.dumps(json) if json is not None else None,
        request_timeout=per_request if per_request is not None else "the time left",
        final_status=last.status,
        final_body=shorten(masked(last.body), BODY_LIMIT, count=True),
        final_location=masked(last.location) if last.location is not None else None,
        final_error=last.error,
        attempts=attempts,
        time_to_ready=waited if last.matches and hidden is None else None,
        waited=waited,
        **({"not_measured": hidden} if hidden else {}),
    )
    if hidden:
        raise AssertionError(f"{path} answered {last.status}, but {hidden}")
    if last.stopped:
        raise AssertionError(last.stopped)
    if not last.matches:
        expectation = "/".join(map(str, sorted(wanted))) + (
            f" with {jsonlib.dumps(json)}" if json else ""
        )
        counted = f"(expected {expectation}; {attempts} attempt{'s' if attempts != 1 else ''})"
        if not last.timed_out:
            redirect = (
                f": a redirect is not followed; poll the path it points to, or expect "
                f"status={last.status}"
                if last.location is not None
                else ""
            )
            raise AssertionError(
                f"{path} not ready after {format_duration(deadline)}: last answer "
                f"{last.describe(masked)} {counted}{redirect}"
            )
        limit = (
            f"request timeout {format_duration(per_request)}"
            if per_request is not None
            else "request timeout: the time left"
        )
        before = (
            f"; the last attempt that did not time out got {answered.describe(masked)}"
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


# --- imagecheck.yaml -----------------------------------------------------------------------


def _title(values: Mapping[str, Any]) -> str:
    status = values["status"]
    codes = "/".join(map(str, status)) if isinstance(status, list) else str(status)
    return f"{values['path']} -> {codes}"


_KEYS = (
    Key("path", kinds.ABSOLUTE_PATH, "The path to poll.", default="/health"),
    Key("port", kinds.PORT, "The container port; default: the image's single exposed port."),
    Key("status", kinds.STATUS, "The status code (or codes) that mean ready.", default=200),
    Key("json", kinds.JSON_OBJECT, "A mapping the JSON body must contain (nested subset)."),
    Key("timeout", kinds.TIMEOUT, 'How long to wait for the answer; default "60s".'),
    Key("interval", kinds.DURATION, 'The pause between polls; default "250ms".'),
    Key(
        "request_timeout",
        kinds.REQUEST_TIMEOUT,
        "How long one request (connection, answer and body) may take; default: the time "
        "left of timeout.",
        example="10s",
    ),
)
ENDPOINT = Check(
    "endpoint",
    "An HTTP endpoint of the session container answers as expected (assert_endpoint_ready).",
    assert_endpoint_ready,
    "container",
    _KEYS,
    title=_title,
)
HARDENED = Check(
    "hardened",
    "A container started with a read-only root, all capabilities dropped and "
    "no-new-privileges answers as expected (assert_endpoint_ready).",
    assert_endpoint_ready,
    "run_container",
    (
        *_KEYS,
        Key(
            "tmpfs",
            kinds.TMPFS,
            "Writable tmpfs mounts the service needs, e.g. [/tmp].",
            default=[],
            container_option=True,
        ),
    ),
    title=_title,
    run_options={
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    },
)
