"""A running container of the image under test: exec, ports, logs, health, files."""

from __future__ import annotations

import copy
import itertools
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import docker.errors

from . import batch
from .batch import Command
from .errors import ContainerFailed, ImageCheckError
from .image import port_key, read_archive_file
from .layers import stream_of

if TYPE_CHECKING:
    import testinfra.host

    from .engine import Engine
    from .image import ImageUnderTest

#: How many log lines failure messages and reports carry.
LOG_TAIL_LINES = 40

#: A path's archive header, and the bytes of a regular file when asked for.
ArchiveEntry = tuple[tarfile.TarInfo, bytes | None]


@dataclass(frozen=True)
class HealthProbe:
    """One run of the image's HEALTHCHECK, as the engine logged it."""

    start: str
    exit_code: int
    output: str


@dataclass(frozen=True)
class ExecResult:
    """What a command run with :meth:`RunningContainer.exec` returned."""

    command: str | list[str]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True when the command exited with 0."""
        return self.exit_code == 0


def stop_reason(state: dict[str, Any]) -> str | None:
    """Why a container whose inspect ``State`` this is is not running, or ``None`` if it is."""
    if state.get("Running"):
        return None
    reason = f"exited with code {state.get('ExitCode')}"
    if state.get("OOMKilled"):
        reason += " (killed: out of memory)"
    if state.get("Error"):
        reason += f" ({state['Error']})"
    return reason


def health_of(state: dict[str, Any]) -> str | None:
    """The health status in a container's inspect ``State``; ``None`` without HEALTHCHECK."""
    health = state.get("Health")
    return str(health["Status"]) if health else None


class RunningContainer:
    """One container of the image under test, started by the plugin and removed by it.

    Ports are published on 127.0.0.1 only, each at a free port the engine picked.
    """

    def __init__(self, container: Any, *, image: ImageUnderTest, engine: Engine) -> None:
        self._container = container
        self.image = image
        self.engine = engine
        self._served_execs: dict[Command, ExecResult] = {}
        self._served_reads: dict[str, ArchiveEntry | FileNotFoundError] = {}

    def __repr__(self) -> str:
        return f"<RunningContainer {self.name} of {self.image.ref}>"

    @property
    def id(self) -> str:
        """The container ID."""
        return str(self._container.id)

    @property
    def name(self) -> str:
        """The container name (``imagecheck-<session>-<random>``)."""
        return str(self._container.name)

    @property
    def attrs(self) -> dict[str, Any]:
        """The engine's inspect document, refreshed on each read."""
        self._reload()
        return dict(self._container.attrs)

    def _reload(self) -> None:
        try:
            self._container.reload()
        except docker.errors.NotFound:
            raise ContainerFailed(f"container {self.name} was removed while in use") from None

    @property
    def status(self) -> str:
        """``created``, ``running``, ``exited``, ... refreshed on read."""
        return str(self.attrs["State"]["Status"])

    @property
    def health(self) -> str | None:
        """``starting``, ``healthy`` or ``unhealthy``; ``None`` without HEALTHCHECK."""
        return health_of(self.attrs["State"])

    @property
    def health_log(self) -> list[HealthProbe]:
        """The engine's last health probes (up to five), oldest first."""
        health = self.attrs["State"].get("Health") or {}
        return [
            HealthProbe(
                str(p.get("Start", "")), int(p.get("ExitCode", -1)), str(p.get("Output", ""))
            )
            for p in health.get("Log") or []
        ]

    @property
    def exit_code(self) -> int | None:
        """The exit code once the container stopped, else ``None``."""
        state = self.attrs["State"]
        return None if state.get("Running") else int(state.get("ExitCode", 0))

    @property
    def ports(self) -> dict[str, tuple[str, int]]:
        """Published ports: ``{"5000/tcp": ("127.0.0.1", 49153)}``."""
        published = self.attrs["NetworkSettings"].get("Ports") or {}
        return {
            port: (bindings[0]["HostIp"] or "127.0.0.1", int(bindings[0]["HostPort"]))
            for port, bindings in published.items()
            if bindings
        }

    def address(self, port: int | str) -> tuple[str, int]:
        """Where the host reaches container ``port``: ``("127.0.0.1", 49153)``."""
        key = port_key(port)
        ports = self.ports
        if key not in ports:
            published = ", ".join(ports) or "none"
            raise ImageCheckError(
                f"port {port} is not published by {self.name} (published: {published}): "
                "EXPOSE it in the Dockerfile or pass ports=[...] to run_container"
            )
        return ports[key]

    def url(self, port: int | str, path: str = "/") -> str:
        """An ``http://`` URL for ``path`` on container ``port``, reachable from the host."""
        if not path.startswith("/"):
            raise ImageCheckError(f"path {path!r} must start with '/', e.g. '/{path}'")
        host, host_port = self.address(port)
        return f"http://{host}:{host_port}{path}"

    def logs(self, tail: int | None = None) -> str:
        """The container's stdout and stderr; only the last ``tail`` lines when given."""
        try:
            raw = self._container.logs(tail=tail if tail is not None else "all")
        except docker.errors.NotFound:
            return ""
        return raw.decode("utf-8", "replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` log lines, indented for messages (``(no output)`` if none).

        The image's secret ENV values are masked, should the service print them.
        """
        from .checks.secrets import mask_secrets

        text = mask_secrets(self.logs(tail=lines).rstrip(), self.image.env)
        return "\n".join("  " + line for line in text.splitlines()) or "  (no output)"

    def stopped(self) -> str | None:
        """Why the container is not running (``exited with code 3``), or ``None`` if it is."""
        return stop_reason(self.attrs["State"])

    def ensure_running(self) -> None:
        """Raise :class:`ContainerFailed` with the exit code and log tail unless running."""
        reason = self.stopped()
        if reason is not None:
            raise ContainerFailed(
                f"container {self.name} of {self.image.ref} {reason}; last log lines:\n"
                f"{self.log_tail()}"
            )

    @property
    def init_uid(self) -> int:
        """The uid PID 1 runs as, from the engine's process table (no shell needed)."""
        state = self.attrs["State"]
        if not state.get("Running"):
            self.ensure_running()
        table = self._container.top(ps_args="-o pid,uid")
        columns = [title.upper() for title in table["Titles"]]
        pid_col, uid_col = columns.index("PID"), columns.index("UID")
        for row in table["Processes"] or []:
            if int(row[pid_col]) == state["Pid"]:
                return int(row[uid_col])
        raise ContainerFailed(f"PID 1 of {self.name} is not in the engine's process table")

    def serving(
        self,
        execs: Mapping[Command, ExecResult] | None = None,
        reads: Mapping[str, ArchiveEntry | FileNotFoundError] | None = None,
    ) -> RunningContainer:
        """This container, seen through results gathered before: an exec of one of ``execs``
        returns its result (once), and a read of a path in ``reads`` its entry, or raises
        the :class:`FileNotFoundError` kept for it. Everything else goes to the engine.

        How a run of criteria shares one exec (:meth:`exec_batch`) and one read per path:
        each criterion gets a view serving its share.
        """
        view = copy.copy(self)
        view._served_execs = dict(execs or {})
        view._served_reads = dict(reads or {})
        return view

    def exec(
        self,
        cmd: str | list[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Run ``cmd`` in the container (no shell unless you call one) and wait for it.

        A string is split like a shell would split words, but never interpreted by one.
        """
        if self._served_execs:
            command = Command.of(cmd, user=user, env=env, workdir=workdir)
            served = self._served_execs.pop(command, None)
            if served is not None:
                return replace(served, command=cmd)
        return self._exec(cmd, user=user, env=env, workdir=workdir)

    def exec_batch(self, commands: Sequence[Command]) -> list[ExecResult]:
        """Run ``commands`` one after another, in as few execs as give each exactly what an
        exec of it alone gives, and return their results in order.

        Neighbours with the same user, environment and working directory share one
        ``/bin/sh`` (:mod:`pytest_imagecheck.batch` says how, and which run alone); an image
        without ``/bin/sh`` gets one exec per command.
        """
        results: list[ExecResult] = []
        start = 0
        for index in range(1, len(commands) + 1):
            if index == len(commands) or commands[index].group != commands[start].group:
                results += self._run_group(commands[start:index])
                start = index
        return results

    def _run_group(self, commands: Sequence[Command]) -> list[ExecResult]:
        group = commands[0].group
        entries = (entry.partition("=") for entry in self._container.attrs["Config"]["Env"] or [])
        environment = {name: value for name, _, value in entries} | dict(group.env)
        shell = batch.keeps(environment)
        results: list[ExecResult] = []
        rest = list(commands)
        while rest:
            part = batch.leading(rest) if shell and rest[0].batchable else []
            if len(part) < 2:
                results.append(self._exec_command(rest.pop(0)))
                continue
            outputs = self._shell(part, environment)
            shell = bool(outputs)  # no start marker: no shell here, or it cannot start
            ran = list(itertools.takewhile(lambda output: output is not None, outputs))
            results += [
                ExecResult(list(command.argv), *output)
                for command, output in zip(part, ran, strict=False)
            ]
            del rest[: len(ran)]
            if rest and len(ran) < len(part):
                # The shell could not run this one exactly (or stopped in it): alone, in order.
                results.append(self._exec_command(rest.pop(0)))
        return results

    def _shell(
        self, commands: list[Command], environment: dict[str, str]
    ) -> list[tuple[int, str, str] | None]:
        mark = batch.new_mark()
        script = batch.script(commands, mark=mark, environment=environment)
        try:
            result = self._exec_command(
                replace(commands[0].group, argv=(batch.SHELL, "-c", script))
            )
        except ContainerFailed:
            return []  # each command alone says what is wrong, in its own words
        return batch.split_output(result.stdout, result.stderr, mark=mark)

    def _exec_command(self, command: Command) -> ExecResult:
        return self._exec(
            list(command.argv),
            user=command.user or None,
            env=dict(command.env) or None,
            workdir=command.workdir or None,
        )

    def _exec(
        self,
        cmd: str | list[str],
        *,
        user: str | None,
        env: dict[str, str] | None,
        workdir: str | None,
    ) -> ExecResult:
        try:
            code, (out, err) = self._container.exec_run(
                cmd, user=user or "", environment=env, workdir=workdir, demux=True
            )
        except docker.errors.APIError as exc:
            if exc.response is not None and exc.response.status_code == 409:
                self.ensure_running()
            raise ContainerFailed(
                f"cannot exec {cmd!r} in {self.name}: {exc.explanation}"
            ) from None
        return ExecResult(
            command=cmd,
            exit_code=int(code if code is not None else -1),
            stdout=(out or b"").decode("utf-8", "replace"),
            stderr=(err or b"").decode("utf-8", "replace"),
        )

    def archive_entries(
        self, paths: Mapping[str, bool]
    ) -> dict[str, ArchiveEntry | FileNotFoundError]:
        """:meth:`archive_entry` of each path (with its content where ``paths`` says so),
        or the :class:`FileNotFoundError` of a missing one: what :meth:`serving` serves."""
        entries: dict[str, ArchiveEntry | FileNotFoundError] = {}
        for path, content in paths.items():
            try:
                entries[path] = self.archive_entry(path, content=content)
            except FileNotFoundError as missing:
                entries[path] = missing
        return entries

    def read_file(self, path: str) -> bytes:
        """Read one file from the container's filesystem (no shell or ``cat`` needed).

        Symbolic links are followed inside the container, as ``cat`` would.
        """
        served = self._served_reads.get(path)
        if isinstance(served, FileNotFoundError):
            raise FileNotFoundError(*served.args)
        if served is not None and served[1] is not None:
            return served[1]
        return read_archive_file(self._container, path, owner=self.name)

    def archive_entry(self, path: str, *, content: bool = False) -> ArchiveEntry:
        """The archive header of ``path`` itself (type, mode, uid, gid; a symlink is not
        followed) and, with ``content``, the bytes of a regular file.

        One call to the engine's archive API, no shell; reading stops after the first entry,
        so a large directory is not downloaded. Raises :class:`FileNotFoundError` when
        ``path`` does not exist.
        """
        served = self._served_reads.get(path)
        if isinstance(served, FileNotFoundError):
            raise FileNotFoundError(*served.args)
        if served is not None and (served[1] is not None or not content or not served[0].isfile()):
            return served[0], served[1] if content else None
        try:
            chunks, _ = self._container.get_archive(path)
        except docker.errors.NotFound:
            raise FileNotFoundError(f"{path} does not exist in {self.name}") from None
        with tarfile.open(fileobj=stream_of(chunks), mode="r|") as tar:
            entry = tar.next()
            if entry is None:
                raise FileNotFoundError(f"{path} does not exist in {self.name}")
            extracted = tar.extractfile(entry) if content and entry.isfile() else None
            return entry, extracted.read() if extracted is not None else None

    @cached_property
    def host(self) -> testinfra.host.Host:
        """A testinfra ``Host`` bound to this container (``host.file``, ``host.user``, ...)."""
        import testinfra

        return testinfra.get_host(f"docker://{self.id}")

    def stop(self, timeout: int = 10) -> None:
        """Stop the container (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        self._container.stop(timeout=timeout)
