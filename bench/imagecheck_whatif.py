"""What-if: the plugin with the two changes the benchmark proposes, patched in from outside,
to measure what they would save before anyone changes pytest_imagecheck.

Loaded with ``-p imagecheck_whatif`` (``PYTHONPATH=bench``); nothing in the package changes.

1. Command checks share one exec. After collection, the ``command`` criteria of the run are
   known; the first exec in the session container runs all of them in one ``sh`` script that
   marks each command's exit code in stdout and stderr, and each check then gets its own
   command's result. A command run with its own ``user`` or ``env``, or any exec that was not
   prefetched, still gets an exec of its own. (A real implementation would fall back to one
   exec each when the image has no ``sh``.)
2. Archive reads are cached per container and path, so two file checks of one path and the
   ``/etc/passwd`` lookup for ``owner`` read each path once.
3. An image's layers are streamed from ``docker save`` once per session, not once per check:
   the first read keeps what ``no_secrets`` needs (the bytes of its small candidate files),
   and ``size`` (wasted) and ``no_secrets`` share it.
"""

from __future__ import annotations

import functools
import secrets
import shlex
from typing import Any

import pytest

_commands: list[list[str]] = []
_results: dict[tuple[int, tuple[str, ...]], Any] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        criterion = getattr(item, "criterion", None)
        if criterion is None or criterion.check != "command":
            continue
        args = criterion.args
        if args.get("user") or args.get("env"):
            continue
        run = args["run"]
        _commands.append(shlex.split(run) if isinstance(run, str) else list(run))


def _prefetch(container: Any, original: Any) -> None:
    from pytest_imagecheck.container import ExecResult

    mark = secrets.token_hex(8)
    script = "".join(
        f"{shlex.join(argv)}; c=$?; printf '\\n{mark} %s\\n' $c; printf '\\n{mark}\\n' >&2\n"
        for argv in _commands
    )
    batch = original(container, ["sh", "-c", script])
    outs = batch.stdout.split(f"\n{mark} ")
    errs = batch.stderr.split(f"\n{mark}\n")
    if batch.exit_code != 0 or len(outs) != len(_commands) + 1:
        return  # no shell, or something else went wrong: every check execs on its own
    for index, argv in enumerate(_commands):
        code, _, _ = outs[index + 1].partition("\n") if index + 1 < len(outs) else ("", "", "")
        stdout = outs[index] if index == 0 else outs[index].partition("\n")[2]
        _results[(id(container), tuple(argv))] = ExecResult(
            command=argv, exit_code=int(code), stdout=stdout, stderr=errs[index]
        )


def pytest_configure(config: pytest.Config) -> None:
    from pytest_imagecheck.container import RunningContainer

    exec_original = RunningContainer.exec
    fetched: set[int] = set()

    @functools.wraps(exec_original)
    def exec_(
        self: Any, cmd: Any, *, user: Any = None, env: Any = None, workdir: Any = None
    ) -> Any:
        if user or env or workdir or not _commands:
            return exec_original(self, cmd, user=user, env=env, workdir=workdir)
        if id(self) not in fetched:
            fetched.add(id(self))
            _prefetch(self, exec_original)
        argv = tuple(shlex.split(cmd) if isinstance(cmd, str) else cmd)
        result = _results.pop((id(self), argv), None)
        return result if result is not None else exec_original(self, cmd)

    RunningContainer.exec = exec_

    archive_original = RunningContainer.archive_entry
    read_original = RunningContainer.read_file

    @functools.wraps(archive_original)
    def archive_entry(self: Any, path: str, *, content: bool = False) -> Any:
        cache = self.__dict__.setdefault("_whatif_archive", {})
        if (path, True) in cache:
            return cache[(path, True)]
        if (path, content) not in cache:
            cache[(path, content)] = archive_original(self, path, content=content)
        return cache[(path, content)]

    @functools.wraps(read_original)
    def read_file(self: Any, path: str) -> bytes:
        cache = self.__dict__.setdefault("_whatif_files", {})
        if path not in cache:
            cache[path] = read_original(self, path)
        return cache[path]

    RunningContainer.archive_entry = archive_entry
    RunningContainer.read_file = read_file

    from pytest_imagecheck.checks import secrets as secrets_check
    from pytest_imagecheck.image import ImageUnderTest

    layers_original = ImageUnderTest.layer_contents
    streamed: dict[str, Any] = {}

    @functools.wraps(layers_original)
    def layer_contents(self: Any, keep: Any = None) -> Any:
        if self.id not in streamed:
            streamed[self.id] = layers_original(
                self, keep=lambda path, _size: secrets_check._is_candidate(path)
            )
        return streamed[self.id]

    ImageUnderTest.layer_contents = layer_contents
