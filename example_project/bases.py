"""Make the example's base image available from a local registry, pinned by digest.

No public registry is reachable, so the base (a debootstrapped Debian with python3, built by
``tests/images.py``) is pushed to Debian's ``docker-registry`` on 127.0.0.1, started here when
none answers. Prints the ``BASE_DIGEST`` build arg (``sha256:...``) on the last line.

It also puts the real wheels the ``cuda`` member installs into ``example_project/wheels/``
(downloaded once, from PyPI, into the wheel cache of ``tests/wheels.py``): the CUDA 13.0
runtime (2 MB) by default; with ``--wheels`` also torch 2.14.1+cu130 and the CUDA 12 pieces
(about 600 MB), for ``scripts/run-example --cuda`` and ``--bad``. ``wheels/`` holds exactly
those, so the build context sends no wheel the run does not install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

WHEELS = Path(__file__).resolve().parent / "wheels"
#: The wheel of the default cuda member (CUDA=runtime): the CUDA 13.0 runtime only.
RUNTIME = ("nvidia-cuda-runtime==13.0.96",)
#: With --wheels, also those of CUDA=torch (torch cu130) and CUDA=cuda12 (CUDA 12 pieces).
REQUIREMENTS = (
    *RUNTIME,
    "torch==2.14.1",
    "nvidia-cuda-runtime-cu12==12.9.79",
    "nvidia-cuda-nvcc-cu12==12.9.86",
)
REGISTRY = os.environ.get("AUTOVOICE_REGISTRY", "127.0.0.1:5000")
REPOSITORY = f"{REGISTRY}/autovoice-base"
TAG = "bookworm"
STORAGE = Path(os.environ.get("AUTOVOICE_REGISTRY_DIR", "/var/lib/pytest-imagecheck-registry"))


def registry_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_registry() -> None:
    """Start Debian's docker-registry on REGISTRY (loopback only) in the background."""
    binary = shutil.which("docker-registry")
    if binary is None:
        sys.exit("bases: docker-registry is missing: apt-get install docker-registry")
    STORAGE.mkdir(parents=True, exist_ok=True)
    config = STORAGE / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(STORAGE / "data")}},
                "http": {"addr": REGISTRY},
            }
        )
    )
    with open(STORAGE / "registry.log", "ab") as log:
        subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=log, start_new_session=True
        )
    for _ in range(50):
        if registry_answers():
            return
        time.sleep(0.2)
    sys.exit(f"bases: the registry did not answer on {REGISTRY}; see {STORAGE / 'registry.log'}")


def fetch_wheels(requirements: tuple[str, ...]) -> None:
    """Link the wheels of ``requirements`` into ``wheels/`` (the build context's bind-mounted
    folder), and remove the others there."""
    from tests import wheels

    WHEELS.mkdir(exist_ok=True)
    wanted: set[str] = set()
    for requirement in requirements:
        print(f"bases: wheel {requirement}", file=sys.stderr)
        wheel = wheels.fetch(requirement)
        wanted.add(wheel.name)
        target = WHEELS / wheel.name
        if not target.exists():
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)
    for stale in WHEELS.glob("*.whl"):
        if stale.name not in wanted:
            stale.unlink()


def main() -> None:
    """Link the wheels, start the registry if needed, push the base, print its digest."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import images  # the same recipe the plugin's tests use

    fetch_wheels(REQUIREMENTS if "--wheels" in sys.argv[1:] else RUNTIME)

    if not registry_answers():
        print(f"bases: starting a registry on {REGISTRY}", file=sys.stderr)
        start_registry()
    images.main(["debian"])
    subprocess.run(["docker", "tag", images.DEBIAN, f"{REPOSITORY}:{TAG}"], check=True)
    subprocess.run(
        ["docker", "push", "--quiet", f"{REPOSITORY}:{TAG}"], check=True, stdout=sys.stderr
    )
    digests = subprocess.run(
        ["docker", "inspect", "--format", "{{json .RepoDigests}}", f"{REPOSITORY}:{TAG}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    digest = next(d for d in yaml.safe_load(digests) if d.startswith(f"{REPOSITORY}@"))
    print(digest.split("@", 1)[1])


if __name__ == "__main__":
    main()
