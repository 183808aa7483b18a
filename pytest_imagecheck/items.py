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
    from .container import Prefetched, RunningContainer
    from .spec import Criterion

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


#: The criteria whose engine work a run of them can share: one exec, one read per path.
SHARING = ("command", "file")


def share_work(items: list[pytest.Item]) -> None:
    """Give each run of two or more consecutive ``command`` criteria, and of ``file``
    criteria, of one file, one :class:`SharedWork`: nothing else runs between them, so doing
    their work at once when the first of them runs changes nothing they could observe."""
    run: list[CriterionItem] = []
    for item in [*items, None]:
        check = item.criterion.check if isinstance(item, CriterionItem) else None
        parent = item.parent if item is not None else None
        if run and (check != run[0].criterion.check or parent is not run[0].parent):
            if len(run) > 1:
                shared = SharedWork(run)
                for member in run:
                    member.shared = shared
            run = []
        if isinstance(item, CriterionItem) and check in SHARING:
            run.append(item)


class SharedWork:
    """The engine work of a run of consecutive criteria of one kind, done once: the plan.

    What to prefetch: the commands of the run's ``command`` criteria, in one
    :meth:`~pytest_imagecheck.container.RunningContainer.exec_batch`, or the paths its
    ``file`` criteria read, one read each. Who consumes it: each member, which runs serving
    its own share (once: a member run again, by a rerun plugin, asks the engine). The first
    member to run gathers the work for itself and every member after it.
    """

    def __init__(self, members: list[CriterionItem]) -> None:
        self.members = members
        self.shares: dict[str, Prefetched] | None = None  # by nodeid

    def share_of(self, item: pytest.Item, container: RunningContainer) -> Prefetched:
        """``item``'s share of the gathered work, gathered now if no member ran yet."""
        from .container import Prefetched

        if self.shares is None:
            first = [member.nodeid for member in self.members].index(item.nodeid)
            self.shares = self._gather(self.members[first:], container)
        return self.shares.pop(item.nodeid, None) or Prefetched()

    @staticmethod
    def _gather(members: list[CriterionItem], container: RunningContainer) -> dict[str, Prefetched]:
        from .checks.structure import command_of, file_reads
        from .container import Prefetched

        if members[0].criterion.check == "command":
            commands = [command_of(**member.criterion.args) for member in members]
            results = container.exec_batch(commands)
            return {
                member.nodeid: Prefetched(execs={command: result})
                for member, command, result in zip(members, commands, results, strict=True)
            }
        paths: dict[str, bool] = {}
        for member in members:
            for path, content in file_reads(**member.criterion.args).items():
                paths[path] = paths.get(path, False) or content
        entries = container.archive_entries(paths)
        return {member.nodeid: Prefetched(reads=dict(entries)) for member in members}


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


class CriteriaFile(pytest.File):
    """An ``imagecheck.yaml``; an invalid one fails collection with file, line and fix."""

    def collect(self) -> Iterator[CriterionItem]:
        from .spec import load_spec

        try:
            spec = load_spec(self.path)
        except ImageCheckError as exc:
            raise self.CollectError(str(exc)) from None
        for criterion in spec.criteria:
            item = CriterionItem.from_parent(
                self, name=criterion.name, callobj=criterion_function(criterion)
            )
            item.criterion = criterion
            if "gpu" in criterion.needs:
                item.add_marker(pytest.mark.gpu)
            if criterion.waive:
                waive(item, criterion.waive)
            yield item
