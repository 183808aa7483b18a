"""Faults, each on the real engine: what the session does, and that nothing labelled is left.

| fault                                        | what happens                                   |
| -------------------------------------------- | ---------------------------------------------- |
| the service crashes after it was ready       | the next test fails with exit code, log tail   |
| the healthcheck turns unhealthy mid-suite    | assert_healthy fails at once, with the probes  |
| the engine stops answering mid-session       | one-line error per test, no hang; next sweeps  |
| an xdist worker is killed                    | the controller removes what the worker left    |
| Ctrl-C during a build                        | the build process is stopped, nothing left     |
| two sessions at once on one image            | no name or port clash, neither removes others' |
| a container floods its logs                  | memory stays bounded, reports carry the tail   |
| the service prints a secret ENV value        | log tails in reports show it masked            |

(Entrypoints that exit at once, SIGINT, SIGTERM and failed builds: tests/test_cleanup.py and
tests/test_build.py.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import leftovers, wait_for

WAIT_FOR_GO = """
import time
from pathlib import Path

def wait_for_go():
    while not Path("go").exists():
        time.sleep(0.1)
"""


def test_service_crashing_after_ready_fails_the_next_test_with_its_log(
    pytester, service_image, build_image, client
) -> None:
    image = build_image(f"FROM {service_image}\nENV EXIT_AFTER=3\n")
    pytester.makepyfile(
        """
        import time
        from pytest_imagecheck import assert_endpoint_ready

        def test_ready(container):
            assert_endpoint_ready(container, "/health/ready")

        def test_later(container):
            time.sleep(4)
            container.exec("true")
        """
    )
    result = pytester.runpytest(f"--image={image}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*exited with code 3 before 'true' could run; last log lines:*",
            "*fatal: model worker crashed*",
        ]
    )
    assert leftovers(client, os.getpid()) == []


def test_healthcheck_turning_unhealthy_mid_suite_fails_fast(
    pytester, service_image, build_image, client
) -> None:
    image = build_image(f"FROM {service_image}\nENV UNHEALTHY_AFTER=10\n")
    pytester.makepyfile(
        """
        import time
        from pytest_imagecheck import assert_healthy

        def test_healthy_first(container):
            assert_healthy(container)

        def test_unhealthy_later(container):
            # the engine flips health after two failed probes: wait for that, then check
            deadline = time.monotonic() + 90
            while container.health != "unhealthy" and time.monotonic() < deadline:
                time.sleep(0.5)
            assert_healthy(container, timeout="120s")
        """
    )
    result = pytester.runpytest(f"--image={image}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*turned unhealthy (`python3 -c *`); last probes:*"])
    assert leftovers(client, os.getpid()) == []


class SocketProxy:
    """A Unix socket that forwards to the engine's, until :meth:`cut` closes everything."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        self.open: list[socket.socket] = []
        self.stalled = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.stalled.is_set():
                    time.sleep(0.1)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def stall(self, stalled: bool = True) -> None:
        """Hold everything sent either way from now on (an engine that takes requests and
        never answers), or let it through again."""
        if stalled:
            self.stalled.set()
        else:
            self.stalled.clear()

    def cut(self) -> None:
        self.server.close()
        self.path.unlink()
        for end in self.open:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


def test_engine_that_stops_answering_ends_the_session_with_one_line(
    pytester, inner_pytest, sample_image, client
) -> None:
    # Unix socket paths are limited to 108 bytes; pytester's paths can be longer.
    proxy = SocketProxy(Path(tempfile.mkdtemp(prefix="ic-", dir="/tmp")) / "engine.sock")
    pytester.makepyfile(
        WAIT_FOR_GO
        + """
def test_first(container):
    Path("started").write_text(container.name)

def test_after_the_engine_went(container):
    wait_for_go()
    container.exec("true")

def test_a_new_container(run_container):
    run_container()
"""
    )
    run = inner_pytest(f"--image={sample_image}", env={"DOCKER_HOST": f"unix://{proxy.path}"})
    assert wait_for(lambda: (pytester.path / "started").exists(), timeout=60)
    proxy.cut()
    (pytester.path / "go").touch()
    code, output = run.finish(timeout=120)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert output.count(f"Docker engine at unix://{proxy.path} stopped answering") >= 2, output
    assert "Traceback" not in output
    orphaned = leftovers(client, run.pid, wait=0)  # at once: another session may sweep it
    assert orphaned, "the container the lost engine could not remove"
    pytester.makepyfile("def test_sweep(docker_client):\n    pass\n")
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=1)
    assert leftovers(client, run.pid) == []


def test_engine_that_takes_requests_but_never_answers_ends_the_session_with_one_line(
    pytester, inner_pytest, sample_image, client
) -> None:
    proxy = SocketProxy(Path(tempfile.mkdtemp(prefix="ic-", dir="/tmp")) / "engine.sock")
    pytester.makepyfile(
        WAIT_FOR_GO
        + """
def test_first(container):
    Path("started").write_text(container.name)
    wait_for_go()
"""
    )
    run = inner_pytest(f"--image={sample_image}", env={"DOCKER_HOST": f"unix://{proxy.path}"})
    try:
        assert wait_for(lambda: (pytester.path / "started").exists(), timeout=60)
        proxy.stall()
        (pytester.path / "go").touch()
        # docker-py gives each request 60 s: the container's removal, then the session's sweep.
        code, output = run.finish(timeout=300)
    finally:
        proxy.stall(False)
    assert f"Docker engine at unix://{proxy.path} stopped answering (Read timed out" in output
    assert "Traceback" not in output, output
    assert code == pytest.ExitCode.OK, output
    pytester.makepyfile("def test_sweep(docker_client):\n    pass\n")
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=1)
    # The held removal reaches the engine once the proxy lets it through, maybe while the
    # sweep runs (which then finds the removal in progress).
    assert wait_for(lambda: leftovers(client, run.pid) == [], timeout=30)


def test_killed_xdist_worker_leaves_nothing(pytester, inner_pytest, sample_image, client) -> None:
    pytester.makepyfile(
        WAIT_FOR_GO
        + """
import os

def test_one(run_container):
    run_container()
    Path(f"worker-{os.getpid()}").touch()
    wait_for_go()

def test_two(run_container):
    run_container()
    Path(f"worker-{os.getpid()}").touch()
    wait_for_go()
"""
    )
    run = inner_pytest(f"--image={sample_image}", "-n", "2")
    assert wait_for(lambda: len(list(pytester.path.glob("worker-*"))) == 2, timeout=90)
    victim = int(sorted(pytester.path.glob("worker-*"))[0].name.removeprefix("worker-"))
    assert leftovers(client, victim)
    os.kill(victim, signal.SIGKILL)
    (pytester.path / "go").touch()
    _, output = run.finish(timeout=120)
    assert "crashed" in output, output
    assert leftovers(client, victim) == []
    for marker in pytester.path.glob("worker-*"):
        assert leftovers(client, int(marker.name.removeprefix("worker-"))) == []


def test_ctrl_c_during_a_build_stops_it_and_leaves_nothing(
    pytester, inner_pytest, busybox, client
) -> None:
    context = pytester.mkdir("ctx")
    (context / "Dockerfile").write_text(f"FROM {busybox}\nRUN sleep 60\n")
    pytester.makepyfile("def test_image(image):\n    pass\n")
    run = inner_pytest(f"--build-context={context}")

    def building() -> bool:
        return any(str(context) in cmdline for _, cmdline in run.children())

    assert wait_for(building, timeout=60)
    run.signal(signal.SIGINT)
    code, output = run.finish(timeout=60)
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert not building()
    assert leftovers(client, run.pid) == []


def test_two_sessions_at_once_neither_clashes_nor_removes_the_others(
    pytester, inner_pytest, sample_image, client
) -> None:
    pytester.makepyfile(
        """
        import time
        from pathlib import Path

        def test_both(container, run_container):
            other = run_container()
            Path(f"names-{container.name}").write_text(other.name)
            time.sleep(3)
            assert container.status == "running" and other.status == "running"
        """
    )
    runs = [inner_pytest(f"--image={sample_image}", "-p", "no:xdist") for _ in range(2)]
    results = [run.finish(timeout=120) for run in runs]
    for code, output in results:
        assert code == pytest.ExitCode.OK, output
    names = list(pytester.path.glob("names-*"))
    assert len(names) == 2
    for run in runs:
        assert leftovers(client, run.pid) == []


def test_log_flood_keeps_memory_bounded_and_reports_only_the_tail(
    pytester, inner_pytest, busybox, build_image, client
) -> None:
    line = "0123456789" * 10
    image = build_image(
        f"FROM {busybox}\n"
        f'ENTRYPOINT ["sh", "-c", "yes {line} | head -c 150000000; echo last-line; sleep 300"]\n'
    )
    pytester.makepyfile(
        """
        import time

        def test_flood(container):
            while "last-line" not in container.logs(tail=1):
                time.sleep(0.5)
            assert False, "look at the logs"
        """
    )
    # The inner session's own peak: VmHWM of its own memory map. (RUSAGE_CHILDREN here is the
    # largest child this worker ever reaped, and ru_maxrss survives exec, so a child forked
    # from a large worker starts at the worker's size.)
    pytester.makeconftest(
        """
        import pathlib, re

        def pytest_unconfigure(config):
            status = pathlib.Path("/proc/self/status").read_text()
            peak = re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)
            pathlib.Path("peak_rss_kb").write_text(peak)
        """
    )
    run = inner_pytest(f"--image={image}", "--junitxml=report.xml", "-o", "junit_logging=all")
    code, output = run.finish(timeout=300)
    assert code == pytest.ExitCode.TESTS_FAILED, output[-2000:]
    peak_mb = int((pytester.path / "peak_rss_kb").read_text()) / 1024
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB while the container logged 150 MB"
    assert "last-line" in output
    assert output.count(line) <= 45
    junit = ET.parse(pytester.path / "report.xml").getroot()
    assert len(ET.tostring(junit)) < 100_000
    assert leftovers(client, run.pid) == []


def test_secret_printed_by_the_service_is_masked_in_reports(pytester, busybox, build_image) -> None:
    token = "ghp_" + "A1b2C3d4E5" * 3 + "F6g7h8"
    image = build_image(
        f"FROM {busybox}\nENV GITHUB_TOKEN={token}\n"
        'ENTRYPOINT ["sh", "-c", "echo using token $GITHUB_TOKEN; sleep 300"]\n'
    )
    pytester.makepyfile(
        """
        import time

        def test_fails(container):
            time.sleep(1)
            assert False
        """
    )
    result = pytester.runpytest(
        f"--image={image}", "--junitxml=report.xml", "-o", "junit_logging=system-out"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*using token ghp_… (40 chars)*"])
    assert token not in result.stdout.str()
    assert token not in (pytester.path / "report.xml").read_text()
