"""What a test measured, recorded once and read by the junit report (and later reports).

Two kinds of evidence:

- what a check measured: checks call :func:`record`; they never touch pytest;
- what a test body read or ran itself, for plain ``assert`` tests: the image facts it read,
  the commands it ran in a container, the files it read and the HTTP answers to the URLs
  ``container.url`` gave it. The facts and containers call :func:`observe`, which keeps only
  what code outside this package asked for (a check's own reads are covered by its record).

The plugin opens a collector around each test with :func:`collecting` and turns both into
junit properties named ``imagecheck.<fact>`` on that test case.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

from .text import shorten
from .units import format_duration

#: At most this many observations per test: a test polling in a loop stays bounded.
MAX_OBSERVATIONS = 40
#: At most this many characters of an observed value (command output, HTTP body).
MAX_OBSERVED_TEXT = 200

_T = TypeVar("_T")


@dataclass
class Evidence:
    """The facts one check measured, in the order it recorded them."""

    check: str
    facts: dict[str, object] = field(default_factory=dict)

    def properties(self) -> list[tuple[str, str]]:
        """``(imagecheck.<fact>, text)`` pairs for junit."""
        return [(f"imagecheck.{key}", as_text(value)) for key, value in self.facts.items()]


@dataclass(frozen=True)
class Observation:
    """One thing a test body read or ran itself, before masking.

    ``kind`` is ``read`` (an image fact), ``exec``, ``file`` or ``http``; ``subject`` names
    it (``image.user``, a command, a path, a URL) and ``text`` says what was found.
    ``secrets_of`` is the environment whose secret values are masked when it is shown.
    """

    kind: str
    subject: str
    text: str
    secrets_of: Mapping[str, str] = field(default_factory=dict, compare=False)


class Collected(list[Evidence]):
    """What one test recorded: the checks' evidence (the list itself, in order) and the test
    body's :attr:`observations`; :attr:`dropped` counts those past :data:`MAX_OBSERVATIONS`."""

    def __init__(self) -> None:
        super().__init__()
        self.observations: list[Observation] = []
        self.dropped = 0
        #: ``http://host:port`` of the URLs the test got from ``container.url``, with the
        #: environment whose secrets its answers are masked with.
        self.urls: dict[str, Mapping[str, str]] = {}

    def value(self, check: str, fact: str) -> object | None:
        """What ``check`` last recorded as ``fact`` in this test, as recorded (an ``int``
        stays an ``int``), or ``None`` if it recorded none."""
        found: object | None = None
        for entry in self:
            if entry.check == check and fact in entry.facts:
                found = entry.facts[fact]
        return found


_collector: ContextVar[Collected | None] = ContextVar("imagecheck_evidence", default=None)


def record(check: str, **facts: object) -> None:
    """Record facts that ``check`` measured on the current test (no-op outside a test).

    Values must already be safe to show: mask secrets before recording them.
    """
    collected = _collector.get()
    if collected is None:
        return
    if collected and collected[-1].check == check:
        collected[-1].facts.update(facts)
    else:
        collected.append(Evidence(check, dict(facts)))


def from_test_code(frame: FrameType | None) -> bool:
    """Whether ``frame`` (a caller) is outside this package: a test body, a user's helper.

    Reads made by the package itself (checks, fixtures, the engine) are not observations.
    """
    name = str(frame.f_globals.get("__name__", "")) if frame is not None else ""
    return not (name == "pytest_imagecheck" or name.startswith("pytest_imagecheck."))


def observing() -> bool:
    """Whether a test is running and collecting observations (cheap; call before work)."""
    return _collector.get() is not None


def observe(
    kind: str, subject: str, text: str, *, secrets_of: Mapping[str, str] | None = None
) -> None:
    """Record that the test body read or ran ``subject`` and found ``text``.

    A no-op outside a test. An image fact read again replaces its earlier value; past
    :data:`MAX_OBSERVATIONS` per test only a count is kept. ``text`` is cut to
    :data:`MAX_OBSERVED_TEXT` characters; secrets in it are masked when it is shown.
    """
    collected = _collector.get()
    if collected is None:
        return
    seen = Observation(
        kind, subject, shorten(text, MAX_OBSERVED_TEXT, count=True), dict(secrets_of or {})
    )
    if kind == "read":
        for index, earlier in enumerate(collected.observations):
            if earlier.kind == "read" and earlier.subject == subject:
                collected.observations[index] = seen
                return
    if seen in collected.observations:
        return
    if len(collected.observations) >= MAX_OBSERVATIONS:
        collected.dropped += 1
        return
    collected.observations.append(seen)


def watch_url(base: str, *, secrets_of: Mapping[str, str] | None = None) -> None:
    """Observe the test's HTTP requests to ``base`` (``http://127.0.0.1:49153``)."""
    collected = _collector.get()
    if collected is not None:
        collected.urls[base] = dict(secrets_of or {})


def watched(url: str) -> Mapping[str, str] | None:
    """The masking environment if ``url`` is under a watched base, else ``None``."""
    collected = _collector.get()
    if collected is None or not collected.urls:
        return None
    return next(
        (env for base, env in collected.urls.items() if url == base or url.startswith(base + "/")),
        None,
    )


def observed_fact(getter: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """Make a fact getter (under ``@property``) observe reads made by test code.

    The observation is ``image.<name>`` (``container.<name>`` on an object whose
    ``_observed_as`` says so) with the value as :func:`as_text` writes it, masked with the
    image's ``env``.
    """
    name = getter.__name__

    @functools.wraps(getter)
    def read(self: Any) -> _T:
        value = getter(self)
        if _collector.get() is not None and from_test_code(sys._getframe(1)):
            owner = getattr(self, "_observed_as", "image")
            image = self if owner == "image" else self.image
            observe("read", f"{owner}.{name}", as_text(value), secrets_of=image.env)
        return value

    return read


@contextlib.contextmanager
def collecting() -> Iterator[Collected]:
    """Collect the evidence and observations recorded inside the ``with`` block."""
    collected = Collected()
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)


def as_text(value: object) -> str:
    """One readable string for a fact: durations as ``30s``, sequences comma-separated."""
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(as_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={as_text(v)}" for k, v in value.items())
    if value is None:
        return "none"
    return str(value)


def properties(
    collected: Collected, mask: Callable[[str, Mapping[str, str]], str]
) -> list[tuple[str, str]]:
    """The junit properties of one test: each check's facts, then what the test body read and
    ran, ``mask(text, env)`` applied to each observation (``imagecheck.read.image.user``,
    ``imagecheck.exec.1``, ``imagecheck.file.1``, ``imagecheck.http.1``...)."""
    found = [prop for entry in collected for prop in entry.properties()]
    counts: dict[str, int] = {}
    for seen in collected.observations:
        if seen.kind == "read":
            name = f"imagecheck.read.{seen.subject}"
            value = seen.text
        else:
            counts[seen.kind] = counts.get(seen.kind, 0) + 1
            name = f"imagecheck.{seen.kind}.{counts[seen.kind]}"
            value = f"{seen.subject} -> {seen.text}"
        found.append((name, mask(value, seen.secrets_of)))
    if collected.dropped:
        found.append(("imagecheck.observations_dropped", str(collected.dropped)))
    return found
