"""Families: tests parametrized over the images of the session, the ``images`` marker, and
under pytest-xdist, each member's tests kept on one worker.

With one image under test nothing here changes a test. With a family (``--image`` given
several times, or ``images:`` in the family file), every test that uses ``image``,
``container``, ``run_container`` or ``dockerfile`` (or a fixture that does) runs once per
member, with the member id as its parameter id: ``test_non_root[asr]``.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..family import Family, FamilyRun
from ..items import MEMBER_FIXTURE
from ..units import format_size
from .options import SETTINGS
from .session import STATE, is_worker

#: The members whose tests this process collected (after ``-k`` and ``-m``), in family order.
WANTED = pytest.StashKey[list[str]]()
#: This process's family builds and images, made on first use.
RUN = pytest.StashKey[FamilyRun]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``images`` marker; under xdist, keep each member's tests on one worker."""
    config.addinivalue_line(
        "markers",
        "images(*ids): run the test only for these members of the image family "
        '(e.g. @pytest.mark.images("cpu", "cuda"))',
    )
    config.addinivalue_line(
        "markers",
        "member(id): set by pytest-imagecheck on each test of a family member; select with "
        "-m \"member(id='asr')\"",
    )
    family = config.stash[SETTINGS].family
    if family is not None and config.pluginmanager.hasplugin("xdist") and not is_worker(config):
        config.pluginmanager.register(_MemberScheduling(family), "imagecheck-family-xdist")


def family_of(config: pytest.Config) -> Family | None:
    """The session's family, or None with one image under test."""
    return config.stash[SETTINGS].family


def selected_members(family: Family, marker: pytest.Mark | None, where: str) -> list[str]:
    """The member ids a test runs for: all, or those its ``images`` marker names."""
    if marker is None:
        return family.ids
    names = list(marker.args)
    if marker.kwargs or not all(isinstance(name, str) for name in names):
        pytest.fail(
            f"{where}: @pytest.mark.images takes member ids as separate arguments, e.g. "
            f"@pytest.mark.images({', '.join(repr(m) for m in family.ids[:2])})",
            pytrace=False,
        )
    unknown = [name for name in names if name not in family.ids]
    if unknown or not names:
        pytest.fail(
            f"{where}: @pytest.mark.images names "
            + (f"unknown member {unknown[0]!r}" if unknown else "no member")
            + f": the family's members are {', '.join(family.ids)}",
            pytrace=False,
        )
    return [member for member in family.ids if member in names]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that uses the image under test over the family's members
    (first, so the member id leads the test id). A test marked ``images`` that would not run
    per member is a collection error: it would judge an image the marker does not name."""
    family = family_of(metafunc.config)
    marker = metafunc.definition.get_closest_marker("images")
    where = metafunc.definition.nodeid
    follows = MEMBER_FIXTURE in metafunc.fixturenames
    if marker is not None and (family is None or not follows):
        why = (
            "this session tests one image: declare the family under images: (or give --image "
            "several times), or remove the marker"
            if family is None
            else "the test uses no fixture that follows the member (image, container, "
            "run_container, dockerfile, imagecheck_member): use one, or remove the marker"
        )
        pytest.fail(f"{where}: @pytest.mark.images names family members, but {why}", pytrace=False)
    if family is None or not follows:
        return
    members = selected_members(family, marker, where)
    metafunc.parametrize(MEMBER_FIXTURE, members, indirect=True, scope="session", ids=members)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each member one parameter index in every test, whatever members the test runs
    for, so pytest's ordering (which runs before the other hooks' changes) keeps a
    member's tests together and starts its containers once; and mark each test with its
    member, for ``-m "member(id='asr')"``."""
    family = family_of(config)
    if family is None:
        return
    for item in items:
        member = member_of(item)
        if member is not None:
            item.callspec.indices[MEMBER_FIXTURE] = family.ids.index(member)  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.member(id=member))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Note which members the selected tests are for: only those (and what they build on)
    are built, and only their layers read."""
    family = family_of(session.config)
    if family is not None:
        wanted = {member_of(item) for item in session.items}
        session.config.stash[WANTED] = [member for member in family.ids if member in wanted]


def member_of(item: pytest.Item) -> str | None:
    """The family member ``item`` is for, or None."""
    callspec = getattr(item, "callspec", None)
    params = getattr(callspec, "params", {}) if callspec is not None else {}
    member = params.get(MEMBER_FIXTURE)
    return member if isinstance(member, str) else None


def family_run(config: pytest.Config, shared_dir: Any, progress: Any) -> FamilyRun:
    """This process's :class:`FamilyRun`, made on first use."""
    run = config.stash.get(RUN, None)
    if run is None:
        family = family_of(config)
        assert family is not None  # only family tests ask
        wanted: list[str] = config.stash.get(WANTED, family.ids)
        run = FamilyRun(
            family,
            config.stash[STATE].engine(),
            shared_dir,
            wanted,
            progress=progress,
            verbose=config.get_verbosity() > 1,
        )
        config.stash[RUN] = run
    return run


#: Bytes of image layers the xdist workers streamed from the engine (on the controller).
_WORKERS_STREAMED = pytest.StashKey[list[int]]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Hand this worker's count of streamed layer bytes to the xdist controller."""
    run = session.config.stash.get(RUN, None)
    if run is not None and is_worker(session.config):
        output = session.config.workeroutput  # type: ignore[attr-defined]
        output["imagecheck_bytes_streamed"] = run.engine.bytes_streamed


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown without xdist
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Add up what the workers streamed (only the xdist controller calls this hook)."""
    streamed = (getattr(node, "workeroutput", {}) or {}).get("imagecheck_bytes_streamed")
    if streamed is not None:
        node.config.stash.setdefault(_WORKERS_STREAMED, []).append(int(streamed))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say how many bytes of image layers the family's reads streamed from the engine: the
    layers members share are streamed once per session."""
    run = config.stash.get(RUN, None)
    workers: list[int] = config.stash.get(_WORKERS_STREAMED, [])
    streamed = (run.engine.bytes_streamed if run is not None else 0) + sum(workers)
    if streamed:
        terminalreporter.write_line(
            f"pytest-imagecheck: streamed {format_size(streamed)} ({streamed:,} bytes) of "
            "image layers from the engine for the family's reads"
        )


class _MemberScheduling:
    """Under ``pytest -n N`` (``--dist load``, the default), send all the tests of a member
    to one worker, so each worker starts containers only for its own members."""

    def __init__(self, family: Family) -> None:
        self.family = family

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist", None) != "load":
            return None
        from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

        ids = sorted(self.family.ids, key=len, reverse=True)

        class MemberScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                # The member id leads the parameter id: test_x[asr] or test_x[asr-1].
                params = nodeid.rpartition("[")[2].removesuffix("]") if "[" in nodeid else ""
                for member in ids:
                    if params == member or params.startswith(f"{member}-"):
                        return f"member:{member}"
                return nodeid.split("::", 1)[0]

        return MemberScheduling(config, log)
