"""One ``docker save`` per image: the wasted-bytes, secrets and CUDA checks, and the OS and
Python package facts and the checks on them, share one read.

Every count here is of real exports: the spy wraps ``Engine.save`` and still streams the image
from the engine.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pytest_imagecheck.checks.packages import (
    assert_absent,
    assert_installed_once,
    assert_no_stray_files,
    assert_pip_consistent,
    assert_versions,
)
from pytest_imagecheck.checks.secrets import assert_no_secrets
from pytest_imagecheck.checks.size import assert_size_within
from pytest_imagecheck.cuda import CudaFacts, read_cuda_facts
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.evidence import Evidence, collecting
from pytest_imagecheck.image import ImageUnderTest
from tests.wheels import fetch

KiB = 1024
SITE = "/usr/local/lib/python3.11/dist-packages"

# Layer b writes a .env file (a secret), CUDA and torch version files and a 64 KiB file that
# layer b+1 overwrites (wasted); no nvcc or ptxas, so the CUDA facts start no container.
RECIPE = """FROM {busybox}
RUN mkdir -p /app /usr/local/cuda-13.0 {site}/torch \\
 && echo "DB_PASSWORD=Tr0ub4dor-and-3-horses" > /app/.env \\
 && echo '{{"cuda": {{"version": "13.0.96"}}}}' > /usr/local/cuda-13.0/version.json \\
 && printf "__version__ = '2.14.1+cu130'\\ncuda = '13.0'\\n" > {site}/torch/version.py \\
 && dd if=/dev/zero of=/app/model.bin bs=1K count=64
RUN dd if=/dev/zero of=/app/model.bin bs=1K count=32
"""

#: Each check as a user calls it on the ``image`` fixture.
CHECKS: dict[str, Callable[[ImageUnderTest], object]] = {
    "size": lambda image: assert_size_within(image, wasted="1MB"),
    "secrets": assert_no_secrets,
    "cuda": read_cuda_facts,
}


@pytest.fixture(scope="module")
def engine(client: docker.DockerClient) -> Engine:
    return Engine(client, "tests-layers-once")


@pytest.fixture(scope="module")
def tag(build_image: Callable[..., str], busybox: str, worker_id: str) -> str:
    """The image of ``RECIPE``, tagged per xdist worker: a worker's teardown untags its own."""
    dockerfile = RECIPE.format(busybox=busybox, site=SITE)
    return build_image(dockerfile, tag=f"imagecheck-test/layers-once:1-{worker_id}")


@pytest.fixture
def saves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The image IDs ``Engine.save`` streams from now on; each export still happens."""
    streamed: list[str] = []
    real_save = Engine.save

    def counting_save(self: Engine, image_id: str) -> Iterator[bytes]:
        streamed.append(image_id)
        yield from real_save(self, image_id)

    monkeypatch.setattr(Engine, "save", counting_save)
    return streamed


def outcome(check: str, image: ImageUnderTest) -> tuple[object, list[Evidence]]:
    """What ``check`` gave on ``image`` (its result or failure message) and its evidence."""
    with collecting() as evidence:
        try:
            result = CHECKS[check](image)
        except AssertionError as failure:
            result = f"failed: {failure}"
    return result, evidence


@pytest.fixture(scope="module")
def alone(engine: Engine, tag: str) -> dict[str, tuple[object, list[Evidence]]]:
    """Each check's outcome on an image object of its own: nothing shared with another check."""
    return {check: outcome(check, engine.image(tag)) for check in CHECKS}


def test_each_check_alone_finds_what_the_image_holds(
    alone: dict[str, tuple[object, list[Evidence]]],
) -> None:
    size, size_evidence = alone["size"]
    assert size is None
    assert size_evidence[0].facts["wasted_bytes"] == 64 * KiB
    secrets, _ = alone["secrets"]
    assert isinstance(secrets, str)
    assert "file:/app/.env (rule env-file)" in secrets
    facts, _ = alone["cuda"]
    assert isinstance(facts, CudaFacts)
    assert facts.image_cuda is not None and facts.image_cuda.version == "13.0.96"
    assert facts.torch is not None and facts.torch.cuda == "13.0"


@pytest.mark.parametrize("order", list(itertools.permutations(CHECKS)), ids="-then-".join)
def test_checks_on_one_image_in_any_order_stream_it_once(
    engine: Engine,
    tag: str,
    alone: dict[str, tuple[object, list[Evidence]]],
    saves: list[str],
    order: tuple[str, ...],
) -> None:
    image = engine.image(tag)
    seen = {check: outcome(check, image) for check in order}
    assert len(saves) == 1
    assert seen == alone


def test_a_call_without_keep_gets_no_bytes_from_a_read_that_kept_some(
    engine: Engine, tag: str, saves: list[str]
) -> None:
    image = engine.image(tag)
    assert read_cuda_facts(image).torch is not None  # its read kept torch/version.py
    assert [layer.contents for layer in image.layer_contents()] == [{}] * len(image.diff_ids)
    assert len(saves) == 1


def test_an_ad_hoc_keep_streams_again_and_gets_the_bytes_it_selects(
    engine: Engine,
    tag: str,
    alone: dict[str, tuple[object, list[Evidence]]],
    saves: list[str],
) -> None:
    image = engine.image(tag)
    assert outcome("size", image) == alone["size"]
    layers = image.layer_contents(keep=lambda path, _size: path == "/app/model.bin")
    assert [list(layer.contents) for layer in layers if layer.contents] == [["/app/model.bin"]] * 2
    assert [len(layer.contents["/app/model.bin"]) for layer in layers if layer.contents] == [
        64 * KiB,
        32 * KiB,
    ]
    assert outcome("secrets", image) == alone["secrets"]
    assert outcome("cuda", image) == alone["cuda"]
    assert len(saves) == 2


#: Each YAML criterion and the verdict line ``-v`` prints for it.
CRITERIA = {
    "size": ("  - check: size\n    wasted: 1MB\n", "imagecheck.yaml::size wasted=1MB PASSED*"),
    "no_secrets": ("  - check: no_secrets\n", "imagecheck.yaml::no_secrets FAILED*"),
}


@pytest.mark.parametrize(
    "order", [("size", "no_secrets"), ("no_secrets", "size")], ids="-then-".join
)
def test_yaml_criteria_in_either_order_stream_the_image_once(
    pytester: pytest.Pytester, tag: str, saves: list[str], order: tuple[str, str]
) -> None:
    criteria = "".join(CRITERIA[name][0] for name in order)
    pytester.makefile(".yaml", imagecheck=f"version: 1\ncriteria:\n{criteria}")
    result = pytester.runpytest(f"--image={tag}", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            *(CRITERIA[name][1] for name in order),
            f"imagecheck.yaml:*: image {tag} carries 1 secret:",
            "  file:/app/.env (rule env-file) in layer *",
        ]
    )
    assert len(saves) == 1


def test_python_tests_on_the_image_fixture_stream_it_once(
    pytester: pytest.Pytester, tag: str, saves: list[str]
) -> None:
    pytester.makepyfile(
        """
        from pytest_imagecheck import assert_no_secrets, assert_size_within, read_cuda_facts

        def test_cuda(image):
            assert read_cuda_facts(image).torch.cuda == "13.0"

        def test_size(image):
            assert_size_within(image, wasted="1MB")

        def test_secrets(image):
            assert_no_secrets(image, accept={"file:/app/.env": "test fixture"})
        """
    )
    pytester.runpytest(f"--image={tag}").assert_outcomes(passed=3)
    assert len(saves) == 1


#: A fresh interpreter that imports the size check alone, then the other two after its read.
FRESH_SESSION = """
import sys
from pytest_imagecheck.checks.size import assert_size_within
from pytest_imagecheck.engine import Engine, connect

saves = []
real_save = Engine.save

def counting_save(self, image_id):
    saves.append(image_id)
    yield from real_save(self, image_id)

Engine.save = counting_save
image = Engine(connect(), "tests-layers-once").image(sys.argv[1])
assert_size_within(image, wasted="1MB")
from pytest_imagecheck.checks.secrets import find_secrets
from pytest_imagecheck.cuda import read_cuda_facts
print([f.id for f in find_secrets(image)], read_cuda_facts(image).torch.cuda, len(saves))
"""


@pytest.fixture(scope="module")
def key_tag(
    client: docker.DockerClient,
    busybox: str,
    worker_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """An image with a private key at /opt/app/signing (a name that says nothing) and 64 KiB
    of wasted bytes."""
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = tmp_path_factory.mktemp("layers-once-key")
    (context / "signing").write_bytes(key)
    (context / "Dockerfile").write_text(
        f"FROM {busybox}\nCOPY signing /opt/app/signing\n"
        "RUN dd if=/dev/zero of=/opt/app/blob bs=1K count=64\nRUN rm /opt/app/blob\n"
    )
    tag = f"imagecheck-test/layers-once-key:1-{worker_id}"
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    yield tag
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(tag, noprune=True)


@pytest.mark.parametrize("order", [("size", "secrets"), ("secrets", "size")], ids="-then-".join)
def test_a_key_found_by_its_content_comes_from_the_one_shared_read(
    engine: Engine, key_tag: str, saves: list[str], order: tuple[str, str]
) -> None:
    image = engine.image(key_tag)
    seen = {check: outcome(check, image) for check in order}
    assert len(saves) == 1
    secrets, _ = seen["secrets"]
    assert isinstance(secrets, str)
    assert "file:/opt/app/signing (rule private-key) in layer " in secrets
    _, size_evidence = seen["size"]
    assert size_evidence[0].facts["wasted_bytes"] == 64 * KiB


def test_the_first_read_keeps_files_for_checks_not_imported_yet(tag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_SESSION, tag], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['file:/app/.env']", "13.0", "1"]


# --- the package facts share the same read -------------------------------------------------

#: RECIPE's layers on the Debian base (os-release, a real dpkg database, Python 3.11), with
#: the real six wheel unzipped into dist-packages as pip lays it out.
DEBIAN_RECIPE = """FROM {debian}
COPY {wheel} /tmp/
RUN mkdir -p /app /usr/local/cuda-13.0 {site}/torch \\
 && echo "DB_PASSWORD=Tr0ub4dor-and-3-horses" > /app/.env \\
 && echo '{{"cuda": {{"version": "13.0.96"}}}}' > /usr/local/cuda-13.0/version.json \\
 && printf "__version__ = '2.14.1+cu130'\\ncuda = '13.0'\\n" > {site}/torch/version.py \\
 && dd if=/dev/zero of=/app/model.bin bs=1K count=64 \\
 && python3 -m zipfile -e /tmp/{wheel} {site}/ && rm /tmp/{wheel}
RUN dd if=/dev/zero of=/app/model.bin bs=1K count=32
"""

#: Each package fact and check as a user calls it, beside the three above.
PACKAGE_CHECKS: dict[str, Callable[[ImageUnderTest], object]] = {
    **CHECKS,
    "os_release": lambda image: image.os_release,
    "packages": lambda image: (list(image.packages), image.packages.databases),
    "pythons": lambda image: image.pythons,
    "python_packages": lambda image: image.python_packages,
    "pip_consistent": assert_pip_consistent,
    "absent": lambda image: assert_absent(image, packages=["gcc"], commands=["gcc"]),
    "no_stray_files": assert_no_stray_files,
    "versions": lambda image: assert_versions(image, python="3.11", os="debian 12"),
    "installed_once": lambda image: assert_installed_once(image, "six"),
}


@pytest.fixture(scope="module")
def debian_tag(
    client: docker.DockerClient,
    debian: str,
    worker_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    wheel = fetch("six==1.16.0")
    context = tmp_path_factory.mktemp("layers-once-debian")
    (context / wheel.name).write_bytes(wheel.read_bytes())
    (context / "Dockerfile").write_text(
        DEBIAN_RECIPE.format(debian=debian, site=SITE, wheel=wheel.name)
    )
    tag = f"imagecheck-test/layers-once-debian:1-{worker_id}"
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    yield tag
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(tag, noprune=True)


def package_outcome(check: str, image: ImageUnderTest) -> tuple[object, list[Evidence]]:
    with collecting() as evidence:
        try:
            result = PACKAGE_CHECKS[check](image)
        except AssertionError as failure:
            result = f"failed: {failure}"
    return result, evidence


@pytest.fixture(scope="module")
def debian_alone(engine: Engine, debian_tag: str) -> dict[str, tuple[object, list[Evidence]]]:
    """Each check's outcome on an image object of its own."""
    return {check: package_outcome(check, engine.image(debian_tag)) for check in PACKAGE_CHECKS}


def test_the_package_facts_find_what_the_debian_image_holds(
    debian_alone: dict[str, tuple[object, list[Evidence]]],
) -> None:
    release, _ = debian_alone["os_release"]
    assert getattr(release, "id", None) == "debian"
    (packages, databases), _ = debian_alone["packages"]  # type: ignore[misc]
    assert len(packages) > 50 and [db.path for db in databases] == ["/var/lib/dpkg/status"]
    python_packages, _ = debian_alone["python_packages"]
    assert [(p.name, p.version, p.location) for p in python_packages] == [  # type: ignore[attr-defined]
        ("six", "1.16.0", SITE)
    ]
    for check in ("pip_consistent", "absent", "versions", "installed_once"):
        assert debian_alone[check][0] is None, check
    stray, _ = debian_alone["no_stray_files"]
    assert isinstance(stray, str) and "/var/lib/apt/lists: apt's package lists" in stray
    size, _ = debian_alone["size"]
    assert size is None


@pytest.mark.parametrize("first", list(PACKAGE_CHECKS))
def test_whichever_fact_or_check_reads_first_streams_the_image_once_for_all(
    engine: Engine,
    debian_tag: str,
    debian_alone: dict[str, tuple[object, list[Evidence]]],
    saves: list[str],
    first: str,
) -> None:
    image = engine.image(debian_tag)
    order = [first, *(check for check in PACKAGE_CHECKS if check != first)]
    seen = {check: package_outcome(check, image) for check in order}
    assert len(saves) == 1
    assert seen == debian_alone


def test_package_criteria_in_yaml_stream_the_image_once(
    pytester: pytest.Pytester, debian_tag: str, saves: list[str]
) -> None:
    pytester.makefile(
        ".yaml",
        imagecheck="""version: 1
criteria:
  - check: versions
    python: "3.11"
  - check: size
    wasted: 1MB
  - check: pip_consistent
  - check: absent
    packages: [gcc]
  - check: installed_once
    package: six
  - check: no_stray_files
  - check: no_secrets
""",
    )
    result = pytester.runpytest(f"--image={debian_tag}")
    result.assert_outcomes(passed=5, failed=2)  # apt's lists of the base, and the .env
    assert len(saves) == 1


#: A fresh interpreter: the size check alone, then the package facts after its read.
FRESH_PACKAGES = """
import sys
from pytest_imagecheck.checks.size import assert_size_within
from pytest_imagecheck.engine import Engine, connect

saves = []
real_save = Engine.save

def counting_save(self, image_id):
    saves.append(image_id)
    yield from real_save(self, image_id)

Engine.save = counting_save
image = Engine(connect(), "tests-layers-once").image(sys.argv[1])
assert_size_within(image, wasted="1MB")
from pytest_imagecheck.checks.packages import assert_pip_consistent
assert_pip_consistent(image)
print(image.os_release.id, image.packages.get("libc6").name, image.python_packages[0].name,
      len(saves))
"""


def test_a_check_imported_after_the_first_read_is_served_from_it(
    debian_tag: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PACKAGES, debian_tag],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["debian", "libc6", "six", "1"]
