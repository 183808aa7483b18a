"""pytest wiring: options and ini keys, fixtures, and the hooks that clean up and report.

Domain logic lives in the modules this one imports; nothing here knows how an image is
inspected or a container started.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fnmatch
import os
import signal
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import docker
import pytest
import requests

from . import httpwatch
from .build import BuildSpec, build_image, build_once, parse_build_arg, single_platform
from .container import LOG_TAIL_LINES, RunningContainer
from .engine import (
    ENGINE_ERRORS,
    LABEL_SESSION,
    LABEL_TEST,
    Engine,
    check_reference,
    connect,
    engine_lost,
    from_engine,
    new_session_id,
    parse_gpus,
    short_reason,
)
from .errors import GpuUnavailable, ImageCheckError
from .evidence import collecting, properties
from .image import ImageUnderTest
from .items import CriteriaFile, CriterionItem, share_work, waive
from .platforms import parse_platforms

if TYPE_CHECKING:
    from .dockerfile import Dockerfile
    from .gpu import GpuHost
    from .report import Verdict

_SETTINGS = pytest.StashKey["Settings"]()
_STATE = pytest.StashKey["_State"]()
_USED = pytest.StashKey[list[RunningContainer]]()
_GPU_USED = pytest.StashKey[bool]()

# (option, ini type, help); each ini key is the option's dest (see _dest).
_OPTIONS: list[tuple[str, str, str]] = [
    ("--image", "string", "image under test: NAME[:TAG], NAME@sha256:..., or an image ID"),
    ("--build-context", "string", "build the image under test from this directory"),
    ("--dockerfile", "string", "the Dockerfile to build, or to check when testing --image"),
    ("--build-arg", "linelist", "KEY=VALUE build argument (repeatable)"),
    ("--target", "string", "the Dockerfile stage to build"),
    (
        "--platform",
        "string",
        "target platform(s), as docker buildx build --platform: linux/arm64 to build for it; "
        "a list (linux/amd64,linux/arm64) to judge the Dockerfile on each",
    ),
    ("--gpus", "string", "give containers GPUs as docker run --gpus does: all, N, device=0,1"),
    ("--keep-containers", "bool", "leave containers running after the session, for debugging"),
    ("--require-gpu", "bool", "fail, instead of skipping, when --gpus cannot be honoured"),
    ("--imagecheck-report", "string", "write the evidence report here (.md with an SVG, or .json)"),
]


#: Options that take one value, where a repeat is an error, not a silent last-one-wins.
_ONCE = ("--image",)


class _StoreOnce(argparse.Action):
    """``store``, and every value given kept under ``<dest>_given`` so a repeat is seen."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        given = getattr(namespace, f"{self.dest}_given", None) or []
        setattr(namespace, f"{self.dest}_given", [*given, values])


def _dest(option: str) -> str:
    """``--build-arg`` -> ``imagecheck_build_arg``: the option's dest, and its ini key's stem."""
    name = option.lstrip("-").replace("-", "_")
    return name if name.startswith("imagecheck_") else f"imagecheck_{name}"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``imagecheck`` option group and an ini key for each option."""
    group = parser.getgroup("imagecheck", "container image acceptance checks (pytest-imagecheck)")
    for option, kind, help_text in _OPTIONS:
        dest = _dest(option)
        if kind == "bool":
            group.addoption(option, action="store_true", default=None, dest=dest, help=help_text)
        elif option in _ONCE:
            group.addoption(option, action=_StoreOnce, default=None, dest=dest, help=help_text)
        elif kind == "linelist":
            group.addoption(option, action="append", default=None, dest=dest, help=help_text)
        else:
            group.addoption(option, default=None, dest=dest, help=help_text)
        parser.addini(dest + ("s" if kind == "linelist" else ""), help_text, type=kind)
    parser.addini(
        "imagecheck_yaml",
        "file name patterns collected as criteria files",
        type="args",
        default=["imagecheck.yaml", "imagecheck.yml"],
    )


@dataclass(frozen=True)
class Settings:
    """The options of this run, resolved from the command line, then the ini file."""

    image: str | None = None
    build: BuildSpec | None = None
    dockerfile: Path | None = None
    gpus: str | None = None
    keep_containers: bool = False
    require_gpu: bool = False
    build_args: dict[str, str] = field(default_factory=dict)
    report: Path | None = None
    #: ``--platform``, normalised: the build's platform, and the ones the Dockerfile is judged on.
    platforms: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        """Whether the run names an image to test or to build."""
        return bool(self.image or self.build)


def _setting(config: pytest.Config, option: str, kind: str) -> Any:
    dest = _dest(option)
    value = config.getoption(dest)
    given = getattr(config.option, f"{dest}_given", None) or []
    if len(set(given)) > 1:
        raise ImageCheckError(
            f"{option} was given {len(given)} times ({', '.join(given)}): a session tests "
            f"one image; run pytest once per image"
        )
    if value is not None:
        return value, Path.cwd()
    ini_value = config.getini(dest + ("s" if kind == "linelist" else ""))
    base = config.inipath.parent if config.inipath else config.rootpath
    return (ini_value or None), base


def _resolve_settings(config: pytest.Config) -> Settings:
    values = {option: _setting(config, option, kind) for option, kind, _ in _OPTIONS}

    def path(option: str) -> Path | None:
        value, base = values[option]
        return (base / value).resolve() if value else None

    image = values["--image"][0]
    if image:
        check_reference(image)
    gpus = values["--gpus"][0]
    if gpus:
        parse_gpus(gpus)
    build_args = dict(parse_build_arg(arg) for arg in values["--build-arg"][0] or [])
    platforms = parse_platforms(values["--platform"][0]) if values["--platform"][0] else ()
    context, dockerfile = path("--build-context"), path("--dockerfile")
    report = path("--imagecheck-report")
    if dockerfile is not None:
        _check_file("--dockerfile", values["--dockerfile"][0], dockerfile)
    if report is not None:
        _check_writable("--imagecheck-report", values["--imagecheck-report"][0], report)
    build = None
    if context is not None:
        build = BuildSpec(
            context=context,
            dockerfile=dockerfile,
            build_args=build_args,
            target=values["--target"][0],
            platform=single_platform(platforms),
            tag=image,
        )
        if not context.is_dir():
            build.validate()  # raises the one-line error for a context that is not a folder
        if dockerfile is None:
            _check_file("the Dockerfile", "Dockerfile in --build-context", build.dockerfile_path)
    return Settings(
        image=image,
        build=build,
        dockerfile=dockerfile,
        gpus=gpus,
        keep_containers=bool(values["--keep-containers"][0]),
        require_gpu=bool(values["--require-gpu"][0]),
        build_args=build_args,
        report=report,
        platforms=platforms,
    )


def _check_file(option: str, given: str, path: Path) -> None:
    """A one-line usage error unless ``path`` (``given`` as written) is a readable file."""
    if path.is_file():
        return
    problem = "is a directory" if path.is_dir() else "does not exist"
    raise ImageCheckError(
        f"{option} {given} {problem} ({path}): pass the path of a Dockerfile, relative to "
        "where pytest runs (as docker build -f)"
    )


def _check_writable(option: str, given: str, path: Path) -> None:
    """A one-line usage error unless a file can be written at ``path``."""
    if path.is_dir():
        raise ImageCheckError(
            f"{option} {given} is a directory: pass a file name, e.g. {given.rstrip('/')}/report.md"
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ImageCheckError(
            f"{option} {given} cannot be written: {parent} is not a writable directory"
        )


class _State:
    """Per-process state: the session id and the engine, connected on first use."""

    def __init__(self, settings: Settings, session_id: str) -> None:
        self.settings = settings
        self.session_id = session_id
        self._engine: Engine | None = None
        self.workers_used_engine = False

    @property
    def connected(self) -> bool:
        return self._engine is not None

    def engine(self) -> Engine:
        if self._engine is None:
            engine = Engine(
                connect(), self.session_id, keep_containers=self.settings.keep_containers
            )
            engine.sweep_stale()
            # Last resort when a second Ctrl-C lands in the middle of fixture teardown.
            atexit.register(self.cleanup)
            self._engine = engine
        return self._engine

    def cleanup(self) -> None:
        """Remove this process's containers; runs at session end, or at exit if that failed."""
        if self._engine is not None:
            atexit.unregister(self.cleanup)
            with contextlib.suppress(*ENGINE_ERRORS):
                self._engine.cleanup()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class _XdistController:
    """Hooks for the pytest-xdist controller: hand the session id and the ``--dist`` mode to
    workers, sweep after."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["imagecheck_session"] = self.state.session_id
        node.workerinput["imagecheck_dist"] = node.config.getoption("dist", None)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        if error is not None or output.get("imagecheck_engine_used"):
            self.state.workers_used_engine = True


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the options (a bad one is a one-line usage error) and set up the session."""
    config.addinivalue_line("markers", "gpu: the test needs GPUs (skips when none can be given)")
    config.addinivalue_line(
        "markers",
        "waive(reason): run the criterion but accept its failure on purpose; reported as "
        "waived with the reason, never as passed",
    )
    try:
        settings = _resolve_settings(config)
    except ImageCheckError as exc:
        raise pytest.UsageError(str(exc)) from None
    if _is_worker(config):
        session_id = config.workerinput.get("imagecheck_session") or new_session_id()
    else:
        session_id = new_session_id()
    state = _State(settings, session_id)
    config.stash[_SETTINGS] = settings
    config.stash[_STATE] = state
    if config.pluginmanager.hasplugin("xdist") and not _is_worker(config):
        config.pluginmanager.register(_XdistController(state), "imagecheck-xdist")
    if settings.report is not None and not _is_worker(config):
        config.pluginmanager.register(_EvidenceReport(state, settings.report), "imagecheck-report")
    httpwatch.install()
    config.add_cleanup(httpwatch.uninstall)
    # pytest turns SIGINT into KeyboardInterrupt and still tears fixtures down; do the same
    # for SIGTERM (CI cancelling a job) so containers are removed then too.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        config.add_cleanup(lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CriteriaFile | None:
    """Collect ``imagecheck.yaml`` (and the ``imagecheck_yaml`` patterns) as criteria."""
    patterns = parent.config.getini("imagecheck_yaml")
    if any(fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns):
        return CriteriaFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Turn ``@pytest.mark.waive(reason)`` into a visible, reasoned waiver."""
    for item in items:
        marker = item.get_closest_marker("waive")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            if not isinstance(reason, str) or not reason.strip():
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.waive needs a reason, "
                    'e.g. @pytest.mark.waive("base pinned upstream, tracked in OPS-12")'
                )
            waive(item, reason)


#: xdist modes that send all criteria of a file to one worker (or all of them to each).
_WHOLE_FILES = ("loadfile", "loadscope", "each")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Let runs of consecutive command (or file) criteria share one exec (or read per path).

    Not in an xdist worker that may get only part of a run (``--dist load``, ``worksteal``):
    the work of the members sent elsewhere would be done in its container too.
    """
    config = session.config
    if not _is_worker(config) or config.workerinput.get("imagecheck_dist") in _WHOLE_FILES:
        share_work(session.items)


class _EvidenceReport:
    """Collects every test's verdict and evidence, and writes ``--imagecheck-report``.

    Registered where reports arrive: the only process, or the xdist controller.
    """

    def __init__(self, state: _State, path: Path) -> None:
        self.state = state
        self.path = path
        self.started = datetime.now(timezone.utc)
        self.verdicts: dict[str, Verdict] = {}
        self.written: list[Path] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from .verdicts import verdict_of

        verdict = verdict_of(report, self.verdicts.get(report.nodeid))
        if verdict is not None:
            self.verdicts[report.nodeid] = verdict

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from .report import LayerRow, ReportData, write_report
        from .verdicts import identity_of

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
                LayerRow(layer.index, layer.size, layer.instruction) for layer in image.layers
            )
            if image
            else (),
            size_budget=budget,
            started=self.started.isoformat(timespec="seconds"),
            finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=" ".join(["pytest", *session.config.invocation_params.args]),
        )
        self.written = write_report(data, self.path)

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
        for path in self.written:
            terminalreporter.write_sep("-", f"imagecheck evidence report: {path}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After fixtures are torn down, remove anything of ours still left on the engine."""
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    if state.connected:
        state.cleanup()
        if _is_worker(session.config):
            session.config.workeroutput["imagecheck_engine_used"] = True
    elif state.workers_used_engine and state.settings.configured:
        with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
            state.engine().cleanup(whole_session=True)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """With ``--keep-containers``, say which containers were left and how to remove them."""
    state = config.stash.get(_STATE, None)
    if state is None or not state.settings.keep_containers or not state.connected:
        return
    terminalreporter.write_sep("-", "pytest-imagecheck kept its containers")
    label = f"label={LABEL_SESSION}={state.session_id}"
    terminalreporter.write_line(f"list them:   docker ps -a --filter {label}")
    terminalreporter.write_line(f"remove them: docker rm -f $(docker ps -aq --filter {label})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Collect what checks measure, and what the test body read and ran, during the test;
    both become junit properties (observations masked as all evidence is)."""
    with collecting() as collected:
        yield
    if collected.observations:
        from .checks.secrets import mask_secrets

        item.user_properties.extend(properties(collected, mask_secrets))
    else:
        item.user_properties.extend(properties(collected, lambda text, env: text))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Judge GPU outcomes, and attach the log tail of every container a failing test used."""
    outcome = yield
    report = outcome.get_result()
    _shorten(item, call, report)
    _judge_gpu(item, call, report)
    if not report.failed:
        return
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
        state = item.config.stash[_STATE]
        client = state.engine().client if state.connected else None
        if from_engine(excinfo.value, client):
            if isinstance(excinfo.value, requests.ConnectionError):
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
    used = list(item.stash.get(_USED, []))
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
    for container in _used_containers(item):
        with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
            told = container.connection_failure((parts.hostname, parts.port), what)
            if told is not None:
                return told
    return None


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
    settings = item.config.stash[_SETTINGS]
    marked = item.get_closest_marker("gpu") is not None
    if settings.gpus and "container" in getattr(item, "funcargs", {}):
        item.stash[_GPU_USED] = True
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, GpuUnavailable):
        message = str(excinfo.value)
    elif (
        marked and report.when == "call" and report.passed and not item.stash.get(_GPU_USED, False)
    ):
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


@contextlib.contextmanager
def _errors_as_failures() -> Iterator[None]:
    """Turn our one-line errors into pytest failures without a traceback."""
    try:
        yield
    except GpuUnavailable:
        raise  # judged per test in pytest_runtest_makereport: skip only where marked gpu
    except ImageCheckError as exc:
        # from None: else pytest prints the message twice ("During handling of the above...")
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """Print build progress as it happens, past pytest's output capture.

    xdist workers have no terminal of their own; their stderr reaches the controller's.
    """
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    worker = config.workerinput.get("workerid") if _is_worker(config) else None

    def write(line: str) -> None:
        suspended = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with suspended:
            if worker is not None:
                print(f"[imagecheck {worker}] {line}", file=sys.stderr, flush=True)
            elif reporter is not None:
                reporter.write_line(f"[imagecheck] {line}")

    return write


@pytest.fixture(scope="session")
def imagecheck_engine(pytestconfig: pytest.Config) -> Engine:
    """The Docker engine of this session: labels, runs and removes the plugin's containers.

    Connected on first use from ``DOCKER_HOST`` or the local socket; an unreachable engine
    is one error that says how to start one.
    """
    with _errors_as_failures():
        return pytestconfig.stash[_STATE].engine()


@pytest.fixture(scope="session")
def docker_client(imagecheck_engine: Engine) -> docker.DockerClient:
    """A docker-py client for the engine under test (``DOCKER_HOST``, else the local socket)."""
    return imagecheck_engine.client


@pytest.fixture(scope="session")
def image(
    pytestconfig: pytest.Config,
    imagecheck_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
    record_testsuite_property: Callable[[str, object], None],
) -> ImageUnderTest:
    """The image under test, as facts: ``image.user``, ``image.healthcheck``, ``image.size``...

    Named by ``--image`` (or ini ``imagecheck_image``), or built once per session from
    ``--build-context`` (tagged with ``--image`` when both are given). Under pytest-xdist the
    workers share one build.
    """
    settings = pytestconfig.stash[_SETTINGS]
    with _errors_as_failures():
        found = _image_under_test(pytestconfig, settings, imagecheck_engine, tmp_path_factory)
    for name, value in (
        ("ref", found.ref),
        ("id", found.id),
        ("digest", found.digest),
        ("size_bytes", found.size),
        ("created", found.created),
        ("architecture", found.architecture),
    ):
        record_testsuite_property(f"imagecheck.image.{name}", value)
    return found


def _image_under_test(
    config: pytest.Config,
    settings: Settings,
    engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> ImageUnderTest:
    if settings.build is not None:
        spec = settings.build
        basetemp = tmp_path_factory.getbasetemp()
        shared = basetemp.parent if _is_worker(config) else basetemp
        image_id = build_once(
            spec,
            shared,
            lambda: build_image(
                spec,
                engine.client,
                progress=_progress(config),
                verbose=config.get_verbosity() > 1,
            ),
        )
        built = engine.image(image_id)
        return ImageUnderTest(
            attrs=built.attrs, history=built.history, ref=spec.image_tag, engine=engine
        )
    if settings.image:
        return engine.image(settings.image)
    raise ImageCheckError(
        "no image under test: pass --image REF to test an image, or --build-context DIR "
        "to build one (or set imagecheck_image in the ini file)"
    )


@pytest.fixture(scope="session")
def container(
    pytestconfig: pytest.Config, image: ImageUnderTest, imagecheck_engine: Engine
) -> Iterator[RunningContainer]:
    """One running container of ``image``, shared by the whole session.

    Every exposed port is published on 127.0.0.1 at a free port (``container.url(5000,
    "/health")``), ``--gpus`` is applied, and the container is removed at the end.
    """
    settings = pytestconfig.stash[_SETTINGS]
    with _errors_as_failures():
        running = imagecheck_engine.run(image, gpus=settings.gpus)
    yield running
    imagecheck_engine.remove(running)


@pytest.fixture
def run_container(
    request: pytest.FixtureRequest, image: ImageUnderTest, imagecheck_engine: Engine
) -> Iterator[Callable[..., RunningContainer]]:
    """A factory for containers with their own run options, removed when the test ends.

    ``run_container(image=None, *, command=None, entrypoint=None, env=None, user=None, ports=None,
    read_only=False, tmpfs=None, cap_drop=None, security_opt=None, gpus=None)``; ``image``
    defaults to the image under test, and can be another ``ImageUnderTest`` or a reference.
    """
    started: list[RunningContainer] = []
    request.node.stash[_USED] = started

    def run(image_: ImageUnderTest | str | None = None, /, **options: Any) -> RunningContainer:
        options.setdefault("gpus", None)
        with _errors_as_failures():
            target = image_ or image
            if isinstance(target, str):
                target = imagecheck_engine.image(target)
            labels = {LABEL_TEST: request.node.nodeid[:200]}
            running = imagecheck_engine.run(target, labels=labels, **options)
        started.append(running)
        if options["gpus"]:
            request.node.stash[_GPU_USED] = True
        return running

    yield run
    for running in started:
        imagecheck_engine.remove(running)


@pytest.fixture(scope="session")
def gpu_host() -> GpuHost:
    """The GPU host's driver and devices, read through NVML (``nvidia-ml-py``).

    Tests that use it skip, with the reason, where there is no NVIDIA driver.
    """
    from .gpu import NvmlUnavailable, read_gpu_host

    try:
        return read_gpu_host()
    except NvmlUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def dockerfile(pytestconfig: pytest.Config) -> Dockerfile:
    """The parsed Dockerfile: stages, instructions with line numbers, ARGs with build args.

    The one being built, or ``--dockerfile`` when testing a named image; tests that use it
    skip when neither is known.
    """
    settings = pytestconfig.stash[_SETTINGS]
    if settings.build is None and settings.dockerfile is None:
        pytest.skip("no Dockerfile known: pass --build-context DIR or --dockerfile PATH")
    # The engine's platform gives BUILDPLATFORM, and TARGETPLATFORM without --platform. An
    # unreachable engine leaves it unknown: references that need it then fail as unresolved.
    native = None
    with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
        native = pytestconfig.stash[_STATE].engine().platform
    with _errors_as_failures():
        if settings.build is not None:
            return settings.build.validate(engine_platform=native)
        from .dockerfile import Dockerfile

        return Dockerfile.parse(
            settings.dockerfile,
            build_args=settings.build_args,
            platforms=settings.platforms,
            build_platform=native,
        )
