"""pytest's per-phase test reports as one verdict per criterion, for the evidence report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .items import WAIVED
from .report import ImageIdentity, Verdict

if TYPE_CHECKING:
    import pytest

    from .image import ImageUnderTest


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).removeprefix("AssertionError: ")
    return str(longrepr or "")


def _outcome(report: pytest.TestReport) -> tuple[str, str]:
    waived = getattr(report, "wasxfail", None)
    if waived is not None:
        kind = "waived" if waived.startswith(WAIVED) else "xfailed"
        if report.passed:
            return "xpassed", f"passed although {kind}: {waived.removeprefix(WAIVED)}"
        return kind, waived.removeprefix(WAIVED)
    if report.passed:
        return "passed", ""
    if report.skipped:
        return "skipped", _reason(report)
    return ("failed" if report.when == "call" else "error"), _reason(report)


def verdict_of(report: pytest.TestReport, previous: Verdict | None) -> Verdict | None:
    """The verdict after this phase's report: the call decides, setup and teardown can spoil it.

    A setup that fails or skips decides alone; a teardown error turns any verdict into an error.
    """
    if report.when == "setup" and report.passed:
        return previous
    if report.when == "teardown" and not report.failed:
        return previous
    outcome, reason = _outcome(report)
    facts = tuple(
        (str(name), str(value))
        for name, value in report.user_properties
        if str(name).startswith("imagecheck.")
    )
    return Verdict(
        nodeid=report.nodeid,
        name=report.nodeid.split("::")[-1],
        outcome=outcome,
        reason=reason,
        facts=facts or (previous.facts if previous else ()),
        duration=report.duration + (previous.duration if previous else 0.0),
    )


def identity_of(image: ImageUnderTest) -> ImageIdentity:
    """The image's identity for the report's header."""
    return ImageIdentity(
        ref=image.ref,
        id=image.id,
        digest=image.digest,
        size=image.size,
        created=image.created,
        architecture=image.architecture,
        os=image.os,
    )
