"""The kinds of value imagecheck.yaml takes: what each must look like, how it is checked and
converted for the check function, and its JSON Schema.

A :class:`Kind` validates with the parsers the checks use (:mod:`~pytest_imagecheck.units`
for sizes, durations, bounds, ports and modes), and its schema is made from the same grammar,
so the loader and an editor agree on every value. Each check declares its keys with these
kinds (:mod:`~pytest_imagecheck.declaration`), beside the check function.

A converter raises :class:`WrongType` when the YAML type is wrong (the message then says
``expected <expected>, got ...``) and :class:`Invalid` for a value of the right type that does
not parse, with the message of the parser the checks use.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from .errors import ImageCheckError
from .packages import PackageQuery, check_python_name
from .units import (
    DURATION_PATTERN,
    MODE_PATTERN,
    NUMBER_PATTERN,
    OPERATOR_PATTERN,
    PORT_PATTERN,
    SIZE_PATTERN,
    parse_bound,
    parse_duration,
    parse_mode,
    parse_size,
    port_key,
    time_limit,
)
from .versions import OsBound, VersionBound

__all__ = [
    "ABSOLUTE_PATH",
    "ACCEPT",
    "BOOL",
    "COMMAND",
    "COMMAND_NAMES",
    "COUNT_BOUND",
    "DURATION",
    "DURATION_BOUND",
    "EXEC_OR_SHELL_FORM",
    "EXIT_CODE",
    "EXPECTED_VALUES",
    "FINDING_ID",
    "JSON_OBJECT",
    "MODE",
    "OS_VERSION",
    "OWNER",
    "PACKAGE_NAMES",
    "PATH_PATTERNS",
    "PERCENT",
    "PORT",
    "PORTS",
    "PYTHON_NAMES",
    "REASON",
    "REGEX",
    "REQUEST_TIMEOUT",
    "SIZE",
    "SPEC_FILE",
    "STATUS",
    "STRING_MAP",
    "TEXT",
    "TEXTS",
    "TIMEOUT",
    "TMPFS",
    "VERSION",
    "Invalid",
    "Kind",
    "WrongType",
    "one_of",
    "plain",
    "shown",
    "version_bound",
]


class Invalid(Exception):
    """A problem found while reading imagecheck.yaml: the message and its line, if known.

    ``subkey`` names the entry of a mapping value at fault (``expect.APP_PORT``).
    """

    def __init__(self, message: str, line: int | None = None, subkey: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.subkey = subkey


class WrongType(Exception):
    """A value of the wrong YAML type: the message says what the key expects instead."""


def plain(value: Any) -> Any:
    """``value`` with mappings and sequences (the loader's, that remember lines) turned into
    plain dicts and lists."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


#: Lists and mappings longer than this, written as JSON, are shown as "a list", "a mapping".
_SHOWN_LIMIT = 60


def shown(value: object) -> str:
    """A YAML value as the user would recognise it in a message.

    >>> shown("30 seconds"), shown(True), shown(None), shown([1, 2])
    ('"30 seconds"', 'true', 'null (an empty value)', '[1, 2]')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (an empty value)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict | list):
        text = json.dumps(plain(value), ensure_ascii=False, default=str)
        if len(text) <= _SHOWN_LIMIT:
            return text
        return "a mapping" if isinstance(value, dict) else "a list"
    return str(value)


@dataclass(frozen=True)
class Kind:
    """A type of value in imagecheck.yaml.

    ``expected`` completes "expected ..." in the message for a value of the wrong type;
    ``schema`` is its JSON Schema; ``convert`` checks a value read from YAML and returns what
    the check function is given, raising :class:`WrongType` or :class:`Invalid`.
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
        raise Invalid(str(exc)) from None


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WrongType
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise WrongType
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise WrongType
    return value


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise WrongType
    return value


def _list_of(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def convert(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise WrongType
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
        raise Invalid(
            f"bad command {shown(text)}: {str(exc).lower()}; close the quote, or write the "
            "command as a list of words"
        ) from None
    raise Invalid(f"bad command {shown(text)}: it has no words; write a command to run")


def _exec_or_shell_form(value: Any) -> list[str] | str:
    return _list_of(_text)(value) if isinstance(value, list) else _text(value)


def _duration(value: Any) -> Any:
    if not isinstance(value, str) and not _is_number(value):
        raise WrongType
    return _units(parse_duration, value)


def _time_limit(example: str, leaves: str) -> Callable[[Any], Any]:
    """A duration that bounds a wait: above 0, as the checks require (a limit of 0 makes
    one attempt with no time for an answer)."""

    def convert(value: Any) -> Any:
        if not isinstance(value, str) and not _is_number(value):
            raise WrongType
        return _units(functools.partial(time_limit, leaves=leaves, example=example), value)

    return convert


def _duration_bound(value: Any) -> Any:
    if not isinstance(value, str) and not _is_number(value):
        raise WrongType
    _units(parse_bound, value)
    return value  # the check parses it again, so its messages show the bound as written


def _count_bound(value: Any) -> Any:
    if not isinstance(value, str) and not _is_int(value):
        raise WrongType
    bound = _units(lambda v: parse_bound(v, parse=int), value)
    if bound.value < 0:
        raise Invalid(f"bad number {shown(value)}: use a count of 0 or more, e.g. 3")
    return value


def _size(value: Any) -> Any:
    if not isinstance(value, str) and not _is_number(value):
        raise WrongType
    _units(parse_size, value)
    return value  # as written, so the check's messages quote the budget as written


_PERCENT = re.compile(rf"^\s*\+? *{NUMBER_PATTERN} *%\s*$")
#: How a finding id of assert_no_secrets starts (``re.match`` it): its source, a colon and a
#: name (env:NAME, history:NAME, history:step-N, file:/path; a path may hold any character).
FINDING_ID = re.compile(r"^(?:env|history|file):\S")


def _percent(value: Any) -> str:
    if not isinstance(value, str):
        raise WrongType
    if not _PERCENT.match(value):
        raise Invalid(f'bad growth {shown(value)}: write a percentage, e.g. "10%"')
    return value


def _status(value: Any) -> int | list[int]:
    codes = value if isinstance(value, list) and value else [value]
    for code in codes:
        if not _is_int(code):
            raise WrongType
        if not 100 <= code <= 599:
            raise Invalid(f"bad status {code}: use an HTTP status code from 100 to 599, e.g. 200")
    return list(codes) if isinstance(value, list) else value


def _port(value: Any) -> int | str:
    if not _is_int(value) and not (isinstance(value, str) and re.fullmatch(PORT_PATTERN, value)):
        raise WrongType
    try:
        port_key(value)
    except ImageCheckError:  # the right form, out of range
        raise Invalid(f"bad port {shown(value)}: use a port number from 1 to 65535") from None
    return value


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WrongType
    converted: dict[str, Any] = plain(value)
    return converted


def _string_map(*, nullable: bool = False) -> Callable[[Any], dict[str, str | None]]:
    def convert(value: Any) -> dict[str, str | None]:
        if not isinstance(value, dict) or not value:
            raise WrongType
        lines = getattr(value, "key_lines", {})
        for name, entry in value.items():
            if not isinstance(name, str) or not name:
                raise Invalid(f"name {shown(name)} is not a string: quote it", lines.get(name))
            if not isinstance(entry, str) and not (nullable and entry is None):
                wanted = "a string or null (must be unset)" if nullable else "a string"
                raise Invalid(
                    f"expected {wanted}, got {shown(entry)}: quote the value",
                    lines.get(name),
                    name,
                )
        return dict(value)

    return convert


def _accept(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise WrongType
    lines = getattr(value, "key_lines", {})
    for finding, reason in value.items():
        if not isinstance(finding, str) or not FINDING_ID.match(finding):
            raise Invalid(
                f"{shown(finding)} is not a finding id: use env:NAME, history:NAME, "
                "history:step-N or file:/path, as the failure message names them",
                lines.get(finding),
            )
        if not isinstance(reason, str) or not reason.strip():
            raise Invalid(
                f"expected a reason, a non-empty string saying why this secret is in the image "
                f"on purpose, got {shown(reason)}",
                lines.get(finding),
                finding,
            )
    return dict(value)


def _regex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise WrongType
    try:
        re.compile(value)
    except re.error as exc:
        # As YAML's single quotes write it: JSON would double each backslash.
        written = "'" + value.replace("'", "''") + "'" if "\n" not in value else shown(value)
        raise Invalid(
            f"bad regular expression {written} ({exc}): fix the pattern; in YAML, "
            "single quotes keep backslashes as written ('3\\.11')"
        ) from None
    return value


def _mode(value: Any) -> str:
    if _is_int(value):
        raise Invalid(
            f'expected an octal mode in quotes like "0644", got the number {value}: quote the '
            "mode (unquoted, YAML reads 0644 as 420 and 644 as the decimal number 644)"
        )
    if not isinstance(value, str) or not value or not set(value) <= set("01234567"):
        raise WrongType
    _units(parse_mode, value)
    return value


def _owner(value: Any) -> str | int:
    if (_is_int(value) and value >= 0) or (isinstance(value, str) and value):
        return value
    raise WrongType


def _exit_code(value: Any) -> int:
    if not _is_int(value) or not 0 <= value <= 255:
        raise WrongType
    return value


def _version(value: Any) -> str:
    if _is_number(value):
        raise Invalid(
            f'expected a version in quotes like "12.1", got the number {value}: quote it '
            "(YAML reads 12.10 as the number 12.1)"
        )
    if not isinstance(value, str):
        raise WrongType
    try:
        Version(value)
    except InvalidVersion:
        raise Invalid(
            f'bad version {shown(value)}: use a version or a prefix like "12.1"'
        ) from None
    return value


def _checked(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Run a parser that raises :class:`ImageCheckError` (the checks' own), keeping its
    message; the value is passed on as written."""

    def convert(value: Any) -> Any:
        try:
            parse(value)
        except ImageCheckError as exc:
            raise Invalid(str(exc)) from None
        return value

    return convert


def _quoted(value: Any, example: str) -> None:
    if _is_number(value):
        raise Invalid(
            f'expected a version in quotes like "{example}", got the number {value}: quote it '
            "(YAML reads 3.10 as the number 3.1)"
        )


def _names_list(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def convert(value: Any) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise WrongType
        for entry in value:
            if not isinstance(entry, str):
                raise WrongType
            item(entry)
        return list(value)

    return convert


def _package_names(value: Any) -> list[str]:
    return _names_list(_checked(PackageQuery.parse))(value)


def _python_names(value: Any) -> str | list[str]:
    if isinstance(value, str):
        _checked(check_python_name)(value)
        return value
    return _names_list(_checked(check_python_name))(value)


def _path_patterns(value: Any) -> list[str]:
    return _names_list(lambda item: _absolute_path(item))(value)


def _command_names(value: Any) -> list[str]:
    def one(item: str) -> None:
        if re.search(r"\s", item) or ("/" in item and not item.startswith("/")):
            raise Invalid(
                f"bad command name {shown(item)}: write a program's name as PATH finds it, "
                'like "gcc", or an absolute path like "/usr/bin/gcc"'
            )

    return _names_list(one)(value)


def version_bound(what: str) -> Kind:
    """A version, prefix or range of ``what`` (``python``, ``torch``), as
    :class:`~pytest_imagecheck.versions.VersionBound` reads it."""

    def convert(value: Any) -> str:
        _quoted(value, "3.11" if what == "python" else "2.1")
        if not isinstance(value, str):
            raise WrongType
        return str(_checked(lambda v: VersionBound.parse(v, what))(value))

    return Kind(
        'a version, prefix or range in quotes like "2.1", "2.1.0+cu121" or ">=2.1,<2.2"',
        {"type": "string", "pattern": r"^\s*(?:===|~=|==|!=|<=|>=|<|>)?\s*[0-9vV]"},
        convert,
    )


def _os_version(value: Any) -> str:
    _quoted(value, "12")
    if not isinstance(value, str):
        raise WrongType
    return str(_checked(OsBound.parse)(value))


def one_of(*choices: str) -> Kind:
    """A kind whose values are the strings ``choices``, such as the kinds of path
    ``assert_file`` takes."""

    def convert(value: Any) -> str:
        if value not in choices:
            raise WrongType
        return str(value)

    return Kind(f"one of {', '.join(choices)}", {"enum": list(choices)}, convert)


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
    {"anyOf": [{"type": "string", "pattern": rf"^\s*{DURATION_PATTERN}\s*$"}, _NUMBER_SCHEMA]},
    _duration,
)
#: A positive duration: no digits but zeros (``0``, ``0s``, ``0.0ms``) is refused.
_POSITIVE_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": rf"^(?=[^1-9]*[1-9])\s*{DURATION_PATTERN}\s*$"},
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
            {"type": "string", "pattern": rf"^\s*{OPERATOR_PATTERN}?\s*{DURATION_PATTERN}\s*$"},
            _NUMBER_SCHEMA,
        ]
    },
    _duration_bound,
)
COUNT_BOUND = Kind(
    'a whole number or a bound like ">=3"',
    {
        "anyOf": [
            {"type": "string", "pattern": rf"^\s*{OPERATOR_PATTERN}?\s*\+?[0-9]+\s*$"},
            {"type": "integer", "minimum": 0},
        ]
    },
    _count_bound,
)
SIZE = Kind(
    'a size like "2.5GB" or "512MiB"',
    {"anyOf": [{"type": "string", "pattern": rf"^\s*{SIZE_PATTERN}\s*$"}, _NUMBER_SCHEMA]},
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
        {"type": "string", "pattern": f"^{PORT_PATTERN}$"},
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
        "propertyNames": {"pattern": FINDING_ID.pattern},
        "additionalProperties": {"type": "string", "pattern": r"\S"},
    },
    _accept,
)
REGEX = Kind("a regular expression", {"type": "string", "minLength": 1}, _regex)
MODE = Kind(
    'an octal mode in quotes like "0644"',
    {"type": "string", "pattern": f"^{MODE_PATTERN}$"},
    _mode,
)
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
_NAME_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9+._~-]*)"
PACKAGE_NAMES = Kind(
    'a list of package names like ["gcc", "dpkg:make", "python:jupyter"]',
    {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "pattern": rf"^(?:(?:dpkg|apk|rpm|python):)?{_NAME_PATTERN}$"},
    },
    _package_names,
)
PYTHON_NAMES = Kind(
    'a Python distribution name like "torch", or a list of them',
    {
        "anyOf": [
            {"type": "string", "pattern": r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$"},
            {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "string",
                    "pattern": r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$",
                },
            },
        ]
    },
    _python_names,
)
PATH_PATTERNS = Kind(
    'a list of absolute paths or patterns like ["/usr/bin/gcc", "/tmp/*"]',
    {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^/"}},
    _path_patterns,
)
COMMAND_NAMES = Kind(
    'a list of commands like ["gcc", "make"]',
    {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": r"^(?:/\S+|[^/\s]+)$"}},
    _command_names,
)
OS_VERSION = Kind(
    'an OS in quotes like "debian 12", "ubuntu >=22.04" or "alpine"',
    {"type": "string", "minLength": 1},
    _os_version,
)
REASON = Kind(
    "a reason, a non-empty string saying why this criterion may fail for now",
    {"type": "string", "pattern": r"\S"},
    _reason,
)
