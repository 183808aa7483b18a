"""Runs of consecutive criteria share engine work: commands a shell, file criteria one read
per path; and each command still gets exactly what an exec of it alone gets, when it alone
would get it.

The shell's protocol is checked first with the host's own shells (dash and busybox ash, the
two ``/bin/sh`` of the test images) on arbitrary arguments; then on the real engine, every
command of a table is run batched and alone in the same container and the results compared,
and commands that stop the container are run shared and alone; last, YAML suites through the
plugin are run with and without sharing (and criteria alone) and each verdict and message
compared, and the engine's exec and archive events counted.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_imagecheck.batch import CLOSING, Command, Said, new_mark, opening, read_step, step
from pytest_imagecheck.checks.structure import assert_file
from pytest_imagecheck.container import ExecResult, Prefetched, RunningContainer
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ContainerFailed
from tests.test_injection import CONTAINER_MARKER, INNER, PAYLOAD_IDS, payloads

#: Arguments no shell may touch: quotes, expansions, separators, newlines, non-ASCII.
ARGUMENT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
SHELLS = {"dash": ["/bin/sh"], "busybox ash": ["/bin/busybox", "sh"]}
#: A printf each shell runs exactly: coreutils' for dash; for this busybox, which prefers its
#: applets, its own (a bare "printf" is left to a plain exec, as the next test shows).
PRINTF = {"dash": ("printf",), "busybox ash": ("/bin/busybox", "printf")}


def _run_locally(shell: list[str], commands: list[Command]) -> list[Any]:
    """Each command's (exit code, stdout, stderr), or ``None`` where the shell leaves it to a
    plain exec, from ``shell -s`` reading the steps as a shared shell does."""
    mark = new_mark()
    steps = "".join(step(command, mark=mark, environment={}) for command in commands)
    done = subprocess.run(
        [*shell, "-s"], input=(opening(mark) + steps + CLOSING).encode(), capture_output=True
    )
    started = f"{mark} start\n".encode()
    stdout, stderr = done.stdout.split(started, 1)[1], done.stderr.split(started, 1)[1]
    results: list[Any] = []
    for _ in commands:
        said, stdout, stderr = read_step(stdout, stderr, mark=mark)
        assert said.complete
        # Decoded as the container's exec output is: no newline translation.
        output = (said.exit_code, said.stdout.decode(), said.stderr.decode())
        results.append(None if said.left else output)
    return results


@pytest.mark.parametrize("shell", list(SHELLS), ids=list(SHELLS))
@settings(max_examples=60, deadline=None)
@given(args=st.lists(ARGUMENT, max_size=6))
@example(args=["$HOME", "`id`", "$(id)", "*", "a b", "'", '"', "\\", ";", "\n", "-n", "%s"])
def test_each_argument_reaches_the_program_verbatim(shell: str, args: list[str]) -> None:
    if not Path(SHELLS[shell][0]).exists():
        pytest.fail(f"{SHELLS[shell][0]} is missing: scripts/ensure-test-tools installs it")
    printed = _run_locally(
        SHELLS[shell], [Command((*PRINTF[shell], "%s\\n", *args)), Command(("/bin/true",))]
    )
    expected = "".join(f"{arg}\n" for arg in args) or "\n"  # printf: the format once at least
    assert printed == [(0, expected, ""), (0, "", "")]


@pytest.mark.parametrize("shell", list(SHELLS), ids=list(SHELLS))
def test_neither_builtins_nor_applets_stand_in_and_each_share_of_output_is_exact(
    shell: str,
) -> None:
    echo = shutil.which("echo")
    assert echo is not None and not Path(echo).samefile("/bin/busybox")
    commands = [
        Command(("/bin/sh", "-c", "printf out; printf err >&2; exit 3")),
        Command(("/usr/bin/env",)),
        Command(("/bin/sh", "-c", "printf '\\n\\n'; kill -9 $$")),
        Command(("echo", "--version")),  # the builtin or applet would print --version
        Command(("/bin/true",)),
    ]
    results = _run_locally(SHELLS[shell], commands)
    assert results[0] == (3, "out", "err")
    names = {line.partition("=")[0] for line in results[1][1].splitlines()}
    assert not names & {"PWD", "OLDPWD", "SHLVL"}
    assert results[2] == (137, "\n\n", "")  # no "Killed" from the shell
    if shell == "dash":
        alone = subprocess.run([echo, "--version"], capture_output=True, check=False)
        assert results[3:] == [(0, alone.stdout.decode(), ""), (0, "", "")]
    else:  # this busybox runs its applets first: coreutils' echo is left to a plain exec,
        assert results[3:] == [None, (0, "", "")]  # and the shell runs on


def test_what_the_shell_said_of_a_command_is_complete_only_with_both_end_markers() -> None:
    mark = "M"
    assert read_step(b"", b"", mark=mark)[0] == Said()
    # Killed while it ran: its run markers and part of its output came, its end never did.
    said = read_step(b"M run\nhalf", b"M run\nx", mark=mark)[0]
    assert (said.ran, said.complete, said.stdout, said.stderr) == (True, False, b"half", b"x")
    assert not read_step(b"M run\na\nM 0\n", b"M run\n", mark=mark)[0].complete
    # What a background process wrote between commands is no command's output; what follows
    # the end markers is left for the next command.
    said, out, err = read_step(b"late\nM run\na\nM 3\nM run\n", b"M run\n\nM 3\n", mark=mark)
    assert (said, out, err) == (Said(True, 3, False, b"a", b""), b"M run\n", b"")
    assert read_step(b"M -\n", b"M -\n", mark=mark)[0] == Said(left=True)


def test_first_words_a_shell_would_read_as_options_are_not_batched() -> None:
    assert not Command(("-x",)).batchable
    assert Command.of("id -u", user="root") == Command(("id", "-u"), user="root")
    assert Command.of(["env"], env={"B": "2", "A": "1"}).env == (("A", "1"), ("B", "2"))


# On the engine


@pytest.fixture(scope="module")
def engine(client: docker.DockerClient) -> Engine:
    return Engine(client, f"tests-batch-{secrets.token_hex(4)}")


class _Spy:
    """Counts calls of one method of a container's docker-py object (each a real engine call)."""

    def __init__(self, container: RunningContainer, name: str, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[Any] = []
        raw = container._container
        real = getattr(raw, name)

        def spy(first: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(first)
            return real(first, *args, **kwargs)

        monkeypatch.setattr(raw, name, spy)


class _Execs:
    """Records the command of every exec the engine is asked to create in a container: plain
    execs and shared shells alike."""

    def __init__(self, container: RunningContainer, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[Any] = []
        api = container._container.client.api
        real = api.exec_create

        def spy(target: Any, cmd: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(cmd)
            return real(target, cmd, *args, **kwargs)

        monkeypatch.setattr(api, "exec_create", spy)


@pytest.fixture(params=["busybox ash", "dash"])
def running(request: pytest.FixtureRequest, engine: Engine) -> Iterator[RunningContainer]:
    """A fresh container whose /bin/sh is busybox ash (the sample image) or dash (Debian)."""
    if request.param == "dash":
        image = engine.image(request.getfixturevalue("debian"))
        container = engine.run(image, entrypoint=["sleep", "3600"], ports=[])
    else:
        container = engine.run(engine.image(request.getfixturevalue("sample_image")))
    yield container
    engine.remove(container)


TABLE = [
    Command(("id", "-u")),
    Command(("id", "-u"), user="root"),
    Command(("echo", "-n", "no newline")),
    Command(("echo", "-e", "a\\tb")),
    Command(("[", "1", "=", "1", "]")),
    Command(("test", "-n", "")),
    Command(("pwd",)),
    Command(("pwd",), workdir="/etc"),
    Command(("env",)),
    Command(("env",), env=(("PWD", "/given"), ("SHLVL", "7"))),
    Command(("sh", "-c", "echo out; echo err >&2; exit 3")),
    Command(("sh", "-c", "printf '\\377\\n'")),
    Command(("sh", "-c", "kill -9 $$")),
    Command(("sh", "-c", "kill -9 $PPID; echo after")),  # alone its parent is outside
    Command(("no-such-program", "x")),
    Command(("/etc/passwd",)),
    Command(("-x",)),
    Command(("sh", "-c", "exit 127")),
    Command(("sh", "-c", "yes 0123456789 | head -c 300000")),
    Command(("ls", "/proc/self/fd")),  # no descriptor of the shell's leaks into the program
    Command(("sh", "-c", "echo $PPID")),
]


def _alone(container: RunningContainer, command: Command) -> ExecResult:
    return container.exec(
        list(command.argv),
        user=command.user or None,
        env=dict(command.env) or None,
        workdir=command.workdir or None,
    )


def _same(one: ExecResult, other: ExecResult, command: Command) -> None:
    if command.argv == ("env",):  # the same variables; a shell may pass them reordered
        assert sorted(other.stdout.splitlines()) == sorted(one.stdout.splitlines())
    elif command.argv[-1] == "echo $PPID":  # 0 alone; in a batch, the shell
        assert other.exit_code == one.exit_code == 0
    else:
        assert (other.exit_code, other.stdout, other.stderr) == (
            one.exit_code,
            one.stdout,
            one.stderr,
        ), command


def test_batched_results_are_what_an_exec_of_each_gives(
    running: RunningContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = [_alone(running, command) for command in TABLE]
    execs = _Execs(running, monkeypatch)
    batched = running.exec_batch(TABLE)
    for command, one, other in zip(TABLE, alone, batched, strict=True):
        _same(one, other, command)
    assert len(execs.calls) < len(TABLE) - 5


def test_neighbours_of_one_user_share_one_exec_and_keep_their_order(
    running: RunningContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = Command(("sh", "-c", "echo x >> /dev/shm/n; wc -l < /dev/shm/n; exit 127"), "root")
    commands = [
        Command(("test", "-e", "/dev/shm/flag"), user="root"),
        Command(("touch", "/dev/shm/flag"), user="root"),
        Command(("test", "-e", "/dev/shm/flag"), user="root"),
        count,
        count,
    ]
    execs = _Execs(running, monkeypatch)
    results = running.exec_batch(commands)
    assert [r.exit_code for r in results] == [1, 0, 0, 127, 127]
    # A program's own 127 is a result, not "could not run": each count ran once.
    assert [r.stdout.strip() for r in results[3:]] == ["1", "2"]
    assert len(execs.calls) == 1


@pytest.mark.parametrize("payload", payloads(CONTAINER_MARKER), ids=PAYLOAD_IDS)
def test_batched_arguments_are_never_interpreted(running: RunningContainer, payload: str) -> None:
    echo, test = running.exec_batch(
        [
            Command(("echo", payload), user="root"),
            Command(("test", "-e", CONTAINER_MARKER), user="root"),
        ]
    )
    assert echo.stdout == payload + "\n"
    assert test.exit_code == 1


def test_image_without_a_shell_gets_one_exec_per_command(
    engine: Engine, build_image: Any, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = build_image(f'FROM {busybox}\nRUN ["/bin/busybox", "rm", "/bin/sh"]\n')
    container = engine.run(engine.image(tag), command=["sleep", "3600"], ports=[])
    try:
        execs = _Execs(container, monkeypatch)
        results = container.exec_batch([Command(("echo", "one")), Command(("echo", "two"))])
        assert [r.stdout for r in results] == ["one\n", "two\n"]
        assert execs.calls == [["/bin/sh", "-s"], ["echo", "one"], ["echo", "two"]]
    finally:
        engine.remove(container)


@pytest.mark.parametrize(
    "env", [{"IFS": ","}, {"OPTIND": "5"}, {"my-var": "1"}], ids=["IFS", "OPTIND", "my-var"]
)
def test_environment_a_shell_would_change_is_not_batched(
    engine: Engine, sample_image: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    container = engine.run(engine.image(sample_image), env=env)
    try:
        execs = _Execs(container, monkeypatch)
        printed, _ = container.exec_batch([Command(("env",)), Command(("true",))])
        assert f"{next(iter(env))}={next(iter(env.values()))}\n" in printed.stdout
        assert execs.calls == [["env"], ["true"]]
    finally:
        engine.remove(container)


def test_what_only_a_shell_would_find_or_run_is_left_to_the_engine(
    engine: Engine, build_image: Any, debian: str
) -> None:
    # A program in the working directory, found through an empty PATH entry, and an
    # executable text without "#!", which a shell would run as a script: runc refuses both.
    tag = build_image(
        f"FROM {debian}\nWORKDIR /w\nENV PATH=/usr/bin::/bin\n"
        "RUN printf '#!/bin/sh\\necho here\\n' > tool && printf 'echo text\\n' > text "
        "&& chmod +x tool text\n"
    )
    container = engine.run(engine.image(tag), entrypoint=["sleep", "3600"], ports=[])
    try:
        commands = [Command(("tool",)), Command(("./text",)), Command(("./tool",))]
        alone = [_alone(container, command) for command in commands]
        assert alone[0].exit_code != 0 and alone[1].exit_code != 0  # the engine's verdicts
        for command, one, other in zip(
            commands, alone, container.exec_batch(commands), strict=True
        ):
            _same(one, other, command)
    finally:
        engine.remove(container)


def test_the_shells_own_start_up_warnings_stay_out_of_the_first_commands_stderr(
    engine: Engine, build_image: Any, debian: str
) -> None:
    # bash as /bin/sh (as on RHEL-family images) warns at start about a locale it lacks.
    tag = build_image(f"FROM {debian}\nRUN ln -sf bash /bin/sh\nENV LC_ALL=xx_XX.UTF-8\n")
    container = engine.run(engine.image(tag), entrypoint=["sleep", "3600"], ports=[])
    try:
        commands = [Command(("true",)), Command(("sh", "-c", "echo $((1 + 1))"))]
        warned = container.exec(["/bin/sh", "-c", "true"])
        assert "setlocale" in warned.stderr  # what a shell prints here
        results = container.exec_batch(commands)
        assert [(r.exit_code, r.stdout, r.stderr) for r in results] == [
            (0, "", ""),
            (0, "2\n", _alone(container, commands[1]).stderr),
        ]
    finally:
        engine.remove(container)


def test_a_batch_that_cannot_start_fails_with_the_engines_word_not_the_script(
    engine: Engine, sample_image: str
) -> None:
    container = engine.run(engine.image(sample_image))
    try:
        container._container.pause()
        with pytest.raises(ContainerFailed) as failure:
            container.exec_batch([Command(("true",)), Command(("id",))])
        assert "_ic_" not in str(failure.value) and "paused" in str(failure.value)
    finally:
        container._container.unpause()
        engine.remove(container)


#: PID 1 of the stop tests: exits with 9 on SIGUSR1 and with 0 on SIGTERM (an init in a PID
#: namespace gets no signal it has no handler for from inside it, SIGKILL included).
TRAPPER = (
    "FROM {busybox}\nUSER svc\n"
    'CMD ["sh", "-c", "trap \'echo got USR1, exiting; exit 9\' USR1; '
    "trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 1 & wait $!; done\"]\n"
)
#: Signals PID 1 and runs on: killed with its container, deterministically.
STOPS_THEN_RUNS_ON = ("sh", "-c", "echo before; kill -USR1 1; sleep 5")


@pytest.fixture(scope="module")
def trapper(build_image: Any, busybox: str) -> str:
    return build_image(TRAPPER.format(busybox=busybox))


def _outcome(container: RunningContainer, command: Command) -> tuple[int, str, str] | str:
    """What an exec of ``command`` alone gives: its result, or the failure it raises."""
    try:
        result = _alone(container, command)
    except ContainerFailed as failed:
        return str(failed).replace(container.name, "<container>")
    return result.exit_code, result.stdout, result.stderr


def _recorded_stop(container: RunningContainer) -> None:
    """Wait until the engine recorded the container's stop, as it has by the time the next
    criterion runs (until then, the runtime answers an exec 126, "cannot exec in a stopped
    state")."""
    deadline = time.monotonic() + 10
    while container.stopped() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_shared_command_that_stops_the_container_gets_what_its_own_exec_gets(
    engine: Engine, trapper: str
) -> None:
    commands = [Command(("echo", "one")), Command(STOPS_THEN_RUNS_ON), Command(("echo", "three"))]
    alone = engine.run(engine.image(trapper), ports=[])
    shared = engine.run(engine.image(trapper), ports=[])
    try:
        expected = [_outcome(alone, command) for command in commands[:2]]
        assert expected[1] == (137, "before\n", "")  # killed with its container
        _recorded_stop(alone)
        expected.append(_outcome(alone, commands[2]))
        assert "exited with code 9 before ['echo', 'three'] could run" in str(expected[2])
        batch = shared.exec_batch(commands, lazy=True)
        got: list[tuple[int, str, str] | str] = []
        for index, command in enumerate(commands):
            result = batch.run(index)  # None: the caller execs it, as the plugin's criteria do
            got.append(
                _outcome(shared, command)
                if result is None
                else (result.exit_code, result.stdout, result.stderr)
            )
        assert got == expected
    finally:
        engine.remove(alone)
        engine.remove(shared)


def test_a_batch_run_at_once_stops_where_the_container_stopped(
    engine: Engine, trapper: str
) -> None:
    container = engine.run(engine.image(trapper), ports=[])
    try:
        one, stopper = container.exec_batch([Command(("echo", "one")), Command(STOPS_THEN_RUNS_ON)])
        assert (one.stdout, stopper.exit_code, stopper.stdout) == ("one\n", 137, "before\n")
    finally:
        engine.remove(container)
    container = engine.run(engine.image(trapper), ports=[])
    try:
        with pytest.raises(ContainerFailed) as failure:
            container.exec_batch([Command(STOPS_THEN_RUNS_ON), Command(("echo", "three"))])
        assert "exited with code 9 before ['echo', 'three'] could run" in str(failure.value)
    finally:
        engine.remove(container)


def test_a_command_that_kills_its_shared_shell_runs_alone_and_the_rest_share_another(
    running: RunningContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = [
        Command(("echo", "one")),
        Command(("sh", "-c", "kill -TERM $PPID; echo after")),
        Command(("echo", "three")),
        Command(("echo", "four")),
    ]
    execs = _Execs(running, monkeypatch)
    results = list(running.exec_batch(commands))
    # The killer ran in the shell, then alone; the shell it killed was replaced.
    assert execs.calls == [["/bin/sh", "-s"], list(commands[1].argv), ["/bin/sh", "-s"]]
    assert [r.stdout for r in (results[0], *results[2:])] == ["one\n", "three\n", "four\n"]
    alone = _alone(running, commands[1])
    assert (results[1].exit_code, results[1].stdout) == (alone.exit_code, alone.stdout)


def test_a_view_serves_gathered_results_once_and_asks_the_engine_for_the_rest(
    engine: Engine, sample_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = engine.run(engine.image(sample_image))
    try:
        page = "/srv/www/index.html"
        entries = container.archive_entries({page: True, "/etc/passwd": True, "/nope": False})
        reads = _Spy(container, "get_archive", monkeypatch)
        command = Command(("id", "-u"))
        share = Prefetched(
            execs={command: ExecResult(["id", "-u"], 0, "served\n", "")}, reads=entries
        )
        with container.serving(share):
            assert_file(container, page, kind="file", owner="root", contains="<")
            assert_file(container, "/nope", exists=False)
            assert reads.calls == []
            assert container.exec(["id", "-u"]).stdout == "served\n"
            assert container.exec(["id", "-u"]).stdout == "1000\n"  # once only
            with pytest.raises(AssertionError, match="/srv/www/missing does not exist"):
                assert_file(container, "/srv/www/missing")
            assert reads.calls == ["/srv/www/missing"]
        # After the block, everything goes to the engine again.
        with pytest.raises(AssertionError, match="/nope does not exist"):
            assert_file(container, "/nope")
        assert reads.calls == ["/srv/www/missing", "/nope"]
    finally:
        engine.remove(container)


# Through the plugin


def _events(client: docker.DockerClient, since: int, names: set[str]) -> list[str]:
    return [
        event["Action"]
        for event in client.events(
            since=since,
            until=int(time.time()) + 1,
            decode=True,
            filters={"type": "container", "event": ["exec_create", "archive-path"]},
        )
        if event["Actor"]["Attributes"].get("name") in names
    ]


CONFTEST = """
import pytest

@pytest.fixture(scope="session", autouse=True)
def name(container, pytestconfig):
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    open(f"container-{worker}", "w").write(container.name)
"""


def test_runs_of_yaml_criteria_share_execs_and_reads_without_reordering(
    pytester: pytest.Pytester, sample_image: str, client: docker.DockerClient
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makefile(
        ".yaml",
        imagecheck="""
        criteria:
          - check: file
            path: /state
            exists: false
          - check: command
            run: [test, -e, /flag]
            exit_code: 1
          - check: command
            run: [sh, -c, "touch /flag && echo ok > /state"]
            user: root
          - check: command
            run: [test, -e, /flag]
          - check: command
            run: "echo $HOME"
            stdout_matches: '^[$]HOME$'
          - check: file
            path: /state
            contains: ok
            owner: root
          - check: file
            path: /state
            mode: "0644"
          - check: command
            run: [id, -u]
            stdout_matches: '^0$'
        """,
    )
    since = int(time.time()) - 1
    result = pytester.runpytest(*INNER, f"--image={sample_image}", "-v")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*command `id -u` in container * exited with 0: stdout does*"])
    events = _events(client, since, {(pytester.path / "container-main").read_text()})
    # The run of 4 commands: a shell for the first, one for the root one, one for the last 2
    # (one shell at a time); the lone last command: 1. The 2 file criteria of one path: 1 read, and
    # /etc/passwd (the first criterion's path is missing, which the engine logs no event for).
    execs = [action for action in events if action.startswith("exec_create")]
    assert len(execs) == 4, events
    assert events.count("archive-path") == 2, events


def test_runs_end_at_the_end_of_their_file(
    pytester: pytest.Pytester, sample_image: str, client: docker.DockerClient
) -> None:
    pytester.makeconftest(CONFTEST)
    commands = "criteria:\n"
    for name in ("a", "b"):
        criteria = "".join(f"  - check: command\n    run: [echo, {name}{n}]\n" for n in range(3))
        pytester.path.joinpath(name).mkdir()
        pytester.path.joinpath(name, "imagecheck.yaml").write_text(commands + criteria)
    since = int(time.time()) - 1
    result = pytester.runpytest(*INNER, f"--image={sample_image}")
    result.assert_outcomes(passed=6)
    events = _events(client, since, {(pytester.path / "container-main").read_text()})
    assert len(events) == 2, events  # one shell per file: --dist loadfile may split them


@pytest.mark.parametrize(("dist", "shared"), [("load", False), ("loadfile", True)])
def test_under_xdist_only_workers_that_get_whole_files_share_work(
    pytester: pytest.Pytester,
    sample_image: str,
    client: docker.DockerClient,
    dist: str,
    shared: bool,
) -> None:
    pytester.makeconftest(CONFTEST)
    commands = "".join(
        f"  - check: command\n    run: [sh, -c, 'echo {n} >> /dev/shm/log']\n" for n in range(6)
    )
    pytester.makefile(".yaml", imagecheck="criteria:\n" + commands)
    since = int(time.time()) - 1
    result = pytester.runpytest(*INNER, f"--image={sample_image}", "-n", "2", "--dist", dist)
    result.assert_outcomes(passed=6)
    names = {path.read_text() for path in pytester.path.glob("container-gw*")}
    execs = [a for a in _events(client, since, names) if a.startswith("exec_create")]
    assert len(execs) == (1 if shared else 6), execs


NO_SHARING = """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    for item in session.items:
        item.shared = None
"""


def _verdicts(pytester: pytest.Pytester, image: str, *args: str) -> dict[str, tuple[str, str]]:
    """Each test's outcome and failure message in an inner run (its container named alike)."""
    reprec = pytester.inline_run(*INNER, f"--image={image}", *args)
    verdicts = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        if report.when == "call" or (report.when == "setup" and not report.passed):
            message = str(report.longrepr) if report.failed else ""
            message = re.sub(r"imagecheck-[0-9a-f]+-[0-9a-f]+", "<container>", message)
            verdicts[report.nodeid.rpartition("::")[2]] = (report.outcome, message)
    return verdicts


def _unshared(pytester: pytest.Pytester, image: str, *args: str) -> dict[str, tuple[str, str]]:
    """:func:`_verdicts` with no work shared: every criterion execs and reads for itself."""
    pytester.syspathinsert()
    pytester.makepyfile(no_sharing=NO_SHARING)
    return _verdicts(pytester, image, "-p", "no_sharing", *args)


NEIGHBOURS = """
criteria:
  - name: k1
    check: command
    run: [echo, one]
  - name: k2
    check: command
    run: {command}
  - name: k3
    check: command
    run: [echo, three]
  - name: k4
    check: command
    run: [sh, -c, 'sleep 0.5; echo four']
  - name: k5
    check: file
    path: /etc/passwd
"""
#: k2 of :data:`NEIGHBOURS`: commands that stop the container, or try to, or stop the shell.
SECOND = {
    "signals PID 1 to exit": '[kill, -USR1, "1"]',
    "signals PID 1 to exit, then runs on": "[sh, -c, 'echo before; kill -USR1 1; sleep 5']",
    "terms PID 1, then runs on": "[sh, -c, 'kill -TERM 1; sleep 5']",
    "kills PID 1, which an init ignores": '[kill, -KILL, "1"]',
    "kills its parent": "[sh, -c, 'kill -9 $PPID; echo after']",
    "closes stdout": "[sh, -c, 'exec >&-; echo closed >&2; exit 4']",
}


def _killed_or_not(verdict: tuple[str, str]) -> bool:
    """Whether ``verdict`` is one a plain exec of ``kill -USR1 1`` gets: exit 0, or, as often
    as not when PID 1 exits at once, 137 (the engine killed it with its container first)."""
    return verdict == ("passed", "") or bool(
        re.fullmatch(
            r"imagecheck.yaml:5: command `kill -USR1 1` in container <container> of \S+ "
            r"exited with 137, expected 0\nstdout:\n  \(no output\)\nstderr:\n  \(no output\)",
            verdict[1],
        )
    )


@pytest.mark.parametrize("second", list(SECOND), ids=list(SECOND))
def test_each_criterion_of_a_shared_run_gets_the_verdict_it_gets_unshared(
    pytester: pytest.Pytester, trapper: str, second: str
) -> None:
    pytester.makefile(".yaml", imagecheck=NEIGHBOURS.format(command=SECOND[second]))
    shared = _verdicts(pytester, trapper)
    unshared = _unshared(pytester, trapper)
    if SECOND[second] == '[kill, -USR1, "1"]':  # its own verdict is a race, shared or not
        assert _killed_or_not(shared.pop("k2")) and _killed_or_not(unshared.pop("k2"))
    assert shared == unshared
    if "exit" in second or "terms" in second:  # the rest find the container stopped
        assert "before ['echo', 'three'] could run" in shared["k3"][1]
        assert "before ['sh', '-c', 'sleep 0.5; echo four'] could run" in shared["k4"][1]
    # A file is read from a stopped container as from a running one (the archive API).
    assert shared["k5"] == ("passed", "")


def test_criteria_before_a_stop_get_what_they_get_alone_in_a_fresh_session(
    pytester: pytest.Pytester, trapper: str
) -> None:
    pytester.makefile(
        ".yaml", imagecheck=NEIGHBOURS.format(command=SECOND["signals PID 1 to exit"])
    )
    alone = _verdicts(pytester, trapper, "imagecheck.yaml::k1")
    assert alone == {"k1": ("passed", "")}
    for selected in ([], ["-k", "k1 or k2"]):
        shared = _verdicts(pytester, trapper, *selected)
        assert shared["k1"] == alone["k1"] and _killed_or_not(shared["k2"]), selected


#: A conftest that skips the criterion named "skipped" at collection.
SKIP_THE_ONE_NAMED_SKIPPED = """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if item.name == "skipped":
            item.add_marker(pytest.mark.skip(reason="not here"))
"""


def test_a_skipped_criterion_of_a_shared_run_runs_nothing(
    pytester: pytest.Pytester, sample_image: str
) -> None:
    pytester.makeconftest(SKIP_THE_ONE_NAMED_SKIPPED)
    pytester.makefile(
        ".yaml",
        imagecheck="""
        criteria:
          - check: command
            run: [echo, one]
          - name: skipped
            check: command
            run: [touch, /dev/shm/skipped]
          - check: command
            run: [test, -e, /dev/shm/skipped]
            exit_code: 1
        """,
    )
    shared = _verdicts(pytester, sample_image)
    assert shared == _unshared(pytester, sample_image)
    assert [outcome for outcome, _ in shared.values()] == ["passed", "skipped", "passed"]


def test_a_path_the_engine_refuses_fails_only_the_file_criterion_that_reads_it(
    pytester: pytest.Pytester, build_image: Any, busybox: str
) -> None:
    looped = build_image(
        f'FROM {busybox}\nRUN ln -s /loop2 /loop1 && ln -s /loop1 /loop2\nCMD ["sleep", "3600"]\n'
    )
    pytester.makefile(
        ".yaml",
        imagecheck="""
        criteria:
          - name: passwd
            check: file
            path: /etc/passwd
          - name: loop
            check: file
            path: /loop1
        """,
    )
    shared = _verdicts(pytester, looped)
    assert shared == _unshared(pytester, looped)
    assert shared["passwd"] == ("passed", "")
    assert "/loop1" in shared["loop"][1]


def test_a_shared_shell_is_gone_before_the_next_test_when_the_last_members_were_skipped(
    pytester: pytest.Pytester, sample_image: str
) -> None:
    pytester.makeconftest(SKIP_THE_ONE_NAMED_SKIPPED)
    pytester.makefile(
        ".yaml",
        imagecheck="""
        criteria:
          - check: command
            run: [echo, one]
          - name: skipped
            check: command
            run: [echo, two]
        """,
    )
    pytester.makepyfile(
        test_after="""
        def test_no_shell_is_left(container):
            assert "sh -s" not in container.exec(["ps", "-o", "args"]).stdout
        """
    )
    result = pytester.runpytest(*INNER, f"--image={sample_image}")
    result.assert_outcomes(passed=2, skipped=1)


def test_an_exec_right_after_pid_1_stopped_says_the_container_stopped(
    engine: Engine, trapper: str
) -> None:
    # Between the runtime killing the container and the engine recording it (about 0.1 s),
    # an exec is answered 126 "cannot exec in a stopped state": that is a stopped container.
    for _ in range(5):
        container = engine.run(engine.image(trapper), ports=[])
        try:
            assert container.exec(list(STOPS_THEN_RUNS_ON)).exit_code == 137
            try:
                result = container.exec(["true"])
            except ContainerFailed as failed:
                assert "exited with code 9 before ['true'] could run" in str(failed)
            else:
                pytest.fail(f"an exec in the stopped container gave {result!r}")
        finally:
            engine.remove(container)
