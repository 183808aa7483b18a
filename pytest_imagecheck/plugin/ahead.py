"""Starting containers ahead: which containers the selected tests will need, started in the
background as soon as their image is known (:mod:`pytest_imagecheck.ahead`).

Known before a test runs: the session ``container`` of each image (a test uses it), the
container of each ``imagecheck.yaml`` criterion that starts its own (``hardened``), that of
each :func:`container_fixture` a test uses, and, in a family session, the members' layers
(a criterion or the evidence report reads them). A ``run_container(...)`` call in a test is
not known before it runs, and starts on demand. With one image named by ``--image``, they
start when collection ends. ``--no-start-ahead`` starts every container on demand, one
service up at a time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..ahead import Ahead, options_key
from ..container import RunningContainer
from ..engine import ENGINE_ERRORS, LABEL_TEST, Engine, check_run_options
from ..errors import ImageCheckError
from ..image import ImageUnderTest
from ..items import CriterionItem
from .family import member_of
from .options import SETTINGS
from .session import STATE, is_worker, worker_input

#: The containers to start ahead, by family member (None: the one image under test).
_PLAN = pytest.StashKey[dict[str | None, list["_Start"]]]()
#: Whether the selected tests read image layers: in a family session, they are read ahead.
_LAYERS = pytest.StashKey[bool]()
#: On a test: the keys of the containers started ahead for it alone.
_ITEM_KEYS = pytest.StashKey[list[Hashable]]()
#: This process's containers started ahead.
_AHEAD = pytest.StashKey[Ahead]()


@dataclass(frozen=True)
class _Start:
    key: Hashable
    options: dict[str, Any] = field(hash=False)


#: The run options of each fixture :func:`container_fixture` made, by its function.
_FIXTURE_OPTIONS: dict[Callable[..., Any], dict[str, Any]] = {}


def container_fixture(**options: Any) -> Any:
    """A fixture: a container of the image under test started with ``options`` (those of
    ``run_container``: ``read_only=True``, ``env={...}``, ...), one per test that uses it,
    removed when the test ends.

    Its options are known before the test runs, so it is started ahead of it, while earlier
    tests run (a ``run_container(...)`` call in a test starts when the call runs)::

        hardened = container_fixture(read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"])

        def test_read_only_root(hardened):
            assert_endpoint_ready(hardened, "/health/ready")

    Raises TypeError, when the test module is imported, for an option ``run_container``
    does not take.
    """
    accepted = set(inspect.signature(Engine.run).parameters) - {"self", "image", "labels"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"container_fixture: unknown option {unknown[0]!r}: it takes "
            f"{', '.join(sorted(accepted))} (always of the image under test)"
        )
    try:
        check_run_options(options)
    except ImageCheckError as exc:
        raise TypeError(f"container_fixture: {exc}") from None

    def fixture(run_container: Callable[..., RunningContainer]) -> RunningContainer:
        return run_container(**options)

    _FIXTURE_OPTIONS[fixture] = dict(options)
    return pytest.fixture(fixture)


def session_container_key(member: str | None) -> Hashable:
    """The key of a member's (or the one image's) session container."""
    return ("container", member)


def run_container_options(nodeid: str, options: dict[str, Any]) -> dict[str, Any]:
    """What ``run_container(**options)`` asks the engine for, in the test ``nodeid``."""
    check_run_options(options)
    labels = options.get("labels") or {}
    return {"gpus": None, **options, "labels": {**labels, LABEL_TEST: nodeid[:200]}}


def run_container_key(nodeid: str, options: dict[str, Any]) -> Hashable:
    """The key of the container ``run_container`` starts with ``options`` (those
    :func:`run_container_options` gives) in the test ``nodeid``."""
    return ("run_container", nodeid, options_key(options))


def session_container_options(config: pytest.Config) -> dict[str, Any]:
    """What the session ``container`` fixture asks the engine for."""
    return {"gpus": config.stash[SETTINGS].gpus}


def _starts_ahead(config: pytest.Config) -> bool:
    """Whether this process starts containers ahead: not with ``--no-start-ahead`` or
    ``--keep-containers``, nor where no test runs (``--collect-only``, ``--fixtures``, the
    xdist controller), nor in an xdist worker that gets some of an image's tests (``--dist
    load`` with one image): it would start containers for tests other workers run."""
    option = config.option
    return not (
        not config.stash[SETTINGS].start_ahead
        or config.stash[SETTINGS].keep_containers
        or option.collectonly
        or getattr(option, "setupplan", False)
        or getattr(option, "showfixtures", False)
        or getattr(option, "show_fixtures_per_test", False)
        or (is_worker(config) and worker_input(config).get("imagecheck_dist") != "member")
        or config.pluginmanager.getplugin("dsession") is not None  # the xdist controller
    )


def _engine(config: pytest.Config) -> Engine | None:
    """The engine, or None when it cannot be reached (the tests that need it say why)."""
    try:
        return config.stash[STATE].engine()
    except (ImageCheckError, *ENGINE_ERRORS):
        return None


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Plan the containers the selected tests will need; with one image named by
    ``--image``, start them now, while the tests before them run."""
    config = session.config
    settings = config.stash[SETTINGS]
    if not _starts_ahead(config):
        return
    plan: dict[str | None, list[_Start]] = {}
    # The evidence report reads each member's layers, for the family table.
    config.stash[_LAYERS] = settings.report is not None
    for item in session.items:
        if item.get_closest_marker("skip") is not None:
            continue
        if isinstance(item, CriterionItem) and item.criterion.reads_layers:
            config.stash[_LAYERS] = True
        member = member_of(item)
        starts = plan.setdefault(member, [])
        if "container" in getattr(item, "fixturenames", ()):
            start = _Start(session_container_key(member), session_container_options(config))
            if start not in starts:
                starts.append(start)
        static = [
            _FIXTURE_OPTIONS[defs[-1].func]
            for name, defs in _fixture_defs(item).items()
            if defs and defs[-1].func in _FIXTURE_OPTIONS
        ]
        if isinstance(item, CriterionItem) and "run_container" in item.criterion.needs:
            static.append(item.criterion.run_options)
        for run_options in static:
            options = run_container_options(item.nodeid, run_options)
            starts.append(_Start(run_container_key(item.nodeid, options), options))
            item.stash.setdefault(_ITEM_KEYS, []).append(starts[-1].key)
    config.stash[_PLAN] = {member: starts for member, starts in plan.items() if starts}
    if settings.image and settings.build is None and None in config.stash[_PLAN]:
        engine = _engine(config)
        if engine is not None:
            start_ahead(config, None, lambda: engine.image(settings.image))  # type: ignore[arg-type]


def _ahead(config: pytest.Config, engine: Engine) -> Ahead:
    """This process's :class:`Ahead`, made on first use; closed before the cleanup."""
    ahead = config.stash.get(_AHEAD, None)
    if ahead is None:
        ahead = config.stash[_AHEAD] = Ahead(engine)
        config.stash[STATE].closing.append(ahead.close)
    return ahead


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """A test that ended without taking a container started for it (skipped, or failed in
    another fixture) leaves it to be removed, so the next tests' containers can start."""
    ahead = item.config.stash.get(_AHEAD, None)
    if ahead is not None:
        for key in item.stash.get(_ITEM_KEYS, []):
            ahead.discard(key)


def _fixture_defs(item: pytest.Item) -> dict[str, Any]:
    """The fixture definitions ``item`` uses, by name (pytest's, as plugins read them)."""
    info = getattr(item, "_fixtureinfo", None)
    return dict(getattr(info, "name2fixturedefs", {}) or {})


def start_ahead(
    config: pytest.Config,
    member: str | None,
    image: ImageUnderTest | Callable[[], ImageUnderTest],
) -> None:
    """Start, in the background, the containers planned for ``member``'s tests (``image``:
    the :class:`ImageUnderTest`, or a function that finds it). Once per member."""
    starts = config.stash.get(_PLAN, {}).pop(member, [])
    engine = _engine(config) if starts else None
    if engine is None:
        return
    ahead = _ahead(config, engine)
    session_key = session_container_key(member)
    for start in starts:
        # The session container now; the tests' own in test order, a few at a time.
        ahead.start(start.key, image, start.options, queued=start.key != session_key)


def read_layers_ahead(config: pytest.Config) -> bool:
    """Whether to read the family's layers ahead: the selected tests read them."""
    return config.stash.get(_LAYERS, False)


def take_ahead(
    config: pytest.Config, key: Hashable, options: dict[str, Any], image: ImageUnderTest
) -> RunningContainer | None:
    """The container started ahead for ``key`` with ``options`` for ``image``, or None;
    raises the start's error as a start on demand would."""
    ahead = config.stash.get(_AHEAD, None)
    return ahead.take(key, options, image) if ahead is not None else None
