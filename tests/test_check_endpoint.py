"""assert_endpoint_ready and assert_healthy against a real Python service, and hardened runs."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_imagecheck import assert_endpoint_ready, assert_healthy
from pytest_imagecheck.checks.endpoint import Answer, fetch
from pytest_imagecheck.container import RunningContainer
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import collecting
from tests import images
from tests.conftest import leftovers

SLOW = "imagecheck-test/slow:1"
ROUTES = "imagecheck-test/routes:1"
#: The secret ENV value tests/images/routes carries, and how messages show it.
SECRET, MASKED = "Zq8vLw3pXr7tKm2N", "Zq8v… (16 chars)"


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


@pytest.fixture(scope="module")
def routes_image(client, debian: str) -> str:
    """Tag of ``tests/images/routes``: each path answers as ROUTES says; ENV DB_PASSWORD."""
    return images.build(client, images.HERE / "routes", ROUTES)


@pytest.fixture
def routes(engine: Engine, routes_image: str) -> Iterator[Callable[..., RunningContainer]]:
    """Start the routes service: ``routes({"/health": [302, {"Location": "/x"}, ""]})``."""
    started: list[RunningContainer] = []

    def start(answers: dict[str, list[object]]) -> RunningContainer:
        container = engine.run(engine.image(routes_image), env={"ROUTES": json.dumps(answers)})
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
    assert (
        f"container {container.name} of {container.image.ref} exited with code 3 "
        "before /health/ready answered"
    ) in message
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
    """/old -> /new (relative Location) -> 200; /created is a 201 with a Location."""

    def do_GET(self) -> None:
        status, location = {"/old": (302, "/new"), "/created": (201, "/item/1")}.get(
            self.path, (200, None)
        )
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_fetch_returns_a_redirect_as_it_came_without_following_it() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert fetch(f"{base}/old", 5.0) == Answer(302, "ok", location="/new")
        assert fetch(f"{base}/created", 5.0) == Answer(201, "ok")  # not a redirect
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "location",
    [
        "/health/real",  # answers 200: a redirect followed would pass
        "http://127.0.0.1:1/nowhere",  # refused: a redirect followed would blame the service
    ],
)
def test_a_redirect_is_an_answer_shown_with_its_location(routes, location) -> None:
    container = routes(
        {
            "/health": [302, {"Location": location}, "<a href='elsewhere'>Found</a>"],
            "/health/real": [200, {}, '{"status": "ready"}'],
        }
    )
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_endpoint_ready(container, "/health", timeout="1s")
    message = str(failure.value)
    assert message.startswith(
        f"/health not ready after 1s: last answer 302 (Location: {location}) (expected 200; "
    )
    assert message.endswith(
        "a redirect is not followed; poll the path it points to, or expect status=302"
    )
    assert evidence[0].facts["final_location"] == location
    answer = assert_endpoint_ready(container, "/health", status=302)
    assert (answer.status, answer.location) == (302, location)


def test_a_secret_in_the_body_or_location_is_masked_in_message_and_evidence(routes) -> None:
    token = "ghp_" + "a1" * 18  # a credential format, in no ENV value
    container = routes(
        {
            "/health": [503, {}, '{"pw": "{DB_PASSWORD}"}'],
            # The secret straddles the cut of a long body: masked before the cut, so no more
            # of it shows than the mask's own prefix.
            "/long": [503, {}, json.dumps({"pad": "x" * 270, "pw": "{DB_PASSWORD}"})],
            "/login": [302, {"Location": "/sso?token={DB_PASSWORD}"}, ""],
            "/token": [503, {}, f"token {token}"],
        }
    )
    for path, shown, secret in (
        ("/health", f'{{"pw": "{MASKED}"}}', SECRET),
        ("/long", SECRET[:4], SECRET),
        ("/login", f"(Location: /sso?token={MASKED})", SECRET),
        ("/token", "token ghp_… (40 chars)", token),
    ):
        with collecting() as evidence, pytest.raises(AssertionError) as failure:
            assert_endpoint_ready(container, path, timeout="1s")
        facts = evidence[0].facts
        seen = f"{failure.value}\n{facts['final_body']}\n{facts['final_location']}"
        assert shown in seen, path
        assert secret[:5] not in seen, path
    # The answer a test gets back is the service's own.
    answer = assert_endpoint_ready(container, "/health", status=503)
    assert SECRET in answer.body


def test_endpoint_evidence_names_the_root_path_with_its_base_url(routes) -> None:
    container = routes({"/": [200, {}, "home"]})
    with collecting() as evidence:
        assert_endpoint_ready(container, "/")
    host, port = container.ports["8000/tcp"]
    assert evidence[0].facts["endpoint"] == f"/ on http://{host}:{port}"


def test_turned_unhealthy_says_a_shell_probe_never_ran_its_program(engine, build_image, busybox):
    # httpd answers 404 for /health, so polling goes on until the probe's verdict.
    image = engine.image(
        build_image(
            f"FROM {busybox}\nEXPOSE 8080\n"
            "HEALTHCHECK --interval=1s --timeout=1s --retries=1 "
            "CMD curl -f http://localhost:8080/ || exit 1\n"
            'ENTRYPOINT ["httpd", "-f", "-p", "8080", "-h", "/etc"]\n'
        )
    )
    container = engine.run(image)
    try:
        with pytest.raises(AssertionError) as failure:
            assert_endpoint_ready(container, "/health", timeout="120s")
    finally:
        engine.remove(container)
    assert (
        f"container {container.name} turned unhealthy before /health answered: its HEALTHCHECK "
        "probe (CMD-SHELL) could not run: its shell found no curl in the container (/bin/sh: "
        "curl: not found; exit 1), so the service itself was never probed; install curl in the "
        "image, or probe with a program the image has; last probes:\n"
    ) in str(failure.value)


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
        (
            "/health",
            {"timeout": 0},
            'timeout: 0s leaves no time to wait for an answer: give a duration above 0, e.g. "60s"',
        ),
        ("/health", {"timeout": "0ms"}, "timeout: 0s leaves no time to wait for an answer"),
    ],
)
def test_bad_arguments_are_one_line_errors(service, path, kwargs, message) -> None:
    with pytest.raises(ImageCheckError, match=message):
        assert_endpoint_ready(service(), path, **kwargs)


def test_healthy_refuses_a_zero_timeout(service) -> None:
    with pytest.raises(ImageCheckError) as refused:
        assert_healthy(service(), timeout="0s")
    assert str(refused.value) == (
        'timeout: 0s leaves no time to wait for health: give a duration above 0, e.g. "60s"'
    )


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
        assert_healthy(service(), wait_for_engine=True)
    assert evidence[0].facts["health_status"] == "healthy"
    assert evidence[0].facts["verdict_by"] == "engine"


SLOW_PROBES = """FROM {busybox}
USER 1000
HEALTHCHECK --interval=5m --timeout=3s CMD ["/bin/sh", "-c", "test $(id -u) = 1000"]
CMD ["sleep", "600"]
"""


def test_healthy_runs_the_healthcheck_itself_whatever_the_interval(
    engine, build_image, busybox
) -> None:
    # The engine runs its first probe 5 minutes after the start: only the probe run by the
    # plugin, as the container's user (uid 1000), can give a verdict within the timeout.
    container = engine.run(engine.image(build_image(SLOW_PROBES.format(busybox=busybox))))
    try:
        with collecting() as evidence:
            assert_healthy(container, timeout="60s")
        facts = evidence[0].facts
        assert (facts["verdict_by"], facts["health_status"]) == ("probe", "starting")
        assert facts["own_probes"] >= 1
        with pytest.raises(AssertionError) as failure:
            assert_healthy(container, timeout="3s", wait_for_engine=True)
        assert str(failure.value).startswith(
            f"container {container.name} not healthy after 3s: health is starting"
        )
    finally:
        engine.remove(container)


def test_a_shell_form_probe_runs_through_bin_sh_as_the_engines_does(
    engine, build_image, busybox
) -> None:
    """The engine runs CMD-SHELL through the container's Config.Shell, which it does not
    copy from the image's SHELL: /bin/sh -c. With no /bin/sh the image's SHELL cannot rescue
    the probe, so it is not healthy, here as for the engine (a false pass before)."""
    text = (
        f"FROM {busybox}\n"
        'RUN ["/bin/busybox", "rm", "/bin/sh"]\n'
        'SHELL ["/bin/busybox", "sh", "-c"]\n'
        "HEALTHCHECK --interval=1s --retries=1 CMD test -d /proc/self\n"
        'CMD ["sleep", "600"]\n'
    )
    container = engine.run(engine.image(build_image(text)))
    try:
        with pytest.raises(AssertionError) as failure:
            assert_healthy(container, timeout="20s")
        assert "healthy" not in (container.health or "").replace("unhealthy", "")
        assert container.health == "unhealthy"  # the engine's own verdict, for comparison
        assert "/bin/sh" in str(failure.value)
    finally:
        engine.remove(container)


def test_a_probe_that_hangs_does_not_stretch_the_wait(engine, build_image, busybox) -> None:
    """The plugin's own probe never blocks the wait past its timeout, and its output is
    in the message."""
    text = (
        f"FROM {busybox}\n"
        'HEALTHCHECK --interval=5m --timeout=30s CMD ["sleep", "100000"]\n'
        'CMD ["sleep", "600"]\n'
    )
    container = engine.run(engine.image(build_image(text)))
    try:
        started = time.monotonic()
        with pytest.raises(AssertionError) as failure:
            assert_healthy(container, timeout="3s")
        assert time.monotonic() - started < 8
        message = str(failure.value)
        assert "the plugin ran the HEALTHCHECK (sleep 100000) once, and no probe finished" in (
            message
        )
    finally:
        engine.remove(container)


def test_a_failing_own_probe_is_in_the_message(engine, build_image, busybox) -> None:
    text = f'FROM {busybox}\nHEALTHCHECK --interval=5m CMD ["cat", "/nope"]\nCMD ["sleep", "600"]\n'
    container = engine.run(engine.image(build_image(text)))
    try:
        with pytest.raises(AssertionError) as failure:
            assert_healthy(container, timeout="2s")
        message = str(failure.value)
        assert "the plugin ran the HEALTHCHECK (cat /nope)" in message
        assert "last: exit code 1, cat: can't open '/nope': No such file or directory" in message
    finally:
        engine.remove(container)


def test_a_probe_with_a_flood_of_output_keeps_4_kib(engine, build_image, busybox) -> None:
    text = (
        f"FROM {busybox}\n"
        "HEALTHCHECK --interval=5m --timeout=10s CMD head -c 50000000 /dev/zero | tr "
        '"\\\\0" x; exit 0\n'
        'CMD ["sleep", "600"]\n'
    )
    container = engine.run(engine.image(build_image(text)))
    try:
        with collecting() as evidence:
            assert_healthy(container, timeout="20s")
        assert evidence[0].facts["verdict_by"] == "probe"
    finally:
        engine.remove(container)


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
            "*exited with code 1*; last log lines:*",
            "*Read-only file system: '/srv/state'*",
        ]
    )
    assert leftovers(client, __import__("os").getpid()) == []
