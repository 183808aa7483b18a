"""A second, real Docker engine in a network namespace: the tests' remote engines.

``namespaced_engine(tmp_dir)`` makes a network namespace joined to this machine by a veth pair
on a private /24 (this side ``.1``, the namespace ``.2``), starts ``dockerd`` inside it with
``nsenter --net`` (not ``ip netns exec``, so the cgroups stay visible) and its own data root,
exec root, pidfile, unix socket, cgroup parent and containerd, and yields a
:class:`NamespacedEngine`. The engine listens on ``tcp://ADDRESS:2375`` (plain), or
``tcp://ADDRESS:2376`` with ``tls=True`` (certificates made here); ``ssh=True`` adds Debian's
openssh-server, started in the same namespace, whose sessions reach this engine. Containers'
ports are published on the namespace's address, which this machine reaches over the veth.

Everything is torn down when the context ends, on an exception or KeyboardInterrupt too:
the engine's processes (found by network namespace and cgroup, so containers, shims and
``docker-proxy`` too), its mounts, cgroups, namespace, veth and directories. A process that
died holding an engine (SIGKILL, SIGTERM) leaves it behind; the next claim of the same slot
sweeps it, and :func:`sweep_stale` sweeps every unclaimed slot.

Traffic goes only to these namespaces: ``10.231.N.0/24``, one ``N`` (slot) per live engine,
claimed under a lock file in ``/run/imagecheck-netns`` so that concurrent test processes
(pytest-xdist) never share one.

>>> reason = unavailable()
>>> reason is None or isinstance(reason, str)
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import docker
import docker.errors
import docker.tls

if TYPE_CHECKING:  # cryptography is imported where it is used: unavailable() names it
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.x509 import Certificate

__all__ = [
    "PLAIN_PORT",
    "SSH_PORT",
    "TLS_PORT",
    "EngineError",
    "NamespacedEngine",
    "namespaced_engine",
    "sweep_stale",
    "unavailable",
]

#: Lock files (one per slot) and each engine's short paths: sockets, pidfiles, exec root.
STATE_DIR = Path("/run/imagecheck-netns")
#: Slot ``N`` uses ``10.231.N.0/24``; a slot whose /24 this machine already routes is skipped.
SUBNET_PREFIX = "10.231"
SLOTS = 32
PLAIN_PORT = 2375
TLS_PORT = 2376
SSH_PORT = 22
SSHD = "/usr/sbin/sshd"
#: Where containerd 1.5+ puts its shims' sockets, whatever its state directory.
SHIM_SOCKETS = Path("/run/containerd/s")
#: Seconds an engine (or sshd) has to answer before the start is a failure.
START_TIMEOUT = 60.0
#: The API version this module's clients speak (dockerd 20.10's; later engines accept it).
API_VERSION = "1.41"
#: Seconds dockerd has to stop its containers and exit on SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


class EngineError(RuntimeError):
    """The namespaced engine could not be started, or not be torn down completely."""


def unavailable(*, tls: bool = False, ssh: bool = False) -> str | None:
    """Why this machine cannot start a namespaced engine, or None when it can.

    Tests should fail with this reason (never skip): the project's CI must start the engine.
    """
    if sys.platform != "linux":
        return f"a namespaced engine needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return "a namespaced engine needs root (ip netns, nsenter, dockerd)"
    tools = ["ip", "nsenter", "dockerd", "containerd", "containerd-shim-runc-v2", "umount"]
    if ssh:
        tools.append("ssh")
        tools.append("docker")  # sshd's sessions run `docker system dial-stdio`
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if ssh and not os.access(SSHD, os.X_OK):
        missing.append(SSHD)
    if missing:
        return f"a namespaced engine needs {', '.join(missing)}: run scripts/ensure-test-tools"
    if tls or ssh:
        try:
            import cryptography  # noqa: F401
        except ImportError:
            return "a namespaced engine with TLS or ssh needs the cryptography package"
    if ssh:
        try:
            import paramiko  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            # docker-py's ssh:// transport imports it even with use_ssh_client=True
            return "docker-py's ssh:// needs paramiko: pip install 'docker[ssh]'"
    return None


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Names, addresses and paths of slot ``index``, its files under ``root``."""

    index: int
    root: Path

    @property
    def netns(self) -> str:
        return f"imagecheck-{self.index}"

    @property
    def netns_path(self) -> Path:
        return Path("/var/run/netns") / self.netns

    @property
    def host_veth(self) -> str:
        return f"icns{self.index}h"

    @property
    def ns_veth(self) -> str:
        return f"icns{self.index}n"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{self.index}.0/24")

    @property
    def host_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.2"

    @property
    def run_dir(self) -> Path:
        return STATE_DIR / str(self.index)

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"slot-{self.index}.json"

    @property
    def cgroup_parent(self) -> str:
        return f"imagecheck-netns-{self.index}"

    @property
    def data_root(self) -> Path:
        return self.root / "data"


class NamespacedEngine:
    """A Docker engine in a network namespace of its own; see the module's docstring.

    Made by :func:`namespaced_engine`. Attributes:

    - ``name``: the network namespace's name; ``address``: the namespace's side of the veth
      (where the engine listens and publishes ports); ``host_address``: this machine's side.
    - ``started_in``: seconds from starting dockerd until it answered on its network URL;
      ``sshd_started_in`` the same for sshd (ssh mode), ``stopped_in`` for the teardown.
    - TLS mode: ``cert_dir`` (``ca.pem``, ``cert.pem``, ``key.pem``: what the docker CLI and
      ``DOCKER_CERT_PATH`` expect) and ``wrong_cert_dir`` (an unrelated CA and a client
      certificate it signed: the client rejects the engine's certificate, and the engine
      the client's).
    - ssh mode: ``ssh_home`` and ``wrong_ssh_home`` (see :meth:`ssh_env`), ``ssh_key`` (the
      private key the engine's sshd accepts for root) and ``wrong_ssh_key`` (one it refuses).
    """

    def __init__(self, tmp_dir: Path, *, tls: bool = False, ssh: bool = False) -> None:
        self.root = Path(tmp_dir).resolve()
        self.tls = tls
        self.ssh = ssh
        self.started_in: float | None = None
        self.sshd_started_in: float | None = None
        self.stopped_in: float | None = None
        self.cert_dir: Path | None = None
        self.wrong_cert_dir: Path | None = None
        self.ssh_home: Path | None = None
        self.wrong_ssh_home: Path | None = None
        self.ssh_key: Path | None = None
        self.wrong_ssh_key: Path | None = None
        self._layout: _Layout | None = None
        self._lock: IO[str] | None = None
        self._dockerd: subprocess.Popen[bytes] | None = None
        self._sshd: subprocess.Popen[bytes] | None = None
        self._clients: list[docker.DockerClient] = []
        self._stopped = False

    # -- where it is -----------------------------------------------------------------------

    @property
    def layout(self) -> _Layout:
        """The slot's names and paths (once started)."""
        if self._layout is None:
            raise EngineError("the namespaced engine is not started")
        return self._layout

    @property
    def name(self) -> str:
        """The network namespace's name (``ip netns``)."""
        return self.layout.netns

    @property
    def address(self) -> str:
        """The namespace's address: where the engine listens and publishes ports."""
        return self.layout.address

    @property
    def host_address(self) -> str:
        """This machine's address on the veth to the namespace."""
        return self.layout.host_address

    @property
    def unix_url(self) -> str:
        """The engine's own unix socket (on this machine's filesystem: the test's side door)."""
        return f"unix://{self.layout.socket}"

    @property
    def tcp_url(self) -> str:
        """``tcp://ADDRESS:2375``, plain; an error in TLS mode (every tcp listener is TLS)."""
        if self.tls:
            raise EngineError("a TLS engine has no plain tcp listener: use tls_url")
        return f"tcp://{self.address}:{PLAIN_PORT}"

    @property
    def tls_url(self) -> str:
        """``tcp://ADDRESS:2376`` (TLS mode only)."""
        if not self.tls:
            raise EngineError("the engine was not started with tls=True")
        return f"tcp://{self.address}:{TLS_PORT}"

    @property
    def ssh_url(self) -> str:
        """``ssh://root@ADDRESS`` (ssh mode only; sshd listens on port 22)."""
        if not self.ssh:
            raise EngineError("the engine was not started with ssh=True")
        return f"ssh://root@{self.address}"

    @property
    def network_url(self) -> str:
        """The engine's tcp URL, TLS or plain: the one its mode is about."""
        return self.tls_url if self.tls else self.tcp_url

    @property
    def dockerd_pid(self) -> int | None:
        """dockerd's process ID while it runs."""
        if self._dockerd is None or self._dockerd.poll() is not None:
            return None
        return self._dockerd.pid

    @property
    def log(self) -> Path:
        """dockerd's log (kept after the teardown, with sshd's ``sshd.log``)."""
        return self.root / "dockerd.log"

    # -- clients and environments ----------------------------------------------------------

    def client(self, timeout: int = 60) -> docker.DockerClient:
        """A client over the engine's unix socket, for the test's own setup and inspection
        (not the path under test); closed at teardown."""
        made = docker.DockerClient(base_url=self.unix_url, timeout=timeout)
        self._clients.append(made)
        return made

    def network_client(self, timeout: int = 60, *, wrong: bool = False) -> docker.DockerClient:
        """A client over :attr:`network_url` (TLS with ``cert_dir``, or ``wrong_cert_dir``
        when ``wrong``); closed at teardown.

        It ignores ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``: requests lets them override
        docker-py's ``ca_cert`` (``trust_env``), so with either set, as on this project's
        machines, a client made the ordinary way rejects the engine's certificate.
        """
        made = docker.DockerClient(
            base_url=self.network_url,
            tls=self._tls_config(wrong=wrong),
            timeout=timeout,
            version=API_VERSION,
        )
        made.api.trust_env = False
        self._clients.append(made)
        return made

    def tls_env(self, *, wrong: bool = False) -> dict[str, str]:
        """``DOCKER_HOST``, ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` for the TLS engine
        (the certificates of ``wrong_cert_dir`` when ``wrong``), as the docker CLI and
        ``docker.from_env`` read them."""
        certs = self.wrong_cert_dir if wrong else self.cert_dir
        if certs is None:
            raise EngineError("the engine was not started with tls=True")
        return {
            "DOCKER_HOST": self.tls_url,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(certs),
        }

    def ssh_env(self, *, wrong: bool = False) -> dict[str, str]:
        """``HOME``, ``PATH`` and ``DOCKER_HOST`` that reach the engine over ssh, leaving the
        real ``~/.ssh`` alone (``wrong``: the key the engine's sshd refuses).

        ``HOME`` holds ``.ssh/config`` (the key, the pre-trusted host key, BatchMode), which
        docker-py's paramiko transport reads. OpenSSH's ``ssh`` takes ``~`` from the password
        database, not ``$HOME``, so ``HOME/bin/ssh`` wraps it with ``-F`` that config; ``PATH``
        starts there, for the docker CLI and docker-py's ``use_ssh_client=True``, which run
        ``ssh`` from ``PATH``.
        """
        home = self.wrong_ssh_home if wrong else self.ssh_home
        if home is None:
            raise EngineError("the engine was not started with ssh=True")
        path = f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        return {"HOME": str(home), "PATH": path, "DOCKER_HOST": self.ssh_url}

    # -- images and faults -----------------------------------------------------------------

    def load(self, host_client: docker.DockerClient, *tags: str) -> None:
        """Copy images from ``host_client``'s engine into this one: save streamed into load,
        a chunk at a time (never the whole archive in memory)."""
        into = docker.APIClient(base_url=self.unix_url, timeout=600)
        try:
            for tag in tags:
                archive = host_client.api.get_image(tag, chunk_size=1024 * 1024)
                for line in into.load_image(archive):  # type: ignore[no-untyped-call]
                    if isinstance(line, dict) and line.get("error"):
                        raise EngineError(f"loading {tag} into {self.name}: {line['error']}")
        finally:
            into.close()

    def kill(self) -> None:
        """SIGKILL dockerd: the engine dies as in a crash (its containerd goes with it; the
        containers' shims and processes stay until :meth:`stop`)."""
        if self._dockerd is not None and self._dockerd.poll() is None:
            self._dockerd.kill()
            self._dockerd.wait()

    def alive(self) -> bool:
        """Whether dockerd still runs."""
        return self.dockerd_pid is not None

    def processes(self) -> list[tuple[int, str]]:
        """``(pid, command line)`` of every process that is the engine's: in its network
        namespace or its cgroups, or naming its run directory."""
        if self._layout is None:
            return []
        return [(pid, _cmdline(pid)) for pid in sorted(_processes_of(self._layout))]

    # -- start and stop --------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Claim a slot, make the namespace, start dockerd (and sshd) and wait until they
        answer from this machine. Call :meth:`stop` afterwards, even when this raises."""
        if self._layout is not None:
            raise EngineError("already started")
        reason = unavailable(tls=self.tls, ssh=self.ssh)
        if reason:
            raise EngineError(reason)
        self.root.mkdir(parents=True, exist_ok=True)
        index, self._lock = _claim_slot()
        layout = self._layout = _Layout(index, self.root)
        layout.state_file.write_text(json.dumps({"root": str(self.root), "pid": os.getpid()}))
        _make_namespace(layout)
        layout.run_dir.mkdir(parents=True, exist_ok=True)
        layout.data_root.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.cert_dir, self.wrong_cert_dir = _make_certificates(self.root / "tls", layout)
        if self.ssh:
            self._prepare_ssh(layout)
        begun = time.monotonic()
        self._dockerd = self._start_dockerd(layout)
        self._wait_engine(layout, begun + timeout)
        self.started_in = time.monotonic() - begun
        if self.ssh:
            begun = time.monotonic()
            self._sshd = self._start_sshd(layout)
            self._wait_sshd(layout, begun + timeout)
            self.sshd_started_in = time.monotonic() - begun

    def stop(self) -> None:
        """Tear everything down (idempotent): sshd; dockerd (SIGTERM: it stops its
        containers; SIGKILL after ``STOP_TIMEOUT``); every process left in the namespace or
        the cgroups; mounts; cgroups; the namespace and veth; the directories (its logs stay).
        Raises :class:`EngineError` when something could not be removed."""
        if self._stopped:
            return
        self._stopped = True
        begun = time.monotonic()
        for made in self._clients:
            with contextlib.suppress(Exception):
                made.close()
        if self._layout is not None:
            # The containers first: dockerd would give each its stop timeout (10 s) to exit.
            _kill_processes(self._layout, containers_only=True)
        for proc in (self._sshd, self._dockerd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        problems: list[str] = []
        if self._layout is not None:
            problems = _teardown(self._layout)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.stopped_in = time.monotonic() - begun
        if problems:
            raise EngineError("namespaced engine teardown: " + "; ".join(problems))

    def leftovers(self) -> list[str]:
        """What of the engine still exists (empty after a complete :meth:`stop`)."""
        return [] if self._layout is None else _leftovers(self._layout)

    # -- the pieces --------------------------------------------------------------------------

    def _start_dockerd(self, layout: _Layout) -> subprocess.Popen[bytes]:
        config = self.root / "daemon.json"
        config.write_text("{}\n")  # not the host engine's /etc/docker/daemon.json
        args = [
            "dockerd",
            f"--config-file={config}",
            f"--data-root={layout.data_root}",
            f"--exec-root={layout.exec_root}",
            f"--pidfile={layout.pidfile}",
            f"--cgroup-parent=/{layout.cgroup_parent}",
            "--exec-opt=native.cgroupdriver=cgroupfs",
            f"--shutdown-timeout={int(STOP_TIMEOUT) // 5}",
            f"--host=unix://{layout.socket}",
        ]
        if self.tls:
            server = self.root / "tls" / "server"
            args += [
                "--tlsverify",
                f"--tlscacert={server / 'ca.pem'}",
                f"--tlscert={server / 'cert.pem'}",
                f"--tlskey={server / 'key.pem'}",
                f"--host=tcp://{layout.address}:{TLS_PORT}",
            ]
        else:
            # Explicitly plain: without it dockerd sleeps 15 s to warn about an open tcp port.
            args += ["--tls=false", f"--host=tcp://{layout.address}:{PLAIN_PORT}"]
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                ["nsenter", f"--net={layout.netns_path}", "--", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the tests, which tear it down
            )

    def _wait_engine(self, layout: _Layout, deadline: float) -> None:
        """Until the engine answers on its unix socket and on its network URL."""
        while True:
            if self._dockerd is not None and self._dockerd.poll() is not None:
                raise EngineError(
                    f"dockerd in {layout.netns} exited with {self._dockerd.returncode}:\n"
                    + _tail(self.log)
                )
            if _ping_unix(layout.socket) and self._ping_network():
                return
            if time.monotonic() > deadline:
                raise EngineError(
                    f"dockerd in {layout.netns} did not answer in {START_TIMEOUT:.0f} s:\n"
                    + _tail(self.log)
                )
            time.sleep(0.1)

    def _ping_network(self) -> bool:
        """Whether the engine answers on its network URL, from this machine."""
        try:
            with docker.APIClient(
                base_url=self.network_url, tls=self._tls_config(), timeout=2, version=API_VERSION
            ) as api:
                api.trust_env = False
                return bool(api.ping())
        except Exception:
            return False

    def _tls_config(self, *, wrong: bool = False) -> docker.tls.TLSConfig | bool:
        certs = self.wrong_cert_dir if wrong else self.cert_dir
        if not self.tls or certs is None:
            return False
        return docker.tls.TLSConfig(
            client_cert=(str(certs / "cert.pem"), str(certs / "key.pem")),
            ca_cert=str(certs / "ca.pem"),
            verify=True,
        )

    def _prepare_ssh(self, layout: _Layout) -> None:
        """Host key, sshd_config, the accepted and the refused client keys, and a client
        home for each (``.ssh/config``, ``known_hosts``, the ``bin/ssh`` wrapper)."""
        server = self.root / "ssh" / "server"
        server.mkdir(parents=True, exist_ok=True)
        host_key, host_public = _ssh_keypair()
        _write(server / "ssh_host_ed25519_key", host_key, 0o600)
        key, public = _ssh_keypair()
        wrong_key, _ = _ssh_keypair()
        _write(server / "authorized_keys", public + b"\n", 0o600)
        config = f"""\
# sshd for the namespaced engine {layout.netns} (tests/netns.py)
ListenAddress {layout.address}:{SSH_PORT}
HostKey {server / "ssh_host_ed25519_key"}
PidFile {server / "sshd.pid"}
AuthorizedKeysFile {server / "authorized_keys"}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
# `docker system dial-stdio` (what ssh:// clients run) reaches this namespace's engine
SetEnv DOCKER_HOST=unix://{layout.socket}
"""
        _write(server / "sshd_config", config.encode(), 0o600)
        homes = []
        for label, private in (("home", key), ("wrong-home", wrong_key)):
            home = self.root / "ssh" / label
            dot = home / ".ssh"
            dot.mkdir(parents=True, exist_ok=True)
            os.chmod(dot, 0o700)
            _write(dot / "id_ed25519", private, 0o600)
            _write(dot / "known_hosts", f"{layout.address} ".encode() + host_public + b"\n", 0o600)
            client_config = f"""\
Host {layout.address}
    User root
    Port {SSH_PORT}
    IdentityFile {dot / "id_ed25519"}
    IdentitiesOnly yes
    IdentityAgent none
    UserKnownHostsFile {dot / "known_hosts"}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
    LogLevel ERROR
"""
            _write(dot / "config", client_config.encode(), 0o600)
            ssh = shutil.which("ssh") or "/usr/bin/ssh"
            wrapper = (
                "#!/bin/sh\n"
                "# OpenSSH finds ~/.ssh through the password database, not $HOME: use this\n"
                "# home's config (tests/netns.py).\n"
                f'exec {ssh} -F {dot / "config"} "$@"\n'
            )
            (home / "bin").mkdir(exist_ok=True)
            _write(home / "bin" / "ssh", wrapper.encode(), 0o755)
            homes.append(home)
        self.ssh_home, self.wrong_ssh_home = homes
        self.ssh_key = homes[0] / ".ssh" / "id_ed25519"
        self.wrong_ssh_key = homes[1] / ".ssh" / "id_ed25519"
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation

    def _start_sshd(self, layout: _Layout) -> subprocess.Popen[bytes]:
        config = self.root / "ssh" / "server" / "sshd_config"
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise EngineError(f"sshd refuses its config: {check.stderr.strip()}")
        with open(self.root / "sshd.log", "ab") as log:
            return subprocess.Popen(
                [
                    "nsenter",
                    f"--net={layout.netns_path}",
                    "--",
                    SSHD,
                    "-D",
                    "-e",
                    "-f",
                    str(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_sshd(self, layout: _Layout, deadline: float) -> None:
        while True:
            if self._sshd is not None and self._sshd.poll() is not None:
                raise EngineError(
                    f"sshd in {layout.netns} exited with {self._sshd.returncode}:\n"
                    + _tail(self.root / "sshd.log")
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((layout.address, SSH_PORT), timeout=2) as conn,
            ):
                if conn.recv(64).startswith(b"SSH-"):
                    return
            if time.monotonic() > deadline:
                raise EngineError(f"sshd in {layout.netns} did not answer in time")
            time.sleep(0.1)


@contextlib.contextmanager
def namespaced_engine(
    tmp_dir: Path, *, tls: bool = False, ssh: bool = False, timeout: float = START_TIMEOUT
) -> Iterator[NamespacedEngine]:
    """A started :class:`NamespacedEngine` whose files live under ``tmp_dir``; torn down when
    the block ends, however it ends (an exception, KeyboardInterrupt, a failed start)."""
    engine = NamespacedEngine(tmp_dir, tls=tls, ssh=ssh)
    try:
        engine.start(timeout=timeout)
        yield engine
    finally:
        engine.stop()


def sweep_stale() -> list[int]:
    """Tear down the engines of processes that died holding them (every slot whose lock is
    free but whose namespace or state is left); returns the slots swept."""
    swept: list[int] = []
    if not STATE_DIR.is_dir():
        return swept
    for index in range(SLOTS):
        layout = _Layout(index, Path("/nonexistent"))
        if not (layout.state_file.exists() or layout.netns_path.exists()):
            continue
        lock = _try_lock(index)
        if lock is None:
            continue
        try:
            if _sweep_slot(index):
                swept.append(index)
        finally:
            lock.close()
    return swept


# -- slots ---------------------------------------------------------------------------------


def _try_lock(index: int) -> IO[str] | None:
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    lock = open(STATE_DIR / f"slot-{index}.lock", "a+")  # noqa: SIM115 (held while the engine runs)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _claim_slot() -> tuple[int, IO[str]]:
    """The first slot no live process holds and whose /24 is not otherwise in use, locked."""
    for index in range(SLOTS):
        lock = _try_lock(index)
        if lock is None:
            continue
        _sweep_slot(index)
        subnet = _Layout(index, Path("/")).subnet
        if any(subnet.overlaps(used) for used in _networks_in_use()):
            lock.close()
            continue
        return index, lock
    raise EngineError(f"no free slot for a namespaced engine ({SLOTS} in use or routed)")


def _sweep_slot(index: int) -> bool:
    """Tear down what a dead holder of slot ``index`` left (the caller holds its lock)."""
    layout = _Layout(index, Path("/nonexistent"))
    with contextlib.suppress(OSError, ValueError, KeyError):
        layout = _Layout(index, Path(json.loads(layout.state_file.read_text())["root"]))
    if not _leftovers(layout) and not layout.state_file.exists():
        return False
    problems = _teardown(layout)
    if problems:
        raise EngineError(f"stale namespaced engine {layout.netns}: " + "; ".join(problems))
    return True


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has an address in or a route to."""
    found = []
    out = _run(["ip", "-4", "-o", "addr", "show"]) + _run(
        ["ip", "-4", "route", "show", "table", "all"]
    )
    kinds = {"local", "broadcast", "unicast", "multicast", "blackhole", "unreachable", "prohibit"}
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            candidate = words[words.index("inet") + 1]
        elif words and words[0] in kinds and len(words) > 1:
            candidate = words[1]
        elif words:
            candidate = words[0]
        else:
            continue
        with contextlib.suppress(ValueError):
            found.append(ipaddress.IPv4Network(candidate, strict=False))
    return found


# -- namespace ------------------------------------------------------------------------------


def _make_namespace(layout: _Layout) -> None:
    ns = ["nsenter", f"--net={layout.netns_path}", "--"]
    _run(["ip", "netns", "add", layout.netns])
    _run(["ip", "link", "add", layout.host_veth, "type", "veth", "peer", "name", layout.ns_veth])
    _run(["ip", "link", "set", layout.ns_veth, "netns", layout.netns])
    _run(["ip", "addr", "add", f"{layout.host_address}/24", "dev", layout.host_veth])
    _run(["ip", "link", "set", layout.host_veth, "up"])
    _run([*ns, "ip", "addr", "add", f"{layout.address}/24", "dev", layout.ns_veth])
    _run([*ns, "ip", "link", "set", layout.ns_veth, "up"])
    _run([*ns, "ip", "link", "set", "lo", "up"])


def _teardown(layout: _Layout) -> list[str]:
    """Remove everything of ``layout``'s engine that exists; returns what could not be."""
    problems = []
    _kill_processes(layout)
    for _ in range(5):
        mounts = _mounts_under(layout)
        if not mounts:
            break
        for mount in mounts:  # deepest first
            if subprocess.run(["umount", mount], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mount], capture_output=True)
    if _mounts_under(layout):
        problems.append(f"mounts left: {_mounts_under(layout)}")
    for group in _cgroups(layout):
        for sub in sorted(group.rglob("*"), key=lambda p: -len(p.parts)):
            if sub.is_dir():
                _rmdir_cgroup(sub)
        _rmdir_cgroup(group)
    if layout.netns_path.exists():
        subprocess.run(["ip", "netns", "delete", layout.netns], capture_output=True)
    if _link_exists(layout.host_veth):
        subprocess.run(["ip", "link", "delete", layout.host_veth], capture_output=True)
    deadline = time.monotonic() + 10
    while _link_exists(layout.host_veth) and time.monotonic() < deadline:
        time.sleep(0.1)  # a namespace's links go asynchronously
    for stale in _shim_sockets(layout):
        stale.unlink(missing_ok=True)
    if not _mounts_under(layout):
        for directory in (layout.run_dir, layout.data_root):
            shutil.rmtree(directory, ignore_errors=True)
    layout.state_file.unlink(missing_ok=True)
    problems += _leftovers(layout)
    return problems


def _leftovers(layout: _Layout) -> list[str]:
    found = []
    if layout.netns_path.exists():
        found.append(f"network namespace {layout.netns}")
    if _link_exists(layout.host_veth):
        found.append(f"link {layout.host_veth}")
    found += [f"process {pid} {_cmdline(pid)}" for pid in sorted(_processes_of(layout))]
    found += [f"mount {mount}" for mount in _mounts_under(layout)]
    found += [f"cgroup {group}" for group in _cgroups(layout)]
    found += [f"directory {d}" for d in (layout.run_dir, layout.data_root) if d.exists()]
    return found


def _kill_processes(layout: _Layout, *, containers_only: bool = False) -> None:
    """SIGKILL the engine's processes (``containers_only``: those in its cgroups) until none
    is left."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = _cgroup_processes(layout) if containers_only else _processes_of(layout)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        for pid in pids:  # our own children (nsenter'd dockerd, sshd) are reaped here
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def _processes_of(layout: _Layout) -> set[int]:
    """Live (not zombie) processes in the namespace, the cgroups, or naming the run dir."""
    inode = None
    with contextlib.suppress(OSError):
        inode = os.stat(layout.netns_path).st_ino
    in_cgroups = _cgroup_processes(layout)
    marker = f"{layout.run_dir}/".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if _state(pid) == "Z":
                continue
            ours = pid in in_cgroups
            if not ours and inode is not None:
                ours = os.readlink(entry / "ns" / "net") == f"net:[{inode}]"
            if not ours:
                ours = marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if ours:
            found.add(pid)
    return found


def _cgroup_processes(layout: _Layout) -> set[int]:
    """Processes in the engine's cgroups: its containers'."""
    found: set[int] = set()
    for group in _cgroups(layout):
        for procs in group.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in procs.read_text().split())
    return found


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def _mounts_under(layout: _Layout) -> list[str]:
    """Mount points under the engine's directories, deepest first."""
    roots = [str(layout.run_dir), str(layout.data_root)]
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = _unescape(line.split()[4])
            if any(point == r or point.startswith(r + "/") for r in roots):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (``\\040`` for a space) undone."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _shim_sockets(layout: _Layout) -> list[Path]:
    """The sockets of the engine's containerd shims in the directory every containerd on
    this machine shares (``/run/containerd/s``, named by a hash of containerd's address, the
    namespace and the container): a shim killed with SIGKILL leaves its socket behind."""
    address = layout.exec_root / "containerd" / "containerd.sock"
    ids: set[str] = set()
    for listing in (
        layout.data_root / "containers",
        layout.exec_root / "containerd" / "daemon" / "io.containerd.runtime.v2.task" / "moby",
    ):
        with contextlib.suppress(OSError):
            ids.update(entry.name for entry in listing.iterdir())
    found = []
    for container in ids:
        digest = hashlib.sha256(f"{address}/moby/{container}".encode()).hexdigest()
        if (SHIM_SOCKETS / digest).exists():
            found.append(SHIM_SOCKETS / digest)
    return found


def _cgroups(layout: _Layout) -> list[Path]:
    """The engine's cgroup parent in each hierarchy (cgroup v1 and v2)."""
    base = Path("/sys/fs/cgroup")
    candidates = [base / layout.cgroup_parent, *base.glob(f"*/{layout.cgroup_parent}")]
    return [c for c in candidates if c.is_dir()]


def _rmdir_cgroup(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)  # busy until its last process is gone


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


# -- certificates and keys ------------------------------------------------------------------


def _make_certificates(directory: Path, layout: _Layout) -> tuple[Path, Path]:
    """A CA, the engine's certificate (IP SAN: its address) and a client certificate, and an
    unrelated CA with a client certificate of its own. Returns ``(cert_dir, wrong_cert_dir)``,
    each with ``ca.pem``, ``cert.pem`` and ``key.pem``; the engine's are in ``server/``."""
    ca_key, ca = _certificate("imagecheck test CA", None)
    server_key, server = _certificate(layout.address, (ca_key, ca), server_ip=layout.address)
    client_key, client = _certificate("imagecheck test client", (ca_key, ca))
    wrong_ca_key, wrong_ca = _certificate("imagecheck unrelated CA", None)
    wrong_key, wrong = _certificate("imagecheck test client", (wrong_ca_key, wrong_ca))
    made = {
        "server": (ca, server, server_key),
        "client": (ca, client, client_key),
        "wrong": (wrong_ca, wrong, wrong_key),
    }
    for name, (authority, cert, key) in made.items():
        (directory / name).mkdir(parents=True, exist_ok=True)
        _write(directory / name / "ca.pem", _pem(authority), 0o644)
        _write(directory / name / "cert.pem", _pem(cert), 0o644)
        _write(directory / name / "key.pem", _pem(key), 0o600)
    return directory / "client", directory / "wrong"


def _certificate(
    common_name: str,
    issuer: tuple[EllipticCurvePrivateKey, Certificate] | None,
    server_ip: str | None = None,
) -> tuple[EllipticCurvePrivateKey, Certificate]:
    """``(key, certificate)``: a CA when ``issuer`` is None, else a leaf it signs (a server
    certificate for ``server_ip``, or a client certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        signer, issuer_name = key, subject
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        signer, issuer_cert = issuer
        issuer_name = issuer_cert.subject
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_ip else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
        )
        if server_ip:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(server_ip)), x509.DNSName(server_ip)]
                ),
                critical=False,
            )
    cert = builder.issuer_name(issuer_name).sign(signer, hashes.SHA256())
    return key, cert


def _pem(thing: EllipticCurvePrivateKey | Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import Certificate

    if isinstance(thing, Certificate):
        return thing.public_bytes(serialization.Encoding.PEM)
    return thing.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _ssh_keypair() -> tuple[bytes, bytes]:
    """``(private key in OpenSSH format, public key line)``: a new ed25519 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public


# -- small helpers --------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise EngineError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def _ping_unix(path: Path) -> bool:
    """Whether an engine answers ``GET /_ping`` on the unix socket at ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(path))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return conn.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK")
    except OSError:
        return False
