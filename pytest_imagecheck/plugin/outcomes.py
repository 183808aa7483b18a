"""What each test's report says: the evidence it recorded, one-line failures for our errors
and for a service that refused a connection, the log tails of the containers it used, and
the GPU verdict (a GPU test never passes without a GPU)."""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Generator, Mapping
from pathlib import Path

import pytest
import requests

from ..container import LOG_TAIL_LINES, RunningContainer
from ..engine import ENGINE_ERRORS, engine_lost, from_engine, short_reason
from ..errors import GpuUnavailable, ImageCheckError
from ..evidence import Collected, collecting, properties
from ..image import ImageUnderTest
from ..items import CriterionItem
from .options import SETTINGS
from .session import STATE

#: The containers ``run_container`` started for a test.
USED = pytest.StashKey[list[RunningContainer]]()
#: Set when one of a test's containers was given GPUs.
GPU_USED = pytest.StashKey[bool]()
#: What the test's checks recorded, typed as recorded (for the evidence report's channel).
EVIDENCE = pytest.StashKey[Collected]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``gpu`` marker."""
    config.addinivalue_line("markers", "gpu: the test needs GPUs (skips when none can be given)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Collect what checks measure, and what the test body read and ran, during the test;
    both become junit properties (observations masked as all evidence is). The typed evidence
    stays on the item under :data:`EVIDENCE`."""
    with collecting() as collected:
        item.stash[EVIDENCE] = collected
        try:
            return (yield)
        finally:
            item.user_properties.extend(properties(collected, _mask_text))


def _mask_text(text: str, env: Mapping[str, str]) -> str:
    """``secret_rules.mask_text``, imported when a test first observed something."""
    from ..secret_rules import mask_text

    return mask_text(text, env)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Judge GPU outcomes, and attach the log tail of every container a failing test used."""
    report = yield
    _shorten(item, call, report)
    _judge_gpu(item, call, report)
    if report.when == "call" and report.passed:
        _fail_if_a_container_died(item, report)
    if report.failed:
        _attach_log_tails(item, report)
    # Every phase: the teardown report carries the whole test's captured output to junit.
    _mask_secrets(item, report)
    return report


def _fail_if_a_container_died(item: pytest.Item, report: pytest.TestReport) -> None:
    """A test whose container stopped (and not through ``container.stop()``) did not pass:
    the service it was to test is gone. One inspect per container it used."""
    for container in _used_containers(item):
        if container.stopped_on_purpose:
            continue
        with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
            died = container.stopped_message(when="during the test")
            if died is not None:
                report.outcome = "failed"
                report.longrepr = died
                return


def _mask_secrets(item: pytest.Item, report: pytest.TestReport) -> None:
    """Mask the image's secret ENV values in a report's failure text and captured output: a
    plain ``assert image.env["DB_PASSWORD"] == ...`` shows the value it compared, and a
    ``print(container.logs())`` what the service printed."""
    envs = [container.image.env for container in _used_containers(item)]
    image = getattr(item, "funcargs", {}).get("image")
    if isinstance(image, ImageUnderTest):
        envs.append(image.env)
    if not envs:
        return
    env = {name: value for each in envs for name, value in each.items()}
    text = str(report.longrepr)
    masked = _mask_text(text, env)
    if masked != text:
        report.longrepr = masked
    report.sections = [(title, _mask_text(body, env)) for title, body in report.sections]


def _attach_log_tails(item: pytest.Item, report: pytest.TestReport) -> None:
    for container in _used_containers(item):
        with contextlib.suppress(Exception):
            tail = container.log_tail(LOG_TAIL_LINES)
            # A "stdout" section reaches junit's system-out (junit_logging=system-out), which
            # pytest writes from the teardown report: the item carries it on to that one.
            key = f"stdout: {container.name} logs (last {LOG_TAIL_LINES} lines)"
            item.add_report_section(report.when, key, tail)
            report.sections.append((f"Captured {key} {report.when}", tail))


def _shorten(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Our errors, an engine that went away, and a service that refused a connection, each as
    one message: no traceback through our code or requests'."""
    excinfo = call.excinfo
    if not report.failed or excinfo is None:
        return
    if isinstance(excinfo.value, requests.RequestException):
        state = item.config.stash[STATE]
        client = state.engine().client if state.connected else None
        if from_engine(excinfo.value, client):
            if isinstance(excinfo.value, (requests.ConnectionError, requests.Timeout)):
                report.longrepr = str(engine_lost(excinfo.value))
            return
        failure = _service_failure(item, excinfo.value)
        if failure is not None:
            report.longrepr = _called_at(item, excinfo) + failure
    elif (
        isinstance(excinfo.value, ImageCheckError)
        and not isinstance(excinfo.value, GpuUnavailable)
        and not isinstance(item, CriterionItem)  # it words its own failures
    ):
        report.longrepr = _called_at(item, excinfo) + str(excinfo.value)


def _used_containers(item: pytest.Item) -> list[RunningContainer]:
    """The containers a test used: the session's, then those ``run_container`` started."""
    started: list[RunningContainer] = item.stash.get(USED, [])
    used = [*started]
    session_container = getattr(item, "funcargs", {}).get("container")
    if isinstance(session_container, RunningContainer):
        used.insert(0, session_container)
    return used


def _service_failure(item: pytest.Item, exc: requests.RequestException) -> str | None:
    """A failed request to a container's published port, told as the service's failure with
    the container's state and log tail; ``None`` for any other address."""
    url = str(getattr(exc.request, "url", "") or "")
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or parts.port is None:
        return None
    what = f"{getattr(exc.request, 'method', 'GET')} {url}: {short_reason(exc)}"
    did, starting = _what_the_service_did(exc)
    for container in _used_containers(item):
        with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
            told = container.connection_failure(
                (parts.hostname, parts.port), what, did, starting=starting
            )
            if told is not None:
                return told
    return None


def _what_the_service_did(exc: requests.RequestException) -> tuple[str, bool]:
    """What a failed request says the service did, and whether a starting service does that.

    Only a refused or reset connection is what a service that does not listen yet does;
    a read timeout or an answer that is not HTTP came from a service that took it.
    """
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return "did not take the connection within the timeout", False
    if isinstance(exc, requests.ReadTimeout):
        return "took the connection but sent no answer within the timeout", False
    if any(word in text for word in ("BadStatusLine", "InvalidChunkLength", "LineTooLong")):
        return "answered, but not with HTTP", False
    if "Connection refused" in text:
        return "refused the connection", True
    if any(word in text for word in ("reset", "RemoteDisconnected", "aborted", "closed")):
        return "closed the connection without an answer", True
    if isinstance(exc, requests.ConnectionError):
        return "did not take the connection", True
    return f"failed the request ({type(exc).__name__})", False


def _called_at(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """``test_x.py:12: ``, the line of the test that made the failing call, or ``""``."""
    lines = [entry.lineno + 1 for entry in excinfo.traceback if Path(entry.path) == item.path]
    return f"{item.location[0]}:{lines[-1]}: " if lines else ""


def _judge_gpu(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """A GPU test never passes without a GPU.

    Where the engine cannot give GPUs, a test marked ``gpu`` skips with the engine's reason
    and any other test errors; ``--require-gpu`` makes both failures. A test marked ``gpu``
    that passed although none of its containers had GPUs is not a pass either.
    """
    settings = item.config.stash[SETTINGS]
    marked = item.get_closest_marker("gpu") is not None
    if settings.gpus and "container" in getattr(item, "funcargs", {}):
        item.stash[GPU_USED] = True
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, GpuUnavailable):
        message = str(excinfo.value)
    elif marked and report.when == "call" and report.passed and not item.stash.get(GPU_USED, False):
        message = (
            "marked gpu, but none of its containers had GPUs: pass --gpus all, or "
            "run_container(gpus='all')"
        )
    else:
        return
    if marked and not settings.require_gpu:
        path, lineno, _ = item.reportinfo()
        report.outcome = "skipped"
        report.longrepr = (str(path), (lineno or 0) + 1, f"Skipped: {message}")
    else:
        report.outcome = "failed"
        report.longrepr = message + (" (--require-gpu)" if settings.require_gpu else "")
