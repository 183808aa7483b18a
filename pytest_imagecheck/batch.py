"""Many commands in one exec: the script one ``/bin/sh`` runs, and how its output splits back.

Each exec costs the engine a process start in the container's namespaces (about 0.1 s on two
cores), so ten command checks in ten execs are most of a small suite's time. A run of command
criteria that follow one another can instead share one shell
(:meth:`RunningContainer.exec_batch <pytest_imagecheck.container.RunningContainer.exec_batch>`),
which runs them in order, each as ``(unset ...; exec 'arg0' 'arg1')``, so that each program
gets what an exec of it alone would give:

- every word is single-quoted, so the shell expands nothing (``$VARS``, globs, ``;``, quotes):
  the program gets exactly the argv ``docker exec`` would give it;
- ``exec`` in a subshell runs the program found on ``PATH``, never a shell builtin or function
  of the same name (``echo``, ``test``, ``[``);
- the variables a shell sets itself (``PWD``, ``OLDPWD``, ``SHLVL``) get back the values the
  exec would give, or are unset (the same variables, though perhaps in another order). An
  environment with a variable a shell reads or rewrites (``IFS``, ``PPID``, ``ENV``, ...,
  :data:`SHELL_OWNED`) or a name that is not a shell identifier is not batched;
- the shell's own stderr (its start-up warnings, "Killed" when a program dies of a signal)
  goes to /dev/null; each program writes to the exec's stderr, and no descriptor of the
  shell's leaks into it;
- marker lines with a random mark start both streams and end each command's share of them,
  with its exit code on stdout.

Before each command the script looks it up as runc does (Go's ``exec.LookPath``: ``PATH``,
absolute entries only) and checks that it is a binary or a ``#!`` script. When it is not
found there, is not executable or not a program, or a relative ``PATH`` entry or a busybox
that prefers its own applets (Debian's busybox-static) would run something else, the shell
marks it and stops, and the caller runs it alone (so that the engine's own error is the
evidence), then the rest. So is a command whose first word starts with ``-`` (dash reads it
as an option of ``exec``) and any command after the shell stopped (one killed it).

One difference stays: a command that leaves a background process holding its stdout or
stderr. An exec of it alone waits for that process; in a batch, what it writes later lands in
the next command's share.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The shell that runs a batch; an image without it gets one exec per command.
SHELL = "/bin/sh"
#: Variables a shell adds to its children's environment that an exec would not have.
SHELL_VARS = ("PWD", "OLDPWD", "SHLVL")
#: Variables a shell reads at start or rewrites (dash, busybox ash, bash as sh): an exec
#: environment holding one is not batched.
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
#: How long one batch's script may grow (the kernel takes 128 KiB per argument).
SCRIPT_LIMIT = 64 * 1024
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
        """The exec a batch of this command runs in: same user, environment and directory."""
        return Command((), self.user, self.env, self.workdir)

    @property
    def batchable(self) -> bool:
        """Whether a shell can run this command exactly as an exec would.

        >>> Command(("id", "-u")).batchable, Command(("-x",)).batchable, Command(()).batchable
        (True, False, False)
        """
        return bool(self.argv) and not self.argv[0].startswith("-")


def keeps(environment: Mapping[str, str]) -> bool:
    """Whether a shell passes ``environment`` on as an exec would (once :func:`script` puts
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


def script(commands: Sequence[Command], *, mark: str, environment: Mapping[str, str]) -> str:
    """The shell script that runs ``commands`` in order, with marker lines.

    ``environment`` is what an exec of them would get (the container's, then the exec's own).

    >>> text = script([Command(("echo", "$HOME;"))], mark="M", environment={})
    >>> print(text.splitlines()[-1])
    if _ic_ok echo; then (unset PWD; unset OLDPWD; unset SHLVL; exec echo '$HOME;' 2>&4 4>&-); ...
    """
    prefix = "".join(
        f"export {name}={shlex.quote(environment[name])}; "
        if name in environment
        else f"unset {name}; "
        for name in SHELL_VARS
    )
    start = f"printf '{mark} start\\n'; printf '{mark} start\\n' >&4"
    return "\n".join(
        [
            _PRELUDE + start,
            *(
                f"if _ic_ok {shlex.quote(command.argv[0])}; then "
                f"({prefix}exec {shlex.join(command.argv)} 2>&4 4>&-); "
                f"printf '\\n{mark} %d\\n' \"$?\"; printf '\\n{mark}\\n' >&4; "
                f"else printf '\\n{mark} -\\n'; printf '\\n{mark}\\n' >&4; exit; fi"
                for command in commands
            ),
        ]
    )


def split_output(stdout: str, stderr: str, *, mark: str) -> list[tuple[int, str, str] | None]:
    """Each command's exit code, stdout and stderr, or ``None`` where the script did not run
    it; only as many as finished in it (fewer than the commands when the shell stopped).

    What the shell printed before the start markers (a warning at its start) is dropped.

    >>> out = "M start\\na\\n\\nM 0\\n\\nM -\\nb\\nM 3\\n"
    >>> split_output(out, "warning\\nM start\\n\\nM\\n\\nM\\nerr\\nM\\n", mark="M")
    [(0, 'a\\n', ''), None, (3, 'b', 'err')]
    """
    started = f"{mark} start\n"
    if started not in stdout or started not in stderr:
        return []
    outs = stdout.split(started, 1)[1].split(f"\n{mark} ")
    errs = stderr.split(started, 1)[1].split(f"\n{mark}\n")
    results: list[tuple[int, str, str] | None] = []
    for index in range(min(len(outs), len(errs)) - 1):
        code = outs[index + 1].partition("\n")[0]
        if not (code.isdigit() or code == "-"):
            break
        text = outs[index] if index == 0 else outs[index].partition("\n")[2]
        results.append((int(code), text, errs[index]) if code != "-" else None)
    return results


def leading(commands: Sequence[Command], limit: int = SCRIPT_LIMIT) -> list[Command]:
    """The first of ``commands`` (at least one) whose quoted words stay under ``limit``
    characters, so that no script outgrows what the kernel takes as one argument.

    >>> len(leading([Command(("echo", "x" * 40))] * 5, limit=400))
    2
    """
    size = 0
    for count, command in enumerate(commands):
        size += len(shlex.join(command.argv)) + 120
        if size > limit and count:
            return list(commands[:count])
    return list(commands)
