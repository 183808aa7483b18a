"""Recipes for the small images the tests build locally (no registry is reachable).

``BUSYBOX`` is ``FROM scratch`` plus Debian's static busybox: most test images build on it.
``DEBIAN`` is a minimal Debian bookworm with python3 (debootstrap, then ``docker import``),
for services written in Python and programs that need glibc.
Each is built by the test session when missing and kept on the engine between runs.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).parent / "images"
BUSYBOX = "imagecheck-test/busybox:1"
BUSYBOX_BINARY = Path("/bin/busybox")
DEBIAN = "imagecheck-test/debian-python:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Not needed in a test image; dropping them halves the import.
DEBIAN_PRUNE = ("var/cache/apt/archives", "usr/share/doc", "usr/share/man", "usr/share/locale")


def _ensure(client: docker.DockerClient, lock_dir: Path, tag: str, make: Callable[[], None]) -> str:
    """Run ``make`` unless the engine has ``tag``; one process at a time (xdist workers)."""
    with open(lock_dir / f"{tag.replace('/', '_')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            make()
    return tag


def ensure_busybox(client: docker.DockerClient, lock_dir: Path) -> str:
    """Build ``BUSYBOX`` unless the engine has it; returns its tag."""

    def make() -> None:
        if not BUSYBOX_BINARY.exists():
            raise RuntimeError(
                f"{BUSYBOX_BINARY} is missing: apt-get install busybox-static "
                "(scripts/run-tests does this)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(HERE / "busybox", tmp, dirs_exist_ok=True)
            shutil.copy2(BUSYBOX_BINARY, Path(tmp) / "busybox")
            client.images.build(path=tmp, tag=BUSYBOX, rm=True)

    return _ensure(client, lock_dir, BUSYBOX, make)


def ensure_debian(client: docker.DockerClient, lock_dir: Path) -> str:
    """Make ``DEBIAN`` unless the engine has it (about a minute); returns its tag."""

    def make() -> None:
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap is missing: apt-get install debootstrap")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "root"
            debootstrap = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm"]
            subprocess.run(
                [*debootstrap, str(root), DEBIAN_MIRROR], check=True, stdout=subprocess.DEVNULL
            )
            for part in DEBIAN_PRUNE:
                shutil.rmtree(root / part, ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(
                ["docker", "import", "--change", 'CMD ["python3"]', "-", DEBIAN],
                stdin=tar.stdout,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            if tar.wait() != 0:
                raise RuntimeError("tar of the debootstrap root failed")

    return _ensure(client, lock_dir, DEBIAN, make)


def build(client: docker.DockerClient, context: Path, tag: str) -> str:
    """Build a test image from ``context`` with docker-py; returns ``tag``."""
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    return tag


def main(argv: list[str] | None = None) -> None:
    """Build base images by name (default: all): ``python -m tests.images busybox debian``."""
    from pytest_imagecheck.engine import connect

    recipes = {"busybox": ensure_busybox, "debian": ensure_debian}
    names = (argv if argv is not None else sys.argv[1:]) or list(recipes)
    client = connect()
    with tempfile.TemporaryDirectory() as lock_dir:
        for name in names:
            print(recipes[name](client, Path(lock_dir)))


if __name__ == "__main__":
    main()
