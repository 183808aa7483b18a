"""Structure checks, as container-structure-test has them: ENV, labels, ports, config, files
and commands.

The image checks read the engine's inspect data. ``assert_file`` reads one entry of the
container's filesystem through the engine's archive API, so it works for images without a
shell; ``assert_command`` runs one exec, never through a shell unless the command calls one.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import stat
import tarfile
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .. import kinds
from ..batch import Command
from ..declaration import Check, Key, names_in, pairs, value_of
from ..errors import ImageCheckError
from ..evidence import record
from ..secret_rules import mask_text
from ..units import parse_mode, port_key
from .user import parse_table

if TYPE_CHECKING:
    from ..container import RunningContainer
    from ..image import ImageUnderTest

#: How many characters of a command's output, from its end, messages and evidence carry.
OUTPUT_TAIL = 500
#: How many characters of a file's content, from its start, a failure message shows.
CONTENT_EXCERPT = 200
#: The kinds ``assert_file(kind=...)`` takes.
KINDS = ("file", "dir", "symlink")
#: Where ``assert_file`` looks up ``owner`` and ``group`` in the container.
ACCOUNT_TABLES = {"owner": "/etc/passwd", "group": "/etc/group"}

Pattern = str | re.Pattern[str]

_KIND_OF = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
}


def _quote(value: object) -> str:
    """``value`` as JSON on one line: ``"prod"``, ``["httpd", "-f"]``."""
    return json.dumps(value, ensure_ascii=False)


def _text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ImageCheckError(f"bad {name} {value!r}: use a string")
    return value


def _compile(name: str, pattern: Pattern | None) -> re.Pattern[str] | None:
    """A regular expression whose ``^`` and ``$`` match at each line."""
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(pattern, re.MULTILINE)
    except (re.error, TypeError) as exc:
        raise ImageCheckError(f"bad {name} {pattern!r}: {exc}") from None


def _mismatches(
    what: str, found: Mapping[str, str], expected: Mapping[str, str | None]
) -> list[str]:
    if not isinstance(expected, Mapping):
        raise ImageCheckError(f"{what} expectations must map names to values, got {expected!r}")
    for name, wanted in expected.items():
        if not isinstance(name, str) or not (wanted is None or isinstance(wanted, str)):
            raise ImageCheckError(
                f"bad {what} expectation {name}={wanted!r}: values are strings "
                f'(quote numbers: "{wanted}") or None for unset'
            )
    problems = []
    for name, wanted in expected.items():
        value = found.get(name)
        if value == wanted:
            continue
        if wanted is None:
            problems.append(f"{what} {name} is set ({_quote(value)}), expected unset")
        elif value is None:
            problems.append(f"{what} {name} is unset, expected {_quote(wanted)}")
        else:
            problems.append(f"{what} {name} is {_quote(value)}, expected {_quote(wanted)}")
    return problems


def _found(found: Mapping[str, str], names: Iterable[str], env: Mapping[str, str]) -> list[str]:
    return [mask_text(f"{n}={found[n]}", env) if n in found else f"{n} unset" for n in names]


def assert_env(image: ImageUnderTest, expected: Mapping[str, str | None]) -> None:
    """Assert that ``Config.Env`` of ``image`` has each expected value exactly.

    ``None`` means the variable must be unset. Every mismatch is listed in one message::

        image app:1: ENV APP_ENV is "dev", expected "prod"; ENV DEBUG is set ("1"), expected unset
    """
    __tracebackhide__ = True
    problems = _mismatches("ENV", image.env, expected)
    record("env", env=_found(image.env, expected, image.env), env_mismatches=len(problems))
    if problems:
        raise AssertionError(mask_text(f"image {image.ref}: {'; '.join(problems)}", image.env))


def assert_labels(image: ImageUnderTest, expected: Mapping[str, str | None]) -> None:
    """Assert that ``Config.Labels`` of ``image`` has each expected value exactly.

    ``None`` means the label must be absent. Every mismatch is listed in one message.
    """
    __tracebackhide__ = True
    problems = _mismatches("LABEL", image.labels, expected)
    record(
        "labels", labels=_found(image.labels, expected, image.env), label_mismatches=len(problems)
    )
    if problems:
        raise AssertionError(mask_text(f"image {image.ref}: {'; '.join(problems)}", image.env))


def assert_exposed_ports(
    image: ImageUnderTest, expected: Iterable[int | str], *, exactly: bool = False
) -> None:
    """Assert that ``image`` EXPOSEs each expected port.

    ``5000`` and ``"5000"`` mean ``5000/tcp``; write ``"53/udp"`` for other protocols. With
    ``exactly``, a port the image exposes beyond these fails too.
    """
    __tracebackhide__ = True
    if isinstance(expected, (str, int)):
        raise ImageCheckError(f"ports {expected!r} must be a list, e.g. [{expected!r}]")
    wanted = list(dict.fromkeys(port_key(p) for p in expected))
    found = image.exposed_ports
    missing = [p for p in wanted if p not in found]
    extra = [p for p in found if p not in wanted] if exactly else []
    record(
        "exposed_ports",
        exposed_ports=found or "none",
        expected_ports=wanted or "none",
        exactly=exactly,
    )
    problems = []
    if missing:
        problems.append(f"does not expose {', '.join(missing)}")
    if extra:
        problems.append(f"exposes {', '.join(extra)}, which is not expected")
    if problems:
        raise AssertionError(
            f"image {image.ref} {' and '.join(problems)} (EXPOSE in the image: "
            f"{', '.join(found) or 'none'}; expected {'exactly ' if exactly else ''}"
            f"{', '.join(wanted) or 'none'})"
        )


def _exec_form(name: str, value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ["/bin/sh", "-c", value]
    if isinstance(value, (list, tuple)) and all(isinstance(arg, str) for arg in value):
        return list(value)
    raise ImageCheckError(f"bad {name} {value!r}: use a list (exec form) or a string (shell form)")


def _shown(value: list[str] | str) -> str:
    return _quote(value) if value else "unset"


def assert_config(
    image: ImageUnderTest,
    *,
    entrypoint: str | list[str] | None = None,
    cmd: str | list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
) -> None:
    """Assert the ENTRYPOINT, CMD, WORKDIR and USER of ``image``; ``None`` leaves one unchecked.

    ``entrypoint`` and ``cmd`` are lists, as the exec form writes them; a string means the
    shell form, which the engine stores as ``["/bin/sh", "-c", string]``; ``[]`` means none
    is set. ``workdir`` and ``user`` are compared exactly; ``""`` means unset (``/``, root).
    """
    __tracebackhide__ = True
    for name, value in (("workdir", workdir), ("user", user)):
        _text(name, value)
    wanted_entrypoint, wanted_cmd = _exec_form("entrypoint", entrypoint), _exec_form("cmd", cmd)
    if entrypoint is None and cmd is None and workdir is None and user is None:
        raise ImageCheckError("assert_config needs one of entrypoint, cmd, workdir or user")
    found_entrypoint, found_cmd = image.entrypoint or [], image.cmd or []
    record(
        "config",
        config_entrypoint=mask_text(_shown(found_entrypoint), image.env),
        config_cmd=mask_text(_shown(found_cmd), image.env),
        config_workdir=image.workdir or "unset",
        config_user=image.user or "unset",
    )
    problems = [
        f"{field} is {_shown(found)}, expected {_shown(wanted)}"
        for field, wanted, found in (
            ("Config.Entrypoint", wanted_entrypoint, found_entrypoint),
            ("Config.Cmd", wanted_cmd, found_cmd),
            ("Config.WorkingDir", workdir, image.workdir),
            ("Config.User", user, image.user),
        )
        if wanted is not None and wanted != found
    ]
    if problems:
        raise AssertionError(mask_text(f"image {image.ref}: {'; '.join(problems)}", image.env))


def _account(name: str, value: str | int | None) -> str | int | None:
    """An owner or group: a name, or a number (also given as digits)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    if isinstance(value, str) and value:
        return int(value) if value.isdigit() else value
    raise ImageCheckError(f'bad {name} "{value}": use a name like "root" or a number like 0')


class _Accounts:
    """The container's own ``/etc/passwd`` and ``/etc/group``, each read on first use."""

    def __init__(self, container: RunningContainer) -> None:
        self._container = container
        #: The tables the container does not have (``/etc/group``), each with why.
        self.missing: dict[str, str] = {}

    def _table(self, path: str) -> dict[str, list[str]]:
        try:
            return parse_table(self._container.read_file(path).decode("utf-8", "replace"))
        except FileNotFoundError:
            self.missing[path] = "does not exist"
        except IsADirectoryError:
            self.missing[path] = "is not a regular file"
        return {}

    @cached_property
    def users(self) -> dict[str, list[str]]:
        return self._table(ACCOUNT_TABLES["owner"])

    @cached_property
    def groups(self) -> dict[str, list[str]]:
        return self._table(ACCOUNT_TABLES["group"])

    @staticmethod
    def name(table: dict[str, list[str]], number: int) -> str:
        """The first name ``table`` gives ``number``, else the number itself."""
        return next((name for name, row in table.items() if row[2] == str(number)), str(number))


def _ownership_problems(
    verb: str,
    number_kind: str,
    wanted: str | int,
    found: int,
    table: dict[str, list[str]],
    table_path: str,
    missing: str | None = None,
) -> list[str]:
    """``missing`` says why the container has no ``table_path`` (``does not exist``)."""
    found_text = f"{_Accounts.name(table, found)} ({number_kind} {found})"
    if isinstance(wanted, str):
        row = table.get(wanted)
        if missing is not None:
            return [
                f"{verb} {found_text}, expected {wanted}, which the container cannot resolve: "
                f"its {table_path} {missing} (give a number instead)"
            ]
        if row is None or not row[2].isdigit():
            return [
                f"{verb} {found_text}, expected {wanted}, "
                f"which {table_path} in the container does not have"
            ]
        wanted = int(row[2])
    if wanted == found:
        return []
    return [
        f"{verb} {found_text}, expected {_Accounts.name(table, wanted)} ({number_kind} {wanted})"
    ]


def _content_problems(
    container: RunningContainer,
    path: str,
    entry: tarfile.TarInfo,
    data: bytes | None,
    contains: str | None,
    pattern: re.Pattern[str] | None,
) -> list[str]:
    if entry.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), entry.linkname))
        try:
            data = container.read_file(target)
        except FileNotFoundError:
            return [f"is a symlink to {entry.linkname}, which does not exist"]
        except IsADirectoryError:
            return [f"is a symlink to {entry.linkname}, which has no content to search"]
    if data is None:
        return [f"is a {_KIND_OF.get(entry.type, 'special file')}, which has no content to search"]
    text = data.decode("utf-8", "replace")
    problems = []
    if contains is not None and contains not in text:
        problems.append(f"does not contain {_quote(contains)}")
    if pattern is not None and not pattern.search(text):
        problems.append(f"does not match /{pattern.pattern}/")
    if problems:
        # Masked before it is cut, so a secret is masked whole.
        text = mask_text(text, container.image.env)
        excerpt = text[:CONTENT_EXCERPT] + ("..." if len(text) > CONTENT_EXCERPT else "")
        problems[-1] += f" (content: {_quote(excerpt)})"
    return problems


def assert_file(
    container: RunningContainer,
    path: str,
    *,
    exists: bool = True,
    kind: str | None = None,
    mode: str | int | None = None,
    owner: str | int | None = None,
    group: str | int | None = None,
    contains: str | None = None,
    matches: Pattern | None = None,
) -> None:
    """Assert what ``path`` is in ``container``: present (or absent), kind, mode, owner, content.

    Metadata and content come from one call to the engine's archive API: no shell, no exec,
    so images without a shell work. Metadata is of ``path`` itself (a symlink is not
    followed, as ``ls -l``); content follows symlinks (as ``cat``).

    ``exists=False`` passes when ``path`` is absent and takes no other expectation. ``kind`` is
    ``file``, ``dir`` or ``symlink``. ``mode`` is octal digits (``"0644"``, ``"644"``,
    ``"4755"``) or an int (``0o644``), compared on the permission bits. ``owner`` and
    ``group`` are names, resolved through the container's own ``/etc/passwd`` and
    ``/etc/group``, or numbers. ``contains`` is a substring of the content; ``matches`` a
    regular expression searched in it (``^`` and ``$`` match at each line)::

        /app/config.yaml is mode 0666, expected 0644 (owner root:root) in container ... of app:1
    """
    __tracebackhide__ = True
    if not isinstance(path, str) or not path.startswith("/"):
        raise ImageCheckError(f"path {path!r} must be absolute, e.g. '/{path}'")
    if kind is not None and kind not in KINDS:
        raise ImageCheckError(f'bad kind "{kind}": use {", ".join(KINDS)}')
    wanted_mode = None if mode is None else parse_mode(mode)
    wanted_owner, wanted_group = _account("owner", owner), _account("group", group)
    contains = _text("contains", contains)
    pattern = _compile("matches", matches)
    expectations = (kind, mode, owner, group, contains, matches)
    if not exists and any(e is not None for e in expectations):
        raise ImageCheckError(
            f"{path}: exists=False takes no kind, mode, owner, group, contains or matches"
        )
    where = f"in container {container.name} of {container.image.ref}"
    try:
        entry, data = container.archive_entry(
            path, content=contains is not None or pattern is not None
        )
    except FileNotFoundError:
        record("file", file_path=path, file_exists=False)
        if exists:
            raise AssertionError(f"{path} does not exist {where}") from None
        return
    found_kind = _KIND_OF.get(entry.type, "special file")
    found_mode = stat.S_IMODE(entry.mode)
    record(
        "file",
        file_path=path,
        file_exists=True,
        file_kind=found_kind,
        file_mode=f"{found_mode:04o}",
        file_uid=entry.uid,
        file_gid=entry.gid,
        **({"file_target": entry.linkname} if entry.issym() else {}),
    )
    accounts = _Accounts(container)
    link = f" to {entry.linkname}" if entry.issym() else ""
    problems = []
    if not exists:
        problems.append(f"exists ({found_kind}{link}, mode {found_mode:04o}), expected absent")
    if kind is not None and kind != found_kind:
        problems.append(f"is a {found_kind}{link}, expected a {kind}")
    if wanted_mode is not None and wanted_mode != found_mode:
        problems.append(f"is mode {found_mode:04o}, expected {wanted_mode:04o}")
    for wanted, verb, number_kind, found, key in (
        (wanted_owner, "is owned by", "uid", entry.uid, "owner"),
        (wanted_group, "has group", "gid", entry.gid, "group"),
    ):
        if wanted is not None:
            table = accounts.users if key == "owner" else accounts.groups
            path_of = ACCOUNT_TABLES[key]
            problems += _ownership_problems(
                verb, number_kind, wanted, found, table, path_of, accounts.missing.get(path_of)
            )
    if contains is not None or pattern is not None:
        problems += _content_problems(container, path, entry, data, contains, pattern)
    if problems:
        who = (
            f"{accounts.name(accounts.users, entry.uid)}:"
            f"{accounts.name(accounts.groups, entry.gid)}"
        )
        raise AssertionError(f"{path} {'; '.join(problems)} (owner {who}) {where}")


def file_reads(
    path: str,
    *,
    contains: str | None = None,
    matches: Pattern | None = None,
    owner: str | int | None = None,
    group: str | int | None = None,
    **_: object,
) -> dict[str, bool]:
    """The paths :func:`assert_file` with these arguments reads when it passes, each with
    whether it needs the content: what a run of file criteria can read once for all.

    >>> file_reads("/app/x", contains="y", owner="app")
    {'/app/x': True, '/etc/passwd': True}
    """
    reads = {path: contains is not None or matches is not None}
    for key, wanted in (("owner", owner), ("group", group)):
        if wanted is not None:
            reads[ACCOUNT_TABLES[key]] = True
    return reads


def command_of(
    run: str | list[str],
    *,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    **_: object,
) -> Command:
    """The exec :func:`assert_command` with these arguments makes."""
    return Command.of(run, user=user, env=dict(env) if env is not None else None)


def _tail(text: str) -> str:
    """The end of a command's output, saying how much was cut."""
    text = text.rstrip()
    if len(text) <= OUTPUT_TAIL:
        return text
    return f"... ({len(text)} characters, the last {OUTPUT_TAIL} shown)\n{text[-OUTPUT_TAIL:]}"


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in _tail(text).splitlines()) or "  (no output)"


def assert_command(
    container: RunningContainer,
    run: str | list[str],
    *,
    exit_code: int = 0,
    stdout_contains: str | None = None,
    stdout_matches: Pattern | None = None,
    stderr_contains: str | None = None,
    stderr_matches: Pattern | None = None,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``run`` in ``container`` and assert its exit code and output.

    ``run`` is a list of arguments, or a string split into words as a shell would but never
    given to one: write ``["sh", "-c", "..."]`` for pipes, ``$VARS`` or globs. ``*_contains``
    are substrings of the output; ``*_matches`` regular expressions searched in it (``^`` and
    ``$`` match at each line). ``user`` and ``env`` are as ``docker exec -u`` and ``-e``. The
    message shows the command, its exit code and the last lines of both outputs.

    A program the engine cannot start (not in the image, not executable, a user the container
    lacks) is a result like any other: the engine's exit code (126) is compared with
    ``exit_code``, and a failure says that the command did not run, and why, instead of showing
    the engine's refusal as the program's output (evidence ``command_not_run``). When the
    engine's answer is 126 with no output (engine 20.10 loses its line about an unknown user
    on about one exec in four), the container's own ``/etc/passwd`` (and ``/etc/group`` for
    ``user:group``) says whether ``user`` exists there.
    """
    __tracebackhide__ = True
    if isinstance(exit_code, bool) or not isinstance(exit_code, int):
        raise ImageCheckError(f'bad exit_code "{exit_code}": use a whole number, e.g. 0')
    if not 0 <= exit_code <= 255:
        raise ImageCheckError(
            f"bad exit_code {exit_code}: a process exits with 0 to 255 (a signal's death "
            "is 128 + its number, e.g. 137)"
        )
    if not run or not all(isinstance(arg, str) for arg in ([run] if isinstance(run, str) else run)):
        raise ImageCheckError(f'bad command {run!r}: use a list like ["id", "-u"] or a string')
    expectations = (
        (
            "stdout",
            _text("stdout_contains", stdout_contains),
            _compile("stdout_matches", stdout_matches),
        ),
        (
            "stderr",
            _text("stderr_contains", stderr_contains),
            _compile("stderr_matches", stderr_matches),
        ),
    )
    shown = run if isinstance(run, str) else shlex.join(run)
    try:
        command = command_of(run, user=user, env=env)
    except ValueError as exc:  # shlex: "No closing quotation"
        raise ImageCheckError(
            f"bad command {run!r}: {str(exc).lower()}; close the quote or pass a list of words"
        ) from None
    result = container.exec(run, user=command.user or None, env=dict(command.env) or None)
    not_run = result.not_run
    silent = not (result.stdout + result.stderr).strip()
    if not_run is None and user and silent and result.exit_code in (126, 127):
        not_run = _account_missing(container, user)
    # What messages and evidence show; the expectations are matched against what came.
    stdout, stderr = (
        mask_text(text, container.image.env) for text in (result.stdout, result.stderr)
    )
    record(
        "command",
        command=shown,
        command_user=user or "image default",
        command_exit_code=result.exit_code,
        command_stdout=_tail(stdout),
        command_stderr=_tail(stderr),
        **({"command_not_run": not_run} if not_run is not None else {}),
    )
    outputs = {"stdout": result.stdout, "stderr": result.stderr}
    problems = []
    for stream, contains, pattern in expectations:
        if contains is not None and contains not in outputs[stream]:
            problems.append(f"{stream} does not contain {_quote(contains)}")
        if pattern is not None and not pattern.search(outputs[stream]):
            problems.append(f"{stream} does not match /{pattern.pattern}/")
    if result.exit_code != exit_code or problems:
        expected = f", expected {exit_code}" if result.exit_code != exit_code else ""
        as_user = f" as {user}" if user else ""
        where = f"command `{shown}`{as_user} in container {container.name} of {container.image.ref}"
        if not_run is not None:
            # The engine's answer is the result; the headline must not say the program ran.
            raise AssertionError(
                f"{where} did not run: {not_run}; the engine answered exit code "
                f"{result.exit_code}{expected}{_code_hint(result.exit_code, exit_code)}"
                + (f"; {'; '.join(problems)}" if problems else "")
            )
        raise AssertionError(
            f"{where} exited with {result.exit_code}{expected}"
            + (f": {'; '.join(problems)}" if problems else "")
            + f"\nstdout:\n{_indented(stdout)}\nstderr:\n{_indented(stderr)}"
        )


def _account_missing(container: RunningContainer, user: str) -> str | None:
    """Why the engine could not start an exec as ``user`` (``name``, ``name:group``, ``uid``),
    read from the container's own ``/etc/passwd`` and ``/etc/group``; ``None`` when both name
    what ``user`` asks for (or it is numeric, which the engine takes as it is).

    For an engine answer of 126 with no output, which says nothing of why: the engine resolves
    names through these files, so a name missing there is why the program did not start.
    """
    name, _, group = user.partition(":")
    for wanted, kind, table in ((name, "user", "owner"), (group, "group", "group")):
        if not wanted or wanted.isdigit():
            continue
        accounts = _Accounts(container)
        rows = accounts.users if table == "owner" else accounts.groups
        path = ACCOUNT_TABLES[table]
        if path in accounts.missing:
            return (
                f"{kind} '{wanted}' cannot be resolved: the container's {path} "
                f"{accounts.missing[path]}, so the engine could not start it"
            )
        if wanted not in rows:
            return (
                f"{kind} '{wanted}' is not in {path} of the container, so the engine could not "
                "start it"
            )
    return None


def _code_hint(found: int, expected: int) -> str:
    """Engines and shells disagree on the exit code of a program that cannot start."""
    if found != expected and expected in (126, 127):
        return (
            " (the Docker engine answers 126 for any program it cannot start, moby/moby#45795; "
            "a shell answers 127 for one it cannot find)"
        )
    return ""


# --- imagecheck.yaml -----------------------------------------------------------------------


def _ports_title(values: Mapping[str, Any]) -> str:
    ports = " ".join(map(str, values["expect"]))
    return f"{ports} exactly" if values.get("exactly") else ports


def _command_title(values: Mapping[str, Any]) -> str:
    run = values["run"]
    return shlex.join(run) if isinstance(run, list) else str(run)


ENV = Check(
    "env",
    "Config.Env has these values (assert_env).",
    assert_env,
    "image",
    (
        Key(
            "expect",
            kinds.EXPECTED_VALUES,
            "Variable names and their values; null: must be unset.",
            required=True,
            example={"APP_ENV": "prod"},
            arg="expected",
        ),
    ),
    title=names_in("expect"),
)
LABELS = Check(
    "labels",
    "Config.Labels has these values (assert_labels).",
    assert_labels,
    "image",
    (
        Key(
            "expect",
            kinds.EXPECTED_VALUES,
            "Label names and their values; null: must be absent.",
            required=True,
            example={"org.opencontainers.image.title": "app"},
            arg="expected",
        ),
    ),
    title=names_in("expect"),
)
EXPOSED_PORTS = Check(
    "exposed_ports",
    "The image exposes these ports (assert_exposed_ports).",
    assert_exposed_ports,
    "image",
    (
        Key(
            "expect",
            kinds.PORTS,
            "Ports the image must expose.",
            required=True,
            example=[5000],
            arg="expected",
        ),
        Key("exactly", kinds.BOOL, "Fail on any other exposed port too."),
    ),
    title=_ports_title,
)
CONFIG = Check(
    "config",
    "The image's entrypoint, command, working directory and user (assert_config).",
    assert_config,
    "image",
    (
        Key("entrypoint", kinds.EXEC_OR_SHELL_FORM, "Config.Entrypoint; [] means none is set."),
        Key("cmd", kinds.EXEC_OR_SHELL_FORM, "Config.Cmd; [] means none is set."),
        Key("workdir", kinds.TEXT, "Config.WorkingDir.", example="/app"),
        Key("user", kinds.TEXT, "Config.User, as written."),
    ),
    title=pairs("entrypoint", "cmd", "workdir", "user"),
    at_least_one=("entrypoint", "cmd", "workdir", "user"),
)
FILE = Check(
    "file",
    "A path in the session container exists (or not) with this type, mode, owner and "
    "content (assert_file).",
    assert_file,
    "container",
    (
        Key("path", kinds.ABSOLUTE_PATH, "The path.", required=True, example="/app/main.py"),
        Key("exists", kinds.BOOL, "false: the path must not exist."),
        Key("kind", kinds.one_of(*KINDS), "The type of the path."),
        Key("mode", kinds.MODE, 'Permission bits in octal, in quotes: "0644".'),
        Key("owner", kinds.OWNER, "Owning user, by name or uid."),
        Key("group", kinds.OWNER, "Owning group, by name or gid."),
        Key("contains", kinds.TEXT, "A substring of the content."),
        Key("matches", kinds.REGEX, "A regular expression the content matches."),
    ),
    title=value_of("path"),
)
COMMAND = Check(
    "command",
    "A command run in the session container exits and prints as expected (assert_command).",
    assert_command,
    "container",
    (
        Key(
            "run",
            kinds.COMMAND,
            "The command: a list (exec form) or one string.",
            required=True,
            example=["python3", "--version"],
        ),
        Key("exit_code", kinds.EXIT_CODE, "The exit code; default 0."),
        Key("stdout_contains", kinds.TEXT, "A substring of stdout."),
        Key("stdout_matches", kinds.REGEX, "A regular expression stdout matches."),
        Key("stderr_contains", kinds.TEXT, "A substring of stderr."),
        Key("stderr_matches", kinds.REGEX, "A regular expression stderr matches."),
        Key("user", kinds.TEXT, "Run as this user."),
        Key("env", kinds.STRING_MAP, "Extra environment variables."),
    ),
    title=_command_title,
)
