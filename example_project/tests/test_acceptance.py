"""AutoVoice acceptance criteria, as ordinary pytest tests.

Each test replaces a line of a hand-written validation report with evidence measured on the
real images. The images are a family (``../imagecheck.yaml``): ``base`` (the app base),
``cpu`` and ``cuda`` (the service built on it, without and with CUDA). A test that uses the
image runs once per member (``test_x[cpu]``); ``@pytest.mark.images`` keeps the ones about a
running service to the services. Run from the repository root (scripts/run-example does,
with the build args):

    pytest --family=example_project/imagecheck.yaml \
        --build-arg BASE_DIGEST=sha256:... example_project/tests
"""

import pytest

from pytest_imagecheck import (
    assert_base_images_pinned,
    assert_built_from,
    assert_cuda_torch_match,
    assert_endpoint_ready,
    assert_healthcheck,
    assert_healthy,
    assert_no_secrets,
    assert_non_root,
    assert_size_within,
    container_fixture,
)

#: The members that run as a service (the base is built on, never run).
services = pytest.mark.images("cpu", "cuda")

#: Size budgets by member: the CUDA build carries the CUDA libraries (and torch, with --cuda).
SIZE_BUDGETS = {"base": "250MB", "cpu": "250MB", "cuda": "2.5GB"}

#: A container of the service, hardened: a fixture with its run options, so the plugin starts
#: it ahead of the test (the service loads its model meanwhile), as it does the session's
#: ``container``.
hardened_container = container_fixture(
    read_only=True,
    tmpfs={"/tmp": ""},
    cap_drop=["ALL"],
    security_opt=["no-new-privileges"],
)


@services
def test_runs_as_non_root(image, container):
    """Claim: "runs as non-root". Checked in the config, /etc/passwd, PID 1 and an exec."""
    assert_non_root(image, container=container)


@services
def test_healthcheck_is_configured(image, dockerfile):
    """Claim: "healthcheck: 30s interval, 10s timeout, 40s start period, 3 retries"."""
    assert_healthcheck(
        image,
        interval="30s",
        timeout="10s",
        start_period="40s",
        retries=3,
        test="/health",
        dockerfile=dockerfile,
    )


def test_base_images_are_pinned_by_digest(dockerfile):
    """Claim: "base images pinned by digest": the app base's FROM by digest, the services'
    FROM the app base built in this session."""
    assert_base_images_pinned(dockerfile)


def test_image_is_built_from_its_base(image, dockerfile):
    """The FROM is really what the image was built on (layer diff IDs): the pinned registry
    base for the app base, the app base for the services."""
    assert_built_from(image, dockerfile.external_base())


@services
def test_exposes_only_the_service_port(image):
    assert image.exposed_ports == ["5000/tcp"]


@services
def test_health_and_liveness_answer_200(container):
    assert_endpoint_ready(container, "/health", json={"status": "ok"})
    assert_endpoint_ready(container, "/health/live", json={"status": "alive"})


@services
def test_ready_once_the_model_is_loaded(container):
    """Claim: "/health/ready answers 200": it answers 503 while the model loads."""
    assert_endpoint_ready(container, "/health/ready", json={"status": "ready"}, timeout="60s")


@services
def test_healthcheck_passes(container):
    """Claim: "health checks verified": by running the HEALTHCHECK as the engine does (or the
    engine's own status, whichever comes first), not by reading it."""
    assert_healthy(container)


@services
def test_read_only_root_filesystem_compatible(hardened_container):
    assert_endpoint_ready(
        hardened_container, "/health/ready", json={"status": "ready"}, timeout="60s"
    )


def test_within_the_size_budget(image, imagecheck_member):
    """Claim: "2.3 GB < 2.5 GB budget" (the CUDA build); the others have no ML layer."""
    assert_size_within(image, total=SIZE_BUDGETS[imagecheck_member], wasted="5MB")


@pytest.mark.images("cuda")
def test_cuda_runtime_matches_torch(image):
    """Claim: "CUDA 13.0 matches torch". Read from the image's files: no GPU needed."""
    layer = image.labels.get("org.autovoice.ml")
    if layer == "cuda-runtime":
        pytest.skip(
            "this build has the CUDA 13.0 runtime but no torch (its CUDA is checked by "
            "imagecheck.yaml's cuda_torch): scripts/run-example --cuda adds torch"
        )
    assert_cuda_torch_match(image, cuda="13.0", torch="2.14", strict_minor=True)


def test_carries_no_secrets(image):
    assert_no_secrets(image)
