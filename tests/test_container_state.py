"""Verdicts about containers read their state first: a container that died is reported by its
exit code and log tail, a refused connection is the service's (never the engine's), and an
image for another CPU names both platforms."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from pytest_imagecheck import assert_endpoint_ready
from pytest_imagecheck.engine import Engine, new_session_id
from pytest_imagecheck.errors import ContainerFailed
from tests import wheels
from tests.conftest import leftovers, wait_for

#: An entrypoint that prints its complaint and exits at once, as a service missing its config.
EXITS_AT_ONCE = """FROM {busybox}
EXPOSE 8000
ENTRYPOINT ["sh", "-c", "echo 'fatal: DATABASE_URL is not set'; exit 3"]
"""
#: A web service that listens only after 4 s, as one loading a model.
LISTENS_LATE = """FROM {busybox}
RUN mkdir -p /srv && echo hello > /srv/index.html
EXPOSE 8000
CMD ["sh", "-c", "echo loading; sleep 4; exec httpd -f -p 8000 -h /srv"]
"""


@pytest.fixture
def engine(client: docker.DockerClient) -> Iterator[Engine]:
    """An engine of a session of its own, cleaned when the test ends."""
    made = Engine(client, new_session_id())
    yield made
    made.cleanup()


def _exited(container) -> bool:
    return container.stopped() is not None


def test_dead_container_is_reported_by_exit_code_not_as_an_unpublished_port(
    engine: Engine, build_image: Callable[..., str], busybox: str
) -> None:
    # The engine unbinds a stopped container's ports: asking for one must not blame EXPOSE.
    image = engine.image(build_image(EXITS_AT_ONCE.format(busybox=busybox)))
    container = engine.run(image, entrypoint=["sh", "-c", "sleep 0.5; echo bye now; exit 3"])
    assert wait_for(lambda: _exited(container), timeout=20)
    with pytest.raises(ContainerFailed) as failure:
        container.url(8000, "/health")
    message = str(failure.value)
    assert "exited with code 3 before port 8000/tcp could be reached" in message
    assert "bye now" in message
    assert "not published" not in message and "EXPOSE" not in message


def test_entrypoint_that_exits_at_once_fails_endpoint_wait_with_exit_code_every_time(
    engine: Engine, build_image: Callable[..., str], busybox: str
) -> None:
    # The field report: run_container(), then assert_endpoint_ready; about one try in ten
    # said "port 8000/tcp is not published". Each try must give the exit code and log tail.
    image = engine.image(build_image(EXITS_AT_ONCE.format(busybox=busybox)))
    for _ in range(10):
        with pytest.raises((ContainerFailed, AssertionError)) as failure:
            container = engine.run(image)
            try:
                assert_endpoint_ready(container, "/health", timeout="30s")
            finally:
                engine.remove(container)
        message = str(failure.value)
        assert "exited with code 3" in message, message
        assert "fatal: DATABASE_URL is not set" in message, message
        assert "not published" not in message


def test_reading_a_file_of_a_removed_container_says_it_was_removed(
    engine: Engine, build_image: Callable[..., str], busybox: str, client: docker.DockerClient
) -> None:
    # The engine's archive API answers 404 for a missing container too: not "no such file".
    image = engine.image(build_image(LISTENS_LATE.format(busybox=busybox)))
    container = engine.run(image)
    client.api.remove_container(container.id, force=True)
    with pytest.raises(ContainerFailed, match=r"was removed while /srv/index\.html was read"):
        container.read_file("/srv/index.html")


def test_exec_in_a_container_that_stopped_reports_exit_code_and_log_tail(
    engine: Engine, build_image: Callable[..., str], busybox: str
) -> None:
    image = engine.image(build_image(EXITS_AT_ONCE.format(busybox=busybox)))
    container = engine.run(image, entrypoint=["sh", "-c", "sleep 0.5; echo going; exit 5"])
    assert wait_for(lambda: _exited(container), timeout=20)
    with pytest.raises(ContainerFailed) as failure:
        container.exec(["id", "-u"])
    assert "exited with code 5 before ['id', '-u'] could run" in str(failure.value)
    assert "going" in str(failure.value)


# A refused or reset connection to a container's port is the service's, not the engine's.
PLAIN_REQUEST = """
import time
import requests

def test_plain_request_before_the_service_listens(container):
    requests.get(container.url(8000, "/"), timeout=5)

def test_request_after_the_container_exited(run_container):
    c = run_container(entrypoint=["sh", "-c", "sleep 1; echo goodbye; exit 3"])
    url = c.url(8000, "/")
    time.sleep(3)
    requests.get(url, timeout=5)

def test_request_to_a_port_of_no_container():
    requests.get("http://127.0.0.1:9/", timeout=5)
"""


def test_connection_refused_by_a_service_is_blamed_on_the_service_with_its_state(
    pytester: pytest.Pytester, build_image: Callable[..., str], busybox: str, client
) -> None:
    image = build_image(LISTENS_LATE.format(busybox=busybox))
    pytester.makepyfile(PLAIN_REQUEST)
    result = pytester.runpytest(f"--image={image}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert "stopped answering" not in out and "Docker engine" not in out
    # The session container is running but not listening yet.
    result.stdout.re_match_lines(
        [
            r"test_connection_refused_by_a_service_is_blamed_on_the_service_with_its_state.py:5: "
            r"GET http://127\.0\.0\.1:\d+/: .+: the service in container imagecheck-\S+ "
            r"\(8000/tcp\) closed the connection without an answer; the container is running: "
            r"a service that is still starting refuses or resets connections.*",
        ]
    )
    result.stdout.fnmatch_lines(["*last log lines:", "*  loading"])
    # The run_container one exited after its URL was handed out.
    result.stdout.re_match_lines(
        [
            r".*GET http://127\.0\.0\.1:\d+/: .+: the service in container imagecheck-\S+ "
            r"\(8000/tcp\) exited with code 3; last log lines:",
        ]
    )
    result.stdout.fnmatch_lines(["*  goodbye"])
    # A port that is no container's: requests' own error, blamed on nobody else.
    result.stdout.fnmatch_lines(["*ConnectionError*127.0.0.1*port=9*"])
    assert leftovers(client, os.getpid()) == []


# An image built for another CPU fails with both platforms named.
def _foreign_machine(client: docker.DockerClient) -> tuple[str, str]:
    """``(docker arch, manylinux machine)`` of a CPU other than the engine's."""
    return ("arm64", "aarch64") if client.version()["Arch"] == "amd64" else ("amd64", "x86_64")


@pytest.fixture(scope="module")
def foreign_binary(client: docker.DockerClient) -> Path:
    """A real executable for another CPU: ninja, from its PyPI wheel for that machine."""
    _, machine = _foreign_machine(client)
    wheel = wheels.fetch("ninja==1.13.2", platform=machine)
    folder = Path(tempfile.mkdtemp())
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/scripts/ninja"))
        (folder / "ninja").write_bytes(archive.read(name))
    (folder / "ninja").chmod(0o755)
    yield folder / "ninja"
    shutil.rmtree(folder)


def _build(client: docker.DockerClient, binary: Path, dockerfile: str, platform: str) -> str:
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        tar.add(binary, "ninja")
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    context.seek(0)
    image, _ = client.images.build(
        fileobj=context, custom_context=True, platform=platform, rm=True, forcerm=True, nocache=True
    )
    return str(image.id)


def test_image_for_another_cpu_names_the_image_platform_and_the_engines(
    engine: Engine, client: docker.DockerClient, foreign_binary: Path
) -> None:
    arch, _ = _foreign_machine(client)
    ours = f"linux/{client.version()['Arch']}"
    dockerfile = 'FROM scratch\nCOPY ninja /ninja\nENTRYPOINT ["/ninja"]\n'
    image_id = _build(client, foreign_binary, dockerfile, f"linux/{arch}")
    try:
        image = engine.image(image_id)
        assert image.architecture == arch
        with pytest.raises(ContainerFailed) as failure:
            engine.run(image)
        message = str(failure.value)
        assert f"is built for linux/{arch} but the engine runs {ours}" in message
        assert f"docker build --platform {ours}" in message
    finally:
        client.images.remove(image_id, force=True, noprune=True)


def test_foreign_binary_in_an_image_of_the_engines_platform_blames_the_binary(
    engine: Engine, client: docker.DockerClient, foreign_binary: Path
) -> None:
    ours = f"linux/{client.version()['Arch']}"
    dockerfile = 'FROM scratch\nCOPY ninja /ninja\nENTRYPOINT ["/ninja"]\n'
    image_id = _build(client, foreign_binary, dockerfile, ours)
    try:
        with pytest.raises(ContainerFailed) as failure:
            engine.run(engine.image(image_id))
        message = str(failure.value)
        assert f"is for {ours}, as the engine, but the program it starts is not a binary" in message
    finally:
        client.images.remove(image_id, force=True, noprune=True)


def test_container_dying_during_the_wait_ends_it_with_the_exit_code(
    engine: Engine, build_image: Callable[..., str], busybox: str
) -> None:
    # Not a timeout after 60 s: the wait ends with the exit code once the container died.
    image = engine.image(build_image(EXITS_AT_ONCE.format(busybox=busybox)))
    container = engine.run(image, entrypoint=["sh", "-c", "sleep 1; echo late death; exit 4"])
    with pytest.raises((AssertionError, ContainerFailed)) as failure:
        assert_endpoint_ready(container, "/health", timeout="60s")
    assert "exited with code 4" in str(failure.value)
    assert "late death" in str(failure.value)


# A test whose container is dead did not pass, however little it asked of it.
DIES_WITH_TESTS = """
import time
import pytest

def test_session_container_only(container):
    pass

@pytest.mark.parametrize("i", range(5))
def test_run_container(run_container, i):
    run_container()

def test_stopped_on_purpose_passes(run_container):
    c = run_container(entrypoint=["sh", "-c", "sleep 60"])
    c.stop(timeout=1)
"""


def test_container_that_exits_at_once_never_passes_a_test(
    pytester: pytest.Pytester, build_image: Callable[..., str], busybox: str, client
) -> None:
    image = build_image(EXITS_AT_ONCE.format(busybox=busybox))
    pytester.makepyfile(DIES_WITH_TESTS)
    for _ in range(3):
        result = pytester.runpytest(f"--image={image}", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1, failed=5, errors=1)
        assert result.stdout.str().count("exited with code 3") >= 6
        result.stdout.fnmatch_lines(["*fatal: DATABASE_URL is not set*"])
    assert leftovers(client, os.getpid()) == []


def test_container_that_dies_during_a_test_fails_it(
    pytester: pytest.Pytester, build_image: Callable[..., str], busybox: str
) -> None:
    image = build_image(
        f"FROM {busybox}\nEXPOSE 8000\n"
        'ENTRYPOINT ["sh", "-c", "sleep 1; echo worker crashed; exit 9"]\n'
    )
    pytester.makepyfile(
        """
        import time

        def test_sleeps(container):
            time.sleep(3)
        """
    )
    result = pytester.runpytest(f"--image={image}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*container imagecheck-* exited with code 9 during the test; last log lines:*"]
    )
    result.stdout.fnmatch_lines(["*worker crashed*"])


def test_testinfra_on_a_dead_container_says_it_stopped(
    pytester: pytest.Pytester, build_image: Callable[..., str], busybox: str
) -> None:
    image = build_image(f'FROM {busybox}\nENTRYPOINT ["sh", "-c", "sleep 1; echo bye; exit 4"]\n')
    pytester.makepyfile(
        """
        import time

        def test_host(run_container):
            c = run_container()
            time.sleep(2.5)
            c.host.file("/etc/passwd").exists
        """
    )
    result = pytester.runpytest(f"--image={image}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*exited with code 4 before testinfra could use it*"])
    assert "systeminfo" not in result.stdout.str()


# What the service did, told as it was: a read timeout or a non-HTTP answer is no refusal.
def test_service_that_takes_the_connection_is_not_said_to_refuse_it(
    pytester: pytest.Pytester, build_image: Callable[..., str], busybox: str
) -> None:
    image = build_image(
        f"FROM {busybox}\nEXPOSE 8000 8001\n"
        'ENTRYPOINT ["sh", "-c", "sleep 300 | nc -l -p 8000 & '
        'while true; do echo SSH-2.0-OpenSSH_9.2 | nc -l -p 8001; done"]\n'
    )
    pytester.makepyfile(
        """
        import time
        import requests

        def test_hangs(container):
            time.sleep(0.5)
            requests.get(container.url(8000, "/"), timeout=2)

        def test_not_http(container):
            requests.get(container.url(8001, "/"), timeout=5)
        """
    )
    result = pytester.runpytest(f"--image={image}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*(8000/tcp) took the connection but sent no answer within the timeout; "
            "the container is running; last log lines:*"
        ]
    )
    result.stdout.fnmatch_lines(["*(8001/tcp) answered, but not with HTTP; the container is*"])
    assert "did not take the connection" not in result.stdout.str()


def test_secret_env_values_are_masked_in_failures_and_the_report(
    pytester: pytest.Pytester, build_image: Callable[..., str], busybox: str
) -> None:
    secret = "Zq8vLw3pXr7tKm2N"
    image = build_image(
        f"FROM {busybox}\nENV TTS_PORT=8205 DB_PASSWORD={secret}\n"
        'ENTRYPOINT ["sh", "-c", "sleep 300"]\n'
    )
    pytester.makepyfile(
        """
        def test_plain_assert(image):
            assert image.env["DB_PASSWORD"] == "wrong"

        def test_exec_output(container):
            r = container.exec(["sh", "-c", "echo $DB_PASSWORD; exit 3"])
            assert r.exit_code == 0, r.stdout
        """
    )
    result = pytester.runpytest(
        f"--image={image}", "--junitxml=report.xml", "--imagecheck-report=r.md"
    )
    result.assert_outcomes(failed=2)
    for text in (
        result.stdout.str(),
        (pytester.path / "report.xml").read_text(),
        (pytester.path / "r.md").read_text(),
    ):
        assert secret not in text
        assert "Zq8v… (16 chars)" in text or "*** (16 chars)" in text


def test_secret_env_values_are_masked_in_captured_output_of_every_test(
    pytester: pytest.Pytester, build_image: Callable[..., str], busybox: str
) -> None:
    # junit's system-out is written from the teardown report, whatever the test's outcome.
    secret = "Zq8vLw3pXr7tKm2N"
    image = build_image(
        f"FROM {busybox}\nENV DB_PASSWORD={secret}\n"
        'ENTRYPOINT ["sh", "-c", "echo DB_PASSWORD is $DB_PASSWORD; sleep 300"]\n'
    )
    pytester.makepyfile(
        """
        import time

        def test_passing_prints_the_logs(container):
            time.sleep(0.5)
            print(container.logs())

        def test_failing_prints_the_logs(container):
            print(container.logs())
            assert False
        """
    )
    result = pytester.runpytest(
        f"--image={image}", "--junitxml=report.xml", "-o", "junit_logging=system-out", "-rA"
    )
    result.assert_outcomes(passed=1, failed=1)
    junit = (pytester.path / "report.xml").read_text()
    assert "DB_PASSWORD is" in junit
    for text in (result.stdout.str(), junit):
        assert secret not in text


@pytest.mark.parametrize(
    "said",
    [
        b"OCI runtime exec failed: exec failed: cannot exec in a stopped state: unknown",
        b"OCI runtime exec failed: exec failed: cannot exec in a deleted state: unknown",
        b"OCI runtime exec failed: task 3f2a not found: not found",
        b"OCI runtime exec failed: exec failed: unable to start container process: error "
        b"executing setns process: exit status 1: unknown",
    ],
)
def test_each_runtime_wording_of_an_exec_into_a_stopped_container_is_known(said: bytes) -> None:
    """runc's and containerd's words for an exec that raced the container's stop (seen on
    engine 20.10 under load): each makes the exec a stopped container's, never a command's
    exit code 126."""
    from pytest_imagecheck.container import _EXEC_IN_STOPPED

    assert _EXEC_IN_STOPPED.search(said)
