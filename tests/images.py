"""Recipes for the small images the tests build locally (no registry is reachable).

``BUSYBOX`` is ``FROM scratch`` plus Debian's static busybox; every test image builds on it.
Each is built by the test session when missing and kept on the engine between runs.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).parent / "images"
BUSYBOX = "imagecheck-test/busybox:1"
BUSYBOX_BINARY = Path("/bin/busybox")


def ensure_busybox(client: docker.DockerClient, lock_dir: Path) -> str:
    """Build ``BUSYBOX`` unless the engine has it; returns its tag."""
    with open(lock_dir / "busybox.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client.images.get(BUSYBOX)
            return BUSYBOX
        except docker.errors.ImageNotFound:
            pass
        if not BUSYBOX_BINARY.exists():
            raise RuntimeError(
                f"{BUSYBOX_BINARY} is missing: apt-get install busybox-static "
                "(scripts/run-tests does this)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(HERE / "busybox", tmp, dirs_exist_ok=True)
            shutil.copy2(BUSYBOX_BINARY, Path(tmp) / "busybox")
            client.images.build(path=tmp, tag=BUSYBOX, rm=True)
    return BUSYBOX


def build(client: docker.DockerClient, context: Path, tag: str) -> str:
    """Build a test image from ``context`` with docker-py; returns ``tag``."""
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    return tag


def main() -> None:
    """Build the base images the tests and the example project use: ``python -m tests.images``."""
    from pytest_imagecheck.engine import connect

    with tempfile.TemporaryDirectory() as lock_dir:
        print(ensure_busybox(connect(), Path(lock_dir)))


if __name__ == "__main__":
    main()
