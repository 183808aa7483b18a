"""The Go behaviour container-structure-test's verdicts depend on, rewritten exactly.

CST is a Go program; what it accepts and matches is what Go's standard library and two of its
dependencies do:

- :func:`expand` is ``os.Expand``: CST substitutes the image's environment into a command
  test's command and args (``$$``, ``$1`` and ``${}`` included: ``sh -c 'echo $$'`` runs
  ``echo``), into setup env values and ``globalEnvVars``, and into file existence paths;
- :func:`regexp_matches` is Go's ``regexp`` (RE2 syntax and semantics), through Google's RE2
  library (the ``google-re2`` package): ``$`` is the end of the text unless ``(?m)``, so
  ``^hello$`` does not match ``hello\\n``; lookarounds and backreferences do not compile, and
  CST counts a pattern that does not compile as a failure, whether expected or excluded;
- :func:`decode` turns output bytes into text as Go's JSON encoder (the engine's json-file
  log driver) does: each byte of invalid UTF-8 becomes one U+FFFD;
- :func:`file_mode` is ``FileMode.String()`` of a tar header: ``urwxr-xr-x`` for a setuid
  file (not ``-rwsr-xr-x``), ``dtrwxrwxrwx`` for a sticky directory, ``Lrwxrwxrwx`` for a
  symbolic link;
- :func:`stdcopy` is moby's ``stdcopy.StdCopy``, through which CST reads a container's logs
  (a TTY's, not multiplexed, included);
- :func:`clean` and :func:`base` are ``path.Clean`` and ``path.Base``;
- :func:`read_env_file` is ``godotenv.Read`` (v1.5), for ``containerRunOptions.envFile``.
"""

from __future__ import annotations

import codecs
import posixpath
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..errors import ImageCheckError

__all__ = [
    "base",
    "clean",
    "compile_error",
    "decode",
    "env_map",
    "expand",
    "file_mode",
    "read_env_file",
    "regexp_matches",
    "stdcopy",
    "upper",
]


# --- os.Expand -------------------------------------------------------------------------------


def _special(char: str) -> bool:
    return char in "*#$@!?-0123456789"


def _alnum(char: str) -> bool:
    return char == "_" or ("0" <= char <= "9") or ("a" <= char <= "z") or ("A" <= char <= "Z")


def _shell_name(text: str) -> tuple[str, int]:
    """Go's ``getShellName``: the name after a ``$`` and how many characters it spans."""
    if text[0] == "{":
        if len(text) > 2 and _special(text[1]) and text[2] == "}":
            return text[1:2], 3
        for index in range(1, len(text)):
            if text[index] == "}":
                if index == 1:
                    return "", 2  # bad syntax: "${}" is eaten
                return text[1:index], index + 1
        return "", 1  # bad syntax: "${" is eaten
    if _special(text[0]):
        return text[0:1], 1
    index = 0
    while index < len(text) and _alnum(text[index]):
        index += 1
    return text[:index], index


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Go's ``os.Expand``: replace ``$name`` and ``${name}`` by ``mapping(name)``.

    >>> env = {"APP_ENV": "prod"}.get
    >>> expand("$APP_ENV-${APP_ENV}|$$|$NOPE.|${}|$(id)|$", lambda n: env(n) or "")
    'prod-prod||.||$(id)|$'
    """
    out: list[str] = []
    start = 0
    index = 0
    while index < len(text):
        if text[index] == "$" and index + 1 < len(text):
            out.append(text[start:index])
            name, width = _shell_name(text[index + 1 :])
            if name == "" and width > 0:
                pass  # invalid syntax: eaten
            elif name == "":
                out.append("$")  # a $ not followed by a name stays
            else:
                out.append(mapping(name))
            index += width
            start = index + 1
        index += 1
    if not out and start == 0:
        return text
    return "".join(out) + text[start:]


def env_map(env: Sequence[str]) -> dict[str, str]:
    """An image's ``Config.Env`` as CST maps it: ``NAME=VALUE`` split at the first ``=``, the
    last of a name winning."""
    found: dict[str, str] = {}
    for entry in env:
        name, _, value = entry.partition("=")
        found[name] = value
    return found


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """:func:`expand` against ``env``, unset names expanding to nothing."""
    return expand(text, lambda name: env.get(name, ""))


# --- regexp ----------------------------------------------------------------------------------


def _escapes_byte_class(pattern: str) -> bool:
    """Whether ``pattern`` uses ``\\C`` (any byte), which RE2 takes and Go refuses."""
    index, quoted = 0, False
    while index < len(pattern):
        if pattern.startswith("\\E", index) and quoted:
            quoted, index = False, index + 2
            continue
        if quoted:
            index += 1
            continue
        if pattern.startswith("\\Q", index):
            quoted, index = True, index + 2
            continue
        if pattern[index] == "\\" and index + 1 < len(pattern):
            if pattern[index + 1] == "C":
                return True
            index += 2
            continue
        index += 1
    return False


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """The compiled pattern, or the compile error's text (a ``str``)."""
    try:
        import re2  # type: ignore[import-untyped]  # google-re2 ships no types
    except ImportError:
        raise ImageCheckError(
            "container-structure-test files need Google's RE2 library for Go's regular "
            "expressions: pip install google-re2"
        ) from None

    if _escapes_byte_class(pattern):
        return "invalid escape sequence: \\C"
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def compile_error(pattern: str) -> str | None:
    """Why Go's ``regexp.Compile`` refuses ``pattern``, or ``None`` if it compiles."""
    found = _compiled(pattern)
    return found if isinstance(found, str) else None


def regexp_matches(pattern: str, text: str) -> bool | None:
    """Whether Go's ``regexp.MatchString(pattern, text)`` is true; ``None`` when the pattern
    does not compile.

    >>> regexp_matches("^hello$", "hello\\n"), regexp_matches("(?m)^hello$", "hello\\n")
    (False, True)
    >>> regexp_matches("(?<=x)y", "xy") is None
    True
    """
    found = _compiled(pattern)
    if isinstance(found, str):
        return None
    return found.search(text) is not None


# --- bytes as Go sees them -------------------------------------------------------------------


def _per_byte(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return "\ufffd" * (error.end - error.start), error.end


codecs.register_error("pytest_imagecheck.go", _per_byte)


def decode(data: bytes) -> str:
    """``data`` as text, each byte of invalid UTF-8 one U+FFFD (Go's JSON encoder does this
    to a container's log lines; Python's ``replace`` would merge some).

    >>> decode(b"a\\xe2\\x82b")
    'a\\ufffd\\ufffdb'
    """
    return data.decode("utf-8", "pytest_imagecheck.go")


class StdCopyError(Exception):
    """Go's ``stdcopy.StdCopy`` refused the stream; the message is its error."""


def stdcopy(data: bytes) -> tuple[bytes, bytes]:
    """``stdcopy.StdCopy`` (moby's ``pkg/stdcopy``) over ``data``: the stdout and stderr of
    a multiplexed log stream. CST reads every container's logs so, a TTY's too, which are not
    multiplexed: their first byte is then read as a stream type, which fails (``Unrecognized
    input header: 111`` for ``o``) once 8 bytes or more were printed; fewer are no header at
    all, and read as no output. Raise :class:`StdCopyError`.

    >>> stdcopy(b"hi\\r\\n"), stdcopy(b"\\x01\\0\\0\\0\\0\\0\\0\\x02ok")
    ((b'', b''), (b'ok', b''))
    """
    out, err = bytearray(), bytearray()
    at = 0
    while len(data) - at >= 8:
        stream = data[at]
        if stream > 3:
            raise StdCopyError(f"Unrecognized input header: {stream}")
        size = int.from_bytes(data[at + 4 : at + 8], "big")
        if len(data) - at < 8 + size:
            break  # the end before the whole frame: what came before, no error
        frame = data[at + 8 : at + 8 + size]
        if stream == 3:
            raise StdCopyError(f"error from daemon in stream: {decode(frame)}")
        (err if stream == 2 else out).extend(frame)
        at += 8 + size
    return bytes(out), bytes(err)


def upper(text: str) -> str:
    """Go's ``strings.ToUpper``: each character's simple upper case (``ß`` stays ``ß``)."""
    return "".join(c if len(c.upper()) != 1 else c.upper() for c in text)


# --- file modes and paths --------------------------------------------------------------------

_MODE_LETTERS = "dalTLDpSugct?"
_DIR, _SYMLINK, _DEVICE, _PIPE, _SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_SETUID, _SETGID, _CHAR, _STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_mode(info: tarfile.TarInfo) -> int:
    """The ``fs.FileMode`` Go's ``archive/tar`` gives the header ``info``."""
    mode = info.mode & 0o777
    if info.mode & 0o4000:
        mode |= _SETUID
    if info.mode & 0o2000:
        mode |= _SETGID
    if info.mode & 0o1000:
        mode |= _STICKY
    kind = info.mode & ~0o7777
    mode |= {
        0o040000: _DIR,
        0o010000: _PIPE,
        0o120000: _SYMLINK,
        0o060000: _DEVICE,
        0o020000: _DEVICE | _CHAR,
        0o140000: _SOCKET,
    }.get(kind, 0)
    mode |= {
        tarfile.SYMTYPE: _SYMLINK,
        tarfile.CHRTYPE: _DEVICE | _CHAR,
        tarfile.BLKTYPE: _DEVICE,
        tarfile.DIRTYPE: _DIR,
        tarfile.FIFOTYPE: _PIPE,
    }.get(info.type, 0)
    return mode


def file_mode(info: tarfile.TarInfo) -> str:
    """Go's ``FileMode.String()`` of the header ``info``: what CST compares ``permissions``
    with, as a string.

    >>> info = tarfile.TarInfo("tool"); info.mode = 0o4755
    >>> file_mode(info)
    'urwxr-xr-x'
    """
    mode = go_mode(info)
    letters = [c for i, c in enumerate(_MODE_LETTERS) if mode & (1 << (31 - i))]
    rwx = "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return "".join(letters or ["-"]) + rwx


def clean(path: str) -> str:
    """Go's ``path.Clean``.

    >>> clean("//srv/./app/../x/"), clean(""), clean("./")
    ('/srv/x', '.', '.')
    """
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def base(path: str) -> str:
    """Go's ``path.Base``.

    >>> base("/srv/"), base("/"), base("")
    ('srv', '/', '.')
    """
    if not path:
        return "."
    path = path.rstrip("/")
    if not path:
        return "/"
    return path.rsplit("/", 1)[-1]


# --- godotenv --------------------------------------------------------------------------------

_GO_SPACE = "\t\v\f\r \x85\xa0"
_EXPAND_VAR = re.compile(r"(\\)?(\$)(\()?\{?([A-Z0-9_]+)?\}?")
_ESCAPE = re.compile(r"\\.")
_UNESCAPE = re.compile(r"\\([^$])")


class EnvFileError(ValueError):
    """An env file godotenv cannot parse."""


def _expand_variables(value: str, found: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "\\" or match.group(2) == "(":  # godotenv's own test, as written
            return match.group(0)[1:]
        if match.group(4):
            return found.get(match.group(4), "")
        return match.group(0)

    return _EXPAND_VAR.sub(replace, value)


def _expand_escapes(value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return {"n": "\n", "r": "\r"}.get(match.group(0)[1:], match.group(0))

    return _UNESCAPE.sub(r"\1", _ESCAPE.sub(replace, value))


def _key(text: str) -> tuple[str, str]:
    """godotenv's ``locateKeyName``: the key and the text after its ``=`` or ``:``."""
    text = text.lstrip(_GO_SPACE)
    if text.startswith("export") and text[6:7] and text[6] in _GO_SPACE:
        text = text[6:].lstrip(_GO_SPACE)
    key, offset = "", 0
    for index, char in enumerate(text):
        if char in _GO_SPACE:
            continue
        if char in "=:":
            key, offset = text[:index], index + 1
            break
        if char == "_" or char.isalpha() or char.isdigit() or char == ".":
            continue
        raise EnvFileError(f"unexpected character {char!r} in variable name near {text[:40]!r}")
    if not text:
        raise EnvFileError("zero length string")
    return key.rstrip(), text[offset:].lstrip(_GO_SPACE)


def _value(text: str, found: Mapping[str, str]) -> tuple[str, str | None]:
    """godotenv's ``extractVarValue``: the value and the text after it (``None``: the end)."""
    if not text or text[0] not in "\"'":
        ends = [i for i in (text.find("\n"), text.find("\r")) if i >= 0]
        end = min(ends) if ends else len(text)
        if end == 0 and not ends:
            return "", None
        line = text[:end]
        stop = len(line)
        for index in range(len(line) - 1, 0, -1):
            if line[index] == "#" and line[index - 1] in _GO_SPACE:
                stop = index
                break
        return _expand_variables(line[:stop].strip(_GO_SPACE), found), text[end:]
    quote = text[0]
    for index in range(1, len(text)):
        if text[index] != quote or text[index - 1] == "\\":
            continue
        value = text[:index].strip(quote)
        if quote == '"':
            value = _expand_variables(_expand_escapes(value), found)
        return value, text[index + 1 :]
    raise EnvFileError(f"unterminated quoted value {text.split(chr(10), 1)[0]}")


def parse_env_file(text: str) -> dict[str, str]:
    """The variables of a godotenv file ``text`` (``KEY=value``, ``export KEY=value``,
    ``KEY: value``, quotes, ``#`` comments, ``${VAR}`` of earlier keys); raise
    :class:`EnvFileError` where godotenv would.

    >>> parse_env_file("A=1\\n# c\\nexport B='x y' # note\\nC=\\"$A\\\\n\\"\\n")
    {'A': '1', 'B': 'x y', 'C': '1\\n'}
    """
    found: dict[str, str] = {}
    rest: str | None = text.replace("\r\n", "\n")
    while rest is not None:
        stripped = rest.lstrip()
        if not stripped:
            break
        if stripped[0] == "#":
            newline = stripped.find("\n")
            if newline < 0:
                break
            rest = stripped[newline:]
            continue
        key, after = _key(stripped)
        value, rest = _value(after, found)
        found[key] = value
    return found


def read_env_file(path: str) -> dict[str, str]:
    """``godotenv.Read(path)``: the variables of the env file at ``path`` (relative to the
    working directory, as CST reads it); raise :class:`OSError` or :class:`EnvFileError`."""
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        return parse_env_file(file.read())
