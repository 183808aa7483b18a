"""Containers started ahead of the tests that use them (real engine).

The session ``container``, each ``container_fixture`` a test uses and each ``hardened``
criterion's container start in the background while earlier tests run; a verdict never
depends on it: a wait on a container started ahead gives the service no more time than a
start on demand would.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import leftovers, wait_for

#: Records, in the test session under test, when its first test ended and when each
#: container was created (engine time, same host clock).
ORDER = """
    import re
    import time
    from datetime import datetime

    import pytest
    from pytest_imagecheck import container_fixture

    hardened = container_fixture(read_only=True, tmpfs={"/tmp": ""})
    SEEN = {}

    def created(container):
        stamp = re.sub(r"(\\.\\d{1,6})\\d*", r"\\1", container.attrs["Created"].rstrip("Z"))
        return datetime.fromisoformat(stamp + "+00:00").timestamp()

    def test_first(image):
        time.sleep(1.5)  # the containers come up meanwhile, when started ahead
        SEEN["first_ended"] = time.time()

    def test_second(container, hardened):
        SEEN["container"] = created(container)
        SEEN["hardened"] = created(hardened)
        print("ORDER", SEEN["container"] < SEEN["first_ended"],
              SEEN["hardened"] < SEEN["first_ended"])
"""


def test_containers_a_test_needs_start_before_it(pytester, sample_image, client) -> None:
    pytester.makepyfile(ORDER)
    result = pytester.runpytest(f"--image={sample_image}", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ORDER True True"])
    assert not leftovers(client, os.getpid())


def test_no_start_ahead_starts_each_container_when_its_test_needs_it(
    pytester, sample_image, client
) -> None:
    pytester.makepyfile(ORDER)
    result = pytester.runpytest(f"--image={sample_image}", "-s", "--no-start-ahead")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ORDER False False"])
    assert not leftovers(client, os.getpid())


def test_each_family_members_containers_start_before_its_tests(
    pytester, sample_image, client
) -> None:
    pytester.makepyfile(ORDER)
    by_id = client.images.get(sample_image).id
    result = pytester.runpytest(f"--image=a={sample_image}", f"--image=b={by_id}", "-s")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*ORDER True True", "*ORDER True True"])
    assert not leftovers(client, os.getpid())


def test_a_hardened_criterions_container_starts_before_it(pytester, sample_image, client) -> None:
    pytester.makefile(
        ".yaml",
        imagecheck="""
        version: 1
        criteria:
          - check: command
            run: [sleep, "1.5"]
            name: first
          - check: hardened
            path: /
            port: 8080
            status: [200, 404]
            timeout: 30s
        """,
    )
    pytester.makeconftest(
        """
        import re
        import time
        from datetime import datetime

        import docker
        import pytest
        from pytest_imagecheck.engine import LABEL_TEST

        ENDED = {}

        def pytest_runtest_logfinish(nodeid, location):
            if nodeid.endswith("::first"):
                ENDED["first"] = time.time()

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(item):
            if item.name.startswith("hardened"):
                api = docker.from_env().api
                [found] = api.containers(filters={"label": f"{LABEL_TEST}={item.nodeid}"})
                created = api.inspect_container(found["Id"])["Created"].rstrip("Z")
                stamp = re.sub(r"(\\.\\d{1,6})\\d*", r"\\1", created) + "+00:00"
                print("AHEAD", datetime.fromisoformat(stamp).timestamp() < ENDED["first"])
            return (yield)
        """
    )
    result = pytester.runpytest(f"--image={sample_image}", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*AHEAD True"])
    assert not leftovers(client, os.getpid())


@pytest.mark.parametrize(
    ("ready_after", "head_start", "timeout", "outcome"),
    [
        # ready in time: passes, started ahead or not
        (1, 1, 20, "passed"),
        # not ready 4s after its start: fails, although the container was up 3s before
        (6, 3, 4, "failed"),
        # up longer before its test than the wait, and ready: whether it would have been
        # ready in time is not measured, and said so; never a pass
        (3, 5, 2, "not measured"),
    ],
)
def test_a_head_start_never_lengthens_a_wait(
    pytester, service_image, client, ready_after, head_start, timeout, outcome
) -> None:
    pytester.makepyfile(
        f"""
        import time
        from pytest_imagecheck import assert_endpoint_ready, container_fixture

        slow = container_fixture(env={{"READY_AFTER": "{ready_after}"}})

        def test_first(image):
            time.sleep({head_start})

        def test_ready_in_time(slow):
            assert_endpoint_ready(slow, "/health/ready", timeout="{timeout}s")
        """
    )
    result = pytester.runpytest(f"--image={service_image}")
    result.assert_outcomes(passed=1 + (outcome == "passed"), failed=int(outcome != "passed"))
    if outcome == "failed":
        result.stdout.fnmatch_lines([f"*/health/ready not ready after {timeout}s*"])
    if outcome == "not measured":
        result.stdout.fnmatch_lines(["*/health/ready answered 200, but the container was*"])
        result.stdout.fnmatch_lines(["*not measured*--no-start-ahead*"])
    assert not leftovers(client, os.getpid())


def test_a_start_that_fails_fails_its_test_as_a_start_on_demand_does(
    pytester, sample_image, client
) -> None:
    pytester.makepyfile(
        """
        from pytest_imagecheck import container_fixture

        crashing = container_fixture(entrypoint=["sh", "-c", "echo fatal: no DB_URL; exit 3"])

        def test_first(image):
            pass

        def test_crashing(crashing):
            pass
        """
    )
    messages = []
    for extra in ([], ["--no-start-ahead"]):
        result = pytester.runpytest(f"--image={sample_image}", *extra)
        result.assert_outcomes(passed=1, errors=1)
        lines = {ln for ln in result.outlines if "exited with code 3" in ln}
        messages.append({re.sub(r"imagecheck-\w+-\w+", "NAME", line) for line in lines})
    assert messages[0] and messages[0] == messages[1]
    assert not leftovers(client, os.getpid())


@pytest.mark.parametrize("first", ["pass", "pytest.exit('stopped', returncode=2)"])
def test_containers_started_ahead_that_no_test_takes_are_removed(
    pytester, sample_image, client, first
) -> None:
    """A test whose other fixture fails never takes them; a session cut short never gets to
    the test; both leave nothing behind."""
    pytester.makepyfile(
        f"""
        import pytest
        from pytest_imagecheck import container_fixture

        hardened = container_fixture(read_only=True)

        @pytest.fixture
        def broken():
            raise RuntimeError("set-up failed")

        def test_first(image):
            {first}

        def test_never_gets_them(broken, container, hardened):
            pass
        """
    )
    pytester.runpytest(f"--image={sample_image}")
    assert not leftovers(client, os.getpid())


def test_a_removal_is_asked_for_not_waited_for_and_leaves_nothing(client, sample_image) -> None:
    """On the local socket the removal request is sent and its answer not read: no thread
    waits on it, and the engine removes the container all the same."""
    from pytest_imagecheck.engine import Engine, new_session_id

    engine = Engine(client, new_session_id())
    running = engine.run(engine.image(sample_image))
    engine.remove_later(running)
    assert engine._removals == []  # nothing to wait for
    assert wait_for(lambda: not client.containers.list(all=True, filters={"id": running.id}))


def test_only_the_next_tests_containers_are_up_ahead(pytester, sample_image, client) -> None:
    """Five tests that each get a container of their own: two are started ahead at a time
    (the next tests'), not all five at once; each test still gets its own."""
    pytester.makepyfile(
        """
        import os
        import time

        import docker
        import pytest
        from pytest_imagecheck import container_fixture
        from pytest_imagecheck.engine import LABEL_PID, LABEL_TEST

        own = container_fixture(env={"N": "1"})
        NAMES = set()

        def test_first(image):
            api = docker.from_env().api
            most = 0
            for _ in range(30):  # the first ones come up meanwhile
                mine = [f"{LABEL_PID}={os.getpid()}", LABEL_TEST]  # the tests' own
                up = api.containers(all=True, filters={"label": mine})
                most = max(most, len(up))
                time.sleep(0.2)
            print("UP AHEAD", most)

        @pytest.mark.parametrize("i", range(5))
        def test_each(own, i):
            NAMES.add(own.name)
            assert len(NAMES) == i + 1
        """
    )
    result = pytester.runpytest(f"--image={sample_image}", "-s")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*UP AHEAD 2"])
    assert not leftovers(client, os.getpid())


def test_a_container_started_ahead_is_the_tests_own_until_the_end(
    pytester, sample_image, client
) -> None:
    """What a test does to its container before a wait stays done (a file written, a stop):
    the container is never swapped for another behind its back."""
    pytester.makepyfile(
        """
        import time

        import pytest
        from pytest_imagecheck import assert_endpoint_ready, container_fixture

        root = container_fixture(user="0")

        def test_first(image):
            time.sleep(3)

        def test_written_then_waited(root):
            before = root.id
            assert root.exec(["sh", "-c", "echo v2 > /srv/www/version"]).exit_code == 0
            assert_endpoint_ready(root, "/version", timeout="30s")
            assert root.id == before

        def test_stopped_then_waited(root):
            root.stop()
            with pytest.raises(Exception, match="exited|stopped"):
                assert_endpoint_ready(root, "/", timeout="30s")
        """
    )
    result = pytester.runpytest(f"--image={sample_image}")
    result.assert_outcomes(passed=3)
    assert not leftovers(client, os.getpid())


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ('env=["A=1", 3]', "run option env=*: expected a mapping of names to strings*"),
        ('tmpfs="/tmp"', "run option tmpfs='/tmp': expected a mapping of paths*"),
        ('ports="8080"', "run option ports='8080': expected a list of ports*"),
        ('read_only="no"', "run option read_only='no': expected true or false"),
        ('command=["sh", "-c", 5]', "run option command=*: expected a string or a list*"),
        ('gpus="two"', "run option gpus='two' is not understood*"),
        ('cap_drop="ALL"', "run option cap_drop='ALL': expected a list of capabilities*"),
        ('image="x:1"', "*unknown option 'image'*always of the image under test*"),
    ],
)
def test_a_bad_run_option_is_one_line_naming_it(pytester, sample_image, option, says) -> None:
    """In container_fixture, when the test module is imported; in run_container, when the
    test calls it: one line, never a traceback from docker-py or the engine's JSON."""
    pytester.makepyfile(
        f"""
        from pytest_imagecheck import container_fixture

        bad = container_fixture({option})

        def test_it(bad):
            pass
        """
    )
    result = pytester.runpytest(f"--image={sample_image}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*container_fixture: {says}"])
    if option.startswith("image="):
        return
    pytester.makepyfile(
        f"""
        def test_it(run_container):
            run_container({option})
        """
    )
    result = pytester.runpytest(f"--image={sample_image}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{says}"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("how", ["exits", "turns unhealthy"])
def test_a_container_that_changed_while_it_waited_is_not_handed_over(
    pytester, build_image, busybox, how
) -> None:
    """A container started ahead that stopped, or turned unhealthy, before its test took it
    is replaced by a start on demand: the verdict is --no-start-ahead's (a false failure,
    blaming the test, before)."""
    if how == "exits":
        command = '["sh", "-c", "sleep 1; echo boom; exit 4"]'
        health = ""
    else:
        command = '["sh", "-c", "touch /ok; sleep 1.5; rm /ok; sleep 600"]'
        health = 'HEALTHCHECK --interval=1s --retries=1 CMD ["test", "-f", "/ok"]\n'
    image = build_image(
        f"FROM {busybox}\n{health}CMD {command}\n",
        tag=f"imagecheck-test/changes:{os.getpid()}-{how.split()[0]}",
    )
    pytester.makepyfile(
        """
        import time
        import pytest_imagecheck as ic

        def test_first(image):
            time.sleep(4)

        def test_second(container):
            if container.image.healthcheck is None:
                assert container.exec(["true"]).ok
            else:
                ic.assert_healthy(container, timeout="10s")
        """
    )
    for extra in ((), ("--no-start-ahead",)):
        result = pytester.runpytest(f"--image={image}", *extra)
        result.assert_outcomes(passed=2)
