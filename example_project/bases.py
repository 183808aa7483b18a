"""Make the example's base image available from a local registry, pinned by digest.

No public registry is reachable, so the base (a debootstrapped Debian with python3, the
``imagecheck-test/debian-python:bookworm`` of ``tests/images.py``) is pushed to Debian's
``docker-registry`` on 127.0.0.1, started here when none answers. Prints the ``BASE_DIGEST``
build arg (``sha256:...``) on the last line.

``bases.py --rootfs`` only debootstraps that base's root filesystem into a tar file in
``~/.cache/pytest-imagecheck/`` (about a minute; nothing when the engine has the base or the
tar is there). It needs no engine and no package beyond Python's standard library, so
``scripts/run-example`` runs it in the background while the engine installs and pip runs; the
push then imports the tar (waiting for it while it is being made) instead of debootstrapping
again.

It also puts the real wheels the ``cuda`` member installs into ``example_project/wheels/``
(downloaded once, from PyPI, into the wheel cache of ``tests/wheels.py``): the CUDA 13.0
runtime (2 MB) by default; with ``--wheels`` also torch 2.14.1+cu130 and the CUDA 12 pieces
(about 600 MB), for ``scripts/run-example --cuda`` and ``--bad``. ``wheels/`` holds exactly
those, so the build context sends no wheel the run does not install.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

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

# The Debian base, made as tests/images.py makes it (main() checks that the names agree; keep
# the debootstrap arguments the same too): debootstrap, drop DEBIAN_PRUNE, `docker import`.
# Repeated here because `--rootfs` runs before pip has installed docker-py, which
# tests/images.py imports.
DEBIAN = "imagecheck-test/debian-python:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PRUNE = ("var/cache/apt/archives", "usr/share/doc", "usr/share/man", "usr/share/locale")
DEBOOTSTRAP = ("debootstrap", "--variant=minbase", "--include=python3", "bookworm")
DEBIAN_CMD = 'CMD ["python3"]'
ROOTFS_CACHE = Path.home() / ".cache" / "pytest-imagecheck"


def registry_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_registry() -> None:
    """Start Debian's docker-registry on REGISTRY (loopback only) in the background."""
    import yaml

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


def engine_has_base() -> bool | None:
    """Whether the engine has DEBIAN; None when no engine answers (or no docker CLI)."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        server = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"], capture_output=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        return None
    if server.returncode != 0:
        return None
    inspect = subprocess.run([docker, "image", "inspect", DEBIAN], capture_output=True)
    return inspect.returncode == 0


def rootfs_tar() -> Path:
    """The Debian base's root filesystem as a tar file in ROOTFS_CACHE, debootstrapped (about a
    minute, from DEBIAN_MIRROR) unless that folder has it. One process makes it at a time;
    another waits for it. The name holds a hash of the recipe, so a changed recipe makes a new
    one; delete the file for a newer Debian. Exits (SystemExit) when debootstrap fails."""
    ROOTFS_CACHE.mkdir(parents=True, exist_ok=True)
    recipe = repr((DEBOOTSTRAP, DEBIAN_MIRROR, DEBIAN_PRUNE)).encode()
    tar = ROOTFS_CACHE / f"debian-rootfs-{hashlib.sha256(recipe).hexdigest()[:12]}.tar"
    with open(ROOTFS_CACHE / ".debian-rootfs.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("bases: waiting for the root filesystem another process makes", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not tar.exists():
            _debootstrap(tar)
    return tar


def _debootstrap(tar: Path) -> None:
    if shutil.which("debootstrap") is None:
        sys.exit("bases: debootstrap is missing: apt-get install debootstrap")
    print(f"bases: debootstrapping {DEBIAN}'s root filesystem (about a minute)", file=sys.stderr)
    partial = tar.with_name(tar.name + ".partial")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        try:
            _run_as_group([*DEBOOTSTRAP, str(root), DEBIAN_MIRROR])
        finally:
            # A debootstrap that was stopped leaves its /proc and /sys mounted in the root:
            # unmount them before the folder is deleted.
            _unmount_under(root)
        for part in DEBIAN_PRUNE:
            shutil.rmtree(root / part, ignore_errors=True)
        try:
            subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
            partial.rename(tar)
        finally:
            partial.unlink(missing_ok=True)
    print(f"bases: root filesystem in {tar}", file=sys.stderr)


def _run_as_group(command: list[str]) -> None:
    """Run ``command`` (stdout discarded) in a process group of its own, and end that group
    when this process is stopped, so debootstrap's chrooted dpkg does not outlive it."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        code = process.wait()
    except BaseException:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        raise
    if code != 0:
        sys.exit(f"bases: {' '.join(command)} failed with exit code {code} (its output is above)")


def _unmount_under(root: Path) -> None:
    with open("/proc/self/mountinfo") as mounts:
        points = [line.split()[4] for line in mounts]
    inside = [p for p in points if p.startswith(f"{root}/")]
    for point in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)


def import_base() -> None:
    """Import DEBIAN from the root filesystem's tar (made first when missing)."""
    tar = rootfs_tar()
    print(f"bases: importing {DEBIAN} from {tar}", file=sys.stderr)
    subprocess.run(
        ["docker", "import", "--change", DEBIAN_CMD, str(tar), DEBIAN],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def rootfs_ahead() -> None:
    """``--rootfs``: make the root filesystem's tar unless the engine has the base already.

    An engine that is installed but not answering yet is being started by
    ``scripts/ensure-docker``: its images decide, so wait for it (up to a minute). On a machine
    with no engine installed, no image can exist, so start at once."""
    has_base = engine_has_base()
    if has_base is None and (os.environ.get("DOCKER_HOST") or shutil.which("dockerd")):
        deadline = time.monotonic() + 60
        while has_base is None and time.monotonic() < deadline:
            time.sleep(0.2)
            has_base = engine_has_base()
    if not has_base:
        rootfs_tar()


def main() -> None:
    """Link the wheels, start the registry if needed, push the base, print its digest."""
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import images  # the recipe the plugin's tests use: this must make the same image

    theirs = (images.DEBIAN, images.DEBIAN_MIRROR, images.DEBIAN_PRUNE)
    if theirs != (DEBIAN, DEBIAN_MIRROR, DEBIAN_PRUNE):
        sys.exit(
            f"bases: the Debian base here is {(DEBIAN, DEBIAN_MIRROR, DEBIAN_PRUNE)} but "
            f"tests/images.py makes {theirs}: change example_project/bases.py to match"
        )
    fetch_wheels(REQUIREMENTS if "--wheels" in sys.argv[1:] else RUNTIME)

    if not registry_answers():
        print(f"bases: starting a registry on {REGISTRY}", file=sys.stderr)
        start_registry()
    if not engine_has_base():
        import_base()
    subprocess.run(["docker", "tag", DEBIAN, f"{REPOSITORY}:{TAG}"], check=True)
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
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if sys.argv[1:] == ["--rootfs"]:
        rootfs_ahead()
    else:
        main()
