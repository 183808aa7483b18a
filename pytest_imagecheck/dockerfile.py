"""Dockerfile facts for checks: stages, instructions, ARGs and FROM references.

Parsing follows BuildKit's Dockerfile frontend, so a check sees the file the
way ``docker build`` does: parser directives only at the very top, comment and
blank lines skipped inside continuations, continuation lines concatenated as
they are, heredoc bodies attached to RUN/COPY/ADD instead of read as
instructions, ``AS`` names lower-cased, and ``${VAR:-default}``-style ARG
substitution in FROM lines.

dockerfile-parse (2.0.1) was tried first and is not used for any of it; on the
cases this module must get right it gives wrong facts:

* heredoc bodies become instructions: ``RUN <<EOF`` followed by ``echo hi`` and
  ``EOF`` yields ECHO and EOF instructions, and a ``FROM`` line inside a body
  is counted as a parent image;
* ``${TAG:-3.19}`` and ``${TAG:+x}`` substitute to ``:-3.19}`` and ``:+x}``;
* a comment inside a continuation is listed as its own COMMENT entry before
  the instruction around it, and flags stay in the value (``--mount=...``);
* nothing is an error: ``RUNN x`` is an instruction, and a repeated or
  invalid ``# escape=`` directive passes silently.

Platforms: BuildKit predefines TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT,
BUILDPLATFORM, BUILDOS, BUILDARCH and BUILDVARIANT. FROM lines (the global scope) see them
without any ARG; inside a stage they have a value only after a bare ``ARG NAME``. A
``--build-arg`` of the same name overrides them, as in BuildKit's ``platformArgs``. So a
Dockerfile is resolved for one target platform at a time (:meth:`Dockerfile.on`), and
:attr:`Dockerfile.judged_platforms` says which platforms it can take. A bare global
``ARG TARGETARCH`` keeps the automatic value, as current BuildKit does (the frontend built
into engine 20.10 empties it instead, measured). The legacy builder defines none of them.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_imagecheck.errors import DockerfileError, ImageCheckError
from pytest_imagecheck.platforms import (
    CANDIDATE_PLATFORMS,
    normalize_platform,
    parse_platforms,
    platform_args,
)

if TYPE_CHECKING:
    from pytest_imagecheck.image import ImageUnderTest

__all__ = [
    "Dockerfile",
    "Heredoc",
    "Instruction",
    "Stage",
]

_INSTRUCTIONS = frozenset(
    {
        *("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK"),
        *("LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME"),
        "WORKDIR",
    }
)
_EXEC_FORM = frozenset(
    {"ADD", "CMD", "COPY", "ENTRYPOINT", "HEALTHCHECK", "RUN", "SHELL", "VOLUME"}
)
_HEREDOC_FORM = frozenset({"ADD", "COPY", "RUN"})
_DIRECTIVES = frozenset({"syntax", "escape", "check"})

_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*")
_KEYWORD_SEPARATOR = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]*)")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*")
# What may follow "$": a name, positional digits, or one of the shell's special parameters.
_VARIABLE = re.compile(r"[^\W\d]\w*|\d+|[@*#?$!-]")


@dataclass(frozen=True)
class Heredoc:
    """A here-document attached to RUN, COPY or ADD, as in ``RUN <<EOF``."""

    #: The delimiter word, quotes removed: ``EOF`` for ``<<"EOF"``.
    name: str
    #: The lines between the instruction and the delimiter, each ending in a
    #: newline; leading tabs are removed for ``<<-EOF``.
    body: str
    #: 1-based line of the first body line.
    line: int


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, with its continuation lines and heredocs."""

    #: Upper-cased keyword, e.g. ``"RUN"``.
    keyword: str
    #: The text after the keyword and its flags. Continuation lines are
    #: concatenated as BuildKit does (escape character removed, the next
    #: line's indentation kept); heredoc bodies are not included.
    value: str
    #: 1-based line where the instruction starts.
    line: int
    #: 1-based last line, heredoc bodies and their delimiters included.
    end_line: int
    #: ``(name, value)`` per ``--name=value`` flag, in order; a repeated flag
    #: repeats, and a flag given without ``=`` has the value ``""``.
    flags: tuple[tuple[str, str], ...]
    #: The arguments of the exec (JSON array) form; None for the shell form.
    #: For HEALTHCHECK these are the arguments after ``CMD``.
    json_args: tuple[str, ...] | None
    #: The here-documents of RUN, COPY and ADD, in the order of their ``<<NAME`` words.
    heredocs: tuple[Heredoc, ...]
    #: Index of the stage the instruction belongs to (a FROM belongs to the
    #: stage it starts); None for ARGs before the first FROM.
    stage: int | None
    #: The source text of lines ``line`` to ``end_line``.
    original: str

    def flag(self, name: str) -> str | None:
        """The value of the last ``--name`` flag, or None when it is not given."""
        for flag_name, value in reversed(self.flags):
            if flag_name == name:
                return value
        return None

    @property
    def sources(self) -> tuple[str, ...]:
        """The stages or images this instruction reads, as written: ``COPY --from`` and
        ``RUN --mount=from=``, in order.

        Builders substitute no variables in these (BuildKit refuses ``$`` there; the
        legacy builder takes it literally), so they are stage names, indices or references.
        """
        found = [
            value
            for name, value in self.flags
            if name == "from" and self.keyword in ("COPY", "ADD")
        ]
        for name, value in self.flags:
            if name == "mount":
                for option in value.split(","):
                    key, _, option_value = option.partition("=")
                    if key.strip().lower() == "from" and option_value:
                        found.append(option_value)
        return tuple(found)


@dataclass(frozen=True)
class Stage:
    """A build stage: a FROM instruction and everything up to the next FROM."""

    index: int
    #: The ``AS`` name, lower-cased as Docker does; None when not named.
    name: str | None
    #: The FROM reference as written, e.g. ``"${REGISTRY}/base:${TAG}"``.
    base: str
    #: ``base`` after substituting global ARGs; None when it uses a variable
    #: that has no value (no default and no build arg).
    resolved_base: str | None
    #: The ``--platform`` flag as written, e.g. ``"$BUILDPLATFORM"``.
    platform: str | None
    line: int
    instruction: Instruction
    #: Index of the earlier stage that ``resolved_base`` names, if any.
    base_stage: int | None
    #: The platform the stage is built for: the ``--platform`` flag substituted and
    #: normalised (the platform its base image is pulled for), else the target platform;
    #: an earlier stage's platform when built on it. None when unknown.
    base_platform: str | None = None

    @property
    def is_scratch(self) -> bool:
        """Whether the stage starts from the empty ``scratch`` image."""
        return self.resolved_base == "scratch"

    @property
    def is_external(self) -> bool:
        """Whether the stage starts from an image: neither ``scratch`` nor an earlier stage.

        A base that could not be resolved counts as external.
        """
        return not self.is_scratch and self.base_stage is None


def canonical_reference(reference: str) -> str:
    """``reference`` as the engine resolves a short name, for comparing two references.

    >>> canonical_reference("python")
    'docker.io/library/python:latest'
    >>> canonical_reference("127.0.0.1:5000/app-base:cuda")
    '127.0.0.1:5000/app-base:cuda'
    >>> canonical_reference("reg.example:5000/ml:1@sha256:ab") == canonical_reference(
    ...     "reg.example:5000/ml@sha256:ab")
    True
    """
    name, at, digest = reference.partition("@")
    if at:  # the engine pulls by the digest alone: a tag beside it names nothing more
        path, _, last = name.rpartition("/")
        name = f"{path}/{last.partition(':')[0]}" if path else last.partition(":")[0]
    first, slash, _rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name if slash else 'library/' + name}"
    if not at and ":" not in name.rpartition("/")[2]:
        name += ":latest"
    return f"{name}{at}{digest}"


@dataclass(frozen=True)
class FamilyBase:
    """A base image that is a member of the image family under test.

    ``image`` is the member's image as this session built it; None when the session did
    not build it (a member tested by reference, whose tag a build pulls from a registry).
    """

    member: str
    tag: str
    image: ImageUnderTest | None = None


@dataclass(frozen=True, repr=False)
class Dockerfile:
    """A parsed Dockerfile, resolved for one target platform.

    Build with :meth:`parse` or :meth:`from_string`; both raise
    :class:`~pytest_imagecheck.errors.DockerfileError` with a ``path:line``
    message for input that ``docker build`` would reject.

    What depends on the platform (``stages``' resolved bases, ``args``, :meth:`substitute`)
    is resolved for :attr:`target_platform`: the first of ``platforms`` when given, else
    ``build_platform`` (the engine's), else unknown, where the platform ARGs have no value.
    :meth:`on` resolves the same file for another platform, and :attr:`judged_platforms`
    lists the platforms a check should judge.
    """

    #: The path used in messages, as given.
    path: Path
    #: Parser directives from the top of the file, e.g. ``{"syntax": "docker/dockerfile:1"}``.
    directives: dict[str, str]
    instructions: tuple[Instruction, ...]
    stages: tuple[Stage, ...]
    #: The ARGs declared before the first FROM, each with its build arg if one
    #: is given, else its default, else None. Build args that no global ARG
    #: declares are left out: Docker does not use them in FROM lines either.
    #: A bare ``ARG TARGETARCH`` (or another platform ARG) keeps its automatic value.
    args: dict[str, str | None]
    build_args: dict[str, str]
    #: The platforms the build targets (``--platform``), normalised; empty when not given.
    platforms: tuple[str, ...] = ()
    #: The engine's platform: BUILDPLATFORM, and the target when ``platforms`` is empty.
    build_platform: str | None = None
    #: The platform this object is resolved for (TARGETPLATFORM); None when unknown.
    target_platform: str | None = None
    #: The stage the build stops at (``--target``); None for the last stage.
    target: str | None = None
    #: In a family session: the members' tags a FROM may name, by canonical reference
    #: (:func:`~pytest_imagecheck.family.canonical_reference`), and the image this
    #: Dockerfile's build made in the session.
    family_bases: Mapping[str, FamilyBase] = field(default_factory=dict, compare=False)
    built_image: ImageUnderTest | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        platform = f" on {self.target_platform}" if self.target_platform else ""
        return f"<Dockerfile {self.path}: {len(self.stages)} stages{platform}>"

    @classmethod
    def parse(
        cls,
        path: str | os.PathLike[str],
        build_args: Mapping[str, str] | None = None,
        *,
        platforms: str | Sequence[str] = (),
        build_platform: str | None = None,
        target: str | None = None,
    ) -> Dockerfile:
        """Read and parse the Dockerfile at ``path``; the keywords are :meth:`from_string`'s."""
        try:
            data = Path(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise DockerfileError(
                f"Dockerfile not found: {path} (pass --dockerfile PATH)"
            ) from None
        except OSError as exc:
            raise DockerfileError(f"cannot read Dockerfile {path}: {exc.strerror}") from None
        # Docker does not care about the encoding either; only the ASCII syntax matters.
        text = data.decode("utf-8", errors="replace")
        return cls.from_string(
            text,
            path=path,
            build_args=build_args,
            platforms=platforms,
            build_platform=build_platform,
            target=target,
        )

    @classmethod
    def from_string(
        cls,
        text: str,
        *,
        path: str | os.PathLike[str] = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        platforms: str | Sequence[str] = (),
        build_platform: str | None = None,
        target: str | None = None,
    ) -> Dockerfile:
        """Parse Dockerfile ``text``; ``path`` only names it in messages.

        ``platforms`` are the build's target platforms (a list, or a comma-separated string
        as ``docker buildx build --platform`` takes it); ``build_platform`` is the engine's
        (:func:`engine_platform`). Both are normalised (:func:`normalize_platform`); an
        invalid one raises :class:`~pytest_imagecheck.errors.ImageCheckError`. ``target``
        is ``--target``; it must name a stage.
        """
        path = Path(path)
        if isinstance(platforms, str):
            platforms = parse_platforms(platforms)
        targets = tuple(dict.fromkeys(normalize_platform(p) for p in platforms))
        build = normalize_platform(build_platform) if build_platform else None
        lines = _split_lines(text)
        directives = _read_directives(lines, path)
        instructions = _read_instructions(lines, path, directives.get("escape", "\\"))
        dockerfile = cls._resolve(
            path=path,
            directives=directives,
            instructions=instructions,
            build_args=dict(build_args or {}),
            platforms=targets,
            build_platform=build,
            target_platform=targets[0] if targets else build,
            target=target,
        )
        if target is not None:
            dockerfile.check_target(target)
        return dockerfile

    @classmethod
    def _resolve(
        cls,
        *,
        path: Path,
        directives: dict[str, str],
        instructions: tuple[Instruction, ...],
        build_args: dict[str, str],
        platforms: tuple[str, ...],
        build_platform: str | None,
        target_platform: str | None,
        target: str | None,
    ) -> Dockerfile:
        """Resolve the global ARGs and the stages' bases for ``target_platform``."""
        escape = directives.get("escape", "\\")
        scope = platform_args(target_platform, build_platform, build_args)
        declared: list[str] = []
        stages: list[Stage] = []
        for instruction in instructions:
            where = f"{path}:{instruction.line}"
            if instruction.stage is None:
                declared += _declare(scope, instruction, build_args, {}, escape, where)
            elif instruction.keyword == "FROM":
                stages.append(
                    _make_stage(instruction, stages, scope, escape, where, target_platform)
                )
        if not stages:
            raise DockerfileError(f"{path}: no FROM instruction (start a stage with FROM IMAGE)")
        return cls(
            path=path,
            directives=directives,
            instructions=instructions,
            stages=tuple(stages),
            args={name: scope[name] for name in dict.fromkeys(declared)},
            build_args=build_args,
            platforms=platforms,
            build_platform=build_platform,
            target_platform=target_platform,
            target=target,
        )

    def on(self, platform: str) -> Dockerfile:
        """This Dockerfile resolved for target ``platform`` (normalised first).

        >>> text = "FROM scratch AS base-amd64\\nFROM scratch AS base-arm64\\n"
        >>> text += "FROM base-${TARGETARCH}\\n"
        >>> dockerfile = Dockerfile.from_string(text, build_platform="linux/amd64")
        >>> [df.stages[2].resolved_base for df in (dockerfile, dockerfile.on("linux/aarch64"))]
        ['base-amd64', 'base-arm64']
        """
        platform = normalize_platform(platform)
        if platform == self.target_platform:
            return self
        resolved = self._resolve(
            path=self.path,
            directives=self.directives,
            instructions=self.instructions,
            build_args=self.build_args,
            platforms=self.platforms,
            build_platform=self.build_platform,
            target_platform=platform,
            target=self.target,
        )
        return replace(resolved, family_bases=self.family_bases, built_image=self.built_image)

    @cached_property
    def platform_args(self) -> dict[str, str | None]:
        """TARGETPLATFORM, TARGETARCH, ... BUILDVARIANT for :attr:`target_platform`, as FROM
        lines see them (build args override; None where the platform is unknown)."""
        return platform_args(self.target_platform, self.build_platform, self.build_args)

    @cached_property
    def judged_platforms(self) -> tuple[str, ...]:
        """The target platforms a check should judge this Dockerfile on.

        ``platforms`` when the build names them. Otherwise the engine's platform, followed by
        every platform the Dockerfile evidently supports: a :data:`CANDIDATE_PLATFORMS` entry
        on which some FROM line selects an earlier stage other than the one it selects on the
        engine's platform (``FROM base-${TARGETARCH}`` with stages ``base-amd64`` and
        ``base-arm64``); for another OS than the engine's, other than the one it selects for
        the same architecture on the engine's OS. Empty when no platform is known.

        >>> text = "FROM scratch AS base-amd64\\nFROM scratch AS base-arm64\\n"
        >>> text += "FROM base-${TARGETARCH}\\n"
        >>> Dockerfile.from_string(text, build_platform="linux/amd64").judged_platforms
        ('linux/amd64', 'linux/arm64')
        """
        if self.platforms:
            return self.platforms
        if self.build_platform is None:
            return ()
        engine_os = self.build_platform.split("/")[0]
        found = [self.build_platform]
        for candidate in CANDIDATE_PLATFORMS:
            if candidate in found:
                continue
            # Compared with the same architecture on the engine's OS, so that a Dockerfile
            # that picks stages by TARGETARCH alone does not evidently support Windows.
            os_name, _, arch = candidate.partition("/")
            usual = self.on(self.build_platform if os_name == engine_os else f"{engine_os}/{arch}")
            view = self.on(candidate)
            if any(
                stage.base_stage is not None and stage.base_stage != other.base_stage
                for stage, other in zip(view.stages, usual.stages, strict=True)
            ):
                found.append(candidate)
        return tuple(found)

    @cached_property
    def used_stages(self) -> frozenset[int]:
        """Indices of the stages a build of :attr:`target` (else the last stage) runs on
        :attr:`target_platform`: the target and every stage it builds on or reads from
        (``FROM``, ``COPY --from``, ``RUN --mount=from``), as BuildKit prunes the rest."""
        needs: dict[int, set[int]] = {stage.index: set() for stage in self.stages}
        for stage in self.stages:
            if stage.base_stage is not None:
                needs[stage.index].add(stage.base_stage)
        for instruction in self.instructions:
            for source in instruction.sources:
                found = self.source_stage(source)
                if instruction.stage is not None and found is not None:
                    needs[instruction.stage].add(found.index)
        start = self.check_target(self.target).index if self.target else len(self.stages) - 1
        used: set[int] = set()
        todo = [start]
        while todo:
            index = todo.pop()
            if index not in used:
                used.add(index)
                todo.extend(needs[index])
        return frozenset(used)

    def source_stage(self, source: str) -> Stage | None:
        """The stage a ``--from`` value (:attr:`Instruction.sources`) names, if it names one:
        a stage name in any case, or an index. One with a ``$`` names none."""
        if "$" in source:
            return None
        try:
            return self.stage(source)
        except DockerfileError:
            return None

    @property
    def final_stage(self) -> Stage:
        """The last stage: what ``docker build`` produces without ``--target``."""
        return self.stages[-1]

    def stage(self, name_or_index: str | int) -> Stage:
        """The stage with this name (any case) or index, as ``COPY --from`` finds it.

        A string of digits that is no stage name is taken as an index.
        """
        if isinstance(name_or_index, int):
            if 0 <= name_or_index < len(self.stages):
                return self.stages[name_or_index]
        else:
            key = name_or_index.lower()
            for stage in self.stages:
                if stage.name == key:
                    return stage
            if key.isascii() and key.isdigit() and int(key) < len(self.stages):
                return self.stages[int(key)]
        stages = ", ".join(stage.name or str(stage.index) for stage in self.stages)
        raise DockerfileError(
            f'{self.path} has no stage "{name_or_index}"; its stages are: {stages}'
        )

    def check_target(self, target: str) -> Stage:
        """The stage that ``docker build --target TARGET`` builds."""
        names = [stage.name for stage in self.stages if stage.name]
        for stage in self.stages:
            if stage.name == target.lower():
                return stage
        if not names:
            raise DockerfileError(
                f'--target "{target}" is not a stage of {self.path}; none of its stages'
                " is named (name one with FROM IMAGE AS NAME)"
            )
        raise DockerfileError(
            f'--target "{target}" is not a stage of {self.path}; its stages are: '
            + ", ".join(names)
        )

    def location(self, instruction_or_line: Instruction | int) -> str:
        """``path:line`` for messages, e.g. ``"Dockerfile:12"``, relative to the working directory
        when the Dockerfile is under it."""
        if isinstance(instruction_or_line, Instruction):
            instruction_or_line = instruction_or_line.line
        path = self.path
        if path.is_absolute() and path.is_relative_to(Path.cwd()):
            path = path.relative_to(Path.cwd())
        return f"{path}:{instruction_or_line}"

    def family_base(self, reference: str | None) -> FamilyBase | None:
        """The family member whose tag ``reference`` is, in a family session; else None."""
        if reference is None or not self.family_bases:
            return None
        return self.family_bases.get(canonical_reference(reference))

    def external_base(self, stage: Stage | str | int | None = None) -> str | None:
        r"""The external image a stage (default: the final one) builds on, through earlier stages.

        ``None`` for a stage that starts from ``scratch``; the reference as resolved, so
        ``assert_built_from(image, dockerfile.external_base())`` checks the pinned FROM.

        >>> Dockerfile.from_string("FROM debian:12 AS a\nFROM a AS b\n").external_base()
        'debian:12'
        """
        current = self.final_stage if stage is None else stage
        if not isinstance(current, Stage):
            current = self.stage(current)
        while current.base_stage is not None:
            current = self.stages[current.base_stage]
        return None if current.is_scratch else current.resolved_base

    def instructions_of(self, stage: Stage | str | int) -> tuple[Instruction, ...]:
        """The instructions of a stage, its FROM first."""
        index = stage.index if isinstance(stage, Stage) else self.stage(stage).index
        return tuple(instruction for instruction in self.instructions if instruction.stage == index)

    def substitute(self, text: str, stage: int | None = None) -> str | None:
        """Substitute ARGs in ``text`` as Docker does, and remove its quotes.

        With ``stage=None`` the global ARGs and the platform ARGs apply, as in FROM
        lines; with a stage index, the ARGs that stage declares (a global or platform
        ARG is visible in a stage only where the stage re-declares it, e.g. a bare
        ``ARG TARGETARCH``). ENV values are not known here. Returns None when ``text``
        needs a variable without a value.
        """
        global_scope = {**self.platform_args, **self.args}
        scope = global_scope
        if stage is not None:
            scope = {}
            for instruction in self.instructions_of(stage):
                if instruction.keyword == "ARG":
                    where = self.location(instruction)
                    _declare(scope, instruction, self.build_args, global_scope, self._escape, where)
        return _expand(text, scope, self._escape, str(self.path))

    @property
    def _escape(self) -> str:
        return self.directives.get("escape", "\\")


def _split_lines(text: str) -> list[str]:
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _read_directives(lines: list[str], path: Path) -> dict[str, str]:
    # As in BuildKit, the first line that is not a known directive (a comment,
    # a blank line, an instruction, an unknown directive) ends them.
    directives: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        match = _DIRECTIVE.fullmatch(line.lstrip())
        if not match or match[1].lower() not in _DIRECTIVES:
            break
        name, value = match[1].lower(), match[2]
        if name in directives:
            raise DockerfileError(
                f"{path}:{number}: repeated {name} directive (keep only the first)"
            )
        if name == "escape" and value not in ("\\", "`"):
            raise DockerfileError(
                f'{path}:{number}: invalid escape directive "{value}" (use \\ or `)'
            )
        directives[name] = value
    return directives


def _read_instructions(lines: list[str], path: Path, escape: str) -> tuple[Instruction, ...]:
    # An escape character ends a line as a continuation unless it is itself escaped.
    continuation = re.compile(rf"(?<!{re.escape(escape)}){re.escape(escape)}[ \t]*$")
    instructions: list[Instruction] = []
    stage: int | None = None
    index = 0
    while index < len(lines):
        start = index + 1
        first = lines[index].lstrip()
        index += 1
        if first.startswith("#"):
            continue
        text, more = _cut_continuation(first, continuation)
        if not more and not text:
            continue
        while more and index < len(lines):
            line = lines[index]
            index += 1
            if line.lstrip().startswith("#") or not line.strip():
                continue
            piece, more = _cut_continuation(line, continuation)
            text += piece

        where = f"{path}:{start}"
        written, rest = [*_KEYWORD_SEPARATOR.split(text.strip(), maxsplit=1), ""][:2]
        keyword = written.upper()
        if keyword not in _INSTRUCTIONS:
            raise _unknown_instruction(written, where, escape)
        if keyword == "FROM":
            stage = 0 if stage is None else stage + 1
        elif stage is None and keyword != "ARG":
            raise DockerfileError(
                f"{where}: {keyword} before the first FROM (only ARG may come before FROM)"
            )
        flags, value = _split_flags(rest)
        json_args = _json_args(keyword, value, where)
        heredocs: tuple[Heredoc, ...] = ()
        if json_args is None and _heredoc_keyword(keyword, value) in _HEREDOC_FORM:
            heredocs, index = _read_heredocs(text, lines, index, where)
        instructions.append(
            Instruction(
                keyword=keyword,
                value=value,
                line=start,
                end_line=index,
                flags=flags,
                json_args=json_args,
                heredocs=heredocs,
                stage=stage,
                original="\n".join(lines[start - 1 : index]),
            )
        )
    return tuple(instructions)


def _cut_continuation(line: str, continuation: re.Pattern[str]) -> tuple[str, bool]:
    match = continuation.search(line)
    if match:
        return line[: match.start()], True
    return line, False


def _unknown_instruction(written: str, where: str, escape: str) -> DockerfileError:
    close = difflib.get_close_matches(written.upper(), _INSTRUCTIONS, n=1)
    if close:
        hint = f"did you mean {close[0]}?"
    else:
        hint = f'if it continues the line before, end that line with "{escape}"'
    return DockerfileError(f'{where}: unknown instruction "{written}" ({hint})')


def _split_flags(rest: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Split leading ``--name=value`` words off ``rest``, as BuildKit does for every keyword."""
    flags: list[tuple[str, str]] = []
    pos = 0
    while True:
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            break
        word, pos = _flag_word(rest, pos)
        if word == "--":
            break
        name, _, value = word[2:].partition("=")
        flags.append((name, value))
    return tuple(flags), rest[pos:].strip()


def _flag_word(text: str, pos: int) -> tuple[str, int]:
    # Flags take quotes and backslash escapes whatever the escape directive says.
    chars: list[str] = []
    quote = ""
    while pos < len(text) and (quote or not text[pos].isspace()):
        char = text[pos]
        if char == "\\":
            pos += 1
            chars.append(text[pos : pos + 1])
        elif not quote and char in "'\"":
            quote = char
        elif char == quote:
            quote = ""
        else:
            chars.append(char)
        pos += 1
    return "".join(chars), pos


def _json_args(keyword: str, value: str, where: str) -> tuple[str, ...] | None:
    if keyword not in _EXEC_FORM:
        return None
    if keyword == "HEALTHCHECK":
        kind_and_command = value.split(None, 1)
        value = kind_and_command[1] if len(kind_and_command) == 2 else ""
    if not value.startswith("["):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None  # not JSON after all: the shell form
    if not all(isinstance(arg, str) for arg in parsed):
        raise DockerfileError(
            f"{where}: {keyword} {value} has non-string elements (quote every element)"
        )
    return tuple(parsed)


def _heredoc_keyword(keyword: str, value: str) -> str:
    if keyword == "ONBUILD":
        return value.split(None, 1)[0].upper() if value else ""
    return keyword


def _read_heredocs(
    text: str, lines: list[str], index: int, where: str
) -> tuple[tuple[Heredoc, ...], int]:
    """Read the body of each ``<<NAME`` word in ``text`` from ``lines[index:]``."""
    heredocs: list[Heredoc] = []
    for word in _raw_words(text, "\\"):
        match = _HEREDOC.fullmatch(word)
        if not match:
            continue
        name = re.sub(r"""\\(.)|["']""", r"\1", match[3])
        if not name:
            continue
        chomp = match[2] == "-"
        first_line = index + 1
        body: list[str] = []
        while True:
            if index == len(lines):
                raise DockerfileError(
                    f'{where}: unterminated heredoc <<{match[2]}{name} (add a line "{name}")'
                )
            line = lines[index].lstrip("\t") if chomp else lines[index]
            index += 1
            if line == name:
                break
            body.append(line + "\n")
        heredocs.append(Heredoc(name=name, body="".join(body), line=first_line))
    return tuple(heredocs), index


def _raw_words(text: str, escape: str) -> list[str]:
    """Split ``text`` at whitespace outside quotes, keeping quotes and escapes."""
    words: list[str] = []
    word = ""
    in_word = False
    quote = ""
    pos = 0
    while pos < len(text):
        char = text[pos]
        if not quote and char.isspace():
            if in_word:
                words.append(word)
            word, in_word = "", False
        elif char == escape and quote != "'":
            word, in_word = word + text[pos : pos + 2], True
            pos += 1
        else:
            if not quote and char in "'\"":
                quote = char
            elif char == quote:
                quote = ""
            word, in_word = word + char, True
        pos += 1
    if in_word:
        words.append(word)
    return words


def _make_stage(
    instruction: Instruction,
    earlier: list[Stage],
    args: Mapping[str, str | None],
    escape: str,
    where: str,
    target_platform: str | None,
) -> Stage:
    words = instruction.value.split()
    if not words:
        raise DockerfileError(f"{where}: FROM has no image (write FROM IMAGE[:TAG] [AS NAME])")
    name = None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise DockerfileError(
                f'{where}: invalid stage name "{words[2]}" (start with a letter;'
                " then use letters, digits, -, _ and .)"
            )
        for stage in earlier:
            if stage.name == name:
                raise DockerfileError(
                    f'{where}: stage name "{name}" is already used on line {stage.line}'
                    " (rename one of them)"
                )
    elif len(words) != 1:
        raise DockerfileError(
            f'{where}: FROM takes an image and an optional "AS name", not "{instruction.value}"'
        )
    resolved = _expand(words[0], args, escape, where)
    base_stage = None
    if resolved is not None:
        base_stage = next((s.index for s in earlier if s.name == resolved.lower()), None)
    flag = instruction.flag("platform")
    # A stage built on an earlier one takes that one's platform, whatever its own flag says
    # (BuildKit's dispatchState.init).
    base_platform = target_platform if base_stage is None else earlier[base_stage].base_platform
    if flag is not None and base_stage is None:
        base_platform = None
        value = _expand(flag, args, escape, where)
        # A value BuildKit refuses leaves the platform unknown here.
        with contextlib.suppress(ImageCheckError):
            base_platform = normalize_platform(value) if value else None
    return Stage(
        index=len(earlier),
        name=name,
        base=words[0],
        resolved_base=resolved,
        platform=flag,
        line=instruction.line,
        instruction=instruction,
        base_stage=base_stage,
        base_platform=base_platform,
    )


def _declare(
    scope: dict[str, str | None],
    instruction: Instruction,
    build_args: Mapping[str, str],
    outer: Mapping[str, str | None],
    escape: str,
    where: str,
) -> list[str]:
    """Add the names an ARG instruction declares to ``scope``; return them.

    A build arg wins over the default; a name without default takes its value
    from ``outer`` (the global and platform ARGs, for a stage), else keeps the
    value it has in ``scope`` (a platform ARG, or an earlier ARG of that name),
    else has none. That is BuildKit's ``buildMetaArgs`` and ``dispatchArg``.
    """
    words = _raw_words(instruction.value, escape)
    if not words:
        raise DockerfileError(f"{where}: ARG has no name (write ARG NAME[=DEFAULT])")
    names = []
    for word in words:
        name, has_default, default = word.partition("=")
        names.append(name)
        if name in build_args:
            scope[name] = build_args[name]
        elif has_default:
            scope[name] = _expand(default, scope, escape, where)
        elif name in outer:
            scope[name] = outer[name]
        else:
            scope.setdefault(name, None)
    return names


def _expand(text: str, scope: Mapping[str, str | None], escape: str, where: str) -> str | None:
    try:
        return _Expansion(text, scope, escape).word()
    except ValueError as exc:
        raise DockerfileError(f'{where}: cannot substitute "{text}": {exc}') from None


class _Expansion:
    """Variable substitution and quote removal as BuildKit's shell lexer does them.

    A variable without a value gives None instead of Docker's empty string:
    the value is unknown here, not empty. The ``${NAME-word}``/``+``/``?``
    forms and their ``:`` variants treat it as unset.
    """

    def __init__(self, text: str, scope: Mapping[str, str | None], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.scope = scope
        self.escape = escape

    def word(self, stop: str = "", raw_escapes: bool = False) -> str | None:
        """Expand up to ``stop`` (consumed) or the end of the text."""
        parts: list[str | None] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if stop and char == stop:
                self.pos += 1
                return _join(parts)
            if char == "$":
                parts.append(self.dollar())
            elif char == "'":
                parts.append(self.single_quoted())
            elif char == '"':
                parts.append(self.double_quoted())
            else:
                if char == self.escape:
                    self.pos += 1
                    if raw_escapes:
                        parts.append(char)
                parts.append(self.text[self.pos : self.pos + 1])
                self.pos += 1
        if stop:
            raise ValueError(f"missing {stop!r}")
        return _join(parts)

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise ValueError("missing closing single quote")
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def double_quoted(self) -> str | None:
        parts: list[str | None] = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return _join(parts)
            if char == "$":
                parts.append(self.dollar())
                continue
            if char == self.escape and self.text[self.pos + 1 : self.pos + 2] in ('"', "$", char):
                self.pos += 1
            parts.append(self.text[self.pos])
            self.pos += 1
        raise ValueError("missing closing double quote")

    def dollar(self) -> str | None:
        self.pos += 1
        if not self.text.startswith("{", self.pos):
            match = _VARIABLE.match(self.text, self.pos)
            if not match:
                return "$"
            self.pos = match.end()
            return self.scope.get(match[0])
        self.pos += 1
        match = _VARIABLE.match(self.text, self.pos)
        if not match:
            raise ValueError("bad substitution")
        self.pos = match.end()
        value = self.scope.get(match[0])
        operator = self.text[self.pos : self.pos + 1]
        self.pos += 1
        if operator == "}":
            return value
        if operator == ":":
            operator = self.text[self.pos : self.pos + 1]
            self.pos += 1
            unset = value is None or value == ""
        else:
            unset = value is None
        if operator in ("-", "+", "?"):
            word = self.word("}")
            if operator == "-":
                return word if unset else value
            if operator == "+":
                return "" if unset else word
            return None if unset else value
        if operator in ("#", "%"):
            longest = self.text.startswith(operator, self.pos)
            if longest:
                self.pos += 1
            pattern = self.word("}", raw_escapes=True)
            if value is None or pattern is None:
                return None
            return _trim(value, _shell_pattern(pattern), operator == "#", longest)
        if operator == "/":
            every = self.text.startswith("/", self.pos)
            if every:
                self.pos += 1
            pattern = self.word("/", raw_escapes=True)
            replacement = self.word("}", raw_escapes=True)
            if value is None or pattern is None or replacement is None:
                return None
            return _shell_pattern(pattern).sub(
                lambda _: replacement, value, count=0 if every else 1
            )
        if not operator:
            raise ValueError("missing '}'")
        raise ValueError(f"unsupported modifier ({operator}) in substitution")


def _join(parts: list[str | None]) -> str | None:
    known = [part for part in parts if part is not None]
    return "".join(known) if len(known) == len(parts) else None


def _shell_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a shell wildcard pattern (``*``, ``?``, ``\\`` escapes) to a regex."""
    regex = ""
    pos = 0
    while pos < len(pattern):
        char = pattern[pos]
        if char == "*":
            regex += ".*"
        elif char == "?":
            regex += "."
        else:
            if char == "\\" and pos + 1 < len(pattern):
                pos += 1
            regex += re.escape(pattern[pos])
        pos += 1
    return re.compile(regex, re.DOTALL)


def _trim(value: str, pattern: re.Pattern[str], prefix: bool, longest: bool) -> str:
    """``${value#pattern}`` and its ``##``, ``%`` and ``%%`` variants."""
    cuts = range(len(value) + 1)
    for cut in reversed(cuts) if prefix == longest else cuts:
        if prefix and pattern.fullmatch(value[:cut]):
            return value[cut:]
        if not prefix and pattern.fullmatch(value[cut:]):
            return value[:cut]
    return value
