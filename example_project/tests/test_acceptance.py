"""Acceptance criteria of the example service, as ordinary pytest tests.

Run from the repository root:
    pytest --build-context=example_project --image=autovoice:latest example_project/tests
"""

from datetime import timedelta

import requests


def test_runs_as_a_named_non_root_user(image):
    assert image.user == "svc"


def test_runs_as_that_user_at_runtime(container):
    assert container.exec("id -u").stdout.strip() == "1000"


def test_healthcheck_is_configured(image):
    assert image.healthcheck is not None
    assert image.healthcheck.interval <= timedelta(seconds=30)
    assert image.healthcheck.timeout == timedelta(seconds=10)
    assert image.healthcheck.start_period == timedelta(seconds=40)
    assert image.healthcheck.retries == 3


def test_exposes_only_the_service_port(image):
    assert image.exposed_ports == ["5000/tcp"]


def test_health_answers_200(container):
    answer = requests.get(container.url(5000, "/health"), timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_image_is_within_its_size_budget(image):
    assert image.size < 10_000_000
