"""Where the Docker engine is, and where its containers' published ports are reached.

The engine is named as the docker CLI names it, first match wins:

1. ``--engine URL|CONTEXT`` (ini ``imagecheck_engines``; repeatable: one engine per
   pytest-xdist worker);
2. ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` for TLS);
3. ``DOCKER_CONTEXT``, then the CLI's current context (``currentContext`` in
   ``$DOCKER_CONFIG/config.json``, default ``~/.docker``), read from the CLI's context store;
4. the local socket, ``unix:///var/run/docker.sock``.

A process bound to an engine exports it as ``DOCKER_HOST`` (and the TLS variables), so the
docker CLI that builds images, testinfra and a test's own ``docker.from_env()`` all reach the
same engine.

Published ports bind on the engine's host at the address ``--publish-host`` names (ini
``imagecheck_publish_host``), and pytest reaches them there. A local engine publishes on
127.0.0.1. An ``ssh://`` engine publishes on its host's loopback and pytest reaches the ports
through an SSH tunnel. A remote ``tcp://`` engine needs the user's choice: publishing on a
remote host's network is a security decision.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .errors import EngineUnavailable, ImageCheckError

LOCAL_SOCKET = "unix:///var/run/docker.sock"
LOOPBACK = "127.0.0.1"
#: ``--publish-host`` values that are not addresses.
PUBLISH_ENGINE = "engine"
PUBLISH_TUNNEL = "tunnel"
#: How long a connection to an engine, or an SSH login, may take before it counts as failed.
CONNECT_SECONDS = 10
_SCHEMES = ("unix", "tcp", "ssh", "npipe")
_DEFAULT_PORTS = {"tcp": 2375, "ssh": 22}
#: A Docker context's name, as the docker CLI allows it.
_CONTEXT_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.+-]*")


@dataclass(frozen=True)
class EngineTarget:
    """One engine to connect to: its URL, where that came from, and its TLS files."""

    #: ``unix:///var/run/docker.sock``, ``tcp://10.0.0.5:2376``, ``ssh://ci@gpu-host``.
    url: str
    #: Where it was named: ``--engine``, ``DOCKER_HOST``, ``Docker context gpu``, ...
    source: str
    #: The folder of ``ca.pem``, ``cert.pem`` and ``key.pem`` for TLS; None without TLS.
    cert_path: str | None = None
    #: Whether the engine's certificate is verified against ``ca.pem`` (TLS only).
    tls_verify: bool = False

    def __str__(self) -> str:
        """The URL, and the context that named it: ``tcp://gpu:2376 of Docker context gpu``."""
        if self.source.startswith("Docker context "):
            return f"{self.url} of {self.source}"
        return self.url

    @property
    def scheme(self) -> str:
        """``unix``, ``tcp``, ``ssh`` or ``npipe``."""
        return self.url.split("://", 1)[0]

    @property
    def hostname(self) -> str | None:
        """The host in a ``tcp://`` or ``ssh://`` URL; None for a socket."""
        return urlsplit(self.url).hostname if self.scheme in ("tcp", "ssh") else None

    @property
    def port(self) -> int | None:
        """The port in a ``tcp://`` or ``ssh://`` URL (its default when not written)."""
        if self.scheme not in _DEFAULT_PORTS:
            return None
        return urlsplit(self.url).port or _DEFAULT_PORTS[self.scheme]

    @property
    def local(self) -> bool:
        """Whether the engine runs on this machine: a socket, or tcp/ssh to a loopback
        address (``localhost``, ``127.0.0.0/8``, ``::1``)."""
        host = self.hostname
        if host is None:
            return True
        if host == "localhost":
            return True
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(host).is_loopback
        return False

    @property
    def key(self) -> str:
        """A short name for files kept per engine (builds shared by xdist workers)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    def environ(self) -> dict[str, str | None]:
        """The environment that names this engine to docker-py and the docker CLI: ``None``
        values are to be unset (a context or TLS setting that would contradict it)."""
        return {
            "DOCKER_HOST": self.url,
            "DOCKER_CONTEXT": None,
            "DOCKER_TLS_VERIFY": "1" if self.cert_path and self.tls_verify else None,
            "DOCKER_CERT_PATH": self.cert_path,
            "DOCKER_TLS": "1" if self.cert_path and not self.tls_verify else None,
        }


def parse_engine_url(value: str, label: str) -> str:
    """``value`` as an engine URL, checked: a scheme docker understands, a host for tcp and
    ssh, a number for a port. Raises :class:`ImageCheckError` naming ``label``.

    >>> parse_engine_url("tcp://10.0.0.5:2376", "--engine")
    'tcp://10.0.0.5:2376'
    """
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ImageCheckError(
            f"{label} {value!r} is not an engine URL: use unix:///var/run/docker.sock, "
            "tcp://HOST:2376, ssh://USER@HOST, or the name of a Docker context"
        )
    if scheme in ("tcp", "ssh"):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError:
            raise ImageCheckError(
                f"{label} {value!r} has a bad port: write {scheme}://HOST:PORT with a number"
            ) from None
        if not parts.hostname or parts.path not in ("", "/"):
            raise ImageCheckError(
                f"{label} {value!r} names no host: write {scheme}://HOST"
                + (":2376" if scheme == "tcp" else "")
            )
        value = value.rstrip("/")
        if scheme == "tcp" and parts.port is None:
            value = f"{value}:2375"  # the docker CLI's default for tcp://HOST
    elif not rest.startswith("/"):
        raise ImageCheckError(f"{label} {value!r}: a socket needs an absolute path")
    return value


def docker_config_dir(environ: Mapping[str, str]) -> Path:
    """The docker CLI's configuration folder: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    given = environ.get("DOCKER_CONFIG")
    return Path(given) if given else Path(environ.get("HOME") or Path.home()) / ".docker"


def context_target(name: str, environ: Mapping[str, str], source: str) -> EngineTarget:
    """The engine of Docker context ``name``, read from the CLI's context store (its
    ``docker`` endpoint's host, and TLS files where the context has them).

    Raises :class:`ImageCheckError` for a context that does not exist or names no host.
    """
    folder = docker_config_dir(environ) / "contexts"
    context_id = hashlib.sha256(name.encode()).hexdigest()
    meta_file = folder / "meta" / context_id / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise ImageCheckError(
            f"{source}: Docker context {name!r} does not exist ({meta_file} is missing): "
            "list them with `docker context ls`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ImageCheckError(f"{source}: Docker context {name!r} cannot be read: {exc}") from None
    endpoint = (meta.get("Endpoints") or {}).get("docker") or {}
    host = endpoint.get("Host")
    if not host:
        raise ImageCheckError(f"{source}: Docker context {name!r} has no docker endpoint host")
    where = f"{source}: Docker context {name!r}"
    url = parse_engine_url(str(host), where)
    tls = folder / "tls" / context_id / "docker"
    skip_verify = bool(endpoint.get("SkipTLSVerify", False))
    # As the CLI: TLS when the context has any TLS file or skips verification; the engine's
    # certificate verified against ca.pem unless it skips that.
    has_tls = any((tls / f).is_file() for f in ("ca.pem", "cert.pem", "key.pem"))
    uses_tls = url.startswith("tcp://") and (has_tls or skip_verify)
    return EngineTarget(
        url=url,
        source=f"Docker context {name}",
        cert_path=str(tls) if uses_tls else None,
        tls_verify=uses_tls and not skip_verify and (tls / "ca.pem").is_file(),
    )


def engine_target(value: str | None, environ: Mapping[str, str], label: str) -> EngineTarget:
    """The engine named by ``value`` (an ``--engine`` value: a URL or a context name), or by
    the environment as the docker CLI reads it when ``value`` is None.

    Raises :class:`ImageCheckError` (one line) for a malformed URL or an unknown context.
    """
    if value == "default":  # the CLI's own context: DOCKER_HOST, else the local socket
        value = environ.get("DOCKER_HOST") or LOCAL_SOCKET
        label = f"{label} default"
    if value is not None:
        if "://" not in value and _CONTEXT_NAME.fullmatch(value):
            return context_target(value, environ, f"{label} {value}")
        url = parse_engine_url(value, label)
        return EngineTarget(url, label, *_env_tls(url, environ))
    host = environ.get("DOCKER_HOST")
    if host:
        url = parse_engine_url(host, "DOCKER_HOST")
        return EngineTarget(url, "DOCKER_HOST", *_env_tls(url, environ))
    name = environ.get("DOCKER_CONTEXT")
    if name == "default":
        return EngineTarget(LOCAL_SOCKET, "the local socket")
    if name:
        return context_target(name, environ, "DOCKER_CONTEXT")
    config = docker_config_dir(environ) / "config.json"
    with contextlib.suppress(OSError, ValueError):
        current = json.loads(config.read_text()).get("currentContext")
        if current and current != "default":
            return context_target(str(current), environ, f"currentContext in {config}")
    return EngineTarget(LOCAL_SOCKET, "the local socket")


def _env_tls(url: str, environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """TLS as docker-py's ``from_env`` reads it: on with ``DOCKER_TLS_VERIFY`` (verified) or
    ``DOCKER_TLS``, its files in ``DOCKER_CERT_PATH`` (default ``~/.docker``)."""
    verify = bool(environ.get("DOCKER_TLS_VERIFY"))
    if not url.startswith("tcp://") or not (verify or environ.get("DOCKER_TLS")):
        return None, False
    return environ.get("DOCKER_CERT_PATH") or str(docker_config_dir(environ)), verify


@dataclass(frozen=True)
class Publishing:
    """Where an engine's containers publish their ports, and where pytest reaches them."""

    #: The address on the engine's host that ports bind to (``docker run -p ADDR::PORT``).
    bind: str
    #: The address pytest connects to; None when ports are reached through an SSH tunnel.
    reach: str | None
    #: What chose it, for messages: ``--publish-host``, ``a local engine``, ...
    why: str

    @property
    def tunnelled(self) -> bool:
        """Whether published ports are reached through an SSH tunnel."""
        return self.reach is None


def publishing(target: EngineTarget, value: str | None, label: str) -> Publishing:
    """Where ``target``'s ports are published, given ``--publish-host`` ``value``:

    - not given: 127.0.0.1 for a local engine; the remote's loopback through an SSH tunnel
      for ``ssh://``; an error for a remote ``tcp://`` engine (the user must choose);
    - ``engine``: the address pytest reaches the engine at (the host in its URL);
    - ``tunnel``: the remote's loopback through an SSH tunnel (``ssh://`` only);
    - an IP address: that address on the engine's host; ``0.0.0.0`` (every address there)
      is reached at the engine's address.

    Raises :class:`ImageCheckError` (one line) for a value that cannot work with the engine.
    """
    if value is None:
        if target.local:
            return Publishing(LOOPBACK, LOOPBACK, "a local engine")
        if target.scheme == "ssh":
            return Publishing(LOOPBACK, None, f"an ssh engine with no {label}")
        raise ImageCheckError(
            f"the engine {target} is on another machine: choose where its containers' ports "
            f"are published with {label} engine (on {target.hostname}, the address pytest "
            f"reaches the engine at, which the machines of that network can reach too) or "
            f"{label} ADDRESS (an address of the engine's host), or reach the engine "
            "over ssh:// to tunnel them"
        )
    if value == PUBLISH_TUNNEL:
        if target.scheme != "ssh":
            raise ImageCheckError(
                f"{label} tunnel needs an ssh:// engine, but the engine is {target}: use "
                f"{label} engine or an address"
            )
        return Publishing(LOOPBACK, None, f"{label} tunnel")
    if value == PUBLISH_ENGINE:
        if target.local:
            return Publishing(LOOPBACK, LOOPBACK, f"{label} engine, a local engine")
        address = _resolve(target.hostname or "", f"{label} engine: the engine host")
        return Publishing(address, address, f"{label} engine")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise ImageCheckError(
            f"{label} {value!r} is not an IP address: give an address of the engine's host "
            "(e.g. 10.0.0.5), engine (the address in the engine's URL) or tunnel (ssh:// "
            "engines)"
        ) from None
    if ip.is_loopback and not target.local:
        raise ImageCheckError(
            f"{label} {value} is the loopback of the engine's host, which pytest cannot reach "
            f"from this machine (its own {value} is another host's): use {label} tunnel "
            f"(ssh:// engines) or {label} engine"
        )
    if ip.is_unspecified:
        if target.local:
            reach = LOOPBACK if ip.version == 4 else "::1"
        else:
            reach = _resolve(target.hostname or "", label, ip.version)
        return Publishing(str(ip), reach, f"{label} {value}")
    return Publishing(str(ip), str(ip), f"{label} {value}")


def _resolve(host: str, label: str, version: int | None = None) -> str:
    """The IP address ``host`` resolves to here (IPv4 first; only IPv``version`` when given)."""
    family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(version or 0, socket.AF_UNSPEC)
    try:
        found = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ImageCheckError(
            f"{label} {host!r} does not resolve"
            + (f" to an IPv{version} address" if version else "")
            + f": {exc.strerror}"
        ) from None
    found.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(found[0][4][0])


def check_reachable(target: EngineTarget) -> None:
    """Fail in :data:`CONNECT_SECONDS` at most, with one line, when ``target`` cannot be
    reached: a refused or unanswered TCP connection, an SSH login that fails (host key,
    authentication) or a remote with no docker CLI. A socket is left to docker-py.

    Raises :class:`EngineUnavailable`.
    """
    if target.scheme == "tcp":
        try:
            socket.create_connection(
                (target.hostname or "", target.port or 2375), timeout=CONNECT_SECONDS
            ).close()
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            raise EngineUnavailable(
                f"Docker engine unreachable at {target} ({reason}): check the address and "
                "that the engine listens on tcp there (dockerd -H tcp://...)"
            ) from None
    elif target.scheme == "ssh":
        done = _ssh(target, ["docker", "version", "--format", "{{.Server.Version}}"])
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"ssh exited with {done.returncode}"
            raise EngineUnavailable(
                f"Docker engine unreachable at {target} ({reason}): ssh must log in without "
                "a prompt (a key in ssh-agent or IdentityFile, the host key in known_hosts) "
                "and the remote user must be able to run `docker version`"
            )


def _ssh_argv(target: EngineTarget, *extra: str) -> list[str]:
    """``ssh`` with options that never prompt, for ``target``'s user, host and port."""
    parts = urlsplit(target.url)
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_SECONDS}"]
    if parts.username:
        argv += ["-l", parts.username]
    if parts.port:
        argv += ["-p", str(parts.port)]
    return [*argv, *extra]


def _ssh(target: EngineTarget, command: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("ssh") is None:
        raise EngineUnavailable(
            f"Docker engine at {target} needs the ssh client: install openssh-client"
        )
    argv = _ssh_argv(target, "--", target.hostname or "", *command)
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=3 * CONNECT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(
            f"Docker engine unreachable at {target} (ssh did not answer in {3 * CONNECT_SECONDS} s)"
        ) from None


#: Set in each tunnel's environment to the pid of the process that opened it.
TUNNEL_OWNER = "PYTEST_IMAGECHECK_TUNNEL_OF"


def sweep_orphan_tunnels() -> int:
    """End the tunnels of processes that died without closing them (SIGKILL); returns how
    many. A tunnel is an ``ssh`` whose environment names its owner (:data:`TUNNEL_OWNER`)."""
    ended = 0
    marker = f"{TUNNEL_OWNER}=".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            owner = next(
                (
                    v[len(marker) :]
                    for v in environ.read_bytes().split(b"\0")
                    if v.startswith(marker)
                ),
                None,
            )
            if owner is None or not owner.isdigit() or Path(f"/proc/{int(owner)}").exists():
                continue
            os.kill(int(environ.parent.name), 15)
            ended += 1
        except (OSError, ValueError):
            continue
    return ended


class Tunnels:
    """SSH tunnels from this machine's loopback to ports an ``ssh://`` engine's containers
    publish on the remote's loopback: one ``ssh -N -L`` per port, closed by :meth:`close`;
    those a killed process left are ended by the next session's first tunnel."""

    def __init__(self, target: EngineTarget) -> None:
        self.target = target
        sweep_orphan_tunnels()
        self._open: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}
        self._lock = threading.Lock()

    def local_port(self, remote_port: int) -> int:
        """The port on 127.0.0.1 here that reaches ``remote_port`` on the remote's loopback;
        the tunnel is opened on first use. Raises :class:`EngineUnavailable` if ssh fails."""
        with self._lock:
            found = self._open.get(remote_port)
            if found is not None and found[1].poll() is None:
                return found[0]
            port = _free_port()
            argv = _ssh_argv(
                self.target,
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                f"{LOOPBACK}:{port}:{LOOPBACK}:{remote_port}",
                "--",
                self.target.hostname or "",
            )
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, TUNNEL_OWNER: str(os.getpid())},
            )
            self._open[remote_port] = (port, proc)
            _wait_listening(port, proc, self.target, remote_port)
            return port

    def close(self) -> None:
        """End every tunnel."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for _, proc in opened:
            proc.terminate()
        for _, proc in opened:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
            if proc.stderr is not None:
                proc.stderr.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _wait_listening(
    port: int, proc: subprocess.Popen[bytes], target: EngineTarget, remote_port: int
) -> None:
    deadline = time.monotonic() + 3 * CONNECT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            lines = [line for line in error.splitlines() if line.strip()]
            raise EngineUnavailable(
                f"the ssh tunnel to port {remote_port} on {target} failed: "
                + (lines[-1].strip() if lines else f"ssh exited with {proc.returncode}")
            )
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    proc.kill()
    raise EngineUnavailable(
        f"the ssh tunnel to port {remote_port} on {target} did not open in {3 * CONNECT_SECONDS} s"
    )


def bound_environ(target: EngineTarget) -> dict[str, str | None]:
    """Apply ``target``'s environment to this process (:meth:`EngineTarget.environ`) and
    return what it replaced, for :func:`restore_environ`."""
    saved: dict[str, str | None] = {}
    for name, value in target.environ().items():
        saved[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return saved


def restore_environ(saved: Mapping[str, str | None]) -> None:
    """Put back the variables :func:`bound_environ` replaced."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
