"""``--imagecheck-report``: every test's verdict and evidence, written at the end of the
session (Markdown with an SVG chart, or JSON)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..engine import ENGINE_ERRORS
from ..errors import ImageCheckError
from ..image import ImageUnderTest
from .options import SETTINGS
from .session import STATE, State, is_worker

if TYPE_CHECKING:
    from ..report import Verdict


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Write the report where the reports arrive: the only process, or the xdist controller."""
    path = config.stash[SETTINGS].report
    if path is not None and not is_worker(config):
        config.pluginmanager.register(
            _EvidenceReport(config.stash[STATE], path), "imagecheck-report"
        )


class _EvidenceReport:
    """Collects every test's verdict and evidence, and writes ``--imagecheck-report``.

    Registered where reports arrive: the only process, or the xdist controller.
    """

    def __init__(self, state: State, path: Path) -> None:
        self.state = state
        self.path = path
        self.started = datetime.now(timezone.utc)
        self.verdicts: dict[str, Verdict] = {}
        self.written: list[Path] = []
        self.failed = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from ..verdicts import verdict_of

        verdict = verdict_of(report, self.verdicts.get(report.nodeid))
        if verdict is not None:
            self.verdicts[report.nodeid] = verdict

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from ..report import LayerRow, ReportData, write_report
        from ..secret_rules import mask_text
        from ..verdicts import identity_of

        image, engine_version = self._image()
        budget = next(
            (
                int(value)
                for verdict in self.verdicts.values()
                for name, value in verdict.facts
                if name == "imagecheck.size_budget_bytes"
            ),
            None,
        )
        data = ReportData(
            image=identity_of(image) if image else None,
            engine_version=engine_version,
            verdicts=tuple(self.verdicts.values()),
            layers=tuple(
                # An ENV or ARG step shows its values: mask the image's secrets in them.
                LayerRow(layer.index, layer.size, mask_text(layer.instruction, image.env))
                for layer in image.layers
            )
            if image
            else (),
            size_budget=budget,
            started=self.started.isoformat(timespec="seconds"),
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=" ".join(["pytest", *session.config.invocation_params.args]),
        )
        try:
            self.written = write_report(data, self.path)
        except OSError as exc:
            self.failed = f"cannot write the evidence report {self.path}: {exc.strerror or exc}"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _image(self) -> tuple[ImageUnderTest | None, str | None]:
        """The image under test and the engine's version, read now; none if unreachable."""
        settings = self.state.settings
        ref = settings.build.image_tag if settings.build else settings.image
        if not ref:
            return None, None
        try:
            engine = self.state.engine()
            return engine.image(ref), engine.version
        except (ImageCheckError, *ENGINE_ERRORS):
            return None, None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.failed:
            terminalreporter.write_line(f"ERROR: {self.failed}", red=True)
        for path in self.written:
            terminalreporter.write_sep("-", f"imagecheck evidence report: {path}")
