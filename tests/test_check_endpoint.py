"""assert_endpoint_ready and assert_healthy against a real Python service, and hardened runs."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_imagecheck import assert_endpoint_ready, assert_healthy
from pytest_imagecheck.checks.endpoint import MAX_REDIRECTS, Answer, fetch
from pytest_imagecheck.container import RunningContainer
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import collecting
from tests import images
from tests.conftest import leftovers

SLOW = "imagecheck-test/slow:1"


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-endpoint")


@pytest.fixture
def service(engine: Engine, service_image: str) -> Iterator[Callable[..., RunningContainer]]:
    """Start the test service with env settings; removed after the test."""
    started: list[RunningContainer] = []

    def start(**options: object) -> RunningContainer:
        env = {k: str(v) for k, v in options.pop("env", {}).items()}  # type: ignore[union-attr]
        container = engine.run(engine.image(service_image), env=env, **options)  # type: ignore[arg-type]
        started.append(container)
        return container

    yield start
    for container in started:
        engine.remove(container)


@pytest.fixture(scope="module")
def slow_image(client, debian: str) -> str:
    """Tag of ``tests/images/slow``: every GET answers 200 after DELAY seconds (default 3)."""
    return images.build(client, images.HERE / "slow", SLOW)


@pytest.fixture
def slow(engine: Engine, slow_image: str) -> Iterator[Callable[..., RunningContainer]]:
    """Start the slow service with env settings (DELAY, TRICKLE); removed after the test."""
    started: list[RunningContainer] = []

    def start(**env: object) -> RunningContainer:
        container = engine.run(engine.image(slow_image), env={k: str(v) for k, v in env.items()})
        started.append(container)
        return container

    yield start
    for container in started:
        engine.remove(container)


def test_503_until_ready_service_passes_once_it_turns_200(service) -> None:
    container = service(env={"READY_AFTER": 2})
    with collecting() as evidence:
        answer = assert_endpoint_ready(container, "/health/ready", json={"status": "ready"})
    assert answer.status == 200
    facts = evidence[0].facts
    assert facts["attempts"] > 1
    assert facts["final_status"] == 200
    assert '"status": "ready"' in facts["final_body"]
    assert facts["time_to_ready"] is not None


def test_each_poll_inspects_the_container_only_after_a_wrong_answer(
    service, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = service(env={"READY_AFTER": 1})
    inspects = []
    real_reload = container._container.reload

    def reload() -> None:  # a counting spy: every call is a real inspect
        inspects.append(time.monotonic())
        real_reload()

    monkeypatch.setattr(container._container, "reload", reload)
    with collecting() as evidence:
        assert_endpoint_ready(container, "/health/ready", interval="100ms")
    attempts = evidence[0].facts["attempts"]
    assert attempts > 1
    # One inspect for the published port, one after each 503, none after the 200.
    assert len(inspects) == 1 + attempts - 1
    inspects.clear()
    assert_endpoint_ready(container, "/health/ready")
    assert len(inspects) == 1


def test_service_stuck_at_503_fails_with_the_last_body(service) -> None:
    container = service(env={"STUCK": 1})
    with pytest.raises(AssertionError) as failure:
        assert_endpoint_ready(container, "/health/ready", timeout="2s")
    assert str(failure.value).startswith(
        '/health/ready not ready after 2s: last answer 503 {"status": "not_ready", '
        '"components": {"model": "loading"}} (expected 200;'
    )


def test_json_must_be_a_nested_subset_and_status_may_be_a_set(service) -> None:
    container = service()
    assert_endpoint_ready(container, "/health/ready", json={"components": {"model": "loaded"}})
    assert_endpoint_ready(container, "/nope", status={404, 410})
    with pytest.raises(AssertionError, match=r'expected 200 with \{"components": \{"model": "gpu"'):
        assert_endpoint_ready(
            container, "/health/ready", json={"components": {"model": "gpu"}}, timeout="1s"
        )


def test_container_that_exits_fails_fast_with_exit_code_and_log_tail(service) -> None:
    container = service(env={"STUCK": 1, "EXIT_AFTER": 1})
    with pytest.raises(AssertionError) as failure:
        assert_endpoint_ready(container, "/health/ready", timeout="120s")
    message = str(failure.value)
    assert f"container {container.name} exited with code 3 before /health/ready answered" in message
    assert "fatal: model worker crashed" in message


def test_container_that_turns_unhealthy_fails_fast_with_the_probes(service) -> None:
    container = service(env={"STUCK": 1, "UNHEALTHY_AFTER": 0})
    with pytest.raises(AssertionError) as failure:
        assert_endpoint_ready(container, "/health/ready", timeout="120s")
    message = str(failure.value)
    assert f"container {container.name} turned unhealthy before /health/ready answered" in message
    assert "exit 1: " in message


def test_answer_slower_than_the_poll_interval_passes_within_the_timeout(slow) -> None:
    container = slow(DELAY=3)
    with collecting() as evidence:
        answer = assert_endpoint_ready(container, "/health", timeout="20s")
    assert answer.status == 200
    assert '"status": "ready"' in answer.body
    assert evidence[0].facts["request_timeout"] == "the time left"


def test_request_timeout_shorter_than_the_answer_fails_naming_both_timeouts(slow) -> None:
    container = slow(DELAY=3)
    with pytest.raises(AssertionError) as failure:
        assert_endpoint_ready(container, "/health", timeout="5s", request_timeout="1s")
    message = str(failure.value)
    assert message.startswith(
        "/health not ready after 5s (request timeout 1s): last attempt timed out after 1s "
        "waiting for the answer"
    )
    assert message.endswith("raise request_timeout if the service is slow to answer")


def test_slow_answer_past_the_timeout_fails_with_the_time_left_as_request_timeout(slow) -> None:
    container = slow(DELAY=30)
    with pytest.raises(AssertionError) as failure:
        assert_endpoint_ready(container, "/health", timeout="2s")
    assert str(failure.value).startswith(
        "/health not ready after 2s (request timeout: the time left): last attempt timed out "
    )


def test_body_that_trickles_past_the_timeout_fails_instead_of_passing_late(slow) -> None:
    container = slow(DELAY=0, TRICKLE=8)
    with pytest.raises(AssertionError) as failure:
        assert_endpoint_ready(container, "/health", timeout="2s")
    message = str(failure.value)
    assert message.startswith("/health not ready after 2s (request timeout: the time left): ")
    assert re.search(
        r"timed out after \S+ in the body of a 200 answer \(\d+ of 74 bytes came\)", message
    )


def test_hardened_yaml_criterion_takes_request_timeout(pytester, slow_image, client) -> None:
    pytester.makefile(
        ".yaml",
        imagecheck=(
            "criteria:\n"
            "  - check: hardened\n"
            "    name: slow answer\n"
            "    timeout: 20s\n"
            "  - check: hardened\n"
            "    name: request timeout too short\n"
            "    timeout: 5s\n"
            "    request_timeout: 1s\n"
        ),
    )
    result = pytester.runpytest(f"--image={slow_image}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*imagecheck.yaml:5: /health not ready after 5s (request timeout 1s): last attempt "
            "timed out after 1s waiting for the answer*"
        ]
    )
    assert leftovers(client, __import__("os").getpid()) == []


class _Redirects(BaseHTTPRequestHandler):
    """/old -> /new (relative Location) -> 200; /loop redirects to itself."""

    def do_GET(self) -> None:
        location = {"/old": "/new", "/loop": "/loop"}.get(self.path)
        self.send_response(302 if location else 200)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_redirects_are_followed_as_requests_followed_them() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert fetch(f"{base}/old", 5.0) == Answer(200, "ok")
        assert fetch(f"{base}/loop", 5.0).error == (
            f"more than {MAX_REDIRECTS} redirects, the last to {base}/loop"
        )
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_listening_reports_the_connection_error(service) -> None:
    container = service(entrypoint=["sleep", "60"])
    with pytest.raises(AssertionError, match=r"/health not ready after 1s: last answer connection"):
        assert_endpoint_ready(container, timeout="1s")


@pytest.mark.parametrize(
    ("path", "kwargs", "message"),
    [
        ("health", {}, "endpoint path 'health' must start with '/', e.g. '/health'"),
        ("/health", {"port": 9999}, "port 9999(/tcp)? is not published by"),
        ("/health", {"timeout": "30 seconds"}, 'bad duration "30 seconds"'),
        ("/health", {"request_timeout": "soon"}, 'request_timeout: bad duration "soon"'),
        ("/health", {"request_timeout": 0}, "request_timeout: 0s leaves no time for a request"),
    ],
)
def test_bad_arguments_are_one_line_errors(service, path, kwargs, message) -> None:
    with pytest.raises(ImageCheckError, match=message):
        assert_endpoint_ready(service(), path, **kwargs)


def test_several_exposed_ports_need_port_named(engine, build_image, service_image) -> None:
    image = engine.image(build_image(f"FROM {service_image}\nEXPOSE 9000\n"))
    container = engine.run(image)
    try:
        with pytest.raises(ImageCheckError, match=r"exposes 8000/tcp, 9000/tcp: pass port="):
            assert_endpoint_ready(container)
        assert_endpoint_ready(container, port=8000)
    finally:
        engine.remove(container)


def test_healthy_waits_for_the_engines_health_status(service) -> None:
    with collecting() as evidence:
        assert_healthy(service())
    assert evidence[0].facts["health_status"] == "healthy"


def test_unhealthy_fails_fast_with_the_health_log(service) -> None:
    container = service(env={"UNHEALTHY_AFTER": 0})
    with pytest.raises(AssertionError) as failure:
        assert_healthy(container, timeout="120s")
    message = str(failure.value)
    assert f"container {container.name} turned unhealthy (`python3 -c import urllib" in message
    assert "last probes:\n  exit 1: " in message
    assert "HTTP Error 500" in message


def test_healthy_without_healthcheck_fails_at_once(engine, busybox) -> None:
    container = engine.run(engine.image(busybox), command=["sleep", "60"])
    try:
        with pytest.raises(
            AssertionError, match=r"has no HEALTHCHECK, so the engine never reports"
        ):
            assert_healthy(container)
    finally:
        engine.remove(container)


def test_read_only_root_service_is_ready_with_a_tmpfs(pytester, service_image, client) -> None:
    pytester.makepyfile(
        """
        from pytest_imagecheck import assert_endpoint_ready

        HARDENED = dict(read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"],
                        security_opt=["no-new-privileges"])

        def test_ready_read_only(run_container):
            c = run_container(env={"WRITE_TO": "/tmp/state"}, **HARDENED)
            assert_endpoint_ready(c, "/health/ready")
            assert c.attrs["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]

        def test_write_outside_tmpfs_shows_in_the_log_tail(run_container):
            c = run_container(env={"WRITE_TO": "/srv/state"}, **HARDENED)
            assert_endpoint_ready(c, "/health/ready", timeout="20s")
        """
    )
    result = pytester.runpytest(f"--image={service_image}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*exited with code 1 before /health/ready answered; last log lines:*",
            "*Read-only file system: '/srv/state'*",
        ]
    )
    assert leftovers(client, __import__("os").getpid()) == []
