"""The namespaced engines the remote-engine tests run against (tests/netns.py): they start,
answer from this machine over plain tcp, TLS and ssh, run images loaded from the host engine,
publish ports on their own address, refuse the wrong certificates and keys, and leave nothing
behind (after a normal end, an exception, KeyboardInterrupt, or a holder killed with SIGKILL).

Each test prints how long its engine took to answer (``pytest -s`` shows it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from tests import netns
from tests.netns import NamespacedEngine, namespaced_engine, sweep_stale, unavailable

pytestmark = pytest.mark.slow

LABEL = "imagecheck-test.netns"
ROOT = Path(__file__).resolve().parent.parent
#: A busybox httpd serving one page on 8080.
HTTPD = [
    "sh",
    "-c",
    "mkdir -p /www && echo hello-netns > /www/index.html && exec httpd -f -p 8080 -h /www",
]


@pytest.fixture(autouse=True)
def _machine_can() -> None:
    """No namespaced engine here is a failure, never a skip."""
    reason = unavailable(tls=True, ssh=True)
    if reason:
        pytest.fail(reason)


def _timing(engine: NamespacedEngine, what: str) -> None:
    sshd = f", sshd in {engine.sshd_started_in:.2f} s" if engine.sshd_started_in else ""
    print(f"\nTIMING {what}: {engine.name} answered in {engine.started_in:.2f} s{sshd}")


def _gone(engine: NamespacedEngine) -> None:
    """Nothing of ``engine`` is left: checked apart from ``leftovers()`` too."""
    print(f"TIMING teardown of {engine.name}: {engine.stopped_in:.2f} s")
    assert engine.leftovers() == []
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert engine.name not in names.split()
    assert not Path("/sys/class/net", engine.layout.host_veth).exists()
    assert not Path("/sys/class/net", engine.layout.ns_veth).exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(engine.layout.run_dir) + "/" not in mounts
    assert str(engine.layout.data_root) not in mounts
    for pid in Path("/proc").iterdir():
        if pid.name.isdigit():
            try:
                cmdline = (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            assert str(engine.layout.run_dir) + "/" not in cmdline, cmdline
    assert not engine.layout.run_dir.exists()
    assert not engine.layout.data_root.exists()


def _run_httpd(engine: NamespacedEngine, image: str, host_ip: str = "0.0.0.0") -> int:
    """Start the httpd on ``engine``, published at ``host_ip``:8080 in its namespace (its own
    port space); returns the port."""
    engine.client().containers.run(
        image, HTTPD, detach=True, labels={LABEL: "1"}, ports={"8080/tcp": (host_ip, 8080)}
    )
    return 8080


def _get(url: str, timeout: float = 20) -> requests.Response:
    """GET ``url``, retried while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[NamespacedEngine]:
    with namespaced_engine(tmp_path) as engine:
        _timing(engine, "plain tcp")
        yield engine
    _gone(engine)


def test_plain_engine_runs_a_loaded_image_and_publishes_on_its_address(
    plain: NamespacedEngine, client: docker.DockerClient, busybox: str
) -> None:
    assert plain.tcp_url == f"tcp://{plain.address}:2375"
    assert plain.address != plain.host_address
    remote = plain.network_client()
    assert remote.ping()
    assert remote.version()["ApiVersion"]
    assert _cli({"DOCKER_HOST": plain.tcp_url}, "version").returncode == 0
    # an engine of its own: it starts empty, and what is loaded into it is not on the host's
    assert remote.images.list() == []
    begun = time.monotonic()
    plain.load(client, busybox)
    print(f"TIMING load of {busybox}: {time.monotonic() - begun:.2f} s")
    assert busybox in remote.images.get(busybox).tags
    assert remote.containers.run(busybox, ["echo", "ran"], remove=True) == b"ran\n"
    port = _run_httpd(plain, busybox)
    reply = _get(f"http://{plain.address}:{port}/")
    assert reply.status_code == 200 and reply.text == "hello-netns\n"
    assert not client.containers.list(all=True, filters={"label": LABEL})


def test_two_engines_at_once(tmp_path: Path, client: docker.DockerClient, busybox: str) -> None:
    with (
        namespaced_engine(tmp_path / "one") as one,
        namespaced_engine(tmp_path / "two") as two,
    ):
        _timing(one, "first of two")
        _timing(two, "second of two")
        assert one.address != two.address and one.name != two.name
        for engine in (one, two):
            engine.load(client, busybox)
            port = _run_httpd(engine, busybox)
            assert _get(f"http://{engine.address}:{port}/").text == "hello-netns\n"
        assert len(one.client().containers.list()) == len(two.client().containers.list()) == 1
    _gone(one)
    _gone(two)


def test_killed_engine_refuses_and_is_still_torn_down(
    tmp_path: Path, client: docker.DockerClient, busybox: str
) -> None:
    with namespaced_engine(tmp_path) as engine:
        engine.load(client, busybox)
        _run_httpd(engine, busybox)
        remote = engine.network_client(timeout=5)
        assert remote.ping()
        engine.kill()
        assert not engine.alive()
        with pytest.raises(requests.ConnectionError):
            remote.ping()
        # a crash leaves the container's processes running, until the teardown
        assert any("httpd" in cmdline for _, cmdline in engine.processes())
        shim_sockets = netns._shim_sockets(engine.layout)
        assert shim_sockets  # in the directory the host's containerd uses too
    _gone(engine)
    assert not any(path.exists() for path in shim_sockets)


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_teardown_on_exception(tmp_path: Path, interruption: type[BaseException]) -> None:
    with pytest.raises(interruption), namespaced_engine(tmp_path) as engine:
        assert engine.network_client().ping()
        raise interruption("stop")
    _gone(engine)


def test_stale_engine_of_a_killed_process_is_swept(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from tests.netns import NamespacedEngine\n"
            "engine = NamespacedEngine(Path(sys.argv[1]))\n"
            "engine.start()\n"
            "print(engine.layout.index, flush=True)\n"
            "time.sleep(600)\n",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        index = int(holder.stdout.readline())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    layout = netns._Layout(index, tmp_path.resolve())
    # the dead holder's dockerd runs on, its namespace and mounts stay
    assert any("dockerd" in item for item in netns._leftovers(layout))
    assert index in sweep_stale()
    assert netns._leftovers(layout) == []


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[NamespacedEngine]:
    with namespaced_engine(tmp_path, tls=True) as engine:
        _timing(engine, "TLS")
        yield engine
    _gone(engine)


def test_tls_engine_answers_the_right_certificates_only(tls: NamespacedEngine) -> None:
    assert tls.tls_url == f"tcp://{tls.address}:2376"
    assert tls.cert_dir is not None and tls.wrong_cert_dir is not None
    for certs in (tls.cert_dir, tls.wrong_cert_dir):
        assert {p.name for p in certs.iterdir()} >= {"ca.pem", "cert.pem", "key.pem"}
    assert tls.network_client().ping()
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        tls.network_client(wrong=True).ping()
    with pytest.raises(netns.EngineError):
        _ = tls.tcp_url
    # no plain listener: 2375 is closed, and 2376 speaks only TLS
    with pytest.raises(OSError):
        socket.create_connection((tls.address, 2375), timeout=2).close()
    plain_http = requests.get(f"http://{tls.address}:2376/_ping", timeout=5)
    assert plain_http.status_code == 400 and "HTTPS" in plain_http.text
    # the docker CLI, from DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH
    right = _cli(tls.tls_env(), "version", "--format", "{{.Server.Version}}")
    assert right.returncode == 0 and right.stdout.strip(), right.stderr
    wrong = _cli(tls.tls_env(wrong=True), "version", "--format", "{{.Server.Version}}")
    assert wrong.returncode != 0 and "certificate" in wrong.stderr, wrong.stderr


def test_docker_py_from_env_tls_and_the_ca_bundle_variables(tls: NamespacedEngine) -> None:
    """``docker.from_env`` with the TLS variables works, unless REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE is set (as on this project's machines): requests then verifies the engine
    against that bundle instead of DOCKER_CERT_PATH's ca.pem. Whoever connects must mind it."""
    code = "import docker; print(docker.from_env(timeout=10).version()['Version'])"
    bare = {
        k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    ok = subprocess.run(
        [sys.executable, "-c", code], env={**bare, **tls.tls_env()}, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    bundle = {**bare, **tls.tls_env(), "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    trap = subprocess.run([sys.executable, "-c", code], env=bundle, capture_output=True, text=True)
    assert trap.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in trap.stderr


@pytest.fixture
def ssh(tmp_path: Path) -> Iterator[NamespacedEngine]:
    with namespaced_engine(tmp_path, ssh=True) as engine:
        _timing(engine, "ssh")
        yield engine
    _gone(engine)


@pytest.mark.parametrize("use_ssh_client", [True, False], ids=["ssh-client", "paramiko"])
def test_ssh_engine_via_docker_py(ssh: NamespacedEngine, use_ssh_client: bool) -> None:
    """docker-py over ssh:// in a child with ``ssh_env()``: the ssh CLI (PATH's wrapper) or
    paramiko (HOME's .ssh/config); the real ~/.ssh is not read."""
    code = (
        "import sys, docker\n"
        f"c = docker.DockerClient(base_url=sys.argv[1], use_ssh_client={use_ssh_client}, "
        "timeout=20)\n"
        "print(c.version()['Version'], c.info()['DockerRootDir'])\n"
    )
    for wrong in (False, True):
        done = subprocess.run(
            [sys.executable, "-c", code, ssh.ssh_url],
            env={**os.environ, **ssh.ssh_env(wrong=wrong)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if wrong:
            assert done.returncode != 0
        else:
            assert done.returncode == 0, done.stderr
            assert done.stdout.split()[1] == str(ssh.layout.data_root)  # the namespace's engine


def test_ssh_engine_via_the_docker_cli_and_a_tunnel(
    ssh: NamespacedEngine, client: docker.DockerClient, busybox: str
) -> None:
    env = ssh.ssh_env()
    assert env["DOCKER_HOST"] == f"ssh://root@{ssh.address}"
    begun = time.monotonic()
    right = _cli(env, "info", "--format", "{{.DockerRootDir}}")
    print(f"TIMING docker CLI over ssh: {time.monotonic() - begun:.2f} s")
    assert right.returncode == 0 and right.stdout.strip() == str(ssh.layout.data_root), right.stderr
    wrong = _cli(ssh.ssh_env(wrong=True), "version")
    assert wrong.returncode != 0 and "Permission denied" in wrong.stderr, wrong.stderr
    # a port published on the namespace's loopback only, reached through an SSH tunnel
    ssh.load(client, busybox)
    port = _run_httpd(ssh, busybox, host_ip="127.0.0.1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
    tunnel = subprocess.Popen(
        ["ssh", "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", f"root@{ssh.address}"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
    )
    try:
        assert _get(f"http://127.0.0.1:{local}/").text == "hello-netns\n"
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)
    with pytest.raises(OSError):
        socket.create_connection((ssh.address, port), timeout=2).close()
