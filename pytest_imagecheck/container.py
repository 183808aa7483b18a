"""A running container of the image under test: exec, ports, logs, health, files."""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import shlex
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, overload

import docker.errors

from . import batch
from .batch import Command
from .errors import ContainerFailed, ImageCheckError
from .evidence import from_test_code, observe, observed_fact, observing, watch_url
from .layers import stream_of
from .units import port_key

if TYPE_CHECKING:
    import testinfra.host

    from .engine import Engine
    from .image import ImageUnderTest

#: How many log lines failure messages and reports carry.
LOG_TAIL_LINES = 40

#: How long a port that was asked for but is not bound may take to appear (or the container to
#: stop) before it counts as not published: the engine binds ports while it starts a container
#: and releases them while it stops one, so an inspect can fall in between.
PORT_SETTLE_SECONDS = 2.0

#: A path's archive header, and the bytes of a regular file when asked for.
ArchiveEntry = tuple[tarfile.TarInfo, bytes | None]


@dataclass
class Prefetched:
    """Engine work done ahead for one consumer (a criterion), served by
    :meth:`RunningContainer.serving`: exec results by command, each served once, and
    archive entries (or the missing path's error) by path."""

    execs: dict[Command, ExecResult] = field(default_factory=dict)
    reads: dict[str, ArchiveEntry | FileNotFoundError] = field(default_factory=dict)


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

    @property
    def not_run(self) -> str | None:
        """Why the engine could not start the program at all, or ``None`` when it ran.

        Engine 20.10 (runc 1.1) answers such an exec with no error, only an exit code and one
        line of output: 126 (127 on some engines, moby/moby#45795) and what
        :meth:`start_refused` reads; or, when the file was found but ``execve`` refused it,
        1 and ``exec /app/x: exec format error`` on stderr. The answer names the cause and
        keeps the engine's words::

            no such program on the container's PATH (exec: "id": executable file not found in $PATH)

        The output of a program that ran is never taken for such an answer: it needs one of
        those exit codes and nothing else in the output. Engine 20.10 loses the line about an
        unknown user on about one exec in four (126 and no output); nothing then says why,
        and this is ``None``.
        """
        lines = [line for line in (self.stdout + self.stderr).splitlines() if line.strip()]
        if len(lines) != 1:
            return None
        line = lines[0].strip()
        if self.exit_code in (126, 127):
            return ExecResult.start_refused(line)
        if self.exit_code == 1 and not self.stdout.strip():
            started = re.fullmatch(
                r"exec (\S.*): (no such file or directory|exec format error|permission denied"
                r"|text file busy|argument list too long)",
                line,
            )
            if started:
                return f"{ExecResult._cause(line)} ({line})"
        return None

    @staticmethod
    def start_refused(output: str) -> str | None:
        """Why the engine could not start a program, read from its one-line answer, or
        ``None`` when ``output`` is not such an answer.

        The answer is an exec's output (exit code 126) or a health probe's ``Output`` (exit
        code -1): ``OCI runtime exec failed: exec failed: unable to start container process:
        exec: "curl": executable file not found in $PATH: unknown``, or ``unable to find user
        svc: no matching entries in passwd file``.
        """
        line = output.strip()
        oci = re.fullmatch(r"OCI runtime exec failed: (?:exec failed: )?(.*?)(?:: unknown)?", line)
        if oci:
            # runc 1.1 says "unable to start container process: ", 1.0 "...caused: ".
            detail = re.sub(r"^.*?(?:start container process|process caused): ", "", oci.group(1))
            return f"{ExecResult._cause(detail)} ({detail})"
        account = re.fullmatch(
            r"unable to find (user|group) (.*): no matching entries in (passwd|group) file", line
        )
        if account:
            kind, name, table = account.groups()
            return f"{kind} {name} is not in /etc/{table} of the container ({line})"
        return None

    @staticmethod
    def _cause(detail: str) -> str:
        """What the runtime's reason for not starting a program means, in a few words."""
        if "executable file not found" in detail:
            return "no such program on the container's PATH"
        if detail.startswith("chdir to cwd"):
            return "the working directory does not exist in the container"
        if "no such file or directory" in detail:
            if ": stat " in detail:
                return "no such file in the container"
            return "its interpreter (#!) or dynamic loader is missing in the container"
        if "exec format error" in detail:
            return (
                "not a program this machine can run (built for another CPU architecture, "
                "or a script without #!)"
            )
        if "permission denied" in detail:
            return "not an executable file"
        return "the container runtime could not start it"


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


def published_ports(attrs: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """The bound ports in a container's inspect document: ``{"5000/tcp": ("127.0.0.1", 49153)}``."""
    published = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return {
        port: (bindings[0]["HostIp"] or "127.0.0.1", int(bindings[0]["HostPort"]))
        for port, bindings in published.items()
        if bindings
    }


def health_of(state: dict[str, Any]) -> str | None:
    """The health status in a container's inspect ``State``; ``None`` without HEALTHCHECK."""
    health = state.get("Health")
    return str(health["Status"]) if health else None


class RunningContainer:
    """One container of the image under test, started by the plugin and removed by it.

    Ports are published on 127.0.0.1 only (another address for a remote engine:
    ``--publish-host``), each at a free port the engine picked.
    """

    _observed_as = "container"

    def __init__(self, container: Any, *, image: ImageUnderTest, engine: Engine) -> None:
        self._container = container
        self.image = image
        self.engine = engine
        self._served = Prefetched()
        #: ``(host, port)`` -> ``"5000/tcp"`` for each address :meth:`address` gave out, so a
        #: failed connection to one is known as this container's even after it stopped.
        self.given_addresses: dict[tuple[str, int], str] = {}
        #: Set by :meth:`stop`: the container was stopped on purpose, not by dying.
        self.stopped_on_purpose = False
        #: The GPUs it was given (``docker run --gpus``), if any.
        self.gpus: str | None = None
        #: Started ahead of its test and not yet taken: when it was ready.
        self._ready_ahead: float | None = None
        #: Seconds it is older than a container started on demand for its test would be.
        self._head_start = 0.0

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
    @observed_fact
    def status(self) -> str:
        """``created``, ``running``, ``exited``, ... refreshed on read."""
        return str(self.attrs["State"]["Status"])

    @property
    @observed_fact
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
    @observed_fact
    def exit_code(self) -> int | None:
        """The exit code once the container stopped, else ``None``."""
        state = self.attrs["State"]
        return None if state.get("Running") else int(state.get("ExitCode", 0))

    @property
    @observed_fact
    def ports(self) -> dict[str, tuple[str, int]]:
        """Published ports: ``{"5000/tcp": ("127.0.0.1", 49153)}``."""
        return published_ports(self.attrs)

    def address(self, port: int | str) -> tuple[str, int]:
        """Where pytest reaches container ``port``: ``("127.0.0.1", 49153)`` for a local
        engine; the publishing address, or this machine's end of an SSH tunnel, for a remote
        one (``--publish-host``).

        A container that stopped fails with its exit code and log tail, never as a port
        problem: the engine unbinds the ports of a container that exits.
        """
        key = port_key(port)
        settle = time.monotonic() + PORT_SETTLE_SECONDS
        while True:
            attrs = self.attrs
            ports = published_ports(attrs)
            if key in ports:
                reached = self.engine.reach(ports[key])
                self.given_addresses[reached] = key
                return reached
            self._raise_if_stopped(attrs["State"], f"port {key} could be reached")
            asked = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
            if key not in asked or time.monotonic() > settle:
                break
            time.sleep(0.05)  # asked for, not bound yet (starting) or any more (stopping)
        published = ", ".join(ports) or "none"
        raise ImageCheckError(
            f"port {port} is not published by {self.name} (published: {published}): "
            "EXPOSE it in the Dockerfile or pass ports=[...] to run_container"
        )

    def url(self, port: int | str, path: str = "/") -> str:
        """An ``http://`` URL for ``path`` on container ``port``, reachable from the host.

        A test's requests to it are recorded as the test's evidence (status and body head).
        """
        if not path.startswith("/"):
            raise ImageCheckError(f"path {path!r} must start with '/', e.g. '/{path}'")
        host, host_port = self.address(port)
        base = f"http://[{host}]:{host_port}" if ":" in host else f"http://{host}:{host_port}"
        if observing() and from_test_code(sys._getframe(1)):
            watch_url(base, secrets_of=self.image.env)
        return base + path

    def connection_failure(
        self, address: tuple[str, int], what: str, did: str, *, starting: bool
    ) -> str | None:
        """Why a request to ``address`` failed, told as the service's part, not the engine's.

        ``what`` says what happened (``GET http://...: Connection reset by peer``) and ``did``
        what the service did (``did not take the connection``); ``starting`` adds that a
        service still starting does that. With the container's state (or exit code) and log
        tail. ``None`` when ``address`` is not one this container's ports were reached at.
        """
        key = self.given_addresses.get(address)
        if key is None:
            return None
        try:
            state = self.attrs["State"]
        except ContainerFailed as gone:
            return f"{what}: {gone}"
        stopped = stop_reason(state)
        where = f"the service in container {self.name} ({key})"
        if stopped is not None:
            where += f" {stopped}"
        else:
            where += f" {did}; the container is running"
            if starting:
                where += (
                    ": a service that is still starting refuses or resets connections, so "
                    "wait for it first (assert_endpoint_ready(container, ...))"
                )
        return f"{what}: {where}; last log lines:\n{self.log_tail()}"

    def logs(self, tail: int | None = None) -> str:
        """The container's stdout and stderr; only the last ``tail`` lines when given."""
        try:
            raw = self._container.logs(tail=tail if tail is not None else "all")
        except docker.errors.NotFound:
            return ""
        text = raw.decode("utf-8", "replace")
        if observing() and from_test_code(sys._getframe(1)):
            lines = text.rstrip().splitlines()
            observe(
                "read",
                "container.logs",
                f"{len(lines)} lines, last: {lines[-1] if lines else '(none)'}",
                secrets_of=self.image.env,
            )
        return text

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` log lines, indented for messages (``(no output)`` if none).

        The image's secret ENV values are masked, should the service print them.
        """
        from .secret_rules import mask_text

        text = mask_text(self.logs(tail=lines).rstrip(), self.image.env)
        return "\n".join("  " + line for line in text.splitlines()) or "  (no output)"

    def stopped(self) -> str | None:
        """Why the container is not running (``exited with code 3``), or ``None`` if it is."""
        return stop_reason(self.attrs["State"])

    def stops_within(self, seconds: float) -> dict[str, Any] | None:
        """The container's inspect ``State`` once the engine records it stopped, waiting up
        to ``seconds``; ``None`` if it still runs then."""
        deadline = time.monotonic() + seconds
        while True:
            state: dict[str, Any] = self.attrs["State"]
            if stop_reason(state) is not None:
                return state
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def ensure_running(self) -> None:
        """Raise :class:`ContainerFailed` with the exit code and log tail unless running."""
        self._raise_if_stopped(self.attrs["State"])

    def stopped_message(self, state: dict[str, Any] | None = None, when: str = "") -> str | None:
        """``container NAME of IMAGE exited with code 3 WHEN; last log lines:`` and the log
        tail, when the container is not running (``state``: its inspect ``State``, read now
        when not given); ``None`` while it runs. ``when`` says what it stopped before or during
        (``"before /health answered"``). For ``exec format error`` it adds the image's
        platform beside the engine's."""
        if state is None:
            state = self.attrs["State"]
        reason = stop_reason(state)
        if reason is None:
            return None
        tail = self.log_tail()
        hint = ""
        if "exec format error" in f"{state.get('Error', '')}\n{tail}":
            hint = "; " + self.engine.platform_mismatch(self.image)
        when = f" {when}" if when else ""
        return (
            f"container {self.name} of {self.image.ref} {reason}{when}{hint}; "
            f"last log lines:\n{tail}"
        )

    def _raise_if_stopped(self, state: dict[str, Any], before: str | None = None) -> None:
        """Raise :class:`ContainerFailed` with :meth:`stopped_message` for a stopped ``state``."""
        message = self.stopped_message(state, f"before {before}" if before else "")
        if message is not None:
            raise ContainerFailed(message)

    @property
    def init_uid(self) -> int:
        """The uid PID 1 runs as, from the engine's process table (no shell needed)."""
        state = self.attrs["State"]
        self._raise_if_stopped(state, "its uid could be read")
        try:
            table = self._container.top(ps_args="-o pid,uid")
        except docker.errors.APIError as exc:
            # It may have stopped between the inspect and the process listing.
            self._raise_if_stopped(self.attrs["State"], "its uid could be read")
            raise ContainerFailed(
                f"cannot list the processes of {self.name}: {exc.explanation}"
            ) from None
        columns = [title.upper() for title in table["Titles"]]
        pid_col, uid_col = columns.index("PID"), columns.index("UID")
        for row in table["Processes"] or []:
            if int(row[pid_col]) == state["Pid"]:
                return int(row[uid_col])
        raise ContainerFailed(f"PID 1 of {self.name} is not in the engine's process table")

    @contextlib.contextmanager
    def serving(self, prefetched: Prefetched) -> Iterator[None]:
        """While the block runs, answer from ``prefetched`` what it holds: an exec of one of
        its commands returns that result (once), a read of one of its paths that entry (or
        raises the :class:`FileNotFoundError` kept for it). Everything else goes to the
        engine, and so does everything after the block.

        How a run of criteria shares one exec (:meth:`exec_batch`) and one read per path:
        each criterion runs serving its share of the work done once.
        """
        self._served = prefetched
        try:
            yield
        finally:
            self._served = Prefetched()

    def exec(
        self,
        cmd: str | list[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Run ``cmd`` in the container (no shell unless you call one) and wait for it.

        A string is split like a shell would split words, but never interpreted by one (an
        unclosed quote is an :class:`ImageCheckError`).
        """
        if isinstance(cmd, str):
            try:
                shlex.split(cmd)
            except ValueError as exc:
                raise ImageCheckError(
                    f"command {cmd!r} cannot be split into words ({exc}): close the quote, or "
                    "pass a list of words"
                ) from None
        if self._served.execs:
            command = Command.of(cmd, user=user, env=env, workdir=workdir)
            served = self._served.execs.pop(command, None)
            if served is not None:
                return replace(served, command=cmd)
        result = self._exec(cmd, user=user, env=env, workdir=workdir)
        if observing() and from_test_code(sys._getframe(1)):
            observe("exec", _command_text(cmd, user), _outcome(result), secrets_of=self.image.env)
        return result

    def probe(self, argv: list[str], timeout: float) -> ExecResult | None:
        """Run ``argv`` as the engine runs a health probe: as the container's user, output
        kept to its first 4 KiB per stream (the engine keeps 4 KiB), the rest dropped as it
        arrives; None when it has not ended after ``timeout`` seconds.

        Raises :class:`ContainerFailed` when the container stopped.
        """
        try:
            return self._exec(argv, user=None, env=None, workdir=None, output_limit=(4096, timeout))
        except ContainerFailed:
            if self.stopped() is not None:
                raise
            return None

    def exec_batch(self, commands: Sequence[Command], *, lazy: bool = False) -> Batch:
        """Run ``commands`` one after another, each exactly as an exec of it alone, in as few
        execs as that allows; their results, in order, are the :class:`Batch` returned.

        Commands with the same user, environment and working directory share one ``/bin/sh``
        that is sent each command when it is to run (:mod:`pytest_imagecheck.batch` says how,
        and which run alone); an image without ``/bin/sh`` gets one exec per command. Without
        ``lazy`` all run now, and an exec the engine refuses raises :class:`ContainerFailed`
        here, as :meth:`exec` would; with ``lazy`` none runs before it is asked for
        (:meth:`Batch.run`), so a command that stops the container stops it where a plain
        exec of it would, and the shells stay open until :meth:`Batch.close`.
        """
        shared = Batch(self, commands)
        if not lazy:
            with shared:
                for index in range(len(shared)):
                    shared[index]
        return shared

    def _exec_command(self, command: Command) -> ExecResult:
        return self._exec(
            list(command.argv),
            user=command.user or None,
            env=dict(command.env) or None,
            workdir=command.workdir or None,
        )

    def _exec_limited(
        self,
        cmd: str | list[str],
        user: str | None,
        env: dict[str, str] | None,
        workdir: str | None,
        limit: tuple[int, float],
    ) -> tuple[int | None, bytes, bytes]:
        """An exec that keeps the first ``limit[0]`` bytes of each stream, drops the rest as
        it arrives, and stops reading after ``limit[1]`` seconds (exit code None then)."""
        keep, seconds = limit
        api = self._container.client.api
        exec_id = api.exec_create(self.id, cmd, user=user or "", environment=env, workdir=workdir)[
            "Id"
        ]
        out, err = bytearray(), bytearray()
        ends = time.monotonic() + seconds
        for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
            if chunk_out and len(out) < keep:
                out += chunk_out[: keep - len(out)]
            if chunk_err and len(err) < keep:
                err += chunk_err[: keep - len(err)]
            if time.monotonic() > ends:
                return None, bytes(out), bytes(err)
        code = api.exec_inspect(exec_id).get("ExitCode")
        return code, bytes(out), bytes(err)

    def _exec(
        self,
        cmd: str | list[str],
        *,
        user: str | None,
        env: dict[str, str] | None,
        workdir: str | None,
        output_limit: tuple[int, float] | None = None,
    ) -> ExecResult:
        try:
            if output_limit is None:
                code, (out, err) = self._container.exec_run(
                    cmd, user=user or "", environment=env, workdir=workdir, demux=True
                )
            else:
                code, out, err = self._exec_limited(cmd, user, env, workdir, output_limit)
        except docker.errors.APIError as exc:
            # Refused because the container stopped (409, or the runtime's own words): say so.
            self._raise_if_stopped(self.attrs["State"], f"{cmd!r} could run")
            raise ContainerFailed(
                f"cannot exec {cmd!r} in {self.name}: {exc.explanation}"
            ) from None
        if code is None:
            # No exit code: the exec's process was killed with its container, or never ended.
            self._raise_if_stopped(self.attrs["State"], f"{cmd!r} finished")
            raise ContainerFailed(f"exec of {cmd!r} in {self.name} ended without an exit code")
        said = (out or b"") + (err or b"")
        if code == 126 and _EXEC_IN_STOPPED.search(said):
            # runc refused it: the container stopped, and the engine has not recorded it yet
            # (about 0.1 s, seconds on a loaded machine).
            state = self.stops_within(STOPPED_RECORD_SECONDS)
            self._raise_if_stopped(state or self.attrs["State"], f"{cmd!r} could run")
            raise ContainerFailed(
                f"container {self.name} of {self.image.ref} is stopping: the runtime refused "
                f"{cmd!r} ({said.decode('utf-8', 'replace').strip()})"
            )
        if code == 126 and not said.strip():
            # 126 with no words: a stop the engine has not recorded yet, or an answer that
            # lost its reason (the container runs on, and the result stands).
            state = self.stops_within(STOP_SETTLE_SECONDS)
            if state is not None:
                self._raise_if_stopped(state, f"{cmd!r} could run")
        return ExecResult(
            command=cmd,
            exit_code=int(code),
            stdout=(out or b"").decode("utf-8", "replace"),
            stderr=(err or b"").decode("utf-8", "replace"),
        )

    def archive_entries(
        self, paths: Mapping[str, bool]
    ) -> dict[str, ArchiveEntry | FileNotFoundError]:
        """:meth:`archive_entry` of each path (with its content where ``paths`` says so),
        or the :class:`FileNotFoundError` of a missing one: what :meth:`serving` serves.

        A path the engine refuses to read is left out: each reader of it asks the engine
        again, and fails in its own words.
        """
        entries: dict[str, ArchiveEntry | FileNotFoundError] = {}
        for path, content in paths.items():
            try:
                entries[path] = self.archive_entry(path, content=content)
            except FileNotFoundError as missing:
                entries[path] = missing
            except (ImageCheckError, docker.errors.DockerException):
                continue
        return entries

    def read_file(self, path: str) -> bytes:
        """Read one file from the container's filesystem (no shell or ``cat`` needed).

        Symbolic links are followed inside the container, as ``cat`` would.
        """
        served = self._served.reads.get(path)
        if isinstance(served, FileNotFoundError):
            raise FileNotFoundError(*served.args)
        if served is not None and served[1] is not None:
            return served[1]
        data = read_archive_file(self._container, path, owner=self.name)
        if observing() and from_test_code(sys._getframe(1)):
            observe("file", path, f"{len(data)} bytes, read from container {self.name}")
        return data

    def archive_entry(self, path: str, *, content: bool = False) -> ArchiveEntry:
        """The archive header of ``path`` itself (type, mode, uid, gid; a symlink is not
        followed) and, with ``content``, the bytes of a regular file.

        One call to the engine's archive API, no shell; reading stops after the first entry,
        so a large directory is not downloaded. Raises :class:`FileNotFoundError` when
        ``path`` does not exist.
        """
        served = self._served.reads.get(path)
        if isinstance(served, FileNotFoundError):
            raise FileNotFoundError(*served.args)
        if served is not None and (served[1] is not None or not content or not served[0].isfile()):
            return served[0], served[1] if content else None
        with open_archive(self._container, path, owner=self.name) as tar:
            entry = tar.next()
            if entry is None:
                raise FileNotFoundError(f"{path} does not exist in {self.name}")
            extracted = tar.extractfile(entry) if content and entry.isfile() else None
            return entry, extracted.read() if extracted is not None else None

    @property
    def host(self) -> testinfra.host.Host:
        """A testinfra ``Host`` bound to this container (``host.file``, ``host.user``, ...).

        A container that stopped fails here with its exit code and log tail (testinfra
        would only say that its commands exit with 1).
        """
        self._raise_if_stopped(self.attrs["State"], "testinfra could use it")
        return self._testinfra_host

    @cached_property
    def _testinfra_host(self) -> testinfra.host.Host:
        import testinfra

        return testinfra.get_host(f"docker://{self.id}")

    def settle(self, seconds: float) -> None:
        """Return once the container has been running ``seconds`` after this call; raise
        :class:`ContainerFailed` (exit code and log tail) if it stops first.

        An entrypoint that fails at once (a missing setting, an image for another CPU) often
        takes a few milliseconds to exit: a container seen running right after its start
        is not yet known to stay up.
        """
        deadline = time.monotonic() + seconds
        while True:
            self.ensure_running()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.05, left))

    def started_ahead(self) -> None:
        """Mark it started ahead of the test that will use it, ready now (see
        :meth:`wait_ends`)."""
        self._ready_ahead = time.monotonic()

    def handed_over(self) -> None:
        """The test it was started ahead for has it now: from here on it is older, by the
        time since it was ready, than a container started on demand would be."""
        if self._ready_ahead is not None:
            self._head_start = time.monotonic() - self._ready_ahead
            self._ready_ahead = None

    def wait_ends(self, seconds: float) -> float:
        """The ``time.monotonic()`` by which a wait of ``seconds`` starting now (for an
        answer, for health) must end: now plus ``seconds``, less the head start of a
        container started ahead of its test, so a service never gets more time to become
        ready than a start on demand would give it.

        When the head start is longer than that, the moment has passed before the wait
        begins: a first answer that is ready cannot tell whether the service would have been
        ready in time (:meth:`head_start_hides`). Once a wait succeeds the service is known
        ready, and the head start no longer matters (:meth:`waited`).
        """
        return time.monotonic() + seconds - self._head_start

    def head_start_hides(self, ends: float, answered: float) -> str | None:
        """Why an answer at ``answered`` (``time.monotonic()``) proves nothing about a wait
        that had to end at ``ends``: the container was started ahead and the answer came
        after ``ends``; None when it proves what it says."""
        if answered <= ends or self._head_start <= 0:
            return None
        return (
            f"the container was started {self._head_start:.1f}s before this test took it (it "
            "was started ahead), longer than the wait allows: whether the service would have "
            "been ready in time after a start on demand was not measured; give a timeout "
            "longer than the tests before this one take, or run with --no-start-ahead"
        )

    def waited(self) -> None:
        """A wait on it succeeded: the service is ready, whenever it was started."""
        self._head_start = 0.0

    def stop(self, timeout: int = 10) -> None:
        """Stop the container (SIGTERM, then SIGKILL after ``timeout`` seconds).

        A container stopped this way is not reported as having died during its test.
        """
        self.stopped_on_purpose = True
        self._container.stop(timeout=timeout)


#: What the engine answers for an exec whose process was killed because its container stopped
#: (SIGKILL, 128 + 9), with the output it wrote until then.
KILLED_WITH_CONTAINER = 137
#: The runtime refusing an exec in a container that is stopping or gone: runc's "cannot exec
#: in a stopped state", "... in a deleted state", "... in a stopped container", and
#: containerd's "task <id> not found" once the container's task is gone.
_EXEC_IN_STOPPED = re.compile(
    rb"cannot exec in a (?:stopped|deleted) (?:state|container)|task [0-9a-f]+ not found"
    # runc joining the namespaces of a PID 1 that has just exited
    rb"|error executing setns process"
    # containerd's shim gone with the container's task, mid-exec
    rb"|ttrpc: closed"
)

#: How long the engine may take to record a stop that the runtime already reported.
STOPPED_RECORD_SECONDS = 10.0

#: How long a container whose shell died during a command may take to be seen stopped: the
#: engine records the stop about 0.1 s after its processes were killed.
STOP_SETTLE_SECONDS = 1.0


class Batch(Sequence[ExecResult]):
    """The commands of one :meth:`RunningContainer.exec_batch` and their results.

    ``batch[i]`` is the result of command ``i``, run when first asked for (in the shell its
    user, environment and directory share, or alone where no shell can run it exactly), then
    kept; iterating runs the rest in order. :meth:`run` runs command ``i`` now, each time it
    is called, in the shared shell, and returns its result, or ``None`` where it must run
    alone: the caller then execs it itself, so the engine's own answer (or refusal) is its
    result. :meth:`close` ends the shells; reading the last result does too.

    A shell that dies during a command says why through the container: when the container
    stopped (the command signalled PID 1, or the service died), the command gets what a plain
    exec of it gets, exit code 137 and the output it wrote (:data:`KILLED_WITH_CONTAINER`),
    and the commands after it find the container stopped; when the container runs on (the
    command killed its parent shell), the command runs again, alone. A shell found dead
    before a command began leaves the command to run alone, once the engine recorded the
    container's stop (up to :data:`STOP_SETTLE_SECONDS`), so that its exec is refused as on a
    stopped container.
    """

    def __init__(self, container: RunningContainer, commands: Sequence[Command]) -> None:
        self._container = container
        self.commands = list(commands)
        self._results: dict[int, ExecResult] = {}
        self._shells: dict[Command, batch.Shell | None] = {}  # None: no shell for the group
        self._closed = False

    def __len__(self) -> int:
        return len(self.commands)

    def __iter__(self) -> Iterator[ExecResult]:
        return (self[index] for index in range(len(self.commands)))

    @overload
    def __getitem__(self, index: int) -> ExecResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[ExecResult]: ...

    def __getitem__(self, index: int | slice) -> ExecResult | list[ExecResult]:
        if isinstance(index, slice):
            return [self[each] for each in range(*index.indices(len(self.commands)))]
        index = range(len(self.commands))[index]  # a negative index counts from the end
        if index not in self._results:
            command = self.commands[index]
            result = self.run(index)
            if result is None:
                result = self._container._exec_command(command)
            self._results[index] = result
            if len(self._results) == len(self.commands):
                self.close()
        return self._results[index]

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, index: int) -> ExecResult | None:
        """Run command ``index`` now in its shared shell; ``None`` where it must run alone."""
        command = self.commands[index]
        shell = self._shell(command.group) if command.batchable else None
        if shell is None:
            return None
        said = shell.run(command)
        if said.left:
            return None
        if said.exit_code is not None:
            return self._result(command, said.exit_code, said)
        del self._shells[command.group]  # gone: the next command of the group starts another
        shell.close()
        # The shell died, most likely with its container: then a command that had begun was
        # killed with it, and one that had not is refused as on a stopped container once the
        # engine recorded the stop (until then the runtime answers 126, "cannot exec in a
        # stopped state"). Otherwise the command killed its shell, and runs again alone.
        if self._stopped() and said.ran:
            return self._result(command, KILLED_WITH_CONTAINER, said)
        return None

    def close(self) -> None:
        """End the shared shell (waiting for its exec to end); the commands still to run
        after this run alone."""
        self._closed = True
        for shell in self._shells.values():
            if shell is not None:
                shell.close()
        self._shells.clear()

    def _shell(self, group: Command) -> batch.Shell | None:
        """The shell of ``group``, started if need be; one at a time, so that a command sees
        no shell but its parent."""
        if self._closed:
            return None
        for other, shell in list(self._shells.items()):
            if other != group and shell is not None:
                shell.close()
                del self._shells[other]
        if group not in self._shells:
            raw = self._container._container
            entries = (entry.partition("=") for entry in raw.attrs["Config"]["Env"] or [])
            environment = {name: value for name, _, value in entries} | dict(group.env)
            shell = None
            if batch.keeps(environment):
                shell = batch.Shell.start(raw.client.api, raw.id, group, environment)
            self._shells[group] = shell
        return self._shells[group]

    def _stopped(self) -> bool:
        """Whether the container stopped, waiting up to :data:`STOP_SETTLE_SECONDS` for the
        engine to record it."""
        return self._container.stops_within(STOP_SETTLE_SECONDS) is not None

    @staticmethod
    def _result(command: Command, code: int, said: batch.Said) -> ExecResult:
        return ExecResult(
            command=list(command.argv),
            exit_code=code,
            stdout=said.stdout.decode("utf-8", "replace"),
            stderr=said.stderr.decode("utf-8", "replace"),
        )


def _command_text(cmd: str | list[str], user: str | None) -> str:
    """A command as evidence shows it: ``["id", "-u"]`` (as user ``svc``)."""
    text = cmd if isinstance(cmd, str) else json.dumps(list(cmd))
    return f"{text} as {user}" if user else text


def _outcome(result: ExecResult) -> str:
    """``exit 0; stdout: 1000`` with the heads of both streams."""
    parts = [f"exit {result.exit_code}"]
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text.strip():
            parts.append(f"{name}: {text.strip()}")
    return "; ".join(parts)


def missing_path(exc: docker.errors.NotFound, path: str, owner: str) -> Exception:
    """The error for a 404 from the archive API: the path is missing, or the container is.

    The engine answers 404 both for a path that does not exist and for a container that was
    removed; only the first is a :class:`FileNotFoundError`.
    """
    if "no such container" in str(exc.explanation or exc).lower():
        return ContainerFailed(f"container {owner} was removed while {path} was read from it")
    return FileNotFoundError(f"{path} does not exist in {owner}")


def _archive_refused(exc: docker.errors.APIError, path: str, owner: str) -> Exception:
    """The error for the archive API refusing ``path`` (not a 404), in one line.

    A path through a regular file (``/app/main.py/x``) does not exist, as ``ls`` says; a
    symbolic link loop and anything else the engine refuses are told with its reason.
    """
    said = str(exc.explanation or exc)
    if said.rstrip().endswith("not a directory"):
        return FileNotFoundError(
            f"{path} does not exist in {owner}: a part of it is a file, not a directory"
        )
    if "too many links" in said:
        return ImageCheckError(
            f"cannot read {path} in {owner}: its symbolic links form a loop (too many links)"
        )
    return ImageCheckError(f"cannot read {path} in {owner}: the engine said: {said}")


@contextlib.contextmanager
def open_archive(container: Any, path: str, *, owner: str) -> Iterator[tarfile.TarFile]:
    """The engine's tar of ``path`` in a docker-py container, streamed, and closed on
    leaving the block whether it was read whole or not.

    An archive left open keeps the engine writing it, holding the container's lock: removing
    the container would wait (docker-py gives up after 60 s) until the client went away. A
    reader that stops after the first entry of a large directory must close it.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ImageCheckError(f"path {path!r} must be absolute, e.g. '/{path}'")
    try:
        chunks, _ = container.get_archive(path)
    except docker.errors.NotFound as exc:
        raise missing_path(exc, path, owner) from None
    except docker.errors.APIError as exc:
        raise _archive_refused(exc, path, owner) from None
    try:
        with tarfile.open(fileobj=stream_of(chunks), mode="r|") as tar:
            yield tar
    finally:
        chunks.close()


def read_archive_file(container: Any, path: str, *, owner: str, _depth: int = 0) -> bytes:
    """Read ``path`` from a docker-py container (running or not) through the archive API.

    Symbolic links are followed inside the container's filesystem, as ``cat`` would.
    """
    with open_archive(container, path, owner=owner) as tar:
        member = tar.next()
        if member is not None and member.issym() and _depth < 16:
            target = posixpath.join(posixpath.dirname(path), member.linkname)
            return read_archive_file(container, target, owner=owner, _depth=_depth + 1)
        extracted = tar.extractfile(member) if member is not None and member.isfile() else None
        if extracted is None:
            raise IsADirectoryError(f"{path} in {owner} is not a regular file")
        return extracted.read()
