"""``--imagecheck-report``: every test's verdict and evidence, written at the end of the
session (Markdown with an SVG chart, or JSON).

What the report shows travels one way, on the test reports: the process that runs a test puts
on its reports whether the test is waived, the size budget its checks judged against and,
once per process, the image its ``image`` fixture read (:mod:`pytest_imagecheck.verdicts`).
The process that writes the report (the only one, or the xdist controller) reads them there
and never asks the engine: an image no test read is reported as not inspected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..engine import ENGINE_ERRORS
from ..errors import ImageCheckError
from ..items import WAIVER
from ..verdicts import Carried, SeenImage, carried, carry, seen_image
from .family import RUN, member_of
from .options import SETTINGS, Settings
from .outcomes import EVIDENCE
from .session import is_worker

if TYPE_CHECKING:
    from ..engine import Engine
    from ..image import ImageUnderTest
    from ..report import MemberRow, Verdict

#: The images this process's ``image`` fixture read, by family member ("" for the one image
#: of a session without a family); kept only when a report is written.
SEEN_IMAGES = pytest.StashKey[dict[str, SeenImage]]()
#: Those a test report of this process has not carried yet.
_TO_CARRY = pytest.StashKey[list[SeenImage]]()
#: The images this process's ``image`` fixture read, by member: (image, engine version,
#: member), kept in :data:`SEEN_IMAGES` once their layers are read.
_PENDING = pytest.StashKey[dict[str, tuple["ImageUnderTest", str | None, str | None]]]()
#: On a test: it is this process's last.
_LAST = pytest.StashKey[bool]()
#: The check and fact under which ``assert_size_within`` records its total budget (bytes).
_SIZE_BUDGET = ("size", "size_budget_bytes")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Write the report where the reports arrive: the only process, or the xdist controller."""
    settings = config.stash[SETTINGS]
    if settings.report is not None and not is_worker(config):
        config.pluginmanager.register(
            _EvidenceReport(settings, settings.report), "imagecheck-report"
        )


def image_read(
    config: pytest.Config, image: ImageUnderTest, engine: Engine, member: str | None = None
) -> None:
    """Keep what the report shows of ``image``, read by this process's ``image`` fixture: its
    identity, its layers and the engine's version, to travel on a test report.

    For a family ``member``, also its layers' bytes by diff ID and its wasted bytes, for the
    family table, from its layers (read with the family's, in one stream, ahead of the
    tests): kept once they are read, or at this process's last test.

    Does nothing without ``--imagecheck-report``, or when this process already kept it.
    """
    pending = config.stash.setdefault(_PENDING, {})
    if config.stash[SETTINGS].report is None or (member or "") in pending:
        return
    version = None
    with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
        version = engine.version
    pending[member or ""] = (image, version, member)
    _keep_seen(config, last=False)


def _keep_seen(config: pytest.Config, *, last: bool) -> None:
    """Keep, to carry, the images read whose layers are read too (all of them when ``last``:
    reading what is still missing)."""
    pending = config.stash.get(_PENDING, {})
    seen_images = config.stash.setdefault(SEEN_IMAGES, {})
    run = config.stash.get(RUN, None)
    for key, (image, version, member) in pending.items():
        if key in seen_images or (
            member is not None and not last and not (run is not None and run.layers_read())
        ):
            continue
        layers = None
        if member is not None:
            with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
                layers = image.layer_contents()
        seen = seen_image(image, version, member, layers)
        seen_images[key] = seen
        config.stash.setdefault(_TO_CARRY, []).append(seen)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Note this process's last test: its report carries what is still to carry."""
    if nextitem is None:
        item.stash[_LAST] = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Put on each test report what the evidence report needs from this process, typed."""
    report = yield
    values: Carried = {}
    waiver = item.stash.get(WAIVER, None)
    if waiver is not None:
        values["waiver"] = waiver
    member = member_of(item)
    if member is not None:
        values["member"] = member
    collected = item.stash.get(EVIDENCE, None) if call.when == "call" else None
    if collected is not None:
        del item.stash[EVIDENCE]  # items live as long as the session: keep no test's evidence
        budget = collected.value(*_SIZE_BUDGET)
        if isinstance(budget, int) and not isinstance(budget, bool):
            values["size_budget_bytes"] = budget
    _keep_seen(item.config, last=call.when == "teardown" and item.stash.get(_LAST, False))
    to_carry = item.config.stash.get(_TO_CARRY, None)
    if to_carry:
        values["images"] = [seen.to_json() for seen in to_carry]
        to_carry.clear()
    carry(report, values)
    return report


class _EvidenceReport:
    """Collects every test's verdict and evidence, and writes ``--imagecheck-report``.

    Registered where reports arrive: the only process, or the xdist controller.
    """

    def __init__(self, settings: Settings, path: Path) -> None:
        self.requested = settings.build.image_tag if settings.build else settings.image
        self.path = path
        self.started = datetime.now(timezone.utc)
        self.family = settings.family
        self.verdicts: dict[str, Verdict] = {}
        self.budgets: dict[str, int] = {}  # nodeid: the total budget its size check judged by
        self.images: dict[str, SeenImage] = {}  # by member id ("" without a family)
        self.written: list[Path] = []
        self.failed = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from ..verdicts import verdict_of

        verdict = verdict_of(report, self.verdicts.get(report.nodeid))
        if verdict is not None:
            self.verdicts[report.nodeid] = verdict
        values = carried(report)
        if "size_budget_bytes" in values:
            self.budgets.setdefault(report.nodeid, values["size_budget_bytes"])
        for data in values.get("images", []):
            seen = SeenImage.from_json(data)
            self.images.setdefault(seen.member or "", seen)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from ..report import ReportData, write_report

        # The only process also has them when no report carried them (a run cut short).
        _keep_seen(session.config, last=True)
        kept: dict[str, SeenImage] = session.config.stash.get(SEEN_IMAGES, {})
        images = {**kept, **self.images}
        image = images.get("") if self.family is None else None
        verdicts = tuple(self.verdicts.values())
        data = ReportData(
            image=image.identity if image else None,
            engine_version=next((i.engine_version for i in images.values()), None),
            verdicts=verdicts,
            layers=image.layers if image else (),
            # Several size criteria: the chart draws the tightest total budget.
            size_budget=min(self.budgets.values(), default=None) if self.family is None else None,
            members=self._members(images, verdicts),
            started=self.started.isoformat(timespec="seconds"),
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=" ".join(["pytest", *session.config.invocation_params.args]),
            requested_ref=self.requested,
        )
        try:
            self.written = write_report(data, self.path)
        except OSError as exc:
            self.failed = f"cannot write the evidence report {self.path}: {exc.strerror or exc}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _members(
        self, images: dict[str, SeenImage], verdicts: tuple[Verdict, ...]
    ) -> tuple[MemberRow, ...]:
        from ..report import MemberRow

        if self.family is None:
            return ()
        rows = []
        for member in self.family.members:
            seen = images.get(member.id)
            budgets = [
                budget
                for nodeid, budget in self.budgets.items()
                if nodeid in self.verdicts and self.verdicts[nodeid].member == member.id
            ]
            rows.append(
                MemberRow(
                    id=member.id,
                    requested_ref=member.tag,
                    image=seen.identity if seen else None,
                    layers=seen.layers if seen else (),
                    layer_bytes=seen.layer_bytes if seen else None,
                    wasted_bytes=seen.wasted_bytes if seen else None,
                    size_budget=min(budgets, default=None),
                )
            )
        return tuple(rows)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.failed:
            terminalreporter.write_line(f"ERROR: {self.failed}", red=True)
        for path in self.written:
            terminalreporter.write_sep("-", f"imagecheck evidence report: {path}")
