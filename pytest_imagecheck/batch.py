"""Many commands in one exec: the script one ``/bin/sh`` runs, and how its output splits back.

Each exec costs the engine a process start in the container's namespaces (about 0.1 s on two
cores), so ten command checks in ten execs are most of a small suite's time. When the
criteria of a run announce their commands up front (:meth:`RunningContainer.announce
<pytest_imagecheck.container.RunningContainer.announce>`), the first of them to run starts
one shell that runs them all, one after another, each as ``(unset ...; exec 'arg0' 'arg1')``:

- every word is single-quoted, so the shell expands nothing (``$VARS``, globs, ``;``, quotes):
  the program gets exactly the argv ``docker exec`` would give it;
- ``exec`` in a subshell runs the program found on ``PATH``, never a shell builtin or function
  of the same name (``echo``, ``test``, ``[``);
- the variables a shell sets itself (``PWD``, ``OLDPWD``, ``SHLVL``) get back the values the
  exec would give, or are unset, so the program sees the environment of an exec (the same
  variables, though a shell may pass them in another order). An environment a shell would
  not pass on (``IFS``, or a name that is not a shell identifier) is not batched;
- after each command a line with a random marker and its exit code ends its share of stdout,
  and a marker line ends its share of stderr. The shell's own words ("Killed" when a program
  dies of a signal) go to /dev/null from a subshell between it and the program, whose
  stderr is the exec's.

One shell does prefer itself: a busybox built to run its applets before ``PATH`` (Debian's
busybox-static) would run its own ``echo`` where ``PATH`` finds coreutils'. The script tests
for that first; in such a shell a command is batched only when ``PATH`` leads to that busybox
anyway.

What a shell can't give exactly stays a plain exec: a command whose first word starts with
``-`` (dash reads it as an option of ``exec``), and a command the shell found missing or not
executable or that an applet would shadow (exit code 126 or 127: it is run again alone, so
that the engine's own error is the evidence).
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
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Exit codes with which the shell says it could not run the program itself.
NOT_RUN = (126, 127)


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


def new_mark() -> str:
    """A marker no command's output can contain by chance."""
    return f"imagecheck-{secrets.token_hex(16)}"


#: Defines ``_ic_ok NAME``: false when this shell would run its own applet where an exec
#: runs what ``PATH`` finds (the lookup is Go's ``exec.LookPath``, as runc's: an empty
#: entry is the working directory).
_PRELUDE = """\
_ic_applets=; if (PATH=/nonexistent-imagecheck; exec true) 2>/dev/null; then _ic_applets=1; fi
_ic_ok() {
  [ -z "$_ic_applets" ] && return 0
  case $1 in */*) return 0;; esac
  _ic_rest=${PATH:+$PATH:}
  while [ -n "$_ic_rest" ]; do
    _ic_dir=${_ic_rest%%:*}; _ic_rest=${_ic_rest#*:}
    if [ -f "${_ic_dir:-.}/$1" ] && [ -x "${_ic_dir:-.}/$1" ]; then
      [ "${_ic_dir:-.}/$1" -ef /proc/self/exe ]; return  # [ is a builtin: self is the shell
    fi
  done
  return 1
}
"""


def keeps(environment: Mapping[str, str]) -> bool:
    """Whether a shell passes ``environment`` on as an exec would (once :func:`script` puts
    back what it sets): dash and busybox drop names that are not identifiers, and reset IFS.

    >>> keeps({"PATH": "/bin", "PWD": "/x"}), keeps({"my-var": "1"}), keeps({"IFS": ","})
    (True, False, False)
    """
    return "IFS" not in environment and all(_NAME.fullmatch(name) for name in environment)


def script(commands: Sequence[Command], *, mark: str, environment: Mapping[str, str]) -> str:
    """The shell script that runs ``commands`` in order, each ended by marker lines.

    ``environment`` is what an exec of them would get (the container's, then the exec's own).

    >>> print(script([Command(("echo", "$HOME;"))], mark="M", environment={}).splitlines()[-1])
    (unset PWD; unset OLDPWD; unset SHLVL; _ic_ok echo || exit 126; (exec echo '$HOME;' 2>&3 ...
    """
    prefix = "".join(
        f"export {name}={shlex.quote(environment[name])}; "
        if name in environment
        else f"unset {name}; "
        for name in SHELL_VARS
    )
    return _PRELUDE + "\n".join(
        f"({prefix}_ic_ok {shlex.quote(command.argv[0])} || exit 126; "
        f"(exec {shlex.join(command.argv)} 2>&3 3>&-); exit $?) 3>&2 2>/dev/null; "
        f"printf '\\n{mark} %d\\n' \"$?\"; printf '\\n{mark}\\n' >&2"
        for command in commands
    )


def split_output(stdout: str, stderr: str, *, mark: str) -> list[tuple[int, str, str]]:
    """Each command's exit code, stdout and stderr, for the commands whose markers arrived.

    Fewer results than commands mean the shell stopped early (or never started): the rest
    did not finish in it.

    >>> split_output("a\\n\\nM 0\\nb\\nM 3\\n", "\\nM\\nerr\\nM\\n", mark="M")
    [(0, 'a\\n', ''), (3, 'b', 'err')]
    """
    outs = stdout.split(f"\n{mark} ")
    errs = stderr.split(f"\n{mark}\n")
    results = []
    for index in range(min(len(outs), len(errs)) - 1):
        code = outs[index + 1].partition("\n")[0]
        if not code.isdigit():
            break
        text = outs[index] if index == 0 else outs[index].partition("\n")[2]
        results.append((int(code), text, errs[index]))
    return results
