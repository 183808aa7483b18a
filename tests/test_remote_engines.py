"""The plugin against remote engines (issue 17): real Docker engines in network namespaces the
suite makes (tests/netns.py), reached over plain tcp, TLS and ssh, one at a time and two in
one pytest-xdist session. Each session is a child pytest process, as a user runs it.

What each test checks on the remote engine: the image's facts, an exec, a file read, an
endpoint reached at the published port (on the engine's address, or through an SSH tunnel),
a build whose image lands there and not on the local engine, and that nothing labelled is
left on either engine. The faults: an engine that refuses, a TLS certificate from another CA,
an ssh key the server refuses, and an engine killed in the middle of a session.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from pytest_imagecheck.engine import LABEL_SESSION
from tests.netns import NamespacedEngine, namespaced_engine, sweep_stale, unavailable

pytestmark = pytest.mark.slow

#: The inner session's Python tests: facts, exec, a file, the endpoint, a build.
TESTS = """
import requests
import pytest_imagecheck as ic


def test_facts_exec_file_and_endpoint(image, container):
    assert image.user == "svc"
    assert container.host.check_output("id -un") == "svc"
    for _ in range(10):  # execs through the engine's API (over ssh: paramiko)
        assert container.exec(["id", "-un"]).stdout.strip() == "svc"
    assert container.host.file("/srv/www/index.html").exists
    ic.assert_endpoint_ready(container, "/", port=8080, timeout="20s")
    host, port = container.address(8080)
    print("REACHED", host, port)
    assert requests.get(container.url(8080, "/"), timeout=5).status_code == 200
"""

CRITERIA = """\
version: 1
criteria:
  - check: non_root
  - check: endpoint
    path: /
    port: 8080
    timeout: 20s
  - check: file
    path: /srv/www/index.html
"""


def _machine_can() -> None:
    """Fail (never skip: CI must run these) where no namespaced engine can start; sweep the
    engines of test processes that were killed holding them."""
    reason = unavailable(tls=True, ssh=True)
    if reason:
        pytest.fail(reason)
    sweep_stale()


@pytest.fixture(scope="module")
def remote(
    tmp_path_factory: pytest.TempPathFactory, client: docker.DockerClient, sample_image: str
) -> Iterator[NamespacedEngine]:
    """A plain tcp engine in a namespace, holding the sample image and busybox."""
    _machine_can()
    with namespaced_engine(tmp_path_factory.mktemp("remote")) as engine:
        engine.load(client, sample_image, "imagecheck-test/busybox:1")
        yield engine


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without DOCKER_* (the child names its engine itself), plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return {**clean, **(extra or {})}


def _pytest(
    folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """A child pytest session in ``folder``, with the environment ``env`` added."""
    return subprocess.run(
        _argv(*args), cwd=folder, env=_env(env), capture_output=True, text=True, timeout=timeout
    )


def _session(
    folder: Path, *args: str, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """:func:`_pytest` on the module's tests and criteria (``TESTS``, ``CRITERIA``)."""
    (folder / "test_remote.py").write_text(TESTS)
    (folder / "imagecheck.yaml").write_text(CRITERIA)
    return _pytest(folder, "-v", "-s", *args, env=env, timeout=timeout)


def _labelled(engine_client: docker.DockerClient) -> list[str]:
    listed = engine_client.api.containers(all=True, filters={"label": [LABEL_SESSION]})
    return [c["Names"][0] for c in listed]


def _no_leftovers(engine_client: docker.DockerClient, wait: float = 10) -> list[str]:
    deadline = time.monotonic() + wait
    while _labelled(engine_client) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _labelled(engine_client)


def test_a_remote_tcp_engine_needs_a_publish_host_and_works_with_one(
    remote: NamespacedEngine, sample_image: str, tmp_path: Path
) -> None:
    env = {"DOCKER_HOST": remote.tcp_url}
    refused = _session(tmp_path, f"--image={sample_image}", env=env)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert f"ERROR: the engine {remote.tcp_url} is on another machine" in refused.stderr

    started = time.time() - 1
    done = _session(tmp_path, f"--image={sample_image}", "--publish-host=engine", env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "4 passed" in out
    assert f"REACHED {remote.address} " in out
    inner = remote.client()
    assert _no_leftovers(inner) == []
    # The session's containers ran on the remote engine (its own record of them).
    assert _created_images(remote, started)


def test_a_build_lands_on_the_remote_engine(
    remote: NamespacedEngine, client: docker.DockerClient, tmp_path: Path
) -> None:
    tag = f"imagecheck-test/remote-build:{os.getpid()}"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM imagecheck-test/busybox:1\nRUN echo built-remotely > /marker\nUSER 1000\n"
        'CMD ["sleep", "3600"]\n'
    )
    (tmp_path / "test_build.py").write_text(
        "def test_it(image, container):\n"
        "    assert container.host.file('/marker').content_string == 'built-remotely\\n'\n"
    )
    done = _pytest(
        tmp_path,
        "test_build.py",
        f"--build-context={context}",
        f"--image={tag}",
        f"--engine={remote.tcp_url}",
        "--publish-host=engine",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    inner = remote.client()
    assert inner.images.get(tag).id
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)
    inner.images.remove(tag, force=True, noprune=True)
    assert _no_leftovers(inner) == []


def test_tls_through_a_docker_context_and_a_wrong_ca(
    tmp_path_factory: pytest.TempPathFactory,
    client: docker.DockerClient,
    sample_image: str,
    tmp_path: Path,
) -> None:
    _machine_can()
    with namespaced_engine(tmp_path_factory.mktemp("tls"), tls=True) as engine:
        engine.load(client, sample_image)
        assert engine.cert_dir is not None and engine.wrong_cert_dir is not None
        config = tmp_path / "docker-config"
        for name, certs in (("good", engine.cert_dir), ("wrong", engine.wrong_cert_dir)):
            subprocess.run(
                [
                    "docker",
                    "context",
                    "create",
                    name,
                    "--docker",
                    f"host={engine.tls_url},ca={certs}/ca.pem,cert={certs}/cert.pem,"
                    f"key={certs}/key.pem",
                ],
                env={**os.environ, "DOCKER_CONFIG": str(config)},
                check=True,
                capture_output=True,
            )
        env = {"DOCKER_CONFIG": str(config)}
        done = _session(
            tmp_path, f"--image={sample_image}", "--engine=good", "--publish-host=engine", env=env
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"REACHED {engine.address} " in done.stdout

        started = time.monotonic()
        wrong = _session(
            tmp_path, f"--image={sample_image}", "--engine=wrong", "--publish-host=engine", env=env
        )
        assert time.monotonic() - started < 60
        out = wrong.stdout + wrong.stderr
        assert wrong.returncode == 1, out
        line = f"TLS with the Docker engine at {engine.tls_url} of Docker context wrong failed ("
        assert line in out
        assert "Traceback" not in out and "docker.errors" not in out
        assert _no_leftovers(engine.client()) == []


def test_ssh_engine_ports_through_a_tunnel_and_a_refused_key(
    tmp_path_factory: pytest.TempPathFactory,
    client: docker.DockerClient,
    sample_image: str,
    tmp_path: Path,
) -> None:
    _machine_can()
    with namespaced_engine(tmp_path_factory.mktemp("ssh"), ssh=True) as engine:
        engine.load(client, sample_image)
        done = _session(tmp_path, f"--image={sample_image}", env=engine.ssh_env())
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "4 passed" in out
        assert "REACHED 127.0.0.1 " in out  # this machine's end of the tunnel
        assert _no_leftovers(engine.client()) == []
        leftover_ssh = [
            line
            for line in subprocess.run(
                ["ps", "-eo", "args"], capture_output=True, text=True, check=True
            ).stdout.splitlines()
            if line.startswith("ssh ") and " -L 127.0.0.1:" in line
        ]
        assert leftover_ssh == [], "a tunnel outlived its session"

        # The engine's own record: the ports were bound on its host's loopback only.
        events = _session(
            tmp_path,
            f"--image={sample_image}",
            "--keep-containers",
            "-k",
            "facts_exec",
            env=engine.ssh_env(),
        )
        assert events.returncode == 0, events.stdout + events.stderr
        inner = engine.client()
        kept = inner.containers.list(all=True, filters={"label": LABEL_SESSION})
        assert kept
        bindings = {
            b["HostIp"]
            for c in kept
            for port in (c.attrs["HostConfig"]["PortBindings"] or {}).values()
            for b in port
        }
        assert bindings == {"127.0.0.1"}
        for container in kept:
            container.remove(force=True, v=True)

        started = time.monotonic()
        refused = _session(tmp_path, f"--image={sample_image}", env=engine.ssh_env(wrong=True))
        assert time.monotonic() - started < 60
        out = refused.stdout + refused.stderr
        assert refused.returncode == 1, out
        assert f"Docker engine unreachable at {engine.ssh_url} (" in out
        assert "ssh must log in without a prompt" in out
        assert "Traceback" not in out


def test_an_engine_killed_mid_session_is_one_line_not_a_hang(
    tmp_path_factory: pytest.TempPathFactory,
    client: docker.DockerClient,
    sample_image: str,
    tmp_path: Path,
) -> None:
    _machine_can()
    flag = tmp_path / "started"
    (tmp_path / "test_dies.py").write_text(
        "import time\nfrom pathlib import Path\n\n\n"
        "def test_dies(container):\n"
        f"    Path({str(flag)!r}).touch()\n"
        "    time.sleep(4)\n"
        "    container.exec(['true'])\n"
    )
    with namespaced_engine(tmp_path_factory.mktemp("dies")) as engine:
        engine.load(client, sample_image)

        def kill_when_started() -> None:
            deadline = time.monotonic() + 120
            while not flag.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            engine.kill()

        killer = threading.Thread(target=kill_when_started)
        killer.start()
        started = time.monotonic()
        done = _pytest(
            tmp_path,
            "test_dies.py",
            f"--image={sample_image}",
            f"--engine={engine.tcp_url}",
            "--publish-host=engine",
            timeout=180,
        )
        killer.join()
        out = done.stdout + done.stderr
        assert done.returncode == 1, out
        assert time.monotonic() - started < 120
        assert f"Docker engine at {engine.tcp_url} stopped answering" in out, out
        assert "Traceback" not in out


MEMBERS = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def two_engines(
    tmp_path_factory: pytest.TempPathFactory, client: docker.DockerClient, sample_image: str
) -> Iterator[tuple[NamespacedEngine, NamespacedEngine, dict[str, str]]]:
    """Two plain tcp engines, each holding one image per member (the sample image with a
    label of its own), and the members' tags by image ID."""
    _machine_can()
    tags = [f"imagecheck-test/sample:{member}" for member in MEMBERS]
    ids = {}
    for member, tag in zip(MEMBERS, tags, strict=True):
        dockerfile = f"FROM {sample_image}\nLABEL member={member}\n"
        built, _ = client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True
        )
        ids[built.id] = tag
    try:
        with (
            namespaced_engine(tmp_path_factory.mktemp("one")) as one,
            namespaced_engine(tmp_path_factory.mktemp("two")) as two,
        ):
            for engine in (one, two):
                engine.load(client, *tags)
            yield one, two, ids
    finally:
        for tag in tags:
            client.images.remove(tag, noprune=True)


def _created_images(engine: NamespacedEngine, since: float) -> set[str]:
    """The images of the containers the engine created since ``since`` (its events)."""
    events = engine.client().events(
        since=int(since), until=int(time.time()) + 1, decode=True, filters={"event": "create"}
    )
    return {
        e["Actor"]["Attributes"]["image"]
        for e in events
        if e.get("Type") == "container" and "pytest-imagecheck.session" in e["Actor"]["Attributes"]
    }


def test_a_family_spread_over_two_engines(
    two_engines: tuple[NamespacedEngine, NamespacedEngine, dict[str, str]], tmp_path: Path
) -> None:
    one, two, ids = two_engines
    images = [f"--image={m}=imagecheck-test/sample:{m}" for m in MEMBERS]
    started = time.time() - 1
    done = _session(
        tmp_path,
        *images,
        f"--engine={one.tcp_url}",
        f"--engine={two.tcp_url}",
        "--publish-host=engine",
        "-n",
        "2",
        env={},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "16 passed" in out
    on_one = {ids[i] for i in _created_images(one, started)}
    on_two = {ids[i] for i in _created_images(two, started)}
    assert on_one and on_two, (on_one, on_two)
    assert not on_one & on_two, "a member ran on both engines"
    assert on_one | on_two == {f"imagecheck-test/sample:{m}" for m in MEMBERS}
    for engine in (one, two):
        assert _no_leftovers(engine.client()) == []


def test_a_killed_worker_leaves_nothing_on_either_engine(
    two_engines: tuple[NamespacedEngine, NamespacedEngine, dict[str, str]], tmp_path: Path
) -> None:
    one, two, _ = two_engines
    (tmp_path / "test_slow.py").write_text(
        "import time\n\n\ndef test_slow(container):\n    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        _argv(
            "test_slow.py",
            *(f"--image={m}=imagecheck-test/sample:{m}" for m in MEMBERS[:2]),
            f"--engine={one.tcp_url}",
            f"--engine={two.tcp_url}",
            "--publish-host=engine",
            "-n",
            "2",
            "--max-worker-restart=0",
        ),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (
            _labelled(one.client()) and _labelled(two.client())
        ):
            time.sleep(0.2)
        assert _labelled(one.client()) and _labelled(two.client()), "no container on each engine"
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert workers
        for pid in workers:
            os.kill(int(pid), 9)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out
    for engine in (one, two):
        assert _no_leftovers(engine.client()) == [], out
