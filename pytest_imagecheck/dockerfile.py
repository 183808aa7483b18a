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
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_imagecheck.errors import DockerfileError

__all__ = ["Dockerfile", "Heredoc", "Instruction", "Stage"]

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


@dataclass(frozen=True, repr=False)
class Dockerfile:
    """A parsed Dockerfile.

    Build with :meth:`parse` or :meth:`from_string`; both raise
    :class:`~pytest_imagecheck.errors.DockerfileError` with a ``path:line``
    message for input that ``docker build`` would reject.
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
    args: dict[str, str | None]
    build_args: dict[str, str]

    def __repr__(self) -> str:
        return f"<Dockerfile {self.path}: {len(self.stages)} stages>"

    @classmethod
    def parse(
        cls, path: str | os.PathLike[str], build_args: Mapping[str, str] | None = None
    ) -> Dockerfile:
        """Read and parse the Dockerfile at ``path``."""
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
        return cls.from_string(text, path=path, build_args=build_args)

    @classmethod
    def from_string(
        cls,
        text: str,
        *,
        path: str | os.PathLike[str] = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
    ) -> Dockerfile:
        """Parse Dockerfile ``text``; ``path`` only names it in messages."""
        path = Path(path)
        build_args = dict(build_args or {})
        lines = _split_lines(text)
        directives = _read_directives(lines, path)
        escape = directives.get("escape", "\\")
        instructions = _read_instructions(lines, path, escape)
        args: dict[str, str | None] = {}
        stages: list[Stage] = []
        for instruction in instructions:
            where = f"{path}:{instruction.line}"
            if instruction.stage is None:
                _declare(args, instruction, build_args, {}, escape, where)
            elif instruction.keyword == "FROM":
                stages.append(_make_stage(instruction, stages, args, escape, where))
        if not stages:
            raise DockerfileError(f"{path}: no FROM instruction (start a stage with FROM IMAGE)")
        return cls(
            path=path,
            directives=directives,
            instructions=instructions,
            stages=tuple(stages),
            args=args,
            build_args=build_args,
        )

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

        With ``stage=None`` the global ARGs apply, as in FROM lines; with a
        stage index, the ARGs that stage declares (a global ARG is visible in
        a stage only where the stage re-declares it). ENV values are not
        known here. Returns None when ``text`` needs a variable without a value.
        """
        scope = self.args
        if stage is not None:
            scope = {}
            for instruction in self.instructions_of(stage):
                if instruction.keyword == "ARG":
                    where = self.location(instruction)
                    _declare(scope, instruction, self.build_args, self.args, self._escape, where)
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
    return Stage(
        index=len(earlier),
        name=name,
        base=words[0],
        resolved_base=resolved,
        platform=instruction.flag("platform"),
        line=instruction.line,
        instruction=instruction,
        base_stage=base_stage,
    )


def _declare(
    scope: dict[str, str | None],
    instruction: Instruction,
    build_args: Mapping[str, str],
    outer: Mapping[str, str | None],
    escape: str,
    where: str,
) -> None:
    """Add the names an ARG instruction declares to ``scope``.

    A build arg wins over the default; a name without default takes its value
    from ``outer`` (the global ARGs, for a stage).
    """
    words = _raw_words(instruction.value, escape)
    if not words:
        raise DockerfileError(f"{where}: ARG has no name (write ARG NAME[=DEFAULT])")
    for word in words:
        name, has_default, default = word.partition("=")
        if name in build_args:
            scope[name] = build_args[name]
        elif has_default:
            scope[name] = _expand(default, scope, escape, where)
        else:
            scope[name] = outer.get(name)


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
