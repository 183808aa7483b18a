"""Every container the plugin creates is removed: pass, fail, error, crash, signals."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys

import pytest

from pytest_imagecheck.engine import LABEL_HOST, LABEL_PID, LABEL_SESSION, this_host
from tests.conftest import leftovers, wait_for

SLOW_TEST = """
from pathlib import Path
import time

def test_slow(container):
    Path("started").write_text(container.name)
    time.sleep(60)
"""


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("def test_it(container):\n    assert container.status == 'running'\n", {"passed": 1}),
        ("def test_it(container):\n    assert container.status == 'paused'\n", {"failed": 1}),
        (
            "import pytest\n\n@pytest.fixture\ndef broken(container):\n    raise RuntimeError\n\n"
            "def test_it(broken):\n    pass\n",
            {"errors": 1},
        ),
        (
            "def test_it(run_container):\n    run_container()\n    run_container()\n"
            "    assert False\n",
            {"failed": 1},
        ),
    ],
    ids=["pass", "fail", "fixture-error", "run_container-fail"],
)
def test_no_leftovers_after(pytester, sample_image, client, body, outcome) -> None:
    pytester.makepyfile(body)
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(**outcome)
    assert leftovers(client, os.getpid()) == []


def test_session_container_that_exits_at_once_is_reported_and_removed(
    pytester, busybox, client
) -> None:
    context = pytester.mkdir("ctx")
    (context / "Dockerfile").write_text(
        f'FROM {busybox}\nENTRYPOINT ["sh", "-c", "echo fatal: no model found; exit 4"]\n'
    )
    pytester.makepyfile(
        """
        import time

        def test_it(container):
            time.sleep(1)
            container.exec("true")
        """
    )
    result = pytester.runpytest(f"--build-context={context}")
    result.stdout.fnmatch_lines(
        ["*exited with code 4*; last log lines:*", "*fatal: no model found*"]
    )
    assert leftovers(client, os.getpid()) == []


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM]],
    ids=["sigint", "sigint-twice", "sigterm"],
)
def test_signals_to_a_running_session_leave_nothing(
    pytester, inner_pytest, sample_image, client, signals
) -> None:
    pytester.makepyfile(SLOW_TEST)
    run = inner_pytest(f"--image={sample_image}")
    assert wait_for(lambda: (pytester.path / "started").exists(), timeout=60)
    assert leftovers(client, run.pid) != []
    for sig in signals:
        run.signal(sig)
        wait_for(lambda: False, timeout=0.2)
    code, output = run.finish()
    assert code != 0
    assert leftovers(client, run.pid) == [], output


def test_a_crashed_sessions_leftovers_are_swept_but_a_live_ones_are_not(
    pytester, sample_image, client
) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = this_host()

    def make(pid: int, session: str):
        return client.containers.create(
            sample_image,
            labels={LABEL_SESSION: session, LABEL_PID: str(pid), LABEL_HOST: host},
        )

    crashed = make(int(dead.stdout), "crashed00001")
    alive = make(os.getpid(), "alive0000001")
    try:
        pytester.makepyfile("def test_it(docker_client):\n    pass\n")
        pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=1)
        names = {c.name for c in client.containers.list(all=True)}
        assert crashed.name not in names
        assert alive.name in names
    finally:
        alive.remove(force=True)


def test_keep_containers_leaves_them_and_says_how_to_remove(pytester, sample_image, client):
    pytester.makepyfile("def test_it(container):\n    pass\n")
    result = pytester.runpytest(f"--image={sample_image}", "--keep-containers")
    result.assert_outcomes(passed=1)
    kept = leftovers(client, os.getpid())
    try:
        assert len(kept) == 1
        remove = "docker rm -f $(docker ps -aq --filter label=pytest-imagecheck.session="
        result.stdout.fnmatch_lines([f"*remove them: {remove}*)"])
    finally:
        for name in kept:
            client.containers.get(name).remove(force=True)


def test_container_whose_start_fails_is_removed(pytester, sample_image, client) -> None:
    pytester.makepyfile(
        "def test_it(run_container):\n    run_container(entrypoint=['/no/such/binary'])\n"
    )
    result = pytester.runpytest(f"--image={sample_image}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*container of imagecheck-test/sample:1 failed to start:*"])
    assert "Traceback" not in result.stdout.str()
    assert leftovers(client, os.getpid()) == []


def test_no_leftovers_under_xdist(pytester, sample_image, client, build_image) -> None:
    # An image of its own (a new ID): the ancestor filter matches every container of an
    # image ID, and other tests run containers of the sample image meanwhile.
    tag = build_image(
        f"FROM {sample_image}\nLABEL run={secrets.token_hex(4)}\n",
        tag=f"imagecheck-test/xdist-{secrets.token_hex(4)}:1",
    )
    for i in range(4):
        pytester.makepyfile(
            **{f"test_{i}": "def test_it(container, run_container):\n    run_container()\n"}
        )
    result = pytester.runpytest_subprocess(f"--image={tag}", "-n", "2")
    result.assert_outcomes(passed=4)
    assert client.containers.list(all=True, filters={"ancestor": tag}) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_during_a_health_wait_ends_the_session(
    pytester, inner_pytest, build_image, busybox, client, sig
) -> None:
    """Ctrl-C or SIGTERM while assert_healthy waits stops pytest (exit 2), not only the test
    (it became an UnboundLocalError in the evidence, and the session went on)."""
    image = build_image(
        f'FROM {busybox}\nHEALTHCHECK --interval=5m CMD ["sleep", "100000"]\n'
        'CMD ["sleep", "600"]\n',
        tag=f"imagecheck-test/hangs:{os.getpid()}-{sig.name}",
    )
    pytester.makepyfile(
        """
        from pathlib import Path
        import pytest_imagecheck as ic

        def test_a(container):
            Path("started").touch()
            ic.assert_healthy(container, timeout="60s")

        def test_b():
            print("TEST_B RAN")
        """
    )
    run = inner_pytest(f"--image={image}", "-s")
    assert wait_for(lambda: (pytester.path / "started").exists(), timeout=60)
    wait_for(lambda: False, timeout=1)
    run.signal(sig)
    code, output = run.finish()
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "TEST_B RAN" not in output
    assert "UnboundLocalError" not in output
    assert leftovers(client, run.pid) == [], output
