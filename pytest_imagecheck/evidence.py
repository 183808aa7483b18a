"""What a check measured, recorded once and read by the junit report (and later reports).

Checks call :func:`record`; they never touch pytest. The plugin opens a collector around each
test with :func:`collecting` and turns what was recorded into junit properties named
``imagecheck.<fact>`` on that test case.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta

from .units import format_duration


@dataclass
class Evidence:
    """The facts one check measured, in the order it recorded them."""

    check: str
    facts: dict[str, object] = field(default_factory=dict)

    def properties(self) -> list[tuple[str, str]]:
        """``(imagecheck.<fact>, text)`` pairs for junit."""
        return [(f"imagecheck.{key}", as_text(value)) for key, value in self.facts.items()]


_collector: ContextVar[list[Evidence] | None] = ContextVar("imagecheck_evidence", default=None)


def record(check: str, **facts: object) -> None:
    """Record facts that ``check`` measured on the current test (no-op outside a test).

    Values must already be safe to show: mask secrets before recording them.
    """
    sink = _collector.get()
    if sink is None:
        return
    if sink and sink[-1].check == check:
        sink[-1].facts.update(facts)
    else:
        sink.append(Evidence(check, dict(facts)))


@contextlib.contextmanager
def collecting() -> Iterator[list[Evidence]]:
    """Collect the evidence recorded inside the ``with`` block."""
    sink: list[Evidence] = []
    token = _collector.set(sink)
    try:
        yield sink
    finally:
        _collector.reset(token)


def as_text(value: object) -> str:
    """One readable string for a fact: durations as ``30s``, sequences comma-separated."""
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(as_text(v) for v in value)
    if value is None:
        return "none"
    return str(value)
