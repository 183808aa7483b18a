"""Image families: several images under test in one session, built in dependency order.

A family is declared under a top-level ``images:`` in an ``imagecheck.yaml`` (the session's
family file), or given as ``--image`` several times. Each member has an id, used in test ids
(``test_non_root[asr]``), and is either a reference to test or a build::

    images:
      base:
        image: registry.example/app-base:cuda      # the tag the build gets
        build: base                                 # a context folder, or a mapping:
      asr:
        image: registry.example/asr:ci
        build: {context: ., dockerfile: asr.Dockerfile, target: runtime,
                args: {REGISTRY: registry.example}}
      upstream:
        image: python@sha256:...                   # no build: tested as it is

A member whose Dockerfile, after ARG substitution, names another member's tag in a ``FROM``
(or ``COPY --from``) is built after it (:meth:`Family.dependencies`); a cycle is an error.
:func:`build_family` builds what a session needs in that order, side by side where members
do not depend on each other, and says per member what happened: a failed build fails its
member, and its dependents are not built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import pickle
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from .build import BuildSpec, parse_build_arg
from .dockerfile import canonical_reference
from .engine import check_reference, shared_keeps
from .errors import BuildFailed, ImageCheckError, ImageNotFound
from .kinds import Invalid, shown
from .layers import KeepContent, LayerContents, LayerPool, read_saved_images
from .yamlfile import YamlMapping, load_yaml, read_text

if TYPE_CHECKING:
    from .engine import Engine
    from .image import ImageUnderTest

__all__ = [
    "BuildOutcome",
    "Family",
    "FamilyError",
    "FamilyRun",
    "Member",
    "MemberNotBuilt",
    "build_family",
    "canonical_reference",
    "family_from_refs",
    "load_family",
    "member_id_of",
    "parse_images",
]

#: What a member id may look like: it becomes part of test ids (``test_x[asr]``) and of ``-k``
#: expressions, so no spaces, brackets or ``::``.
MEMBER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ID_FORM = "letters, digits, '_', '.' and '-', starting with a letter or digit"
_BUILD_KEYS = ("context", "dockerfile", "target", "args")
_MEMBER_KEYS = ("image", "build")


class FamilyError(ImageCheckError):
    """The family cannot be used as declared; the message is one line naming the input."""


@dataclass(frozen=True)
class Member:
    """One image of the family: an id, and a reference to test or a build to make.

    ``ref`` is the reference tested when there is no ``build``; with one, the tag the build
    gets (``build.image_tag``). ``where`` names the declaration in messages
    (``imagecheck.yaml:7`` or ``--image``).
    """

    id: str
    ref: str | None
    build: BuildSpec | None = None
    where: str = ""

    @property
    def tag(self) -> str:
        """The reference this member is known by: its build's tag, or the reference given."""
        if self.build is not None:
            return self.build.image_tag
        assert self.ref is not None  # a member has a reference or a build
        return self.ref


@dataclass(frozen=True)
class BuildOutcome:
    """What the session's builds did for one member.

    Exactly one holds: ``image_id`` (built, or ``None`` with no failure for a member tested
    by reference), ``failure`` (its build failed: the builder's message) or ``blocked_by``
    (the id of the member whose failed build it builds on; not built).
    """

    member: str
    image_id: str | None = None
    failure: str | None = None
    blocked_by: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the member can be tested."""
        return self.failure is None and self.blocked_by is None


@dataclass(frozen=True)
class Family:
    """The images of a session, in declaration order; ``source`` is the family file, if any."""

    members: tuple[Member, ...]
    source: Path | None = None

    @property
    def ids(self) -> list[str]:
        """The member ids, in declaration order."""
        return [member.id for member in self.members]

    def __getitem__(self, member_id: str) -> Member:
        for member in self.members:
            if member.id == member_id:
                return member
        raise KeyError(member_id)

    def member_of_tag(self, reference: str) -> Member | None:
        """The member known by ``reference`` (compared as :func:`canonical_reference`)."""
        wanted = canonical_reference(reference)
        for member in self.members:
            if canonical_reference(member.tag) == wanted:
                return member
        return None

    def dependencies(self, engine_platform: str | None = None) -> dict[str, dict[str, str]]:
        """Which members each build member builds on: ``{id: {dependency id: where}}``, where
        ``where`` is the instruction that names it (``Dockerfile:3 FROM app-base:cuda``).

        A ``FROM``, ``COPY --from`` or ``RUN --mount=from`` of a stage the build uses that,
        after ARG substitution (with the member's build args and ``engine_platform`` for
        the platform ARGs), names another member's tag makes an edge. A Dockerfile that
        cannot be read makes none: its build fails, and says why. Raises
        :class:`FamilyError` for a cycle.
        """
        found: dict[str, dict[str, str]] = {}
        for member in self.members:
            found[member.id] = {}
            if member.build is None:
                continue
            try:
                dockerfile = member.build.validate(engine_platform=engine_platform)
            except ImageCheckError:
                continue
            used = dockerfile.used_stages
            named: list[tuple[str, Any]] = [
                (stage.resolved_base, stage.instruction)
                for stage in dockerfile.stages
                if stage.index in used and stage.is_external and stage.resolved_base
            ]
            for instruction in dockerfile.instructions:
                if instruction.stage in used:
                    named += [
                        (source, instruction)
                        for source in instruction.sources
                        if "$" not in source and dockerfile.source_stage(source) is None
                    ]
            for reference, instruction in named:
                other = self.member_of_tag(reference)
                if other is None:
                    continue
                where = f"{dockerfile.location(instruction)} {instruction.original.splitlines()[0]}"
                found[member.id].setdefault(other.id, where)
        _check_acyclic(self, found)
        return found

    def order(self, deps: Mapping[str, Mapping[str, str]]) -> list[str]:
        """The member ids, each after those it depends on, else in declaration order."""
        done: list[str] = []
        left = self.ids
        while left:
            ready = [m for m in left if all(d in done for d in deps.get(m, {}))]
            if not ready:  # a cycle: dependencies() refuses them, so this is defensive
                raise FamilyError(f"the builds of {', '.join(left)} depend on each other")
            done += ready
            left = [m for m in left if m not in ready]
        return done

    def with_dependencies(
        self, wanted: Iterable[str], deps: Mapping[str, Mapping[str, str]]
    ) -> list[str]:
        """``wanted`` and every member they build on, directly or not, in declaration order."""
        needed: set[str] = set()
        todo = list(wanted)
        while todo:
            member = todo.pop()
            if member not in needed:
                needed.add(member)
                todo.extend(deps.get(member, {}))
        return [m for m in self.ids if m in needed]

    def checked(self) -> Family:
        """This family, once its dependencies, found without an engine, have no cycle (the
        builds find them again with the engine's platform): raises :class:`FamilyError`."""
        self.dependencies()
        return self


def _check_acyclic(family: Family, deps: Mapping[str, Mapping[str, str]]) -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(member: str) -> None:
        state[member] = 1
        path.append(member)
        for dep in deps.get(member, {}):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                steps = " -> ".join(f"{a} ({deps[a][b]})" for a, b in itertools.pairwise(cycle))
                raise FamilyError(
                    f"the family's builds depend on each other in a cycle: {steps} -> {dep}: "
                    "a member cannot be built before its own base; make one of them build "
                    "FROM an image outside the family"
                    if len(cycle) > 2
                    else f"member {member} builds on its own tag ({deps[member][member]}): "
                    "give the build another tag, or build FROM the image it replaces by digest"
                )
            if state.get(dep) is None:
                visit(dep)
        path.pop()
        state[member] = 2

    for member in family.ids:
        if member not in state:
            visit(member)


def member_id_of(reference: str) -> str:
    """The id a member given only by reference gets: its repository's last path part.

    >>> member_id_of("registry.example:5000/team/asr:1.2")
    'asr'
    >>> member_id_of("sha256:" + "ab" * 32)
    'abababababab'
    """
    if reference.startswith("sha256:"):
        return reference[7:19]
    name = reference.partition("@")[0].rpartition("/")[2]
    return name.partition(":")[0] if ":" in name else name


def _check_id(member_id: Any, where: str) -> str:
    if not isinstance(member_id, str) or not MEMBER_ID.fullmatch(member_id):
        raise FamilyError(
            f"{where}: member id {shown(member_id)} is not a valid id: use {_ID_FORM} "
            "(it becomes part of test ids, like test_non_root[asr])"
        )
    return member_id


def family_from_refs(given: Sequence[str], where: str = "--image") -> Family:
    """The family that ``--image`` given several times names: ``REF`` or ``ID=REF`` each.

    An id defaults to :func:`member_id_of`; two members with one id, or one reference given
    twice, are an error naming both.
    """
    members: list[Member] = []
    for text in given:
        member_id, sep, ref = text.partition("=")
        if not sep:
            member_id, ref = member_id_of(text), text
            how = f"{where} {text} gets the id {member_id}"
        else:
            _check_id(member_id, f"{where} {text}")
            how = f"{where} {text}"
        try:
            check_reference(ref)
        except ImageCheckError as exc:
            raise FamilyError(str(exc).replace("--image", where, 1)) from None
        members.append(Member(member_id, ref, where=how))
    return unique_members(members)


def unique_members(members: list[Member], source: Path | None = None) -> Family:
    """The family of ``members``; two with one id or one tag are an error naming where each
    was declared (``where``)."""
    by_id: dict[str, Member] = {}
    by_tag: dict[str, Member] = {}
    for member in members:
        if member.id in by_id:
            other = by_id[member.id]
            raise FamilyError(
                f"two members have the id {member.id} ({other.where}; {member.where}): "
                f"give them ids of their own, e.g. --image {member.id}-2={member.tag}"
            )
        tag = canonical_reference(member.tag)
        if tag in by_tag:
            other = by_tag[tag]
            replaces = ", or the second build replaces the first" if member.build else ""
            raise FamilyError(
                f"members {other.id} and {member.id} have the same tag {member.tag} "
                f"({other.where}; {member.where}): each member needs a tag of its own{replaces}"
            )
        by_id[member.id] = member
        by_tag[tag] = member
    return Family(tuple(members), source)


def load_family(path: Path, *, if_declared: bool = False) -> Family | None:
    """The family declared under ``images:`` in the YAML file at ``path``, with its
    dependencies found; ``None`` when the file declares none.

    Raises :class:`FamilyError` (one line, ``file:line: what: fix``) for an invalid
    declaration and for a cycle in the builds. With ``if_declared``, a file that is not a
    YAML mapping declares none (the criteria file it also is reports what is wrong with it).
    """
    text = read_text(path, FamilyError)
    try:
        try:
            document = load_yaml(text)
        except Invalid:
            if if_declared:
                return None
            raise
        if not isinstance(document, YamlMapping) or "images" not in document:
            return None
        family = parse_images(document["images"], document.key_lines["images"], path)
    except Invalid as exc:
        raise FamilyError(f"{_shown_path(path)}:{exc.line or 1}: {exc.message}") from None
    return family.checked()


def _shown_path(path: Path) -> str:
    return (
        os.path.relpath(path)
        if path.is_absolute() and path.is_relative_to(Path.cwd())
        else str(path)
    )


def parse_images(node: Any, line: int, path: Path) -> Family:
    """The family of an ``images:`` mapping (``id: {image:, build:}``) in the file at
    ``path``; build paths are relative to the file's folder. Raises
    :class:`~pytest_imagecheck.kinds.Invalid` with the line at fault."""
    example = "images:\n  app: {image: app:ci, build: .}"
    if not isinstance(node, YamlMapping) or not node:
        raise Invalid(
            f"images: expected a mapping of member ids to images, got {shown(node)}: write "
            f"{example!r}",
            line,
        )
    here = path.parent
    members: list[Member] = []
    for member_id, value in node.items():
        key_line = node.key_lines[member_id]
        if not isinstance(member_id, str):
            raise Invalid(
                f"member id {shown(member_id)} is read by YAML as a number or a boolean, not "
                'text: quote it (e.g. "1": or "on":)',
                key_line,
            )
        if not MEMBER_ID.fullmatch(member_id):
            raise Invalid(
                f"member id {shown(member_id)} is not a valid id: use {_ID_FORM}", key_line
            )
        members.append(_member(member_id, value, key_line, here, _shown_path(path)))
    try:
        return unique_members(members, path)
    except FamilyError as exc:
        raise Invalid(str(exc), line) from None


def _member(member_id: str, value: Any, line: int, here: Path, file: str) -> Member:
    where = f"{file}:{line}"
    if isinstance(value, str):
        value_map: dict[str, Any] = {"image": value}
        lines = {"image": line}
    elif isinstance(value, YamlMapping):
        value_map, lines = dict(value), value.key_lines
        for key, key_line in lines.items():
            if key not in _MEMBER_KEYS:
                raise Invalid(
                    f"{member_id}: unknown key {shown(key)}: a member takes image (the "
                    "reference to test, or the tag its build gets) and build",
                    key_line,
                )
    else:
        raise Invalid(
            f"{member_id}: expected a reference or a mapping with image and build, got "
            f"{shown(value)}: write {member_id}: {{image: app:ci, build: .}}",
            line,
        )
    ref = value_map.get("image")
    if ref is not None:
        if not isinstance(ref, str):
            raise Invalid(
                f"{member_id}.image: expected a reference like app:ci, got {shown(ref)}",
                lines["image"],
            )
        try:
            check_reference(ref)
        except ImageCheckError:
            raise Invalid(
                f"{member_id}.image: {ref!r} is not an image reference: use NAME[:TAG], "
                "NAME@sha256:DIGEST or an image ID (lowercase, no spaces)",
                lines["image"],
            ) from None
    if "build" not in value_map:
        if ref is None:
            raise Invalid(f"{member_id}: give image (a reference to test), build, or both", line)
        return Member(member_id, ref, where=where)
    if ref is not None and "@" in ref:
        raise Invalid(
            f"{member_id}.image: {ref} names a digest, but a build gets a tag: give a tag like "
            "app:ci, or remove build: to test the image pinned by that digest",
            lines["image"],
        )
    build = _build(member_id, value_map["build"], lines["build"], here, ref)
    return Member(member_id, None, build, where=where)


def _build(member_id: str, value: Any, line: int, here: Path, tag: str | None) -> BuildSpec:
    if isinstance(value, str):
        value = {"context": value}
        lines = {"context": line}
    elif isinstance(value, YamlMapping):
        lines = value.key_lines
        for key, key_line in lines.items():
            if key not in _BUILD_KEYS:
                raise Invalid(
                    f"{member_id}.build: unknown key {shown(key)}: a build takes "
                    f"{', '.join(_BUILD_KEYS)}",
                    key_line,
                )
    else:
        raise Invalid(
            f"{member_id}.build: expected a context folder or a mapping with context, "
            f"dockerfile, target and args, got {shown(value)}",
            line,
        )
    for key in ("context", "dockerfile", "target"):
        if key in value and not (isinstance(value[key], str) and value[key].strip()):
            raise Invalid(
                f"{member_id}.build.{key}: expected a non-empty string, got {shown(value[key])}",
                lines[key],
            )
    context = here / value.get("context", ".")
    if not context.is_dir():
        raise Invalid(
            f"{member_id}.build.context: {value.get('context', '.')} is not a folder "
            f"({context}): give the folder the Dockerfile copies from, relative to this file",
            lines.get("context", line),
        )
    dockerfile = here / value["dockerfile"] if "dockerfile" in value else None
    if dockerfile is not None and not dockerfile.is_file():
        raise Invalid(
            f"{member_id}.build.dockerfile: {value['dockerfile']} is not a file ({dockerfile}): "
            "give its path relative to this file",
            lines["dockerfile"],
        )
    if dockerfile is None and not (context / "Dockerfile").is_file():
        raise Invalid(
            f"{member_id}.build: {context} has no Dockerfile: add one, or give build.dockerfile",
            lines.get("context", line),
        )
    args = value.get("args", {})
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise Invalid(
            f"{member_id}.build.args: expected a mapping of names to values, got {shown(args)}",
            lines.get("args", line),
        )
    build_args: dict[str, str] = {}
    for name, arg in args.items():
        if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
            raise Invalid(
                f"{member_id}.build.args.{name}: expected a string, got {shown(arg)}: quote it",
                args.key_lines[name] if isinstance(args, YamlMapping) else line,
            )
        try:
            build_args.update([parse_build_arg(f"{name}={arg}")])
        except ImageCheckError:
            raise Invalid(
                f"{member_id}.build.args: {shown(name)} is not a variable name",
                lines.get("args", line),
            ) from None
    return BuildSpec(
        context=context.resolve(),
        dockerfile=dockerfile.resolve() if dockerfile else None,
        build_args=build_args,
        target=value.get("target"),
        tag=tag or f"imagecheck/{member_id.lower()}:latest",
    )


def build_family(
    family: Family,
    wanted: Iterable[str],
    deps: Mapping[str, Mapping[str, str]],
    build: Callable[[Member], str],
    *,
    parallel: int = 2,
    stop: Callable[[], None] = lambda: None,
) -> dict[str, BuildOutcome]:
    """Build the ``wanted`` members and what they build on, each after its dependencies, up to
    ``parallel`` at once; return each member's outcome.

    ``build(member)`` returns the member's image ID: it builds a member with a build, and
    finds a member given by reference on the engine. It raises :class:`ImageCheckError` with
    the failure, which becomes that member's ``failure``; members that build on it, directly
    or not, are not built (``blocked_by``). An interrupt (Ctrl-C, SIGTERM) calls ``stop``,
    which stops the builds running in other threads, and is raised again.
    """
    needed = family.with_dependencies(wanted, deps)
    outcomes: dict[str, BuildOutcome] = {}
    running: dict[Future[str], str] = {}
    workers = max(1, parallel)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="imagecheck-build")
    try:
        while len(outcomes) < len(needed):
            before = len(outcomes)
            for member_id in needed:
                if member_id in outcomes or member_id in running.values():
                    continue
                member_deps = deps.get(member_id, {})
                failed = next(
                    (d for d in member_deps if d in outcomes and not outcomes[d].ok), None
                )
                if failed is not None:
                    root = outcomes[failed].blocked_by or failed
                    outcomes[member_id] = BuildOutcome(member_id, blocked_by=root)
                elif all(d in outcomes for d in member_deps) and len(running) < workers:
                    running[pool.submit(build, family[member_id])] = member_id
            if not running:
                if len(outcomes) == before:  # defensive: dependencies() refuses cycles
                    raise FamilyError(f"the builds of {', '.join(needed)} cannot be ordered")
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                member_id = running.pop(future)
                try:
                    outcomes[member_id] = BuildOutcome(member_id, image_id=future.result())
                except ImageCheckError as exc:
                    outcomes[member_id] = BuildOutcome(member_id, failure=str(exc))
    except BaseException:
        stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return {m: outcomes[m] for m in needed}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class MemberNotBuilt(ImageCheckError):
    """A member was not built because a member it builds on failed to build."""


class FamilyRun:
    """A session's family on an engine: the builds, made once for every process of the
    session (pytest-xdist workers share ``shared_dir``), and the images, whose layers are
    read together (:class:`~pytest_imagecheck.layers.LayerPool`).

    ``wanted`` are the ids of the members whose tests the session runs: they and what they
    build on are built, and only their layers are read.
    """

    def __init__(
        self,
        family: Family,
        engine: Engine,
        shared_dir: Path,
        wanted: Sequence[str],
        *,
        progress: Callable[[str], None] = lambda line: None,
        verbose: bool = False,
    ) -> None:
        self.family = family
        self.engine = engine
        self.shared_dir = shared_dir
        self.wanted = [m for m in family.ids if m in set(wanted)]
        self.progress = progress
        self.verbose = verbose
        self._outcomes: dict[str, BuildOutcome] | None = None
        self._images: dict[str, ImageUnderTest] = {}
        self._pool: LayerPool | None = None
        #: One read of the layers at a time in this process (a read ahead, a test's read).
        self._reading = threading.Lock()
        self._read: dict[str, list[LayerContents]] | None = None
        self._ahead: threading.Thread | None = None

    def outcomes(self) -> dict[str, BuildOutcome]:
        """Each needed member's build outcome; the builds run on the first call."""
        if self._outcomes is None:
            from .build import stop_builds

            deps = self.family.dependencies(self.engine.platform)
            needed = self.family.with_dependencies(self.wanted, deps)
            builds = [m for m in self.family.order(deps) if m in needed and self.family[m].build]
            if builds:
                self.progress(
                    f"building {_count(len(builds), 'member')} in order: {', '.join(builds)}"
                )
            self._outcomes = build_family(
                self.family, self.wanted, deps, self._build, stop=stop_builds
            )
        return self._outcomes

    def _build(self, member: Member) -> str:
        from .build import build_image, build_once

        spec = member.build
        if spec is None:
            return self._find(member).id

        def progress(line: str) -> None:
            self.progress(f"[{member.id}] {line}")

        return build_once(
            spec,
            self.shared_dir,
            lambda: build_image(spec, self.engine.client, progress=progress, verbose=self.verbose),
        )

    def image(self, member_id: str) -> ImageUnderTest:
        """The image of ``member_id``: the one its build made, or the reference it names.

        Raises :class:`~pytest_imagecheck.errors.BuildFailed` when its build failed,
        :class:`MemberNotBuilt` when a member it builds on did, and the engine's one-line
        errors (:class:`~pytest_imagecheck.errors.ImageNotFound`) for a reference that is
        not there.
        """
        if member_id in self._images:
            return self._images[member_id]
        member = self.family[member_id]
        outcome = self.outcomes().get(member_id) or BuildOutcome(member_id)
        if outcome.failure is not None:
            raise BuildFailed(outcome.failure)
        blocked = self.not_built(member_id)
        if blocked is not None:
            raise MemberNotBuilt(blocked)
        image = self.engine.image(outcome.image_id) if outcome.image_id else self._find(member)
        found = dataclasses.replace(image, ref=member.tag, layer_pool=self._layer_pool())
        self._images[member_id] = found
        return found

    def _find(self, member: Member) -> ImageUnderTest:
        """A member given by reference, as the engine has it."""
        try:
            return self.engine.image(member.tag)
        except ImageNotFound:
            given = member.where.startswith(("--image", "imagecheck_image"))
            hint = "" if given else f", or give the member a build: ({member.where})"
            raise ImageNotFound(
                f"image {member.tag!r} of member {member.id} is not on the engine: build or "
                f"pull it first{hint}"
            ) from None

    def not_built(self, member_id: str) -> str | None:
        """Why ``member_id`` was not built (a member it builds on failed to build, or is not
        on the engine), or None."""
        outcome = self.outcomes().get(member_id)
        if outcome is None or outcome.blocked_by is None:
            return None
        failed = self.family[outcome.blocked_by]
        what = "whose build failed" if failed.build else "which is not on the engine"
        return (
            f"not built: it builds on member {failed.id} ({failed.tag}), {what}; fix "
            f"{failed.id} first (its tests say why)"
        )

    def _layer_pool(self) -> LayerPool:
        if self._pool is None:
            self._pool = LayerPool(self._read_layers, shared_keeps())
        return self._pool

    def layers_read(self) -> bool:
        """Whether this process has the wanted members' layers already."""
        return self._read is not None

    def read_layers_ahead(self) -> None:
        """Start reading the wanted members' layers in the background, once, so the tests
        that need them find them read. A read that fails is left to the test that needs it,
        which reads again and gets the error."""
        if self._ahead is None:
            self.progress(
                f"reading the layers of {_count(len(self.wanted), 'image')} in the background"
            )
            self._ahead = threading.Thread(
                target=self._read_ahead, name="imagecheck-layers-ahead", daemon=True
            )
            self._ahead.start()

    def _read_ahead(self) -> None:
        with contextlib.suppress(Exception):  # left to the test that needs the layers
            self._layer_pool().layers("")

    def _read_layers(self, keep: KeepContent) -> dict[str, list[LayerContents]]:
        """The layers of every wanted member that can be tested, streamed in one save by the
        first process that needs them and loaded from its record by the others; read once
        per process (``keep`` is always the pool's)."""
        with self._reading:
            if self._read is None:
                # A background thread must not write past pytest's capture: only the
                # main thread says it streams.
                quiet = threading.current_thread() is not threading.main_thread()
                self._read = self._stream_or_load(keep, quiet=quiet)
            return self._read

    def _stream_or_load(
        self, keep: KeepContent, *, quiet: bool = False
    ) -> dict[str, list[LayerContents]]:
        images: dict[str, list[str]] = {}
        for member_id in self.wanted:
            with contextlib.suppress(ImageCheckError):
                image = self._images.get(member_id) or self.image(member_id)
                images[image.id] = image.diff_ids
        key = hashlib.sha256(json.dumps(sorted(images)).encode()).hexdigest()[:16]
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        record = self.shared_dir / f"imagecheck-layers-{key}.pickle"
        with FileLock(self.shared_dir / f"imagecheck-layers-{key}.lock"):
            if record.exists():
                with record.open("rb") as file:
                    loaded: dict[str, list[LayerContents]] = pickle.load(file)
                return loaded
            if not quiet:
                self.progress(f"reading the layers of {_count(len(images), 'image')} in one stream")
            read = read_saved_images(self.engine.save(*images), images, keep)
            # Written aside, then renamed: a process cut short leaves no half record.
            partial = record.with_suffix(f".{os.getpid()}.partial")
            with partial.open("wb") as file:
                pickle.dump(read, file, protocol=pickle.HIGHEST_PROTOCOL)
            partial.replace(record)
            return read
