"""pytest's per-phase test reports as one verdict per criterion, and the typed data the plugin
carries on those reports for the evidence report.

Data goes one way, from where it is known to where it is shown. Where a test runs, the plugin
knows that the test is waived, the size budget a check judged against, and (once per process)
the image the ``image`` fixture read; it puts them on each test report under :data:`CHANNEL`
as plain JSON values (:class:`Carried`), which pytest-xdist sends to the controller with the
report (``pytest_report_to_serializable`` keeps a report's attributes). The evidence report
reads them there. The junit properties are for people and CI: shown, never parsed back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from .items import WAIVED
from .report import FilesystemLayer, ImageIdentity, LayerRow, Verdict

if TYPE_CHECKING:
    import pytest

    from .image import ImageUnderTest
    from .layers import LayerContents

#: The test report attribute that carries :class:`Carried`.
CHANNEL = "imagecheck"


class Carried(TypedDict, total=False):
    """What one test report carries for the evidence report; every key is optional."""

    #: The test is waived, for this reason (without the ``waived: `` the xfail reason shows).
    waiver: str
    #: The total size budget, in bytes, a size check of this test judged against.
    size_budget_bytes: int
    #: The family member the test is for.
    member: str
    #: The images under test as this process's ``image`` fixture read them
    #: (:meth:`SeenImage.to_json`); each on the first report after its read, once per process.
    images: list[dict[str, Any]]


def carry(report: pytest.TestReport, values: Carried) -> None:
    """Add ``values`` to what ``report`` carries (nothing is added when they are empty)."""
    if values:
        setattr(report, CHANNEL, {**carried(report), **values})


def carried(report: pytest.TestReport) -> Carried:
    """What ``report`` carries: empty for a report of a process without the plugin."""
    found = getattr(report, CHANNEL, None)
    return found if isinstance(found, dict) else {}  # type: ignore[return-value]


@dataclass(frozen=True)
class SeenImage:
    """The image under test as the ``image`` fixture read it: identity, layer rows (their
    instructions masked) and the engine's version (``None`` if it did not say).

    For a family ``member``, also the bytes of each filesystem layer by diff ID, base first
    (what members share), and the bytes of files later layers overwrite or delete; ``None``
    when its layers could not be read.
    """

    identity: ImageIdentity
    layers: tuple[LayerRow, ...]
    engine_version: str | None
    member: str | None = None
    layer_bytes: tuple[FilesystemLayer, ...] | None = None
    wasted_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: ``{"identity": {...}, "layers": [[index, size, text]...],
        "engine_version": ..., "member": ..., "layer_bytes": [[diff_id, bytes, step]...],
        "wasted_bytes": ...}``."""
        return {
            "identity": dataclasses.asdict(self.identity),
            "layers": [[row.index, row.size, row.instruction] for row in self.layers],
            "engine_version": self.engine_version,
            "member": self.member,
            "layer_bytes": None
            if self.layer_bytes is None
            else [list(layer) for layer in self.layer_bytes],
            "wasted_bytes": self.wasted_bytes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SeenImage:
        """The inverse of :meth:`to_json`."""
        return cls(
            identity=ImageIdentity(**data["identity"]),
            layers=tuple(
                LayerRow(int(i), int(size), str(text)) for i, size, text in data["layers"]
            ),
            engine_version=data["engine_version"],
            member=data.get("member"),
            layer_bytes=None
            if data.get("layer_bytes") is None
            else tuple(
                FilesystemLayer(str(d), int(size), None if step is None else int(step))
                for d, size, step in data["layer_bytes"]
            ),
            wasted_bytes=data.get("wasted_bytes"),
        )


def seen_image(
    image: ImageUnderTest,
    engine_version: str | None,
    member: str | None = None,
    layers: list[LayerContents] | None = None,
) -> SeenImage:
    """What the report shows of ``image``, taken from facts it already holds and, for a
    family ``member``, from its ``layers`` as read (no engine call).

    An ENV or ARG step shows its values in the layer table: the image's secret ENV values are
    masked in them.
    """
    from .checks.size import wasted_files
    from .secret_rules import mask_text

    env = image.env
    return SeenImage(
        member=member,
        layer_bytes=None
        if layers is None
        else tuple(FilesystemLayer(layer.diff_id, layer.size, layer.step) for layer in layers),
        wasted_bytes=None if layers is None else sum(f.size for f in wasted_files(layers)),
        identity=identity_of(image),
        layers=tuple(
            LayerRow(layer.index, layer.size, mask_text(layer.instruction, env))
            for layer in image.layers
        ),
        engine_version=engine_version,
    )


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).removeprefix("AssertionError: ")
    return str(longrepr or "")


def _outcome(report: pytest.TestReport) -> tuple[str, str]:
    expected = getattr(report, "wasxfail", None)
    if expected is not None:
        # Waived when the test carries a waiver and pytest applied the waiver's own xfail: a
        # user's own xfail("waived: ...") is an expected failure like any other, and so is a
        # user's xfail that pytest applied before the waiver's on a waived test.
        waiver = carried(report).get("waiver")
        if waiver is not None and str(expected) == WAIVED + waiver:
            kind, reason = "waived", waiver
        else:
            kind, reason = "xfailed", str(expected)
        if report.passed:
            return "xpassed", f"passed although {kind}: {reason}"
        return kind, reason
    if report.passed:
        return "passed", ""
    if report.skipped:
        return "skipped", _reason(report)
    return ("failed" if report.when == "call" else "error"), _reason(report)


def verdict_of(report: pytest.TestReport, previous: Verdict | None) -> Verdict | None:
    """The verdict after this phase's report: the call decides, setup and teardown can spoil it.

    A setup that fails or skips decides alone; a teardown error turns any verdict into an error.
    The facts are the test's ``imagecheck.*`` junit properties, as text, as junit shows them.
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
        member=carried(report).get("member"),
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
