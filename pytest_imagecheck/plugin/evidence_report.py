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
from .options import SETTINGS, Settings
from .outcomes import EVIDENCE
from .session import is_worker

if TYPE_CHECKING:
    from ..engine import Engine
    from ..image import ImageUnderTest
    from ..report import Verdict

#: The image this process's ``image`` fixture read (kept only when a report is written).
SEEN_IMAGE = pytest.StashKey[SeenImage]()
#: The same, until a test report of this process has carried it.
_TO_CARRY = pytest.StashKey[SeenImage]()
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


def image_read(config: pytest.Config, image: ImageUnderTest, engine: Engine) -> None:
    """Keep what the report shows of ``image``, read by this process's ``image`` fixture: its
    identity, its layers and the engine's version, to travel on the next test report.

    Does nothing without ``--imagecheck-report``, or when this process already kept one.
    """
    if config.stash[SETTINGS].report is None or SEEN_IMAGE in config.stash:
        return
    version = None
    with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
        version = engine.version
    seen = seen_image(image, version)
    config.stash[SEEN_IMAGE] = seen
    config.stash[_TO_CARRY] = seen


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
    collected = item.stash.get(EVIDENCE, None) if call.when == "call" else None
    if collected is not None:
        del item.stash[EVIDENCE]  # items live as long as the session: keep no test's evidence
        budget = collected.value(*_SIZE_BUDGET)
        if isinstance(budget, int) and not isinstance(budget, bool):
            values["size_budget_bytes"] = budget
    seen = item.config.stash.get(_TO_CARRY, None)
    if seen is not None:
        del item.config.stash[_TO_CARRY]
        values["image"] = seen.to_json()
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
        self.verdicts: dict[str, Verdict] = {}
        self.budgets: dict[str, int] = {}  # nodeid: the total budget its size check judged by
        self.image: SeenImage | None = None
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
        if self.image is None and "image" in values:
            self.image = SeenImage.from_json(values["image"])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from ..report import ReportData, write_report

        # The only process also has it when no report carried it (a run cut short).
        image = self.image or session.config.stash.get(SEEN_IMAGE, None)
        data = ReportData(
            image=image.identity if image else None,
            engine_version=image.engine_version if image else None,
            verdicts=tuple(self.verdicts.values()),
            layers=image.layers if image else (),
            # Several size criteria: the chart draws the tightest total budget.
            size_budget=min(self.budgets.values(), default=None),
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

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.failed:
            terminalreporter.write_line(f"ERROR: {self.failed}", red=True)
        for path in self.written:
            terminalreporter.write_sep("-", f"imagecheck evidence report: {path}")
