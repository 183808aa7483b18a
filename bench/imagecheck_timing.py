"""A pytest plugin for the benchmark's breakdown run: where a suite's time goes.

Loaded with ``-p imagecheck_timing`` (``PYTHONPATH=bench``). It wraps the plugin's engine
calls from outside (nothing in pytest_imagecheck changes) and writes a JSON document to
``$BENCH_TIMING_OUT``: the moments the run reached (pytest's core imported, plugins loaded,
collected, tests done) and the seconds spent in each kind of work. ``$BENCH_T0`` is the
parent's ``time.time()`` just before it spawned pytest.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import defaultdict
from typing import Any

import pytest

IMPORTED = time.time()
_moments: dict[str, float] = {"imported": IMPORTED}
_spent: dict[str, float] = defaultdict(float)
_counts: dict[str, int] = defaultdict(int)
_fixture_work = [0.0]  # seconds spent so far in wrapped engine work (not exec)

#: imagecheck.yaml check names, grouped as the benchmark reports them.
GROUPS = {
    "env": "metadata",
    "labels": "metadata",
    "exposed_ports": "metadata",
    "config": "metadata",
    "healthcheck": "metadata",
    "non_root": "metadata",
    "file": "files",
    "command": "commands",
    "size": "size",
    "endpoint": "endpoints",
    "no_secrets": "layers",
}


def _wrap(owner: Any, name: str, label: str, *, fixture_work: bool = True) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            took = time.perf_counter() - started
            _spent[label] += took
            _counts[label] += 1
            if fixture_work:
                _fixture_work[0] += took

    setattr(owner, name, timed)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _moments["configured"] = time.time()
    from docker.models.containers import Container

    from pytest_imagecheck import engine
    from pytest_imagecheck.plugin import session

    _wrap(session.State, "engine", "engine connect + sweep of stale containers")
    _wrap(engine.Engine, "image", "image inspect + history")
    _wrap(engine.Engine, "run", "container create + start")
    _wrap(engine.Engine, "remove", "container remove")
    _wrap(engine.Engine, "cleanup", "session cleanup (labelled leftovers)")
    # The engine calls underneath the checks: docker-py's own methods.
    _wrap(Container, "exec_run", "of which: engine execs", fixture_work=False)
    _wrap(Container, "get_archive", "of which: engine archive reads", fixture_work=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    _moments["collected"] = time.time()


OVERHEAD = "pytest per-test overhead (setup, teardown, reports)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    started, work = time.perf_counter(), _fixture_work[0]
    _moments.setdefault("first_test", time.time())
    yield
    # Less the engine work done in it (fixtures set up or torn down), reported on its own.
    _spent[OVERHEAD] += time.perf_counter() - started - (_fixture_work[0] - work)
    _moments["last_test"] = time.time()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    started, work = time.perf_counter(), _fixture_work[0]
    yield
    took = time.perf_counter() - started
    criterion = getattr(item, "criterion", None)
    group = GROUPS.get(criterion.check, criterion.check) if criterion else "python tests"
    # The check's own time: the call less the fixtures it set up on first use (connect,
    # inspect, container start), which are reported on their own lines.
    fixtures = _fixture_work[0] - work
    _spent[f"checks: {group}"] += took - fixtures
    _counts[f"checks: {group}"] += 1
    _spent[OVERHEAD] -= took - fixtures


def pytest_sessionfinish(session: pytest.Session) -> None:
    _moments["tests_done"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    _moments["unconfigured"] = time.time()
    path = os.environ.get("BENCH_TIMING_OUT")
    if not path:
        return
    spawned = float(os.environ.get("BENCH_T0", IMPORTED))
    document = {
        "spawned": spawned,
        "moments": {name: moment - spawned for name, moment in _moments.items()},
        "spent": dict(_spent),
        "counts": dict(_counts),
    }
    with open(path, "w") as handle:
        json.dump(document, handle, indent=2)
