"""imagecheck.yaml: acceptance criteria written as data, run by the same checks as Python tests.

:func:`load_spec` reads a file into a :class:`Spec`, a list of :class:`Criterion`. Each item
under ``criteria:`` names a ``check`` from :data:`CHECKS` and gives that check's keys; every
value is validated when the file is read, with the parsers the checks themselves use, so a
typo is one line naming the file, the line and the fix, before any image is built::

    imagecheck.yaml:7: unknown key "intervall" for check healthcheck (did you mean interval?): ...

:meth:`Criterion.run` calls the check function a Python test would call (``assert_non_root``,
``assert_healthcheck``, ...): there is one implementation of each rule. :data:`CHECKS` is the
single description of the format: validation, default test names, what each criterion needs
and :func:`json_schema` (shipped as ``imagecheck.schema.json`` for editors) all read it.

Regenerate the shipped schema with ``python -m pytest_imagecheck.spec > imagecheck.schema.json``
(in the package folder); a test fails while the two differ.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import os
import re
import shlex
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from .errors import ImageCheckError
from .units import format_duration, parse_bound, parse_duration, parse_size

__all__ = [
    "CHECKS",
    "Check",
    "Criterion",
    "Key",
    "Kind",
    "Spec",
    "SpecError",
    "json_schema",
    "load_spec",
    "parse_spec",
]

#: Keys every criterion may have besides its check's own.
COMMON_KEYS = ("check", "name", "waive")


class SpecError(ImageCheckError):
    """imagecheck.yaml is not valid; the message is one line: ``file:line: what is wrong: fix``."""


class _Invalid(Exception):
    """A problem found while reading the file: the message and the line it is on, if known.

    ``subkey`` names the entry of a mapping value at fault (``expect.APP_PORT``).
    """

    def __init__(self, message: str, line: int | None = None, subkey: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.subkey = subkey


class _WrongType(Exception):
    """A value of the wrong YAML type: the message says what the key expects instead."""


# --- YAML with line numbers ------------------------------------------------------------------


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int
    key_lines: dict[Any, int]


class _Sequence(list[Any]):
    """A YAML sequence that remembers its line and the line of each item (1-based)."""

    line: int
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with mappings and sequences that remember where they are written,
    and duplicate keys refused instead of silently keeping the last."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[_Mapping]:
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    yield mapping
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # merge keys (<<: *anchor) first, so the mapping's own win
    merged = len(node.value) - own
    own_keys: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise _Invalid("a key is a list or a mapping: keys must be plain names", line)
        if index >= merged:
            if key in own_keys:
                raise _Invalid(
                    f"duplicate key {_shown(key)} (first on line {mapping.key_lines[key]}): "
                    "give each key once",
                    line,
                )
            own_keys.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[_Sequence]:
    sequence = _Sequence()
    sequence.line = node.start_mark.line + 1
    sequence.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield sequence
    sequence.extend(loader.construct_object(item, deep=True) for item in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        raise _Invalid(
            f"not valid YAML ({problem}): check the indentation, and quote values that contain "
            '": " or start with a special character',
            mark.line + 1 if mark else 1,
        ) from None
    except yaml.reader.ReaderError as exc:
        raise _Invalid(
            f"not valid YAML ({str(exc).splitlines()[0]}): remove the control character",
            text.count("\n", 0, exc.position) + 1,
        ) from None


def _plain(value: Any) -> Any:
    """``value`` with the line-remembering mappings and sequences turned into dicts and lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


#: Lists and mappings longer than this, written as JSON, are shown as "a list", "a mapping".
_SHOWN_LIMIT = 60


def _shown(value: object) -> str:
    """A YAML value as the user would recognise it in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (an empty value)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict | list):
        text = json.dumps(_plain(value), ensure_ascii=False, default=str)
        if len(text) <= _SHOWN_LIMIT:
            return text
        return "a mapping" if isinstance(value, dict) else "a list"
    return str(value)


# --- value kinds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A type of value in imagecheck.yaml: what it must look like, how it is checked and
    converted for the check function, and its JSON Schema.

    ``convert`` raises ``_WrongType`` when the YAML type is wrong (the message then says
    ``expected <expected>, got ...``) and ``_Invalid`` for a value of the right type that does
    not parse (the message of the parser the checks use).
    """

    expected: str
    schema: Mapping[str, Any]
    convert: Callable[[Any], Any]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _units(parse: Callable[[Any], Any], value: Any) -> Any:
    """Run one of the :mod:`~pytest_imagecheck.units` parsers, keeping its message."""
    try:
        return parse(value)
    except ImageCheckError as exc:
        raise _Invalid(str(exc)) from None


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _WrongType
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _WrongType
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _WrongType
    return value


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise _WrongType
    return value


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def convert(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _WrongType
        return [item(entry) for entry in value]

    return convert


def _tmpfs(value: Any) -> dict[str, str]:
    return {path: "" for path in _list_of(_absolute_path)(value)}


def _command(value: Any) -> list[str] | str:
    if isinstance(value, list) and value:
        return _list_of(_text)(value)
    text = _text(value)
    try:
        if shlex.split(text):
            return text
    except ValueError as exc:  # "No closing quotation"
        raise _Invalid(
            f"bad command {_shown(text)}: {str(exc).lower()}; close the quote, or write the "
            "command as a list of words"
        ) from None
    raise _Invalid(f"bad command {_shown(text)}: it has no words; write a command to run")


def _exec_or_shell_form(value: Any) -> list[str] | str:
    return _list_of(_text)(value) if isinstance(value, list) else _text(value)


def _duration(value: Any) -> Any:
    if not isinstance(value, str) and not _is_number(value):
        raise _WrongType
    return _units(parse_duration, value)


def _time_limit(example: str, leaves: str) -> Callable[[Any], Any]:
    """A duration that bounds a wait: above 0, as the checks require (a limit of 0 makes
    one attempt with no time for an answer)."""

    def convert(value: Any) -> Any:
        duration = _duration(value)
        if duration <= timedelta(0):
            raise _Invalid(
                f"{format_duration(duration)} leaves no time {leaves}: give a duration above 0, "
                f'e.g. "{example}"'
            )
        return duration

    return convert


def _duration_bound(value: Any) -> Any:
    if not isinstance(value, str) and not _is_number(value):
        raise _WrongType
    _units(parse_bound, value)
    return value  # the check parses it again, so its messages show the bound as written


def _count_bound(value: Any) -> Any:
    if not isinstance(value, str) and not _is_int(value):
        raise _WrongType
    bound = _units(lambda v: parse_bound(v, parse=int), value)
    if bound.value < 0:
        raise _Invalid(f"bad number {_shown(value)}: use a count of 0 or more, e.g. 3")
    return value


def _size(value: Any) -> Any:
    if not isinstance(value, str) and not _is_number(value):
        raise _WrongType
    _units(parse_size, value)
    return value  # as written, so the check's messages quote the budget as written


_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION = rf"(?:{_NUMBER}|(?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+)"
_OPERATOR = r"(?:<=|>=|==|!=|<|>)?"
_PERCENT = re.compile(rf"^\s*\+? *{_NUMBER} *%\s*$")
_MODE = re.compile(r"^[0-7]{3,5}$")
_PORT = re.compile(r"^[0-9]+(?:/(?:tcp|udp|sctp))?$")
_FINDING_ID = re.compile(r"^(?:env|history|file):\S")
_FILE_KINDS = ("file", "dir", "symlink")


def _percent(value: Any) -> str:
    if not isinstance(value, str):
        raise _WrongType
    if not _PERCENT.match(value):
        raise _Invalid(f'bad growth {_shown(value)}: write a percentage, e.g. "10%"')
    return value


def _status(value: Any) -> int | list[int]:
    codes = value if isinstance(value, list) and value else [value]
    for code in codes:
        if not _is_int(code):
            raise _WrongType
        if not 100 <= code <= 599:
            raise _Invalid(f"bad status {code}: use an HTTP status code from 100 to 599, e.g. 200")
    return list(codes) if isinstance(value, list) else value


def _port(value: Any) -> int | str:
    if _is_int(value):
        number = value
    elif isinstance(value, str) and _PORT.match(value):
        number = int(value.partition("/")[0])
    else:
        raise _WrongType
    if not 1 <= number <= 65535:
        raise _Invalid(f"bad port {_shown(value)}: use a port number from 1 to 65535")
    return value


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _WrongType
    return _plain(value)


def _string_map(*, nullable: bool = False) -> Callable[[Any], dict[str, str | None]]:
    def convert(value: Any) -> dict[str, str | None]:
        if not isinstance(value, dict) or not value:
            raise _WrongType
        lines = getattr(value, "key_lines", {})
        for name, entry in value.items():
            if not isinstance(name, str) or not name:
                raise _Invalid(f"name {_shown(name)} is not a string: quote it", lines.get(name))
            if not isinstance(entry, str) and not (nullable and entry is None):
                wanted = "a string or null (must be unset)" if nullable else "a string"
                raise _Invalid(
                    f"expected {wanted}, got {_shown(entry)}: quote the value",
                    lines.get(name),
                    name,
                )
        return dict(value)

    return convert


def _accept(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise _WrongType
    lines = getattr(value, "key_lines", {})
    for finding, reason in value.items():
        if not isinstance(finding, str) or not _FINDING_ID.match(finding):
            raise _Invalid(
                f"{_shown(finding)} is not a finding id: use env:NAME, history:NAME, "
                "history:step-N or file:/path, as the failure message names them",
                lines.get(finding),
            )
        if not isinstance(reason, str) or not reason.strip():
            raise _Invalid(
                f"expected a reason, a non-empty string saying why this secret is in the image "
                f"on purpose, got {_shown(reason)}",
                lines.get(finding),
                finding,
            )
    return dict(value)


def _regex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _WrongType
    try:
        re.compile(value)
    except re.error as exc:
        # As YAML's single quotes write it: JSON would double each backslash.
        shown = "'" + value.replace("'", "''") + "'" if "\n" not in value else _shown(value)
        raise _Invalid(
            f"bad regular expression {shown} ({exc}): fix the pattern; in YAML, "
            "single quotes keep backslashes as written ('3\\.11')"
        ) from None
    return value


def _mode(value: Any) -> str:
    if _is_int(value):
        raise _Invalid(
            f'expected an octal mode in quotes like "0644", got the number {value}: quote the '
            "mode (unquoted, YAML reads 0644 as 420 and 644 as the decimal number 644)"
        )
    if not isinstance(value, str) or not _MODE.match(value) or int(value, 8) > 0o7777:
        raise _WrongType
    return value


def _file_kind(value: Any) -> str:
    if value not in _FILE_KINDS:
        raise _WrongType
    return str(value)


def _owner(value: Any) -> str | int:
    if (_is_int(value) and value >= 0) or (isinstance(value, str) and value):
        return value
    raise _WrongType


def _exit_code(value: Any) -> int:
    if not _is_int(value) or not 0 <= value <= 255:
        raise _WrongType
    return value


def _version(value: Any) -> str:
    if _is_number(value):
        raise _Invalid(
            f'expected a version in quotes like "12.1", got the number {value}: quote it '
            "(YAML reads 12.10 as the number 12.1)"
        )
    if not isinstance(value, str):
        raise _WrongType
    try:
        Version(value)
    except InvalidVersion:
        raise _Invalid(
            f'bad version {_shown(value)}: use a version or a prefix like "12.1"'
        ) from None
    return value


_NUMBER_SCHEMA = {"type": "number", "minimum": 0}

BOOL = Kind("true or false", {"type": "boolean"}, _bool)
TEXT = Kind("a non-empty string", {"type": "string", "minLength": 1}, _text)
TEXTS = Kind(
    "a list of strings",
    {"type": "array", "items": {"type": "string", "minLength": 1}},
    _list_of(_text),
)
ABSOLUTE_PATH = Kind(
    'an absolute path like "/app"', {"type": "string", "pattern": "^/"}, _absolute_path
)
TMPFS = Kind(
    'a list of absolute paths like ["/tmp"]',
    {"type": "array", "items": {"type": "string", "pattern": "^/"}},
    _tmpfs,
)
COMMAND = Kind(
    "a command: a list of strings like [python3, --version], or one string",
    {
        "anyOf": [
            {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            {"type": "string", "minLength": 1},
        ]
    },
    _command,
)
EXEC_OR_SHELL_FORM = Kind(
    "a list of strings (exec form; [] for none) or one string (shell form)",
    {
        "anyOf": [
            {"type": "array", "items": {"type": "string", "minLength": 1}},
            {"type": "string", "minLength": 1},
        ]
    },
    _exec_or_shell_form,
)
DURATION = Kind(
    'a duration like "30s"',
    {"anyOf": [{"type": "string", "pattern": rf"^\s*{_DURATION}\s*$"}, _NUMBER_SCHEMA]},
    _duration,
)
#: A positive duration: no digits but zeros (``0``, ``0s``, ``0.0ms``) is refused.
_POSITIVE_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": rf"^(?=[^1-9]*[1-9])\s*{_DURATION}\s*$"},
        {"type": "number", "exclusiveMinimum": 0},
    ]
}
TIMEOUT = Kind(
    'a duration above 0 like "60s"',
    _POSITIVE_DURATION_SCHEMA,
    _time_limit("60s", "to wait"),
)
REQUEST_TIMEOUT = Kind(
    'a duration above 0 like "10s"',
    _POSITIVE_DURATION_SCHEMA,
    _time_limit("10s", "for a request"),
)
DURATION_BOUND = Kind(
    'a duration like "30s" or a bound like "<=30s"',
    {
        "anyOf": [
            {"type": "string", "pattern": rf"^\s*{_OPERATOR}\s*{_DURATION}\s*$"},
            _NUMBER_SCHEMA,
        ]
    },
    _duration_bound,
)
COUNT_BOUND = Kind(
    'a whole number or a bound like ">=3"',
    {
        "anyOf": [
            {"type": "string", "pattern": rf"^\s*{_OPERATOR}\s*\+?[0-9]+\s*$"},
            {"type": "integer", "minimum": 0},
        ]
    },
    _count_bound,
)
SIZE = Kind(
    'a size like "2.5GB" or "512MiB"',
    {
        "anyOf": [
            {
                "type": "string",
                "pattern": rf"^\s*{_NUMBER} *(?:[bB]|[kKmMgGtT][bB]|[kKmMgGtT][iI][bB])?\s*$",
            },
            _NUMBER_SCHEMA,
        ]
    },
    _size,
)
PERCENT = Kind('a percentage like "10%"', {"type": "string", "pattern": _PERCENT.pattern}, _percent)
STATUS = Kind(
    "an HTTP status code like 200, or a list of them",
    {
        "anyOf": [
            {"type": "integer", "minimum": 100, "maximum": 599},
            {
                "type": "array",
                "minItems": 1,
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
            },
        ]
    },
    _status,
)
_PORT_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 65535},
        {"type": "string", "pattern": _PORT.pattern},
    ]
}
PORT = Kind('a port like 5000 or "5000/tcp"', _PORT_SCHEMA, _port)
PORTS = Kind(
    'a list of ports like [5000, "53/udp"]',
    {"type": "array", "items": _PORT_SCHEMA},
    _list_of(_port),
)
JSON_OBJECT = Kind("a mapping, like {status: ready}", {"type": "object"}, _json_object)
EXPECTED_VALUES = Kind(
    "a mapping of names to values (null: must be unset)",
    {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"type": ["string", "null"]},
    },
    _string_map(nullable=True),
)
STRING_MAP = Kind(
    "a mapping of names to strings",
    {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
    _string_map(),
)
ACCEPT = Kind(
    'a mapping of finding ids to reasons, like {"env:DEMO_PASSWORD": "demo image"}',
    {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": _FINDING_ID.pattern},
        "additionalProperties": {"type": "string", "pattern": r"\S"},
    },
    _accept,
)
REGEX = Kind("a regular expression", {"type": "string", "minLength": 1}, _regex)
MODE = Kind(
    'an octal mode in quotes like "0644"', {"type": "string", "pattern": _MODE.pattern}, _mode
)
FILE_KIND = Kind(f"one of {', '.join(_FILE_KINDS)}", {"enum": list(_FILE_KINDS)}, _file_kind)
OWNER = Kind(
    "a name or a numeric id",
    {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 0}]},
    _owner,
)
EXIT_CODE = Kind(
    "an exit code from 0 to 255", {"type": "integer", "minimum": 0, "maximum": 255}, _exit_code
)
#: A file next to the spec: a relative path is resolved against the spec file's folder.
SPEC_FILE = Kind('a file path like "size-baseline.json"', {"type": "string", "minLength": 1}, _text)
VERSION = Kind('a version in quotes like "12.1"', {"type": "string", "minLength": 1}, _version)
REASON = Kind(
    "a reason, a non-empty string saying why this criterion may fail for now",
    {"type": "string", "pattern": r"\S"},
    _reason,
)


# --- the checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key a check takes in imagecheck.yaml.

    A key becomes one of three things. Usually a keyword argument of the check function,
    named ``arg`` (default: the key's own name). A flag with ``needs`` adds those facts to the
    criterion's needs when true and is not passed (``runtime: true`` passes the session
    container). With ``container_option``, an option for the container the check starts.
    ``default`` is written as in YAML and goes through ``kind`` like a given value.
    """

    name: str
    kind: Kind
    doc: str
    required: bool = False
    default: Any = None
    example: Any = None
    arg: str | None = None
    needs: frozenset[str] = frozenset()
    container_option: bool = False

    @property
    def keyword(self) -> str | None:
        """The check function's keyword argument this key becomes, or None."""
        if self.needs or self.container_option:
            return None
        return self.arg or self.name

    def schema(self) -> dict[str, Any]:
        """This key's JSON Schema, with its documentation."""
        schema = {**self.kind.schema, "description": self.doc}
        if self.default is not None:
            schema["default"] = self.default
        if self.example is not None:
            schema["examples"] = [self.example]
        return schema


def _no_title(values: Mapping[str, Any]) -> str:
    return ""


@dataclass(frozen=True)
class Check:
    """One ``check:`` value: its keys, the function that runs it and what it is given.

    ``target`` is the dotted path of the check function, imported when a criterion runs.
    ``subject`` is the fact passed as its first argument; ``run_container`` means a container
    started for this criterion with ``run_options`` and the ``container_option`` keys. When a
    criterion on ``image`` needs ``container`` too, it is passed as ``container=``. ``title``
    makes the readable part of the default test name from the converted values.
    ``at_least_one`` and ``together`` are rules across keys.
    """

    name: str
    doc: str
    target: str
    subject: str
    keys: tuple[Key, ...] = ()
    title: Callable[[Mapping[str, Any]], str] = _no_title
    at_least_one: tuple[str, ...] = ()
    together: tuple[str, ...] = ()
    run_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs(self) -> frozenset[str]:
        """What every criterion of this check needs; flags can add more."""
        # A container started for the criterion is a container of the image under test.
        return frozenset(
            {self.subject, "image"} if self.subject == "run_container" else {self.subject}
        )

    def key(self, name: str) -> Key:
        """The key called ``name``."""
        return next(key for key in self.keys if key.name == name)

    def function(self) -> Callable[..., Any]:
        """The check function, imported now (some check modules are heavy or optional)."""
        module, _, name = self.target.rpartition(".")
        function: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return function

    def schema(self) -> dict[str, Any]:
        """JSON Schema of one criterion of this check."""
        schema: dict[str, Any] = {
            "description": self.doc,
            "type": "object",
            "properties": {
                "check": {"const": self.name},
                **_COMMON_SCHEMA,
                **{key.name: key.schema() for key in self.keys},
            },
            "required": ["check", *(key.name for key in self.keys if key.required)],
            "additionalProperties": False,
        }
        if self.at_least_one:
            schema["anyOf"] = [{"required": [name]} for name in self.at_least_one]
        if self.together:
            schema["dependentRequired"] = {
                name: [other for other in self.together if other != name] for name in self.together
            }
        return schema


def _show_value(value: Any) -> str:
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _pairs(*names: str) -> Callable[[Mapping[str, Any]], str]:
    def title(values: Mapping[str, Any]) -> str:
        return " ".join(f"{name}={_show_value(values[name])}" for name in names if name in values)

    return title


def _value_of(name: str) -> Callable[[Mapping[str, Any]], str]:
    def title(values: Mapping[str, Any]) -> str:
        return str(values[name])

    return title


def _names_in(name: str) -> Callable[[Mapping[str, Any]], str]:
    def title(values: Mapping[str, Any]) -> str:
        return " ".join(values[name])

    return title


def _healthcheck_title(values: Mapping[str, Any]) -> str:
    parts = []
    for name in ("interval", "timeout", "start_period", "retries"):
        if name in values:
            bound = (
                parse_bound(values[name], parse=int)
                if name == "retries"
                else parse_bound(values[name])
            )
            parts.append(f"{name}{'=' if bound.op == '==' else ''}{bound}")
    return " ".join(parts)


def _endpoint_title(values: Mapping[str, Any]) -> str:
    status = values["status"]
    codes = "/".join(map(str, status)) if isinstance(status, list) else str(status)
    return f"{values['path']} -> {codes}"


def _command_title(values: Mapping[str, Any]) -> str:
    run = values["run"]
    return shlex.join(run) if isinstance(run, list) else str(run)


def _ports_title(values: Mapping[str, Any]) -> str:
    ports = " ".join(map(str, values["expect"]))
    return f"{ports} exactly" if values.get("exactly") else ports


def _endpoint_keys() -> tuple[Key, ...]:
    return (
        Key("path", ABSOLUTE_PATH, "The path to poll.", default="/health"),
        Key("port", PORT, "The container port; default: the image's single exposed port."),
        Key("status", STATUS, "The status code (or codes) that mean ready.", default=200),
        Key("json", JSON_OBJECT, "A mapping the JSON body must contain (nested subset)."),
        Key("timeout", TIMEOUT, 'How long to wait for the answer; default "60s".'),
        Key("interval", DURATION, 'The pause between polls; default "250ms".'),
        Key(
            "request_timeout",
            REQUEST_TIMEOUT,
            "How long one request (connection, answer and body) may take; default: the time "
            "left of timeout.",
            example="10s",
        ),
    )


_CHECKS = (
    Check(
        "non_root",
        "The image's user resolves to a uid other than 0 (assert_non_root).",
        "pytest_imagecheck.checks.user.assert_non_root",
        "image",
        (
            Key(
                "runtime",
                BOOL,
                "Also check the uid of the running session container (PID 1 and an exec).",
                needs=frozenset({"container"}),
            ),
            Key("allow", TEXTS, "Users accepted without an /etc/passwd entry; never uid 0."),
        ),
    ),
    Check(
        "healthcheck",
        "The image has a HEALTHCHECK with these timings and probe (assert_healthcheck).",
        "pytest_imagecheck.checks.healthcheck.assert_healthcheck",
        "image",
        (
            Key("interval", DURATION_BOUND, 'Exact ("30s") or a bound ("<=30s").'),
            Key("timeout", DURATION_BOUND, 'Exact ("10s") or a bound ("<=10s").'),
            Key("start_period", DURATION_BOUND, 'Exact ("60s") or a bound ("<=2m").'),
            Key("retries", COUNT_BOUND, 'Exact (3) or a bound (">=3").'),
            Key("test", TEXT, "A substring the probe command must contain."),
        ),
        title=_healthcheck_title,
    ),
    Check(
        "base_images_pinned",
        "Every external image the Dockerfile uses is pinned by @sha256 digest "
        "(assert_base_images_pinned).",
        "pytest_imagecheck.checks.pinning.assert_base_images_pinned",
        "dockerfile",
        (Key("allow", TEXTS, "References exempt on purpose, as written or as resolved."),),
    ),
    Check(
        "built_from",
        "The image's first layers are the layers of this base (assert_built_from).",
        "pytest_imagecheck.checks.pinning.assert_built_from",
        "image",
        (
            Key(
                "base",
                TEXT,
                "The base image reference on the engine.",
                required=True,
                example="registry.example/base@sha256:4f0d...",
            ),
        ),
        title=_value_of("base"),
    ),
    Check(
        "size",
        "The image keeps within its size budgets (assert_size_within).",
        "pytest_imagecheck.checks.size.assert_size_within",
        "image",
        (
            Key("total", SIZE, "Budget for the uncompressed image size.", example="2.5GB"),
            Key("layer", SIZE, "Budget for the largest layer.", example="1.5GB"),
            Key("wasted", SIZE, "Budget for bytes that later layers overwrite or delete."),
            Key(
                "baseline",
                SPEC_FILE,
                "A size baseline file, relative to this file; needs growth.",
                example="size-baseline.json",
            ),
            Key("growth", PERCENT, "Growth allowed over the baseline.", example="10%"),
            Key("growth_floor", SIZE, 'Growth always allowed; default "10MB".'),
        ),
        title=_pairs("total", "layer", "wasted", "growth"),
        at_least_one=("total", "layer", "wasted", "baseline"),
        together=("baseline", "growth"),
    ),
    Check(
        "no_secrets",
        "The image carries no secrets, save those accepted (assert_no_secrets).",
        "pytest_imagecheck.checks.secrets.assert_no_secrets",
        "image",
        (Key("accept", ACCEPT, "Finding ids accepted on purpose, each with its reason."),),
    ),
    Check(
        "endpoint",
        "An HTTP endpoint of the session container answers as expected (assert_endpoint_ready).",
        "pytest_imagecheck.checks.endpoint.assert_endpoint_ready",
        "container",
        _endpoint_keys(),
        title=_endpoint_title,
    ),
    Check(
        "healthy",
        "The engine reports the session container healthy (assert_healthy).",
        "pytest_imagecheck.checks.health.assert_healthy",
        "container",
        (Key("timeout", TIMEOUT, "How long to wait; default: from the image's HEALTHCHECK."),),
    ),
    Check(
        "hardened",
        "A container started with a read-only root, all capabilities dropped and "
        "no-new-privileges answers as expected (assert_endpoint_ready).",
        "pytest_imagecheck.checks.endpoint.assert_endpoint_ready",
        "run_container",
        (
            *_endpoint_keys(),
            Key(
                "tmpfs",
                TMPFS,
                "Writable tmpfs mounts the service needs, e.g. [/tmp].",
                default=[],
                container_option=True,
            ),
        ),
        title=_endpoint_title,
        run_options={
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
        },
    ),
    Check(
        "env",
        "Config.Env has these values (assert_env).",
        "pytest_imagecheck.checks.structure.assert_env",
        "image",
        (
            Key(
                "expect",
                EXPECTED_VALUES,
                "Variable names and their values; null: must be unset.",
                required=True,
                example={"APP_ENV": "prod"},
                arg="expected",
            ),
        ),
        title=_names_in("expect"),
    ),
    Check(
        "labels",
        "Config.Labels has these values (assert_labels).",
        "pytest_imagecheck.checks.structure.assert_labels",
        "image",
        (
            Key(
                "expect",
                EXPECTED_VALUES,
                "Label names and their values; null: must be absent.",
                required=True,
                example={"org.opencontainers.image.title": "app"},
                arg="expected",
            ),
        ),
        title=_names_in("expect"),
    ),
    Check(
        "exposed_ports",
        "The image exposes these ports (assert_exposed_ports).",
        "pytest_imagecheck.checks.structure.assert_exposed_ports",
        "image",
        (
            Key(
                "expect",
                PORTS,
                "Ports the image must expose.",
                required=True,
                example=[5000],
                arg="expected",
            ),
            Key("exactly", BOOL, "Fail on any other exposed port too."),
        ),
        title=_ports_title,
    ),
    Check(
        "config",
        "The image's entrypoint, command, working directory and user (assert_config).",
        "pytest_imagecheck.checks.structure.assert_config",
        "image",
        (
            Key("entrypoint", EXEC_OR_SHELL_FORM, "Config.Entrypoint; [] means none is set."),
            Key("cmd", EXEC_OR_SHELL_FORM, "Config.Cmd; [] means none is set."),
            Key("workdir", TEXT, "Config.WorkingDir.", example="/app"),
            Key("user", TEXT, "Config.User, as written."),
        ),
        title=_pairs("entrypoint", "cmd", "workdir", "user"),
        at_least_one=("entrypoint", "cmd", "workdir", "user"),
    ),
    Check(
        "file",
        "A path in the session container exists (or not) with this type, mode, owner and "
        "content (assert_file).",
        "pytest_imagecheck.checks.structure.assert_file",
        "container",
        (
            Key("path", ABSOLUTE_PATH, "The path.", required=True, example="/app/main.py"),
            Key("exists", BOOL, "false: the path must not exist."),
            Key("kind", FILE_KIND, "The type of the path."),
            Key("mode", MODE, 'Permission bits in octal, in quotes: "0644".'),
            Key("owner", OWNER, "Owning user, by name or uid."),
            Key("group", OWNER, "Owning group, by name or gid."),
            Key("contains", TEXT, "A substring of the content."),
            Key("matches", REGEX, "A regular expression the content matches."),
        ),
        title=_value_of("path"),
    ),
    Check(
        "command",
        "A command run in the session container exits and prints as expected (assert_command).",
        "pytest_imagecheck.checks.structure.assert_command",
        "container",
        (
            Key(
                "run",
                COMMAND,
                "The command: a list (exec form) or one string.",
                required=True,
                example=["python3", "--version"],
            ),
            Key("exit_code", EXIT_CODE, "The exit code; default 0."),
            Key("stdout_contains", TEXT, "A substring of stdout."),
            Key("stdout_matches", REGEX, "A regular expression stdout matches."),
            Key("stderr_contains", TEXT, "A substring of stderr."),
            Key("stderr_matches", REGEX, "A regular expression stderr matches."),
            Key("user", TEXT, "Run as this user."),
            Key("env", STRING_MAP, "Extra environment variables."),
        ),
        title=_command_title,
    ),
    Check(
        "cuda_torch",
        "The image's CUDA, its torch and the host's driver fit together (assert_cuda_torch_match).",
        "pytest_imagecheck.checks.cuda.assert_cuda_torch_match",
        "image",
        (
            Key("cuda", VERSION, 'Expected CUDA version or prefix, in quotes: "12.1".'),
            Key("torch", VERSION, 'Expected torch version or prefix, in quotes: "2.5".'),
            Key("strict_minor", BOOL, "A CUDA minor that differs fails instead of warning."),
            Key(
                "gpu",
                BOOL,
                "Also run a kernel in the session container (started with --gpus); the test "
                "is marked gpu.",
                needs=frozenset({"container", "gpu"}),
            ),
        ),
        title=_pairs("cuda", "torch"),
    ),
)

#: Every check imagecheck.yaml knows, by name.
CHECKS: dict[str, Check] = {check.name: check for check in _CHECKS}

_COMMON_SCHEMA = {
    "name": {
        "type": "string",
        "minLength": 1,
        "description": "The test id; default: the check and its main values.",
    },
    "waive": {
        "type": "string",
        "pattern": r"\S",
        "description": "Why this criterion may fail for now; it runs and is reported as waived.",
    },
}


# --- reading a spec --------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One item of ``criteria:``, validated and ready to run.

    ``args`` are the check function's keyword arguments, converted where YAML and Python
    differ (the durations of endpoint, healthy and hardened, such as ``timeout``, become timedelta;
    a relative ``baseline`` is resolved against the spec file's folder); bounds, sizes and
    modes stay as written, so the check's messages quote them as written. ``line`` is the
    item's line in the file. ``waive`` is the reason given for tolerating a failure (the
    criterion still runs). ``needs`` says which of ``image``, ``container``, ``dockerfile``,
    ``run_container`` and ``gpu`` it needs. ``run_options`` are the options of the container
    a ``run_container`` criterion starts.
    """

    check: str
    name: str
    args: dict[str, Any]
    line: int
    waive: str | None = None
    needs: frozenset[str] = frozenset()
    run_options: dict[str, Any] = field(default_factory=dict)

    def run(self, get: Callable[[str], Any]) -> None:
        """Run the criterion: fetch the facts it needs with ``get`` and call its check.

        ``get("image")``, ``get("container")`` and ``get("dockerfile")`` return the fixtures of
        those names; ``get("run_container")`` returns the factory that starts a container.
        Raises what the check raises: AssertionError on failure.
        """
        check = CHECKS[self.check]
        function = check.function()
        if check.subject == "run_container":
            subject = get("run_container")(**self.run_options)
        else:
            subject = get(check.subject)
        args = dict(self.args)
        if check.subject == "image" and "container" in self.needs:
            args["container"] = get("container")
        function(subject, **args)


@dataclass(frozen=True)
class Spec:
    """An imagecheck.yaml file: where it is and its criteria, in file order."""

    path: Path
    criteria: list[Criterion]


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate an imagecheck.yaml file; raise :class:`SpecError` if it is not valid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            f"{os.fspath(path)}: cannot be read ({exc.strerror or exc}): check the path"
        ) from None
    except UnicodeDecodeError:
        raise SpecError(f"{os.fspath(path)}: is not UTF-8 text: save it as UTF-8") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: str | os.PathLike[str] = "imagecheck.yaml") -> Spec:
    """Validate imagecheck.yaml ``text``; ``path`` names it in messages and anchors relative
    paths (``baseline``). Raise :class:`SpecError`, one line ``path:line: what: fix``."""
    try:
        criteria = _criteria(_load_yaml(text), Path(path).parent)
    except _Invalid as exc:
        raise SpecError(f"{os.fspath(path)}:{exc.line or 1}: {exc.message}") from None
    return Spec(Path(path), criteria)


_TOP_LEVEL = ("criteria", "version")


def _did_you_mean(word: object, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _criteria(document: Any, here: Path) -> list[Criterion]:
    example = "criteria:\n  - check: non_root"
    if document is None:
        raise _Invalid(f"the file is empty: list the checks, e.g. {json.dumps(example)}", 1)
    if not isinstance(document, _Mapping):
        raise _Invalid(
            f"the top level is {'a list' if isinstance(document, list) else _shown(document)}, "
            "not a mapping: start with criteria: and a list of checks",
            getattr(document, "line", 1),
        )
    for key, line in document.key_lines.items():
        if key not in _TOP_LEVEL:
            raise _Invalid(
                f"unknown top-level key {_shown(key)}{_did_you_mean(key, _TOP_LEVEL)}: "
                "the top level takes criteria and version",
                line,
            )
    if "version" in document and not (_is_int(document["version"]) and document["version"] == 1):
        raise _Invalid(
            f"unsupported version {_shown(document['version'])}: this pytest-imagecheck reads "
            "version 1",
            document.key_lines["version"],
        )
    if "criteria" not in document:
        raise _Invalid("no criteria: add criteria: with a list of checks", document.line)
    items = document["criteria"]
    where = document.key_lines["criteria"]
    if not isinstance(items, _Sequence):
        raise _Invalid(
            f"criteria: expected a list of checks, got {_shown(items)}: write each as an item, "
            "- check: non_root",
            where,
        )
    if not items:
        raise _Invalid("criteria is empty: list at least one check, e.g. - check: non_root", where)
    criteria: list[Criterion] = []
    names: set[str] = set()
    for item, line in zip(items, items.item_lines, strict=True):
        criterion = _criterion(item, line, here)
        name, count = criterion.name, 1
        while name in names:
            count += 1
            name = f"{criterion.name} #{count}"
        names.add(name)
        criteria.append(dataclasses.replace(criterion, name=name))
    return criteria


def _criterion(item: Any, line: int, here: Path) -> Criterion:
    if not isinstance(item, _Mapping):
        raise _Invalid(
            f"a criterion is {_shown(item)}, not a mapping: write - check: non_root", line
        )
    check = _check_of(item)
    allowed = [key.name for key in check.keys]
    for key, key_line in item.key_lines.items():
        if key not in allowed and key not in COMMON_KEYS:
            takes = ", ".join(allowed) if allowed else "no keys of its own"
            raise _Invalid(
                f"unknown key {_shown(key)} for check {check.name}"
                f"{_did_you_mean(key, [*allowed, *COMMON_KEYS])}: {check.name} takes {takes} "
                "(and name, waive)",
                key_line,
            )
    for key in check.keys:
        if key.required and key.name not in item:
            raise _Invalid(
                f"check {check.name} needs {key.name}: add e.g. {key.name}: "
                f"{json.dumps(key.example, ensure_ascii=False)}",
                item.line,
            )
    values = {
        key.name: _value(key, item, here)
        for key in check.keys
        if key.name in item or key.default is not None
    }
    _cross_key_rules(check, item)
    present = [key for key in check.keys if key.name in values]
    default_name = f"{check.name} {check.title(values)}".rstrip()
    return Criterion(
        check=check.name,
        name=_common(item, "name", TEXT) or default_name,
        args={key.keyword: values[key.name] for key in present if key.keyword},
        line=item.line,
        waive=_common(item, "waive", REASON),
        needs=check.needs.union(*(key.needs for key in present if values[key.name] is True)),
        run_options={
            **check.run_options,
            **{key.name: values[key.name] for key in present if key.container_option},
        },
    )


def _check_of(item: _Mapping) -> Check:
    if "check" not in item:
        raise _Invalid(
            f"a criterion has no check: add check: with one of {', '.join(CHECKS)}", item.line
        )
    name, line = item["check"], item.key_lines["check"]
    if not isinstance(name, str):
        raise _Invalid(f"check: expected a check name like non_root, got {_shown(name)}", line)
    if name not in CHECKS:
        raise _Invalid(
            f"unknown check {_shown(name)}{_did_you_mean(name, list(CHECKS))}: "
            f"the checks are {', '.join(CHECKS)}",
            line,
        )
    return CHECKS[name]


def _value(key: Key, item: _Mapping, here: Path) -> Any:
    given = key.name in item
    value = item[key.name] if given else key.default
    line = item.key_lines[key.name] if given else item.line
    try:
        converted = key.kind.convert(value)
    except _WrongType:
        raise _Invalid(
            f"{key.name}: expected {key.kind.expected}, got {_shown(value)}", line
        ) from None
    except _Invalid as exc:
        where = f"{key.name}.{exc.subkey}" if exc.subkey else key.name
        raise _Invalid(f"{where}: {exc.message}", exc.line or line) from None
    return here / converted if key.kind is SPEC_FILE else converted


def _cross_key_rules(check: Check, item: _Mapping) -> None:
    if check.at_least_one and not any(name in item for name in check.at_least_one):
        first = next(k for k in map(check.key, check.at_least_one) if k.example is not None)
        raise _Invalid(
            f"check {check.name} checks nothing: give at least one of "
            f"{', '.join(check.at_least_one)}, e.g. {first.name}: {json.dumps(first.example)}",
            item.line,
        )
    given = [name for name in check.together if name in item]
    if given and len(given) < len(check.together):
        missing = check.key(next(name for name in check.together if name not in item))
        raise _Invalid(
            f"{given[0]} needs {missing.name} too: add e.g. {missing.name}: "
            f"{json.dumps(missing.example)}",
            item.key_lines[given[0]],
        )


def _common(item: _Mapping, name: str, kind: Kind) -> Any:
    if name not in item:
        return None
    try:
        return kind.convert(item[name])
    except _WrongType:
        raise _Invalid(
            f"{name}: expected {kind.expected}, got {_shown(item[name])}", item.key_lines[name]
        ) from None


# --- JSON Schema -----------------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of imagecheck.yaml, made from :data:`CHECKS`.

    Editors that read it (the YAML language server, JetBrains IDEs) complete each check's own
    keys and flag wrong types. The package ships it as ``imagecheck.schema.json``.
    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "imagecheck.yaml",
        "description": "Acceptance criteria for a container image, run by pytest-imagecheck.",
        "type": "object",
        "properties": {
            "version": {"const": 1, "description": "The format version; only 1 exists."},
            "criteria": {
                "type": "array",
                "minItems": 1,
                "description": "The criteria; each becomes one test.",
                "items": {"$ref": "#/$defs/criterion"},
            },
        },
        "required": ["criteria"],
        "additionalProperties": False,
        "$defs": {
            "criterion": {
                "type": "object",
                "required": ["check"],
                "properties": {
                    "check": {
                        "enum": list(CHECKS),
                        "description": "Which check; each takes its own keys.",
                    }
                },
                "allOf": [
                    {
                        "if": {"properties": {"check": {"const": name}}, "required": ["check"]},
                        "then": {"$ref": f"#/$defs/{name}"},
                    }
                    for name in CHECKS
                ],
            },
            **{name: check.schema() for name, check in CHECKS.items()},
        },
    }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
