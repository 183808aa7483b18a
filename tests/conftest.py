"""Fixtures for the plugin's own tests: a real engine and small images built here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from pytest_imagecheck.engine import LABEL_PID, LABEL_SESSION, connect
from tests import images


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
def sample_image(client: docker.DockerClient, busybox: str) -> str:
    """Tag of ``tests/images/sample``: busybox httpd on 8080 with USER, ENV, HEALTHCHECK..."""
    return images.build(client, images.HERE / "sample", "imagecheck-test/sample:1")


def leftovers(client: docker.DockerClient, pid: int) -> list[str]:
    """Names of containers the plugin labelled with process ``pid`` that still exist."""
    found = client.api.containers(
        all=True, filters={"label": [LABEL_SESSION, f"{LABEL_PID}={pid}"]}
    )
    return [c["Names"][0].lstrip("/") for c in found]


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

    def __init__(self, pytester: pytest.Pytester, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out


@pytest.fixture
def inner_pytest(pytester: pytest.Pytester) -> Iterator[type[InnerPytest]]:
    """Start pytest in a child process: ``proc = inner_pytest(pytester, "--image=x")``."""
    started: list[InnerPytest] = []

    def start(*args: str) -> InnerPytest:
        run = InnerPytest(pytester, *args)
        started.append(run)
        return run

    yield start  # type: ignore[misc]
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
