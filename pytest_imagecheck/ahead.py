"""Containers started ahead of the tests that use them.

A service that takes seconds to be ready (a model to load) costs those seconds for each
container a suite starts. Started in the background as soon as the tests that need them
are known, the containers of one image come up side by side, while other tests run.

A container started ahead is the one the test would have started: the same image, options
and labels. Only its age differs, and :meth:`RunningContainer.wait_ends` takes that back:
a wait on it ends earlier by the time it was up before its test took it, so a service
never gets more time to become ready than a start on demand would give it (and when that
head start is longer than the wait, a ready answer is not taken as proof: not measured). A
start that fails fails the test that takes it, with the same error.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from .container import RunningContainer, health_of
from .engine import Engine
from .errors import ContainerFailed
from .image import ImageUnderTest

#: Containers started side by side at most: each start is mostly the engine's work.
PARALLEL_STARTS = 4
#: Containers of tests to come (not the session's) started and not yet taken, at most: the
#: next tests' are up in time, and a long suite does not run all its services at once.
WINDOW = 2
#: How long closing waits for starts still in flight, so none is left behind (seconds).
CLOSE_WAIT_SECONDS = 60.0


def options_key(options: Mapping[str, Any]) -> str:
    """A canonical text of run options, to match a container started ahead to a request.

    >>> options_key({"tmpfs": {"/tmp": ""}, "read_only": True})
    '{"read_only": true, "tmpfs": {"/tmp": ""}}'
    """
    return json.dumps(options, sort_keys=True, default=repr)


class Ahead:
    """Containers being started, or started, for tests still to come.

    ``start(key, image, options)`` starts one in a background thread (``image`` may be a
    function that finds the image first); ``queued=True`` starts it once fewer than
    :data:`WINDOW` queued ones wait for their tests, in the order queued. ``take(key,
    options, image)`` gives it to the test that needs it: the running container, or the
    start's error raised. :meth:`close` waits for starts in flight and removes what no test
    took. Keys are the caller's: one container per key.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._pending: dict[Hashable, tuple[str, Future[RunningContainer]]] = {}
        self._queue: deque[tuple[Hashable, Any, dict[str, Any]]] = deque()
        self._from_queue: set[Hashable] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def start(
        self,
        key: Hashable,
        image: ImageUnderTest | Callable[[], ImageUnderTest],
        options: Mapping[str, Any],
        *,
        queued: bool = False,
    ) -> None:
        """Start a container of ``image`` with ``options`` (:meth:`Engine.run`'s keyword
        arguments) in the background, unless one was started for ``key`` already."""
        with self._lock:
            if self._closed or key in self._pending:
                return
            if queued:
                self._queue.append((key, image, dict(options)))
                self._fill()
            else:
                self._submit(key, image, dict(options))

    def _submit(self, key: Hashable, image: Any, options: dict[str, Any]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARALLEL_STARTS, "imagecheck-ahead")
        future = self._pool.submit(self._run, image, options)
        self._pending[key] = (options_key(options), future)

    def _fill(self) -> None:
        """Start queued containers while fewer than WINDOW wait (the lock is held)."""
        while self._queue and len(self._from_queue) < WINDOW and not self._closed:
            key, image, options = self._queue.popleft()
            if key not in self._pending:
                self._submit(key, image, options)
                self._from_queue.add(key)

    def _release(self, key: Hashable) -> tuple[str, Future[RunningContainer]] | None:
        """Stop tracking ``key``: its container, if started, is the caller's; the next
        queued one may start."""
        with self._lock:
            self._queue = deque(entry for entry in self._queue if entry[0] != key)
            pending = self._pending.pop(key, None)
            self._from_queue.discard(key)
            self._fill()
        return pending

    def _run(
        self, image: ImageUnderTest | Callable[[], ImageUnderTest], options: dict[str, Any]
    ) -> RunningContainer:
        found = image if isinstance(image, ImageUnderTest) else image()
        running = self._engine.run(found, **options)
        running.started_ahead()
        return running

    def take(
        self, key: Hashable, options: Mapping[str, Any], image: ImageUnderTest
    ) -> RunningContainer | None:
        """The container started for ``key``, if it was started with ``options`` for
        ``image``; None otherwise (start one on demand). Waits for a start in flight; raises
        the start's error (an ``ImageCheckError``) as a start on demand would.

        A container started ahead that is not what was asked (other options, or an image
        retagged since) is removed, and so is one that stopped or turned unhealthy while it
        waited: what a start on demand would give the test is not that, so the test gets a
        start on demand.
        """
        pending = self._release(key)
        if pending is None:
            return None
        wanted, future = pending
        running = future.result()
        if wanted == options_key(options) and running.image.id == image.id and _fresh(running):
            running.handed_over()
            return running
        self._engine.remove(running)
        return None

    def discard(self, key: Hashable) -> None:
        """No test needs the container started for ``key``: remove it once started."""
        pending = self._release(key)
        if pending is not None:
            pending[1].add_done_callback(self._remove_started)

    def _remove_started(self, future: Future[RunningContainer]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._engine.remove_later(future.result())

    def close(self) -> None:
        """Stop starting containers; wait for starts in flight and remove every container
        no test took. Errors of those starts are dropped: no test needed them."""
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
            self._queue.clear()
            pool, self._pool = self._pool, None
        if pool is None:
            return
        for _, future in pending:
            future.cancel()
        wait_for([future for _, future in pending], timeout=CLOSE_WAIT_SECONDS)
        for _, future in pending:
            if future.done():
                self._remove_started(future)
        # Waits for discarded starts still in flight, so their removal is asked for too.
        pool.shutdown(wait=True, cancel_futures=True)


def _fresh(running: RunningContainer) -> bool:
    """Whether a container started ahead is still as a start on demand could find it:
    running, and not ``unhealthy``."""
    try:
        state = running.attrs["State"]
    except ContainerFailed:  # removed meanwhile
        return False
    return bool(state.get("Running")) and health_of(state) != "unhealthy"
