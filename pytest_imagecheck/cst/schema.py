"""container-structure-test's schema 2.0.0, read as container-structure-test 1.19 reads it.

CST decodes its YAML with gopkg.in/yaml.v2 in strict mode: an unknown key or a wrong type
stops the whole file. So does :func:`load_cst`, with one line naming the file, the line and
the fix, as imagecheck.yaml errors do::

    structure-test.yaml:14: unknown key "env" in metadataTest (did you mean envVars?): ...

Values are decoded by yaml.v2's rules, which are not PyYAML's:

- a string field takes any scalar as written: ``value: 0644`` is ``"0644"``, ``value: yes``
  is ``"yes"`` (PyYAML would give 420 and True);
- an integer field takes ``0x1F``, ``0o17``, ``017`` (octal), ``1_000``, and a float, cut
  towards zero (``exitCode: 1.9`` is 1); a quoted ``"0"`` is a string, refused;
- a boolean field takes ``y``, ``Y``, ``yes``, ``on``, ``true`` and ``n``, ``no``, ``off``,
  ``false`` in their three spellings;
- ``~``, ``null`` or nothing sets a field to Go's zero value, not to its default:
  ``uid: ~`` is uid 0 (checked), ``shouldExist: ~`` is false.

What CST then checks per test (an empty ``name``, a command test without ``command``, an env
var without a value) is not a load error: CST reports that test as failed and runs the others,
so :func:`validation_errors` gives those messages to the test's item.

schemaVersion 1.0.0, CST's first schema, is refused with the reason; 2.0.0 is the one read.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ImageCheckError

__all__ = [
    "CommandTest",
    "CstError",
    "CstFile",
    "EnvVar",
    "FileContentTest",
    "FileExistenceTest",
    "LicenseTest",
    "MetadataTest",
    "RunOptions",
    "is_cst_document",
    "load_cst",
    "parse_cst",
    "validation_errors",
]

#: The schema version this plugin reads.
SCHEMA_VERSION = "2.0.0"


class CstError(ImageCheckError):
    """A CST file that cannot be run; the message is one line, ``file:line: what: fix``."""


class _Invalid(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


# --- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvVar:
    """``{key, value, isRegex}``: an environment variable or label (CST's ``EnvVar``)."""

    key: str = ""
    value: str = ""
    is_regex: bool = False
    line: int = 0


@dataclass(frozen=True)
class CommandTest:
    """One of ``commandTests``."""

    name: str = ""
    setup: tuple[tuple[str, ...], ...] = ()
    teardown: tuple[tuple[str, ...], ...] = ()
    env_vars: tuple[EnvVar, ...] = ()
    exit_code: int = 0
    command: str = ""
    args: tuple[str, ...] = ()
    expected_output: tuple[str, ...] = ()
    excluded_output: tuple[str, ...] = ()
    expected_error: tuple[str, ...] = ()
    excluded_error: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class FileExistenceTest:
    """One of ``fileExistenceTests``; ``uid`` and ``gid`` of -1 are not checked (CST's
    defaults, like ``shouldExist: true``, apply only to keys left out)."""

    name: str = ""
    path: str = ""
    should_exist: bool = True
    permissions: str = ""
    uid: int = -1
    gid: int = -1
    is_executable_by: str = ""
    line: int = 0


@dataclass(frozen=True)
class FileContentTest:
    """One of ``fileContentTests``."""

    name: str = ""
    path: str = ""
    expected_contents: tuple[str, ...] = ()
    excluded_contents: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class MetadataTest:
    """``metadataTest``: one test with one verdict. ``entrypoint`` and ``cmd`` are ``None``
    when not given (or null), and then not checked; ``[]`` means none."""

    env_vars: tuple[EnvVar, ...] = ()
    unbound_env_vars: tuple[EnvVar, ...] = ()
    exposed_ports: tuple[str, ...] = ()
    unexposed_ports: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    workdir: str = ""
    volumes: tuple[str, ...] = ()
    unmounted_volumes: tuple[str, ...] = ()
    labels: tuple[EnvVar, ...] = ()
    user: str = ""
    line: int = 0

    @property
    def is_empty(self) -> bool:
        """CST runs no metadata test, and reports none, when nothing is asked."""
        return not (
            self.env_vars
            or self.unbound_env_vars
            or self.exposed_ports
            or self.unexposed_ports
            or self.entrypoint is not None
            or self.cmd is not None
            or self.workdir
            or self.user
            or self.volumes
            or self.unmounted_volumes
            or self.labels
        )


@dataclass(frozen=True)
class LicenseTest:
    """One of ``licenseTests``: Debian copyright files and named files, judged for licenses
    CST refuses (AGPL, WTFPL)."""

    debian: bool = False
    files: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class RunOptions:
    """``containerRunOptions``: how CST creates each container. ``key_lines`` has the line
    of each key given."""

    user: str = ""
    privileged: bool = False
    allocate_tty: bool = False
    env_vars: tuple[str, ...] = ()
    env_file: str = ""
    capabilities: tuple[str, ...] = ()
    bind_mounts: tuple[str, ...] = ()
    line: int = 0
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_set(self) -> bool:
        """Whether CST applies these options at all (its ``ContainerRunOptions.IsSet``)."""
        return bool(
            self.user
            or self.privileged
            or self.allocate_tty
            or self.env_vars
            or self.env_file
            or self.capabilities
            or self.bind_mounts
        )


@dataclass(frozen=True)
class CstFile:
    """A CST file: its tests, in file order within each section. ``sections`` names the
    sections given, in the order the file gives them; ``lines`` has each top-level key's line."""

    path: Path
    schema_version: str
    global_env_vars: tuple[EnvVar, ...] = ()
    command_tests: tuple[CommandTest, ...] = ()
    file_existence_tests: tuple[FileExistenceTest, ...] = ()
    file_content_tests: tuple[FileContentTest, ...] = ()
    metadata_test: MetadataTest = MetadataTest()
    license_tests: tuple[LicenseTest, ...] = ()
    run_options: RunOptions = RunOptions()
    sections: tuple[str, ...] = ()
    lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)


# --- yaml.v2's rules -------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's composer, with each scalar node told whether its tag was written."""

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        event = self.peek_event()
        node = super().compose_scalar_node(anchor)
        node.explicit = event.tag not in (None, "!")  # type: ignore[attr-defined]
        return node


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_FALSE = frozenset({"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_INT64 = (-(2**63), 2**63 - 1)
_STR = "tag:yaml.org,2002:str"


def _go_parse_int(text: str, *, signed: bool) -> int | None:
    """Go's ``strconv.ParseInt(text, 0, 64)`` (``ParseUint`` when not ``signed``)."""
    sign, body = 1, text
    if body[:1] in "+-" and body:
        if not signed:
            return None
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    base = 10
    if body[:2] in ("0x", "0X"):
        base, body = 16, body[2:]
    elif body[:2] in ("0o", "0O"):
        base, body = 8, body[2:]
    elif body[:2] in ("0b", "0B"):
        base, body = 2, body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, body = 8, body[1:]
    if not body or any(c not in _DIGITS[base] for c in body):
        return None
    value = sign * int(body, base)
    low, high = _INT64 if signed else (0, 2**64 - 1)
    return value if low <= value <= high else None


def _resolve(node: yaml.ScalarNode) -> object:
    """The value yaml.v2 resolves a scalar to: ``None`` (null), bool, int, float or str."""
    text = node.value
    if node.style is not None or (getattr(node, "explicit", False) and node.tag == _STR):
        return text
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    first = text[:1]
    if first == ".":
        return float(text) if _DOT_FLOAT.fullmatch(text) else text
    if first in "+-" or first.isdigit():
        plain = text.replace("_", "")
        for signed in (True, False):
            number = _go_parse_int(plain, signed=signed)
            if number is not None:
                return number
        if _YAML_FLOAT.fullmatch(plain):
            return float(plain)
        for prefix, sign in (("0b", 1), ("-0b", -1)):
            if plain.startswith(prefix):
                number = _go_parse_int("0b" + plain[len(prefix) :], signed=False)
                if number is not None and _INT64[0] <= sign * number <= 2**64 - 1:
                    return sign * number
    return text


def _shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        value = _resolve(node)
        if value is None:
            return "null"
        kind = {bool: "the boolean", int: "the number", float: "the number"}.get(type(value))
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        if kind is None:
            return f'the string "{text}"' + (" (quoted)" if node.style in ("'", '"') else "")
        return f"{kind} {text}"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


@dataclass(frozen=True)
class _Kind:
    """How one field decodes: its words for messages, and the decoder."""

    expected: str
    example: str
    decode: Callable[[yaml.Node, str], Any]


#: Examples of values for messages, by key.
_EXAMPLES = {
    "name": "name: app serves HTTP",
    "path": "path: /app/server.py",
    "command": "command: echo",
    "permissions": "permissions: -rw-r--r--",
    "isExecutableBy": "isExecutableBy: owner",
    "setup": "setup: [[touch, /tmp/ready]]",
    "teardown": "teardown: [[rm, /tmp/ready]]",
    "schemaVersion": "schemaVersion: 2.0.0",
    "user": "user: app",
    "workdir": "workdir: /app",
    "envFile": "envFile: test.env",
}


def _example(where: str, kind: _Kind) -> str:
    """An example of the key at ``where`` (``uid: 0``), for messages."""
    leaf = re.sub(r"(\[\d+\])+$", "", where.rsplit(".", 1)[-1])
    return _EXAMPLES.get(leaf, f"{leaf}: {kind.example}")


def _scalar_of(node: yaml.Node, where: str, kind: _Kind) -> object:
    if not isinstance(node, yaml.ScalarNode):
        raise _Invalid(
            f"{where}: expected {kind.expected}, got {_shown(node)}: write e.g. "
            f"{_example(where, kind)}",
            _line(node),
        )
    return _resolve(node)


def _decode_str(node: yaml.Node, where: str) -> str:
    value = _scalar_of(node, where, STRING)
    return "" if value is None else str(node.value)


def _decode_int(node: yaml.Node, where: str) -> int:
    value = _scalar_of(node, where, INT)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]:
        return value
    if isinstance(value, float) and not math.isnan(value) and value <= _INT64[1]:
        # Go's int64(float) cuts towards zero; -Inf becomes the smallest int64.
        return _INT64[0] if value == -math.inf else max(_INT64[0], int(value))
    raise _Invalid(
        f"{where}: expected {INT.expected}, got {_shown(node)}: write e.g. {_example(where, INT)}",
        _line(node),
    )


def _decode_bool(node: yaml.Node, where: str) -> bool:
    value = _scalar_of(node, where, BOOL)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise _Invalid(
        f"{where}: expected {BOOL.expected}, got {_shown(node)}: write e.g. "
        f"{_example(where, BOOL)}",
        _line(node),
    )


STRING = _Kind("a string", "some text", _decode_str)
INT = _Kind("an integer", "0", _decode_int)
BOOL = _Kind("true or false", "true", _decode_bool)


def _list_of(item: _Kind, expected: str, example: str) -> _Kind:
    def decode(node: yaml.Node, where: str) -> tuple[Any, ...]:
        if isinstance(node, yaml.ScalarNode) and _resolve(node) is None:
            return ()
        if not isinstance(node, yaml.SequenceNode):
            leaf = re.sub(r"(\[\d+\])+$", "", where.rsplit(".", 1)[-1])
            raise _Invalid(
                f"{where}: expected {kind.expected}, got {_shown(node)}: write e.g. "
                f"{_EXAMPLES.get(leaf, example)}",
                _line(node),
            )
        return tuple(
            item.decode(each, f"{where}[{index}]") for index, each in enumerate(node.value)
        )

    kind = _Kind(expected, example, decode)
    return kind


STRINGS = _list_of(STRING, "a list of strings", "args: [-c, 'echo hello']")
COMMANDS = _list_of(
    STRINGS, "a list of commands, each a list of strings", "setup: [[touch, /tmp/ready]]"
)


@dataclass(frozen=True)
class _Struct:
    """A Go struct as yaml.v2 decodes it: ``fields`` maps each YAML key to the data class
    attribute and its kind; ``defaults`` are the values of keys left out."""

    name: str
    cls: type
    fields: dict[str, tuple[str, _Kind]]
    defaults: dict[str, Any] = field(default_factory=dict)

    def kind(self, example: str) -> _Kind:
        return _Kind(f"a mapping of {self.name}'s keys", example, self.decode)

    def decode(self, node: yaml.Node, where: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and _resolve(node) is None:
            # yaml.v2 sets the zero value: no defaults (uid 0, shouldExist false).
            zero = {attr: _zero(kind) for attr, kind in self.fields.values()}
            return self.cls(**zero, line=_line(node))
        if not isinstance(node, yaml.MappingNode):
            raise _Invalid(
                f"{where}: expected {self.kind('').expected}, got {_shown(node)}", _line(node)
            )
        values = dict(self.defaults)
        for key_node, value_node, key in _pairs(node, where):
            if key not in self.fields:
                raise _Invalid(
                    f"unknown key {_quoted(key)} in {where}{_did_you_mean(key, self.fields)}: "
                    f"{self.name} takes {', '.join(self.fields)}",
                    _line(key_node),
                )
            attr, kind = self.fields[key]
            values[attr] = kind.decode(value_node, f"{where}.{key}")
        extra = {"line": _line(node)}
        if "key_lines" in {f.name for f in dataclasses.fields(self.cls)}:
            extra["key_lines"] = {key: _line(k) for k, _, key in _pairs(node, where)}  # type: ignore[assignment]
        return self.cls(**values, **extra)


def _zero(kind: _Kind) -> Any:
    if kind is STRING:
        return ""
    if kind is INT:
        return 0
    if kind is BOOL:
        return False
    return None if kind.expected.startswith("a list of strings, or null") else ()


def _quoted(key: str) -> str:
    return f'"{key}"'


def _did_you_mean(key: str, choices: Any) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    aliases = {"env": "envVars", "envvars": "envVars", "name ": "name"}
    if not close and key in aliases:
        close = [aliases[key]]
    return f" (did you mean {close[0]}?)" if close else ""


def _pairs(node: yaml.MappingNode, where: str) -> Iterator[tuple[yaml.Node, yaml.Node, str]]:
    """The key nodes, value nodes and keys of a mapping, merge keys (``<<``) applied first; a
    key the mapping itself gives twice is refused, as yaml.v2's strict mode does."""
    own = [pair for pair in node.value if pair[0].tag != "tag:yaml.org,2002:merge"]
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    if len(own) != len(node.value):
        copy = yaml.MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
        _Loader("").flatten_mapping(copy)
        merged = copy.value[: len(copy.value) - len(own)]
    seen: dict[str, int] = {}
    for index, (key_node, value_node) in enumerate([*merged, *own]):
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Invalid(
                f"{where}: a key is a list or a mapping: keys are names", _line(key_node)
            )
        key = key_node.value
        if index >= len(merged):
            if key in seen:
                raise _Invalid(
                    f"duplicate key {_quoted(key)} in {where} (first on line {seen[key]}): "
                    "give each key once",
                    _line(key_node),
                )
            seen[key] = _line(key_node)
        yield key_node, value_node, key


def _optional_list(item: _Kind, example: str) -> _Kind:
    inner = _list_of(item, "a list of strings", example)

    def decode(node: yaml.Node, where: str) -> tuple[str, ...] | None:
        if isinstance(node, yaml.ScalarNode) and _resolve(node) is None:
            return None
        found: tuple[str, ...] = inner.decode(node, where)
        return found

    return _Kind("a list of strings, or null", example, decode)


_ENV_VAR = _Struct(
    "an env var",
    EnvVar,
    {"key": ("key", STRING), "value": ("value", STRING), "isRegex": ("is_regex", BOOL)},
)
ENV_VARS = _list_of(
    _ENV_VAR.kind("- {key: APP_ENV, value: prod}"),
    "a list of {key, value} mappings",
    "envVars: [{key: APP_ENV, value: prod}]",
)

_COMMAND_TEST = _Struct(
    "a command test",
    CommandTest,
    {
        "name": ("name", STRING),
        "setup": ("setup", COMMANDS),
        "teardown": ("teardown", COMMANDS),
        "envVars": ("env_vars", ENV_VARS),
        "exitCode": ("exit_code", INT),
        "command": ("command", STRING),
        "args": ("args", STRINGS),
        "expectedOutput": ("expected_output", STRINGS),
        "excludedOutput": ("excluded_output", STRINGS),
        "expectedError": ("expected_error", STRINGS),
        "excludedError": ("excluded_error", STRINGS),
    },
)
_FILE_EXISTENCE_TEST = _Struct(
    "a file existence test",
    FileExistenceTest,
    {
        "name": ("name", STRING),
        "path": ("path", STRING),
        "shouldExist": ("should_exist", BOOL),
        "permissions": ("permissions", STRING),
        "uid": ("uid", INT),
        "gid": ("gid", INT),
        "isExecutableBy": ("is_executable_by", STRING),
    },
    {"should_exist": True, "uid": -1, "gid": -1},
)
_FILE_CONTENT_TEST = _Struct(
    "a file content test",
    FileContentTest,
    {
        "name": ("name", STRING),
        "path": ("path", STRING),
        "expectedContents": ("expected_contents", STRINGS),
        "excludedContents": ("excluded_contents", STRINGS),
    },
)
_METADATA_TEST = _Struct(
    "metadataTest",
    MetadataTest,
    {
        "envVars": ("env_vars", ENV_VARS),
        "unboundEnvVars": ("unbound_env_vars", ENV_VARS),
        "exposedPorts": ("exposed_ports", STRINGS),
        "unexposedPorts": ("unexposed_ports", STRINGS),
        "entrypoint": ("entrypoint", _optional_list(STRING, 'entrypoint: ["/app/run"]')),
        "cmd": ("cmd", _optional_list(STRING, 'cmd: ["--port", "8080"]')),
        "workdir": ("workdir", STRING),
        "volumes": ("volumes", STRINGS),
        "unmountedVolumes": ("unmounted_volumes", STRINGS),
        "labels": ("labels", ENV_VARS),
        "user": ("user", STRING),
    },
)
_LICENSE_TEST = _Struct(
    "a license test", LicenseTest, {"debian": ("debian", BOOL), "files": ("files", STRINGS)}
)
_RUN_OPTIONS = _Struct(
    "containerRunOptions",
    RunOptions,
    {
        "user": ("user", STRING),
        "privileged": ("privileged", BOOL),
        "allocateTty": ("allocate_tty", BOOL),
        "envVars": ("env_vars", STRINGS),
        "envFile": ("env_file", STRING),
        "capabilities": ("capabilities", STRINGS),
        "bindMounts": ("bind_mounts", STRINGS),
    },
)

_EXAMPLE_TEST = "- {name: says hello, command: echo, args: [hello]}"
_EXAMPLE_FILE = "- {name: app, path: /app/server.py}"

#: The top-level keys: YAML key -> (attribute, kind).
_TOP: dict[str, tuple[str, _Kind]] = {
    "schemaVersion": ("schema_version", STRING),
    "globalEnvVars": ("global_env_vars", ENV_VARS),
    "commandTests": (
        "command_tests",
        _list_of(_COMMAND_TEST.kind(_EXAMPLE_TEST), "a list of tests", _EXAMPLE_TEST),
    ),
    "fileExistenceTests": (
        "file_existence_tests",
        _list_of(_FILE_EXISTENCE_TEST.kind(_EXAMPLE_FILE), "a list of tests", _EXAMPLE_FILE),
    ),
    "fileContentTests": (
        "file_content_tests",
        _list_of(_FILE_CONTENT_TEST.kind(_EXAMPLE_FILE), "a list of tests", _EXAMPLE_FILE),
    ),
    "metadataTest": ("metadata_test", _METADATA_TEST.kind("metadataTest: {workdir: /app}")),
    "licenseTests": (
        "license_tests",
        _list_of(_LICENSE_TEST.kind("- debian: true"), "a list of tests", "- debian: true"),
    ),
    "containerRunOptions": ("run_options", _RUN_OPTIONS.kind("containerRunOptions: {user: app}")),
}


# --- reading a file --------------------------------------------------------------------------


#: A top-level ``schemaVersion`` key, as text: in a file that is not valid YAML it says the
#: file is meant for container-structure-test, and its mistake is worth a line.
_VERSION_KEY = re.compile(r"^\ufeff?[\"']?schemaVersion[\"']?[ \t]*:", re.MULTILINE)


def _compose(text: str) -> yaml.Node | None:
    """The first document of ``text``, as yaml.v2 reads it; raise :class:`yaml.YAMLError`.

    yaml.v2 reads the first document and ignores the rest: an empty one after it (a trailing
    ``---``) is read here too, while one with content is an error (its tests would not run).
    """
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.composer.ComposerError as exc:
        if "another document" not in str(exc.problem):
            raise
        documents = list(yaml.compose_all(text, Loader=_Loader))
        if any(not _is_null(node) for node in documents[1:]):
            raise
        return documents[0]


def _is_null(node: yaml.Node | None) -> bool:
    return node is None or (
        isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and node.value in _NULLS
    )


def is_cst_document(text: str) -> bool:
    """Whether YAML ``text`` is a CST file: its top level is a mapping with ``schemaVersion``.

    Text that is not valid YAML is one when a line starts with the key ``schemaVersion``
    (a tab, an unclosed bracket, a second document): :func:`load_cst` then says where it
    breaks, where otherwise pytest would say only that it found no test in the file.
    """
    try:
        node = _compose(text)
    except yaml.YAMLError:
        return _VERSION_KEY.search(text) is not None
    return isinstance(node, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == "schemaVersion" for k, _ in node.value
    )


def load_cst(path: str | os.PathLike[str]) -> CstFile:
    """Read and decode the CST file at ``path``; raise :class:`CstError`, one line, if it
    cannot be run."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CstError(f"{os.fspath(path)}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CstError(f"{os.fspath(path)}: is not UTF-8 text: save it as UTF-8") from None
    return parse_cst(text, path)


def parse_cst(text: str, path: str | os.PathLike[str] = "structure-test.yaml") -> CstFile:
    """Decode CST YAML ``text`` (``path`` names it in messages); raise :class:`CstError`."""
    try:
        return _decode(text, Path(path))
    except _Invalid as exc:
        raise CstError(f"{os.fspath(path)}:{exc.line}: {exc.message}") from None


def _decode(text: str, path: Path) -> CstFile:
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        fix = (
            'check the indentation, and quote values that contain ": " or start with a '
            "special character"
        )
        if "another document" in str(exc.problem):
            # yaml.v2 would read the first document alone, and leave the others' tests unrun
            fix = "a container-structure-test file is one document: remove the --- line"
        raise _Invalid(
            f"not valid YAML ({exc.problem or exc.context or 'unreadable'}): {fix}",
            mark.line + 1 if mark else 1,
        ) from None
    except yaml.YAMLError as exc:
        raise _Invalid(f"not valid YAML ({str(exc).splitlines()[0]})", 1) from None
    if not isinstance(node, yaml.MappingNode):
        raise _Invalid("the top level is not a mapping: start with schemaVersion: 2.0.0", 1)
    pairs = list(_pairs(node, "the top level"))
    lines = {key: _line(key_node) for key_node, _, key in pairs}
    version_node = next((value for _, value, key in pairs if key == "schemaVersion"), None)
    version = "" if version_node is None else _decode_str(version_node, "schemaVersion")
    if version == "1.0.0":
        raise _Invalid(
            "schemaVersion 1.0.0 is container-structure-test's first schema, which this plugin "
            "does not run: its tests are not those of 2.0.0 (commands are lists, no uid/gid, "
            f"no metadataTest keys of 2.0.0): rewrite the file for schemaVersion: "
            f"{SCHEMA_VERSION}, or run it with container-structure-test",
            lines["schemaVersion"],
        )
    if version != SCHEMA_VERSION:
        where = lines.get("schemaVersion", 1)
        given = f"schemaVersion {version}" if version else "no schemaVersion"
        raise _Invalid(
            f"{given}: container-structure-test reads 1.0.0 and {SCHEMA_VERSION}, this plugin "
            f"{SCHEMA_VERSION}: write schemaVersion: {SCHEMA_VERSION}",
            where,
        )
    values: dict[str, Any] = {}
    sections: list[str] = []
    for key_node, value_node, key in pairs:
        if key not in _TOP:
            raise _Invalid(
                f"unknown top-level key {_quoted(key)}{_did_you_mean(key, _TOP)}: a "
                f"container-structure-test file takes {', '.join(_TOP)}",
                _line(key_node),
            )
        attr, kind = _TOP[key]
        values[attr] = kind.decode(value_node, key)
        if key != "schemaVersion":
            sections.append(key)
    return CstFile(path=path, sections=tuple(sections), lines=lines, **values)


# --- CST's own checks of each test -----------------------------------------------------------


def validation_errors(test: object) -> list[str]:
    """What CST's ``Validate`` says of ``test`` before running it, in its words; a test with
    any is reported failed without running (and the file's other tests run)."""
    errors: list[str] = []
    if isinstance(test, CommandTest):
        if not test.name:
            errors.append("Please provide a valid name for every test")
        if not test.command:
            errors.append(f"Please provide a valid command to run for test {test.name}")
        if any(not command for command in test.setup):
            errors.append(
                "Error in setup command configuration encountered; please check formatting "
                "and remove all empty setup commands"
            )
        if any(not command for command in test.teardown):
            errors.append(
                "Error in teardown command configuration encountered; please check formatting "
                "and remove all empty teardown commands"
            )
        if any(not env.key or not env.value for env in test.env_vars):
            errors.append("Please provide non-empty keys and values for all specified env vars")
    elif isinstance(test, (FileExistenceTest, FileContentTest)):
        if not test.name:
            errors.append("Please provide a valid name for every test")
        if not test.path:
            errors.append(f"Please provide a valid file path for test {test.name}")
    elif isinstance(test, MetadataTest):
        if any(not env.key for env in test.env_vars):
            errors.append("Environment variable key cannot be empty")
        if any(not label.key for label in test.labels):
            errors.append("Label key cannot be empty")
        if any(not port for port in test.exposed_ports):
            errors.append("Port cannot be empty")
        if any(not volume for volume in test.volumes):
            errors.append("Volume cannot be empty")
    return errors
