"""The running container: exec, published ports, logs, health, files, testinfra."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import leftovers


def test_session_container_serves_on_loopback_and_execs(pytester, sample_image, client) -> None:
    pytester.makepyfile(
        """
        import requests

        def test_port_is_on_loopback(container):
            host, port = container.address(8080)
            assert host == "127.0.0.1" and port > 0
            bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
            assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]

        def test_http(container):
            answer = requests.get(container.url(8080, "/index.html"), timeout=5)
            assert answer.status_code == 200 and "sample" in answer.text

        def test_exec(container):
            result = container.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
            assert (result.exit_code, result.stdout, result.stderr) == (3, "out\\n", "err\\n")
            assert container.exec("id -u").stdout.strip() == "1000"
            assert container.exec("id -u", user="root").stdout.strip() == "0"

        def test_exec_string_is_not_given_to_a_shell(container):
            result = container.exec("echo $HOME;id")
            assert result.stdout == "$HOME;id\\n"

        def test_status_and_logs(container):
            assert container.status == "running"
            container.exec("wget -q -O /dev/null http://127.0.0.1:8080/index.html")
            assert "url:/index.html" in container.logs()

        def test_read_file(container):
            assert container.read_file("/srv/www/index.html") == b"<h1>sample</h1>\\n"

        def test_testinfra_host(container):
            assert container.host.file("/srv/www/index.html").contains("sample")
            assert container.host.user().name == "svc"

        def test_one_container_for_the_session(container, docker_client):
            assert container.name.startswith("imagecheck-")
            assert docker_client.containers.get(container.id).status == "running"
        """
    )
    result = pytester.runpytest(f"--image={sample_image}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    assert leftovers(client, os.getpid()) == []


def test_health_turns_healthy(pytester, sample_image) -> None:
    pytester.makepyfile(
        """
        from tests.conftest import wait_for

        def test_healthy(container):
            assert container.health in ("starting", "healthy")
            assert wait_for(lambda: container.health == "healthy", timeout=30)
        """
    )
    pytester.syspathinsert(Path(__file__).parent.parent)
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=1)


def test_run_container_applies_options_and_removes_at_test_end(
    pytester, sample_image, client
) -> None:
    """Removed once its test ends: in the background while the next tests run, and gone by
    the end of the session."""
    pytester.makepyfile(
        """
        import time

        import pytest

        NAMES = []

        def test_hardened(run_container, docker_client):
            c = run_container(read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"],
                              security_opt=["no-new-privileges"], env={"MODE": "ro"})
            NAMES.append(c.name)
            assert c.exec("touch /srv/x").exit_code != 0
            assert c.exec("touch /tmp/x").exit_code == 0
            assert c.exec(["sh", "-c", "echo $MODE"]).stdout == "ro\\n"
            host_config = c.attrs["HostConfig"]
            assert host_config["ReadonlyRootfs"] and host_config["CapDrop"] == ["ALL"]
            assert not host_config["Privileged"] and not host_config["Binds"]

        def test_command_and_user(run_container):
            c = run_container(command=["sleep", "60"], user="root")
            NAMES.append(c.name)
            assert c.exec("id -u").stdout.strip() == "0"

        def test_removed_after_each_test(docker_client):
            for name in NAMES:
                for _ in range(200):
                    if not docker_client.containers.list(all=True, filters={"name": name}):
                        break
                    time.sleep(0.05)
                assert not docker_client.containers.list(all=True, filters={"name": name})
        """
    )
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=3)
    assert not leftovers(client, os.getpid())


def test_container_that_exits_at_once_shows_code_and_log_tail(pytester, sample_image, client):
    pytester.makepyfile(
        """
        import time

        def test_crash(run_container):
            crash = "echo fatal: DATABASE_URL is not set; exit 3"
            c = run_container(entrypoint=["sh", "-c", crash])
            time.sleep(1)
            c.exec("true")
        """
    )
    result = pytester.runpytest(f"--image={sample_image}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*container imagecheck-* of * exited with code 3*; last log lines:*",
            "*fatal: DATABASE_URL is not set*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert leftovers(client, os.getpid()) == []


def test_failing_test_report_carries_the_container_log_tail(pytester, sample_image) -> None:
    pytester.makepyfile(
        """
        def test_fails(container):
            container.exec("wget -q -O /dev/null http://127.0.0.1:8080/missing-page")
            assert False, "boom"
        """
    )
    result = pytester.runpytest(
        f"--image={sample_image}", "--junitxml=report.xml", "-o", "junit_logging=system-out"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*Captured stdout: imagecheck-* logs (last 40 lines)*", "*missing-page*"]
    )
    case = ET.parse(pytester.path / "report.xml").getroot().find("testsuite/testcase")
    assert case is not None
    assert "url:/missing-page" in (case.findtext("system-out") or "")


def test_address_of_unpublished_port_is_a_clear_error(pytester, sample_image) -> None:
    pytester.makepyfile(
        """
        def test_port(container):
            container.address(9999)
        """
    )
    result = pytester.runpytest(f"--image={sample_image}")
    result.stdout.fnmatch_lines(
        ["*port 9999 is not published by imagecheck-* (published: 8080/tcp)*EXPOSE it*"]
    )


GPU_TESTS = """
import pytest

@pytest.mark.gpu
def test_marked(container):
    pass

def test_unmarked(container):
    pass
"""


def test_gpu_tests_skip_with_the_engines_reason_and_others_error(pytester, sample_image) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest(f"--image={sample_image}", "--gpus=all", "-rs")
    result.assert_outcomes(skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_unmarked*",
            "the engine cannot give GPUs (--gpus all): could not select device driver*",
            "SKIPPED * the engine cannot give GPUs (--gpus all)*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_require_gpu_turns_the_skip_into_a_failure(pytester, sample_image) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest(f"--image={sample_image}", "--gpus=all", "--require-gpu")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*cannot give GPUs*(--require-gpu)"])


def test_gpu_test_that_ran_without_gpus_is_never_a_pass(pytester, sample_image) -> None:
    pytester.makepyfile(GPU_TESTS)
    result = pytester.runpytest(f"--image={sample_image}", "-rs")
    result.assert_outcomes(skipped=1, passed=1)
    result.stdout.fnmatch_lines(["SKIPPED * marked gpu, but none of its containers had GPUs*"])
    result = pytester.runpytest(f"--image={sample_image}", "--require-gpu", "-k", "test_marked")
    result.assert_outcomes(failed=1)


def test_containers_that_do_not_ask_for_gpus_never_get_them(pytester, sample_image) -> None:
    pytester.makepyfile(
        """
        def test_it(run_container):
            c = run_container()
            assert not c.attrs["HostConfig"]["DeviceRequests"]
        """
    )
    pytester.runpytest(f"--image={sample_image}", "--gpus=all").assert_outcomes(passed=1)
