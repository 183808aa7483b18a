"""Real wheels for test images, fetched once into a cache outside the repository.

``fetch("torch==2.14.1")`` runs ``pip download --no-deps --only-binary=:all:`` into the cache
(``~/.cache/pytest-imagecheck/wheels``, or ``$IMAGECHECK_WHEEL_CACHE``) unless a matching
wheel is already there, so a second run needs no network. pip uses its own configuration:
indexes, find-links and local mirrors (``pip config list``) work as they do for ``pip install``.
CPU builds of torch (``torch==2.13.0+cpu``) live on PyTorch's index, not PyPI: set
``PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`` where pip cannot find them.

Wheels are chosen for the Python running the tests; the test images (Debian bookworm) run
Python 3.11, so run the image tests with 3.11 too when an image must import what it carries.

:func:`build_with_wheels` builds ``tests/images/cuda/Dockerfile``: a base image plus wheels
unzipped into its site-packages, the way pip lays them out, without pip in the image.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import docker.errors
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

CACHE_ENV = "IMAGECHECK_WHEEL_CACHE"
RECIPE = Path(__file__).parent / "images" / "cuda" / "Dockerfile"
SITE_PACKAGES = "/usr/local/lib/python3.11/dist-packages"


def cache_dir() -> Path:
    """The wheel cache: ``$IMAGECHECK_WHEEL_CACHE``, else ``~/.cache/pytest-imagecheck/wheels``."""
    configured = os.environ.get(CACHE_ENV)
    path = Path(configured) if configured else Path.home() / ".cache/pytest-imagecheck/wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(requirement: Requirement, cache: Path, platform: str | None = None) -> Path | None:
    for wheel in sorted(cache.glob("*.whl")):
        name, version, _, tags = parse_wheel_filename(wheel.name)
        if platform is not None and not any(tag.platform.endswith(platform) for tag in tags):
            continue
        if name == canonicalize_name(requirement.name) and requirement.specifier.contains(
            version, prereleases=True
        ):
            return wheel
    return None


def fetch(requirement: str, *, platform: str | None = None) -> Path:
    """The wheel for ``NAME==VERSION``, downloaded with pip unless the cache has one.

    ``platform`` (a manylinux machine, e.g. ``aarch64``) asks for the wheel of another CPU
    (``pip download --platform manylinux2014_aarch64``).

    ``torch==2.13.0`` also accepts ``2.13.0+cpu``, as pip does: pin the local label to be sure.
    """
    wanted = Requirement(requirement)
    cache = cache_dir()
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _cached(wanted, cache, platform)
        if found is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps"]
            command += ["--only-binary=:all:", "--disable-pip-version-check", "-q"]
            if platform is not None:
                command += ["--platform", f"manylinux2014_{platform}"]
            pip = subprocess.run(
                [*command, "-d", str(cache), requirement], capture_output=True, text=True
            )
            found = _cached(wanted, cache, platform)
            if pip.returncode or found is None:
                raise RuntimeError(f"pip download {requirement} failed:\n{pip.stderr[-2000:]}")
    return found


def resolve(requirement: str) -> list[str]:
    """``requirement`` and all it depends on, as ``NAME==VERSION`` pins (pip's resolver).

    The answer is kept in the cache beside the wheels, so pip resolves once.
    """
    cache = cache_dir()
    answer = cache / f"{hashlib.sha256(requirement.encode()).hexdigest()[:16]}.resolved.json"
    if answer.exists():
        return list(json.loads(answer.read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        command += ["--only-binary=:all:", "--disable-pip-version-check", "-q"]
        pip = subprocess.run(
            [*command, "--report", str(report), requirement], capture_output=True, text=True
        )
        if pip.returncode:
            raise RuntimeError(f"pip cannot resolve {requirement}:\n{pip.stderr[-2000:]}")
        installs = json.loads(report.read_text())["install"]
    pins = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installs]
    answer.write_text(json.dumps(pins))
    return pins


def build_with_wheels(
    client: docker.DockerClient,
    base: str,
    requirements: list[str],
    *,
    site_packages: str = SITE_PACKAGES,
    name: str,
) -> str:
    """Build ``base`` plus the wheels of ``requirements`` unzipped into ``site_packages``.

    The tag (``imagecheck-test/cuda:<name>-<hash>``) names the recipe, the base image and the
    wheels, so an image is built once and kept on the engine for later runs, like the
    busybox and Debian bases. ``docker rmi`` them to reclaim the space.
    """
    wheels = [fetch(requirement) for requirement in requirements]
    base_id = client.images.get(base).id
    recipe = RECIPE.read_bytes()
    digest = hashlib.sha256(recipe + base_id.encode() + site_packages.encode())
    for wheel in wheels:
        digest.update(wheel.name.encode())
    tag = f"imagecheck-test/cuda:{name}-{digest.hexdigest()[:12]}"
    with open(cache_dir() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory() as context:
            shutil.copy2(RECIPE, Path(context) / "Dockerfile")
            for wheel in wheels:
                _link_or_copy(wheel, Path(context) / wheel.name)
            unpack_label = secrets.token_hex(6)
            try:
                client.images.build(
                    path=context,
                    tag=tag,
                    buildargs={
                        "BASE": base,
                        "SITE_PACKAGES": site_packages,
                        "UNPACK_LABEL": unpack_label,
                    },
                    rm=True,
                    forcerm=True,
                )
            finally:
                label = f"imagecheck-test.unpack={unpack_label}"
                client.images.prune(filters={"dangling": True, "label": label})
    return tag


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
