"""Healthcheck configuration: present, with the expected timings and probe."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .. import kinds
from ..declaration import Check, Key
from ..errors import ImageCheckError
from ..evidence import record
from ..units import Bound, format_duration, parse_bound, parse_duration

if TYPE_CHECKING:
    from ..dockerfile import Dockerfile
    from ..image import ImageUnderTest

Expectation = str | int | float | timedelta | None


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or not str(value).isdigit():
        raise ImageCheckError(f'bad retries "{value}": use a whole number or a bound like ">=3"')
    return int(value)


def _where(dockerfile: Dockerfile | None) -> str:
    """`` (Dockerfile:41 HEALTHCHECK --interval=60s ...)`` for the final stage's HEALTHCHECK."""
    if dockerfile is None:
        return ""
    found = [
        i for i in dockerfile.instructions_of(dockerfile.final_stage) if i.keyword == "HEALTHCHECK"
    ]
    if not found:
        return ""
    first_line = found[-1].original.splitlines()[0].rstrip(" \\")
    return f" ({dockerfile.location(found[-1])} {first_line})"


def assert_healthcheck(
    image: ImageUnderTest,
    *,
    interval: Expectation = None,
    timeout: Expectation = None,
    start_period: Expectation = None,
    retries: str | int | None = None,
    test: str | re.Pattern[str] | None = None,
    dockerfile: Dockerfile | None = None,
) -> None:
    """Assert that ``image`` has a HEALTHCHECK meeting each given expectation.

    Durations are exact (``"30s"``, ``30``, a timedelta) or bounds (``"<=30s"``); Docker's
    forms (``1m30s``, ``500ms``) work. ``retries`` is a number or a bound (``">=3"``). The
    engine's defaults count where the image sets nothing, and the evidence says so. ``test``
    is a substring (``str``) or a regular expression (``re.compile(...)``) the probe command
    must contain. With ``dockerfile``, failures point at its HEALTHCHECK line.
    """
    __tracebackhide__ = True
    health = image.healthcheck
    where = _where(dockerfile)
    if health is None:
        record("healthcheck", healthcheck="none" if not image.healthcheck_disabled else "NONE")
        if image.healthcheck_disabled:
            raise AssertionError(
                f"image {image.ref} disables its healthcheck (HEALTHCHECK NONE){where}: "
                "remove that line or give a HEALTHCHECK CMD"
            )
        raise AssertionError(
            f"image {image.ref} has no HEALTHCHECK: add one, e.g. "
            "HEALTHCHECK --interval=30s --timeout=10s --retries=3 CMD <probe>"
        )
    record(
        "healthcheck",
        healthcheck_test=health.command,
        healthcheck_interval=health.interval,
        healthcheck_timeout=health.timeout,
        healthcheck_start_period=health.start_period,
        healthcheck_retries=health.retries,
        healthcheck_defaults=sorted(health.defaults) or "none",
    )
    problems = []
    for name, wanted in (
        ("interval", interval),
        ("timeout", timeout),
        ("start_period", start_period),
        ("retries", retries),
    ):
        if wanted is None:
            continue
        bound: Bound[Any]
        if name == "retries":
            bound = parse_bound(wanted, parse=_whole_number)
        else:
            try:
                bound = parse_bound(wanted, parse=parse_duration)
            except ImageCheckError as exc:
                raise ImageCheckError(f"{name}: {exc}") from None  # which duration was bad
        actual = getattr(health, name)
        if not bound(actual):
            shown = format_duration(actual) if isinstance(actual, timedelta) else str(actual)
            default = (
                " (the engine's default; the image sets none)" if name in health.defaults else ""
            )
            problems.append(f"healthcheck {name} is {shown}{default}, expected {bound}")
    if test is not None:
        found = (
            test.search(health.command) if isinstance(test, re.Pattern) else test in health.command
        )
        if not found:
            shown = f"/{test.pattern}/" if isinstance(test, re.Pattern) else f'"{test}"'
            problems.append(f"healthcheck probe `{health.command}` does not contain {shown}")
    if problems:
        raise AssertionError(f"{'; '.join(problems)}{where}")


# --- imagecheck.yaml -----------------------------------------------------------------------


def _title(values: Mapping[str, Any]) -> str:
    parts = []
    for name in ("interval", "timeout", "start_period", "retries"):
        if name in values:
            bound = (
                parse_bound(values[name], parse=int)
                if name == "retries"
                else parse_bound(values[name])
            )
            parts.append(f"{name}{'=' if bound.op == '==' else ''}{bound}")
    return " ".join(parts)


HEALTHCHECK = Check(
    "healthcheck",
    "The image has a HEALTHCHECK with these timings and probe (assert_healthcheck).",
    assert_healthcheck,
    "image",
    (
        Key("interval", kinds.DURATION_BOUND, 'Exact ("30s") or a bound ("<=30s").'),
        Key("timeout", kinds.DURATION_BOUND, 'Exact ("10s") or a bound ("<=10s").'),
        Key("start_period", kinds.DURATION_BOUND, 'Exact ("60s") or a bound ("<=2m").'),
        Key("retries", kinds.COUNT_BOUND, 'Exact (3) or a bound (">=3").'),
        Key("test", kinds.TEXT, "A substring the probe command must contain."),
    ),
    title=_title,
)
