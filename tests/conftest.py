"""Fixtures for the plugin's own tests: a real engine and small images built here."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
import requests
import yaml

from pytest_imagecheck.engine import LABEL_PID, LABEL_SESSION, connect
from tests import images

# The test images' programs are not test modules (several are called app.py).
collect_ignore = ["images"]


@pytest.fixture(scope="session")
def client() -> docker.DockerClient:
    """The engine the tests run against; no engine is a failure, never a skip."""
    return connect()


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder shared by all xdist workers of this run (for build locks)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def busybox(client: docker.DockerClient, shared_tmp: Path) -> str:
    """Tag of the busybox base image, built when missing."""
    return images.ensure_busybox(client, shared_tmp)


@pytest.fixture(scope="session")
def debian(client: docker.DockerClient, shared_tmp: Path) -> str:
    """Tag of a minimal Debian bookworm with python3, made with debootstrap when missing."""
    return images.ensure_debian(client, shared_tmp)


@pytest.fixture(scope="session")
def sample_image(client: docker.DockerClient, busybox: str) -> str:
    """Tag of ``tests/images/sample``: busybox httpd on 8080 with USER, ENV, HEALTHCHECK..."""
    return images.build(client, images.HERE / "sample", "imagecheck-test/sample:1")


@pytest.fixture(scope="session")
def build_image(client: docker.DockerClient) -> Iterator[Callable[..., str]]:
    """Build a small image from Dockerfile text: ``build_image("FROM ...", tag=None)``.

    Returns the image ID (or tag when given); images are removed at session end.
    """
    made: list[str] = []

    def build(dockerfile: str, tag: str | None = None) -> str:
        image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
        made.append(tag or image.id)
        return tag or image.id

    yield build
    for ref in made:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(ref, force=True, noprune=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on 127.0.0.1 at a free port: ``127.0.0.1:PORT``.

    The engine trusts registries on 127.0.0.0/8 over plain HTTP, so push and pull just work.
    """
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is missing: apt-get install docker-registry"
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{_free_port()}"
    config = {
        "version": 0.1,
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": address},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=log)
    try:

        def answers() -> bool:
            try:
                return requests.get(f"http://{address}/v2/", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        assert wait_for(answers, timeout=30), (root / "registry.log").read_text()
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def service_image(client: docker.DockerClient, debian: str) -> str:
    """Tag of ``tests/images/service``: a Python service whose readiness the env controls."""
    return images.build(client, images.HERE / "service", "imagecheck-test/service:1")


def leftovers(client: docker.DockerClient, pid: int, wait: float = 10) -> list[str]:
    """Names of containers the plugin labelled with process ``pid`` that still exist, once
    the removals it asked for at the end of its session are done (the engine finishes them
    after the session, in a fraction of a second: up to ``wait`` seconds are waited for; 0
    to see what is left at once, before another session's sweep could remove it)."""

    def found() -> list[str]:
        listed = client.api.containers(
            all=True, filters={"label": [LABEL_SESSION, f"{LABEL_PID}={pid}"]}
        )
        return [c["Names"][0].lstrip("/") for c in listed]

    if wait:
        wait_for(lambda: not found(), timeout=wait, interval=0.1)
    return found()


def wait_for(predicate, timeout: float = 30, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class InnerPytest:
    """A pytest run in a child process that the test can signal."""

    def __init__(
        self, pytester: pytest.Pytester, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=pytester.path,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[tuple[int, str]]:
        """``(pid, command line)`` of this run's child processes."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.proc.pid:
                found.append((int(stat.parent.name), cmdline))
        return found

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out


@pytest.fixture
def inner_pytest(pytester: pytest.Pytester) -> Iterator[type[InnerPytest]]:
    """Start pytest in a child process: ``proc = inner_pytest(pytester, "--image=x")``."""
    started: list[InnerPytest] = []

    def start(*args: str, env: dict[str, str] | None = None) -> InnerPytest:
        run = InnerPytest(pytester, *args, env=env)
        started.append(run)
        return run

    yield start  # type: ignore[misc]
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
