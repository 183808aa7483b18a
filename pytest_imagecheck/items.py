"""pytest collection of ``imagecheck.yaml``: one test item per criterion.

Each item is an ordinary ``pytest.Function`` whose function takes ``request`` and fetches the
fixtures its criterion needs, so ``-k``, markers, xdist and ``--junitxml`` treat YAML criteria
like Python tests, and both share the session's ``image`` and ``container``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ImageCheckError

if TYPE_CHECKING:
    from .batch import Command
    from .container import ArchiveEntry, Batch, Prefetched, RunningContainer
    from .spec import Criterion

#: The fixture whose parameter is the family member a test is for.
MEMBER_FIXTURE = "imagecheck_member"

#: How a waived test's xfail reason starts, as the terminal and junit show it. Only shown:
#: that a test is waived is known by :data:`WAIVER`, never by parsing this text back.
WAIVED = "waived: "
#: The reason a test is waived for, set by :func:`waive`.
WAIVER = pytest.StashKey[str]()


def criterion_function(criterion: Criterion) -> Callable[[pytest.FixtureRequest], None]:
    """The test function of one criterion: it runs the same check a Python test would."""

    def check(request: pytest.FixtureRequest) -> None:
        shared: SharedWork | None = getattr(request.node, "shared", None)
        if shared is None:
            criterion.run(request.getfixturevalue)
            return
        container = request.getfixturevalue("container")
        with container.serving(shared.share_of(request.node, container)):
            criterion.run(request.getfixturevalue)

    check.__doc__ = f"{criterion.check} criterion from line {criterion.line}"
    return check


def waive(item: pytest.Item, reason: str) -> None:
    """Run ``item`` but accept its failure on purpose: shown as waived, with the reason.

    The item carries the waiver under :data:`WAIVER`; the xfail marker makes pytest accept
    the failure and show ``waived: <reason>``.
    """
    item.stash[WAIVER] = reason
    item.add_marker(pytest.mark.xfail(reason=WAIVED + reason, strict=False))


#: The criteria whose engine work a run of them can share: shells for commands, one read per
#: path for files.
SHARING = ("command", "file")


def share_work(items: list[pytest.Item]) -> None:
    """Give each run of two or more consecutive ``command`` criteria, and of ``file``
    criteria, of one file and one family member, one :class:`SharedWork`."""
    run: list[CriterionItem] = []
    for item in [*items, None]:
        check = item.criterion.check if isinstance(item, CriterionItem) else None
        parent = item.parent if item is not None else None
        image = item.criterion.member if isinstance(item, CriterionItem) else None
        if run and (
            check != run[0].criterion.check
            or parent is not run[0].parent
            or image != run[0].criterion.member
        ):
            if len(run) > 1:
                shared = SharedWork(run)
                for member in run:
                    member.shared = shared
            run = []
        if isinstance(item, CriterionItem) and check in SHARING:
            run.append(item)


class SharedWork:
    """The engine work of a run of consecutive criteria of one kind, shared without any member
    seeing a difference: each member runs serving its own share
    (:meth:`~pytest_imagecheck.container.RunningContainer.serving`).

    ``command`` criteria share the shells of one lazy
    :meth:`~pytest_imagecheck.container.RunningContainer.exec_batch`: a member's command runs
    when that member runs, never earlier, so a command that stops the container (one that
    signals PID 1) stops it where its own exec would, and the members after it find it
    stopped; a skipped member runs nothing. A command no shell can run exactly gets no share:
    the member execs it, and the engine's answer, or refusal, is in its own words. The shells
    end after the last member, or before any other test starts, or with the session.

    ``file`` criteria read each path once, when the first of them runs: a read changes
    nothing, and nothing else runs between the members. A path the engine refuses to read is
    left to the members that read it, so only they fail, each in its own words. A member that
    runs again (a rerun plugin) asks the engine itself.
    """

    def __init__(self, members: list[CriterionItem]) -> None:
        self.members = members
        self.nodeids = [member.nodeid for member in members]
        self._batch: Batch | None = None
        self._indexes: dict[int, int] = {}  # member -> command in the batch
        self._reads: dict[str, ArchiveEntry | FileNotFoundError] | None = None
        self._served: set[str] = set()
        # Registered while the run's shells are open.
        self._end: tuple[pytest.PytestPluginManager, _EndOfRun] | None = None

    def share_of(self, item: pytest.Item, container: RunningContainer) -> Prefetched:
        """``item``'s share, gathered now: its command run now in a shared shell, or every
        member's reads when it is the first file member to run."""
        from .container import Prefetched

        member = self.nodeids.index(item.nodeid)
        if self.members[0].criterion.check == "command":
            try:
                return self._command_share(member, item, container)
            finally:
                if member == len(self.members) - 1:
                    self.close()
        if item.nodeid in self._served:
            return Prefetched()
        self._served.add(item.nodeid)
        if self._reads is None:
            self._reads = self._read(self.members[member:], container)
        return Prefetched(reads=dict(self._reads))

    def close(self) -> None:
        """End the shared shells, if any (later members run their commands alone)."""
        if self._batch is not None:
            self._batch.close()
        if self._end is not None:
            manager, plugin = self._end
            self._end = None
            manager.unregister(plugin)

    def _command_share(
        self, member: int, item: pytest.Item, container: RunningContainer
    ) -> Prefetched:
        from .checks.structure import command_of
        from .container import Prefetched

        if self._batch is None:
            commands: list[Command] = []
            for index, each in enumerate(self.members):
                try:
                    command = command_of(**each.criterion.args)
                except ValueError:  # the member's own check says what is wrong with it
                    continue
                self._indexes[index] = len(commands)
                commands.append(command)
            self._batch = container.exec_batch(commands, lazy=True)
            self._end = (item.config.pluginmanager, _EndOfRun(self))
            item.config.pluginmanager.register(self._end[1])
        if member not in self._indexes:
            return Prefetched()
        index = self._indexes[member]
        result = self._batch.run(index)
        if result is None:
            return Prefetched()
        return Prefetched(execs={self._batch.commands[index]: result})

    @staticmethod
    def _read(
        members: list[CriterionItem], container: RunningContainer
    ) -> dict[str, ArchiveEntry | FileNotFoundError]:
        from .checks.structure import file_reads

        paths: dict[str, bool] = {}
        for member in members:
            for path, content in file_reads(**member.criterion.args).items():
                paths[path] = paths.get(path, False) or content
        return container.archive_entries(paths)


class _EndOfRun:
    """Ends a run's shared shells before any test that is not one of its members starts (a
    run whose last members were skipped), and at the end of the session."""

    def __init__(self, work: SharedWork) -> None:
        self.work = work

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if nodeid not in self.work.nodeids:
            self.work.close()

    def pytest_sessionfinish(self) -> None:
        self.work.close()


class CriterionItem(pytest.Function):
    """One criterion of an ``imagecheck.yaml``; failures point at its line."""

    criterion: Criterion
    shared: SharedWork | None = None

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.criterion.line - 1, f"{self.path.name}: {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """The check's own message, without a traceback through the plugin."""
        if isinstance(excinfo.value, (AssertionError, ImageCheckError)):
            return f"{self.path.name}:{self.criterion.line}: {excinfo.value}"
        return super().repr_failure(excinfo)


def member_callspec(member: str, index: int) -> Any:
    """The call spec of a test for family member ``member`` (``index`` in the family), as
    pytest's parametrization makes it for a session-scoped indirect parameter, so a
    criterion shares its member's fixtures, and its tests' ordering, with Python tests.

    pytest makes call specs only while collecting Python functions; a criterion item is
    made here, so this builds the same one (pytest's ``CallSpec2``).
    """
    from _pytest.python import CallSpec2
    from _pytest.scope import Scope

    return CallSpec2(
        params={MEMBER_FIXTURE: member},
        indices={MEMBER_FIXTURE: index},
        _arg2scope={MEMBER_FIXTURE: Scope.Session},
        _idlist=[member],
        marks=[],
    )


class CriteriaFile(pytest.File):
    """An ``imagecheck.yaml``; an invalid one fails collection with file, line and fix.

    ``members`` are the ids of the session's image family (None: one image under test);
    each criterion is then a test per member it judges, ``non_root[asr]``.
    ``family_file`` is the file the session's family was read from, if any: a top-level
    ``images:`` elsewhere is an error, not a second family.
    """

    members: list[str] | None = None
    family_file: Path | None = None

    def collect(self) -> Iterator[CriterionItem]:
        from .spec import load_spec

        try:
            spec = load_spec(self.path, self.members)
        except ImageCheckError as exc:
            raise self.CollectError(str(exc)) from None
        if spec.declares_images and self.path.resolve() != self.family_file:
            used = (
                f"the session's family is declared in {self.family_file}"
                if self.family_file
                else "the session does not read it"
            )
            raise self.CollectError(
                f"{self.path}: images: declares a family of images, but {used}: pass "
                f"--family {self.path} to test this family (one family per session)"
            )
        for criterion in spec.criteria:
            member = criterion.member
            item = CriterionItem.from_parent(
                self,
                name=criterion.name if member is None else f"{criterion.name}[{member}]",
                originalname=criterion.name,
                callobj=criterion_function(criterion),
                callspec=None
                if member is None or self.members is None
                else member_callspec(member, self.members.index(member)),
            )
            item.criterion = criterion
            if "gpu" in criterion.needs:
                item.add_marker(pytest.mark.gpu)
            if criterion.waive:
                waive(item, criterion.waive)
            yield item
