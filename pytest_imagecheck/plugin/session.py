"""The session: its id, the engine connected on first use, and cleanup on every way out.

Containers are removed on pass, fail, error, Ctrl-C and SIGTERM (signals are turned into
``KeyboardInterrupt``, so fixtures tear down), at exit if teardown was cut short, and under
pytest-xdist, where the controller removes what a killed worker left.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from .. import httpwatch
from ..engine import ENGINE_ERRORS, LABEL_SESSION, Engine, connect, engine_lost, new_session_id
from ..enginehost import EngineTarget, bound_environ, restore_environ
from ..errors import EngineUnavailable, ImageCheckError
from .options import SETTINGS, Settings

STATE = pytest.StashKey["State"]()


class State:
    """Per-process state: the session id and the engine, connected on first use."""

    def __init__(self, settings: Settings, session_id: str, worker_id: str | None = None) -> None:
        self.settings = settings
        self.session_id = session_id
        #: This process's engine and its publishing, by index in the session's engines: a
        #: worker's number picks one when there are several; None for an xdist controller
        #: that spreads the session over several (it connects to each only to clean up).
        self.engine_index: int | None = None
        engines = len(settings.engines)
        if engines == 1:
            self.engine_index = 0
        elif engines > 1 and worker_id is not None:
            self.engine_index = int(worker_id.removeprefix("gw") or 0) % engines
        self._engine: Engine | None = None
        self.workers_used_engine = False
        #: Why the end-of-session cleanup could not remove this session's containers, if so.
        self.cleanup_failed = ""
        #: Called before the cleanup: work that may still make containers stops here.
        self.closing: list[Callable[[], None]] = []
        #: The pytest-xdist controller's hooks, in the controller.
        self.controller: _XdistController | None = None

    @property
    def connected(self) -> bool:
        """Whether this process has connected to the engine."""
        return self._engine is not None

    @property
    def target(self) -> EngineTarget | None:
        """This process's engine (None: a controller spreading over several)."""
        return None if self.engine_index is None else self.settings.engines[self.engine_index]

    def _connected(self, index: int) -> Engine:
        settings = self.settings
        target, publishing = settings.engines[index], settings.publishings[index]
        return Engine(
            connect(target),
            self.session_id,
            keep_containers=settings.keep_containers,
            target=target,
            publishing=publishing,
        )

    def engine(self) -> Engine:
        """The engine, connected (and swept of crashed sessions' leftovers) on first use."""
        if self.settings.engine_error:
            raise ImageCheckError(self.settings.engine_error)
        if self._engine is None:
            if self.engine_index is None:
                raise EngineUnavailable(
                    "this process spreads the session over several engines and has none of "
                    "its own: the tests run on pytest-xdist workers"
                )
            engine = self._connected(self.engine_index)
            engine.sweep_stale()
            # Last resort when a second Ctrl-C lands in the middle of fixture teardown.
            atexit.register(self.cleanup)
            self._engine = engine
        return self._engine

    def cleanup(self) -> None:
        """Remove this process's containers; runs at session end, or at exit if that failed."""
        if self._engine is not None:
            atexit.unregister(self.cleanup)
            try:
                for close in self.closing:
                    close()
                # The engine finishes the removals after this process ends: nobody waits.
                self._engine.cleanup(wait=False)
            except ENGINE_ERRORS as exc:
                self.cleanup_failed = str(engine_lost(exc))


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker."""
    return hasattr(config, "workerinput")


def worker_input(config: pytest.Config) -> dict[str, Any]:
    """What the xdist controller handed this worker (empty outside a worker)."""
    return dict(getattr(config, "workerinput", {}) or {})


class _XdistController:
    """Hooks for the pytest-xdist controller: hand the session id and the ``--dist`` mode to
    workers, sweep after."""

    def __init__(self, state: State) -> None:
        self.state = state

    def cleanup_every_engine(self) -> None:
        """Remove what every process of the session left, on each of the session's engines
        (a killed worker's containers)."""
        for index, _ in enumerate(self.state.settings.engines):
            with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
                self.state._connected(index).cleanup(whole_session=True)

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["imagecheck_session"] = self.state.session_id
        dist = node.config.getoption("dist", None)
        if dist == "load" and self.state.settings.family is not None:
            dist = "member"  # plugin/family.py sends each member's tests to one worker
        node.workerinput["imagecheck_dist"] = dist

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        if error is not None or output.get("imagecheck_engine_used"):
            self.state.workers_used_engine = True


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _restore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_configure(config: pytest.Config) -> None:
    """Set up the session: its id (shared by xdist workers), xdist hooks, SIGTERM, and the
    watch on the HTTP answers tests get."""
    session_id = worker_input(config).get("imagecheck_session") or new_session_id()
    state = State(config.stash[SETTINGS], session_id, worker_input(config).get("workerid"))
    config.stash[STATE] = state
    target = state.target
    if target is not None:
        # The docker CLI (builds), testinfra and the tests' own docker.from_env() follow.
        saved = bound_environ(target)
        config.add_cleanup(lambda: restore_environ(saved))
    if config.pluginmanager.hasplugin("xdist") and not is_worker(config):
        state.controller = _XdistController(state)
        config.pluginmanager.register(state.controller, "imagecheck-xdist")
    httpwatch.install()
    config.add_cleanup(httpwatch.uninstall)
    # pytest turns SIGINT into KeyboardInterrupt and still tears fixtures down; do the same
    # for SIGTERM (CI cancelling a job) so containers are removed then too.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        config.add_cleanup(_restore_sigterm)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """After fixtures are torn down, remove anything of ours still left on the engine."""
    state = session.config.stash.get(STATE, None)
    if state is None:
        return
    if state.connected:
        state.cleanup()
        if is_worker(session.config):
            session.config.workeroutput["imagecheck_engine_used"] = True  # type: ignore[attr-defined]
    elif state.workers_used_engine and state.settings.configured and state.controller:
        state.controller.cleanup_every_engine()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say when the engine could not remove this session's containers; with
    ``--keep-containers``, which containers were left and how to remove them."""
    state = config.stash.get(STATE, None)
    if state is not None and state.cleanup_failed:
        terminalreporter.write_line(f"ERROR: {state.cleanup_failed}", red=True)
    if state is None or not state.settings.keep_containers or not state.connected:
        return
    terminalreporter.write_sep("-", "pytest-imagecheck kept its containers")
    label = f"label={LABEL_SESSION}={state.session_id}"
    target = state.target
    docker = "docker" if target is None or target.local else f"docker -H {target.url}"
    terminalreporter.write_line(f"list them:   {docker} ps -a --filter {label}")
    terminalreporter.write_line(f"remove them: {docker} rm -f $({docker} ps -aq --filter {label})")
