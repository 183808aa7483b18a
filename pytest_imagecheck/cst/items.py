"""pytest collection of container-structure-test files: one item per test.

Each item is named as the file names its test (``name:``); the whole ``metadataTest`` is one
item, ``metadataTest``, as CST gives it one verdict; license tests, which CST names
``License Test`` all alike, are ``licenseTests``; a name given again gets `` #2``. Items
run in the order of the file's sections. Like imagecheck.yaml criteria, each is an ordinary
``pytest.Function`` that takes ``request``, so ``-k``, markers, xdist, ``--junitxml`` and the
evidence report treat them as other tests, and the image comes from the session's ``image``
fixture: a CST file with no image given fails as other criteria files do.

A failure is one line with the test's line in the file and CST's reasons, in this plugin's
words; the evidence (``imagecheck.cst_*`` junit properties) says how the test ran, what the
command printed and what a file's mode was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import ImageCheckError
from ..evidence import record
from ..items import member_callspec
from ..text import shorten
from .runner import Outcome, Runner
from .schema import CstError, CstFile, load_cst

if TYPE_CHECKING:
    from ..engine import Engine
    from ..image import ImageUnderTest

__all__ = ["CstItem", "CstYamlFile", "close_runners"]

#: The runners of this process, by (file, family member): made by a file's first test.
RUNNERS = pytest.StashKey[dict[tuple[Path, str | None], Runner]]()
#: How many characters of a command's output the evidence carries.
EVIDENCE_TEXT = 200


class CstFailure(AssertionError):
    """A test CST would report failed; the message is its reasons, one line."""


def close_runners(config: pytest.Config) -> None:
    """Remove what this process's CST runs left: shared containers, committed images."""
    for runner in config.stash.get(RUNNERS, {}).values():
        runner.close()
    config.stash[RUNNERS] = {}


#: xdist modes that send every test of a file to one worker: there, a worker runs what it
#: collected of a file, so its command tests may run ahead.
_WHOLE_FILES = ("loadfile", "loadscope", "each", "member")


def _runner(request: pytest.FixtureRequest, cst: CstFile, member: str | None) -> Runner:
    """The runner of ``cst`` for ``member``, made by the file's first test to run."""
    image: ImageUnderTest = request.getfixturevalue("image")
    runners = request.config.stash.setdefault(RUNNERS, {})
    key = (cst.path, member)
    if key not in runners:
        engine: Engine = request.getfixturevalue("imagecheck_engine")
        node = request.node.parent
        ahead = bool(getattr(node, "start_ahead", True))
        runners[key] = Runner(cst, image, engine, ahead=ahead)
        runners[key].start_ahead(_selected(request.config, request.session.items, cst, member))
    return runners[key]


def _selected(
    config: pytest.Config, items: list[pytest.Item], cst: CstFile, member: str | None
) -> list[object] | None:
    """The tests of ``cst`` (for ``member``) this process will run, in order; None in an
    xdist worker that may get only some of them."""
    worker = getattr(config, "workerinput", None)
    if worker is not None and worker.get("imagecheck_dist") not in _WHOLE_FILES:
        return None
    return [
        item.cst_test
        for item in items
        if isinstance(item, CstItem) and item.path == cst.path and item.cst_member == member
    ]


def _record(outcome: Outcome, env: dict[str, str]) -> None:
    """The outcome's evidence as ``cst_*`` facts, secrets masked and output cut."""
    from ..secret_rules import mask_text

    facts: dict[str, object] = {}
    for key, value in outcome.evidence.items():
        if key in ("stdout", "stderr", "command") and isinstance(value, str):
            value = mask_text(shorten(value, EVIDENCE_TEXT, count=True), env) if value else ""
        facts[f"cst_{key}"] = value
    facts["cst_verdict"] = "pass" if outcome.passed else "fail"
    record("cst", **facts)


def _test_function(
    cst: CstFile, kind: str, test: object, member: str | None
) -> Callable[[pytest.FixtureRequest], None]:
    def check(request: pytest.FixtureRequest) -> None:
        runner = _runner(request, cst, member)
        run: Callable[[Any], Outcome] = getattr(runner, f"run_{kind}")
        try:
            outcome = run(test)
        except ImageCheckError as exc:  # a container of the run lost: the test's line too
            raise CstFailure(str(exc)) from None
        env = runner.image_env
        _record(outcome, env)
        if not outcome.passed:
            from ..secret_rules import mask_text

            raise CstFailure(mask_text("; ".join(outcome.errors), env))

    check.__doc__ = f"container-structure-test {kind} test from {cst.path.name}"
    return check


class CstItem(pytest.Function):
    """One test of a CST file; failures point at its line."""

    cst_line: int = 0
    cst_kind: str = ""
    #: The test it runs, and the family member it is for.
    cst_test: object = None
    cst_member: str | None = None

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.cst_line - 1, f"{self.path.name}: {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """CST's reasons, or our one-line error, without a traceback through the plugin."""
        if isinstance(excinfo.value, (CstFailure, ImageCheckError)):
            return f"{self.path.name}:{self.cst_line}: {excinfo.value}"
        return super().repr_failure(excinfo)


#: The options that allow each run option this plugin otherwise refuses.
ALLOW_OPTIONS = {"privileged": "--cst-allow-privileged", "bindMounts": "--cst-allow-bind-mounts"}

#: Each section's tests: (YAML key, runner kind).
_SECTIONS = {
    "commandTests": "command",
    "fileExistenceTests": "file_existence",
    "fileContentTests": "file_content",
    "licenseTests": "license",
    "metadataTest": "metadata",
}


class CstYamlFile(pytest.File):
    """A container-structure-test file; one that cannot be run fails collection with one
    line naming the file, the line and the fix.

    ``members`` are the ids of the session's image family (None: one image): each test is
    then an item per member, ``says hello[cpu]``. ``allowed`` names what
    ``containerRunOptions`` may ask for that this plugin otherwise refuses: ``privileged``,
    ``bindMounts``. ``start_ahead`` is false with ``--no-start-ahead``.
    """

    members: list[str] | None = None
    allowed: frozenset[str] = frozenset()
    #: Whether containers may start, and command tests run, ahead of their items.
    start_ahead: bool = True

    def collect(self) -> Iterator[CstItem]:
        try:
            cst = load_cst(self.path)
        except CstError as exc:
            raise self.CollectError(str(exc)) from None
        self._refuse(cst)
        names: set[str] = set()
        for section in cst.sections:
            kind = _SECTIONS.get(section)
            if kind is None:
                continue
            for index, (name, test, line) in enumerate(_tests(cst, section)):
                unique, count = name, 1
                while unique in names:
                    count += 1
                    unique = f"{name} #{count}"
                names.add(unique)
                yield from self._items(cst, kind, test, unique, line or 1, index)

    def _items(
        self, cst: CstFile, kind: str, test: object, name: str, line: int, index: int
    ) -> Iterator[CstItem]:
        members: list[str | None] = list(self.members) if self.members else [None]
        for member in members:
            item = CstItem.from_parent(
                self,
                name=name if member is None else f"{name}[{member}]",
                originalname=name,
                callobj=_test_function(cst, kind, test, member),
                callspec=None
                if member is None or self.members is None
                else member_callspec(member, self.members.index(member)),
            )
            item.cst_line = line
            item.cst_kind = kind
            item.cst_test = test
            item.cst_member = member
            yield item

    def _refuse(self, cst: CstFile) -> None:
        """Refuse run options that break this plugin's rules unless allowed by name."""
        options = cst.run_options
        asked = {"privileged": options.privileged, "bindMounts": bool(options.bind_mounts)}
        for key, given in asked.items():
            if given and key not in self.allowed:
                line = options.key_lines.get(key, options.line)
                mounts = ", ".join(options.bind_mounts)
                what = (
                    "runs the test containers privileged (every device, every capability)"
                    if key == "privileged"
                    else f"mounts host paths into the test containers ({mounts})"
                )
                raise self.CollectError(
                    f"{self.path}:{line}: containerRunOptions.{key} {what}, which "
                    f"pytest-imagecheck never does unless told: pass {ALLOW_OPTIONS[key]} "
                    "to allow it"
                )


def _tests(cst: CstFile, section: str) -> Iterator[tuple[str, object, int]]:
    """The tests of ``section``: (item name, test, line)."""
    if section == "commandTests":
        for index, test in enumerate(cst.command_tests):
            yield test.name or f"commandTests[{index}]", test, test.line
    elif section == "fileExistenceTests":
        for index, existence in enumerate(cst.file_existence_tests):
            yield existence.name or f"fileExistenceTests[{index}]", existence, existence.line
    elif section == "fileContentTests":
        for index, content in enumerate(cst.file_content_tests):
            yield content.name or f"fileContentTests[{index}]", content, content.line
    elif section == "licenseTests":
        for license_test in cst.license_tests:
            yield "licenseTests", license_test, license_test.line
    elif section == "metadataTest" and not cst.metadata_test.is_empty:
        yield "metadataTest", cst.metadata_test, cst.lines.get("metadataTest", 1)
