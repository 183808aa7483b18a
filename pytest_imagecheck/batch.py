"""Many commands in one exec: a ``/bin/sh`` that reads them one at a time, and what it says back.

Each exec costs the engine a process start in the container's namespaces (about 0.1 s on two
cores), so ten command checks in ten execs are most of a small suite's time. Command criteria
can instead share one shell
(:meth:`RunningContainer.exec_batch <pytest_imagecheck.container.RunningContainer.exec_batch>`):
an exec of ``/bin/sh -s`` with its stdin attached (a :class:`Shell`), to which the plugin sends
one command when, and only when, that command is to run (when its own criterion runs), as a
:func:`step` line that runs it as ``(unset ...; exec 'arg0' 'arg1')``, so that each program gets
what an exec of it alone would give:

- every word is single-quoted, so the shell expands nothing (``$VARS``, globs, ``;``, quotes):
  the program gets exactly the argv ``docker exec`` would give it;
- ``exec`` in a subshell runs the program found on ``PATH``, never a shell builtin or function
  of the same name (``echo``, ``test``, ``[``);
- the variables a shell sets itself (``PWD``, ``OLDPWD``, ``SHLVL``) get back the values the
  exec would give, or are unset (the same variables, though perhaps in another order). An
  environment with a variable a shell reads or rewrites (``IFS``, ``PPID``, ``ENV``, ...,
  :data:`SHELL_OWNED`) or a name that is not a shell identifier gets no shell;
- the program's stdin is ``/dev/null``, as an exec without ``-i`` has it (the shell's own
  stdin is where its commands come from);
- the shell's own stderr (its start-up warnings, "Killed" when a program dies of a signal)
  goes to /dev/null; each program writes to the exec's stderr, and no descriptor of the
  shell's leaks into it;
- marker lines with a random mark start both streams, and begin and end each command's share
  of them, with its exit code.

Because each command is sent only when it is to run, a command that stops the container (one
that signals PID 1) stops it exactly where a plain exec would: what came before has its
results, and the commands after it find the container stopped, as their own execs would.

Before each command the shell looks it up as runc does (Go's ``exec.LookPath``: ``PATH``,
absolute entries only) and checks that it is a binary or a ``#!`` script. When it is not
found there, is not executable or not a program, or a relative ``PATH`` entry or a busybox
that prefers its own applets (Debian's busybox-static) would run something else, the shell
says so and the caller runs it alone (so that the engine's own error is the evidence). So is a
command whose first word starts with ``-`` (dash reads it as an option of ``exec``).

One difference stays: a command that leaves a background process holding its stdout or
stderr. An exec of it alone waits for that process; a shared shell does not (what the process
writes later, before the next command begins, is dropped; while it runs, it is that command's).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker.utils import socket as frames

#: The shell that runs the commands; an image without it gets one exec per command.
SHELL = "/bin/sh"
#: Variables a shell adds to its children's environment that an exec would not have.
SHELL_VARS = ("PWD", "OLDPWD", "SHLVL")
#: Variables a shell reads at start or rewrites (dash, busybox ash, bash as sh): an exec
#: environment holding one gets no shell.
SHELL_OWNED = frozenset(
    {
        "IFS",
        "PPID",
        "OPTIND",
        "LINENO",
        "PS1",
        "PS2",
        "PS4",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "BASH_XTRACEFD",
        "POSIXLY_CORRECT",
        "CDPATH",
        "_",
    }
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Command:
    """One exec: its argv and the user, environment and working directory it runs with."""

    argv: tuple[str, ...]
    user: str = ""
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""

    @classmethod
    def of(
        cls,
        cmd: str | Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> Command:
        """The command ``exec(cmd, user=, env=, workdir=)`` runs; a string is split into words
        as docker-py splits it (``shlex.split``)."""
        argv = shlex.split(cmd) if isinstance(cmd, str) else cmd
        return cls(tuple(argv), user or "", tuple(sorted((env or {}).items())), workdir or "")

    @property
    def group(self) -> Command:
        """The exec a shell for this command runs in: same user, environment and directory."""
        return Command((), self.user, self.env, self.workdir)

    @property
    def batchable(self) -> bool:
        """Whether a shell can run this command exactly as an exec would.

        >>> Command(("id", "-u")).batchable, Command(("-x",)).batchable, Command(()).batchable
        (True, False, False)
        """
        return bool(self.argv) and not self.argv[0].startswith("-")


def keeps(environment: Mapping[str, str]) -> bool:
    """Whether a shell passes ``environment`` on as an exec would (once :func:`step` puts
    back what it sets): not with a variable it owns, nor a name that is not an identifier
    (dash and busybox drop those).

    >>> keeps({"PATH": "/bin", "PWD": "/x"}), keeps({"my-var": "1"}), keeps({"IFS": ","})
    (True, False, False)
    """
    return not SHELL_OWNED & set(environment) and all(map(_NAME.fullmatch, environment))


def new_mark() -> str:
    """A marker no command's output can contain by chance."""
    return f"imagecheck-{secrets.token_hex(16)}"


#: Moves the shell's own stderr to /dev/null (programs get fd 4, the exec's stderr), and
#: defines ``_ic_ok NAME``: whether ``exec NAME`` here runs what an exec of NAME would.
_PRELUDE = """\
exec 4>&2 2>/dev/null
_ic_applets=; if (PATH=/nonexistent-imagecheck; exec true); then _ic_applets=1; fi
_ic_elf=$(printf '\\177ELF')
_ic_program() {
  _ic_head=
  [ -f "$1" ] && [ -x "$1" ] || return 1
  { IFS= read -r _ic_head || [ -n "$_ic_head" ]; } < "$1" || return 1
  case $_ic_head in "#!"*|"$_ic_elf"*) return 0;; esac
  return 1
}
_ic_ok() {
  case $1 in */*) _ic_program "$1"; return;; esac
  _ic_rest=${PATH:+$PATH:}
  while [ -n "$_ic_rest" ]; do
    _ic_dir=${_ic_rest%%:*}; _ic_rest=${_ic_rest#*:}
    case $_ic_dir in
      /*) ;;
      *) [ -e "${_ic_dir:-.}/$1" ] && return 1; continue;;
    esac
    if [ -f "$_ic_dir/$1" ] && [ -x "$_ic_dir/$1" ]; then
      _ic_program "$_ic_dir/$1" || return
      [ -z "$_ic_applets" ] || [ "$_ic_dir/$1" -ef /proc/self/exe ]; return
    fi
  done
  return 1
}
"""
#: What ends a shell: it exits, and its exec with it.
CLOSING = "exit 0\n"


def opening(mark: str) -> str:
    """What a shell reads first: the prelude, then the start marker on both streams."""
    return _PRELUDE + f"printf '{mark} start\\n'; printf '{mark} start\\n' >&4\n"


def step(command: Command, *, mark: str, environment: Mapping[str, str]) -> str:
    """The line that runs ``command`` in a shell that read :func:`opening`.

    ``environment`` is what an exec of it would get (the container's, then the exec's own).
    Both streams get ``MARK run``, the program's output, then ``MARK <exit code>``; or
    ``MARK -`` alone when the shell cannot run it exactly (the caller runs it alone).

    >>> line = step(Command(("echo", "$HOME;")), mark="M", environment={"PWD": "/"})
    >>> print(line[line.index("(") : line.index(");") + 1])
    (export PWD=/; unset OLDPWD; unset SHLVL; exec echo '$HOME;' 2>&4 4>&- </dev/null)
    """
    prefix = "".join(
        f"export {name}={shlex.quote(environment[name])}; "
        if name in environment
        else f"unset {name}; "
        for name in SHELL_VARS
    )
    return (
        f"if _ic_ok {shlex.quote(command.argv[0])}; then "
        f"printf '{mark} run\\n'; printf '{mark} run\\n' >&4; "
        f"({prefix}exec {shlex.join(command.argv)} 2>&4 4>&- </dev/null); _ic_rc=$?; "
        f"printf '\\n{mark} %d\\n' \"$_ic_rc\"; printf '\\n{mark} %d\\n' \"$_ic_rc\" >&4; "
        f"else printf '{mark} -\\n'; printf '{mark} -\\n' >&4; fi\n"
    )


@dataclass(frozen=True)
class Said:
    """What a shell said of one command on both streams, read so far.

    ``ran``: its program started (the ``run`` markers came); ``exit_code``: how it ended, or
    ``None`` while (or because) its end markers did not come; ``left``: the shell would not
    run it exactly, so the caller runs it alone. ``stdout`` and ``stderr`` are the program's
    own output (so far), without markers.
    """

    ran: bool = False
    exit_code: int | None = None
    left: bool = False
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def complete(self) -> bool:
        """Whether the shell said all it will of this command."""
        return self.left or self.exit_code is not None


def _stream(data: bytes, mark: bytes) -> tuple[bool, str | None, bytes, bytes]:
    """One stream's share of a step: (began, end code or None, output, rest after the end)."""
    began = data.find(mark + b" run\n")
    left = data.find(mark + b" -\n")
    if left >= 0 and (began < 0 or left < began):
        return False, "-", b"", data[left + len(mark) + 3 :]
    if began < 0:
        return False, None, b"", b""
    body = data[began + len(mark) + 5 :]
    end = re.search(b"\n" + re.escape(mark) + rb" (\d+)\n", body)
    if end is None:
        return True, None, body, b""
    return True, end.group(1).decode(), body[: end.start()], body[end.end() :]


def read_step(stdout: bytes, stderr: bytes, *, mark: str) -> tuple[Said, bytes, bytes]:
    """What the shell said of the command it was sent, from what both streams carried since
    the previous command ended; and what is left of each stream once it said all (output of
    a background process between commands comes before the next ``run`` marker and is
    dropped).

    >>> said, _, _ = read_step(b"M run\\nout\\nM 3\\n", b"M run\\nerr\\n\\nM 3\\n", mark="M")
    >>> said
    Said(ran=True, exit_code=3, left=False, stdout=b'out', stderr=b'err\\n')
    >>> read_step(b"M run\\nhalf", b"", mark="M")[0].complete
    False
    """
    marker = mark.encode()
    out_began, out_end, out, out_rest = _stream(stdout, marker)
    err_began, err_end, err, err_rest = _stream(stderr, marker)
    if out_end == "-" and err_end == "-":
        return Said(left=True), out_rest, err_rest
    ran = out_began or err_began
    if out_end is not None and out_end != "-" and err_end is not None:
        return Said(True, int(out_end), False, out, err), out_rest, err_rest
    return Said(ran, None, False, out, err), stdout, stderr


class Shell:
    """A ``/bin/sh -s`` in a container, reading one :func:`step` at a time from the attached
    stdin of its exec (docker-py's low-level client ``api``; the exec runs as ``group``).

    :meth:`start` returns ``None`` when no shell can start there (none in the image, the
    container stopped or paused); :meth:`run` sends one command and reads until the shell
    said all of it, or its exec ended (the shell died: killed, or its container stopped);
    :meth:`close` ends it. An engine that refuses, or a connection that ends, raises nothing:
    a shell that is gone says so through :attr:`alive`.
    """

    def __init__(self, sock: Any, mark: str, environment: Mapping[str, str]) -> None:
        self._sock = sock
        self._mark = mark
        self._environment = dict(environment)
        self._stdout = b""
        self._stderr = b""
        self.alive = True

    @classmethod
    def start(
        cls, api: Any, container_id: str, group: Command, environment: Mapping[str, str]
    ) -> Shell | None:
        """Start a shell for the commands of ``group`` (``environment``: what their execs
        would get); ``None`` when it cannot start."""
        try:
            exec_id = api.exec_create(
                container_id,
                [SHELL, "-s"],
                stdin=True,
                stdout=True,
                stderr=True,
                user=group.user,
                environment=dict(group.env) or None,
                workdir=group.workdir or None,
            )["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except docker.errors.APIError:
            return None
        for each in (sock, getattr(sock, "_sock", sock)):
            if hasattr(each, "settimeout"):
                each.settimeout(None)  # a command may run as long as an exec of it would
        shell = cls(sock, new_mark(), environment)
        started = f"{shell._mark} start\n".encode()
        if not shell._send(opening(shell._mark)):
            return None
        while started not in shell._stdout or started not in shell._stderr:
            if not shell._read():
                shell.close()
                return None  # no such shell, or it cannot start: its error is dropped
        shell._stdout = shell._stdout.split(started, 1)[1]
        shell._stderr = shell._stderr.split(started, 1)[1]
        return shell

    def run(self, command: Command) -> Said:
        """Run ``command`` now and say what the shell said of it: complete, or not (it died
        while or before running it, or is gone)."""
        line = step(command, mark=self._mark, environment=self._environment)
        if not self.alive or not self._send(line):
            return Said()
        while True:
            said, stdout, stderr = read_step(self._stdout, self._stderr, mark=self._mark)
            if said.complete:
                self._stdout, self._stderr = stdout, stderr
                return said
            if not self._read():
                return said

    def close(self) -> None:
        """End the shell and wait for its exec to end (so that no process of it is left)."""
        if self.alive and self._send(CLOSING):
            while self._read():
                pass
        self.alive = False
        with contextlib.suppress(OSError):
            self._sock.close()

    def _send(self, text: str) -> bool:
        try:
            getattr(self._sock, "_sock", self._sock).sendall(text.encode())
        except OSError:
            self.alive = False
        return self.alive

    def _read(self) -> bool:
        """Read one frame of the exec's output into the streams; ``False`` at its end."""
        try:
            kind, size = frames.next_frame_header(self._sock)
            data = frames.read_exactly(self._sock, size) if size > 0 else b""
        except (OSError, frames.SocketError):
            kind = size = -1
        if size < 0:
            self.alive = False
            return False
        if kind == frames.STDOUT:
            self._stdout += data
        elif kind == frames.STDERR:
            self._stderr += data
        return True
