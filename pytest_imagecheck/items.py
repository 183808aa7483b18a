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

from .batch import Command
from .errors import ImageCheckError

if TYPE_CHECKING:
    from .spec import Criterion

#: Where a waived criterion's reason starts, in xfail reasons and reports.
WAIVED = "waived: "


def criterion_function(criterion: Criterion) -> Callable[[pytest.FixtureRequest], None]:
    """The test function of one criterion: it runs the same check a Python test would."""

    def check(request: pytest.FixtureRequest) -> None:
        criterion.run(request.getfixturevalue)

    check.__doc__ = f"{criterion.check} criterion from line {criterion.line}"
    return check


def waive(item: pytest.Item, reason: str) -> None:
    """Run ``item`` but accept its failure on purpose: shown as waived, with the reason."""
    item.add_marker(pytest.mark.xfail(reason=WAIVED + reason, strict=False))


def announced_commands(items: list[pytest.Item]) -> list[Command]:
    """The commands the ``command`` criteria among ``items`` will run in the session
    container, in order: announced to it so that they share one exec."""
    return [
        Command.of(args["run"], user=args.get("user"), env=args.get("env"))
        for check, args in _criteria(items)
        if check == "command"
    ]


def announced_reads(items: list[pytest.Item]) -> list[tuple[str, bool]]:
    """The paths the ``file`` criteria among ``items`` will read in the session container,
    one per use, and whether that use needs the content: announced so that each path is read
    once. Owners and groups named by name are looked up in ``/etc/passwd`` and ``/etc/group``."""
    reads = []
    for check, args in _criteria(items):
        if check == "file":
            content = args.get("contains") is not None or args.get("matches") is not None
            reads.append((args["path"], content))
            reads += [(table, True) for key, table in _TABLES.items() if args.get(key) is not None]
    return reads


_TABLES = {"owner": "/etc/passwd", "group": "/etc/group"}


def _criteria(items: list[pytest.Item]) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in items:
        if isinstance(item, CriterionItem):
            yield item.criterion.check, item.criterion.args


class CriterionItem(pytest.Function):
    """One criterion of an ``imagecheck.yaml``; failures point at its line."""

    criterion: Criterion

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.criterion.line - 1, f"{self.path.name}: {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """The check's own message, without a traceback through the plugin."""
        if isinstance(excinfo.value, (AssertionError, ImageCheckError)):
            return f"{self.path.name}:{self.criterion.line}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)


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
