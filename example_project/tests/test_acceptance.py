"""Acceptance criteria of the example service, as ordinary pytest tests.

Run from the repository root:
    pytest --build-context=example_project --image=autovoice:latest example_project/tests
"""

from pytest_imagecheck import (
    assert_endpoint_ready,
    assert_healthcheck,
    assert_healthy,
    assert_no_secrets,
    assert_non_root,
    assert_size_within,
)


def test_runs_as_non_root(image, container):
    assert_non_root(image, container=container)


def test_healthcheck_is_configured(image, dockerfile):
    assert_healthcheck(
        image,
        interval="<=30s",
        timeout="10s",
        start_period="40s",
        retries=3,
        test="/health",
        dockerfile=dockerfile,
    )


def test_exposes_only_the_service_port(image):
    assert image.exposed_ports == ["5000/tcp"]


def test_health_answers_200(container):
    assert_endpoint_ready(container, "/health", json={"status": "ok"})


def test_engine_reports_healthy(container):
    assert_healthy(container)


def test_image_is_within_its_size_budget(image):
    assert_size_within(image, total="10MB", wasted="1MB")


def test_carries_no_secrets(image):
    assert_no_secrets(image)
