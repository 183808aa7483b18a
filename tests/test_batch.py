"""Runs of consecutive criteria share engine work: commands one exec, file criteria one read
per path; and each command still gets exactly what an exec of it alone gets.

The script is checked first with the host's own shells (dash and busybox ash, the two
``/bin/sh`` of the test images) on arbitrary arguments; then on the real engine, every command
of a table is run batched and alone in the same container and the results compared; last,
YAML suites through the plugin are counted in the engine's exec and archive events.
"""

from __future__ import annotations

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

from pytest_imagecheck.batch import Command, new_mark, script, split_output
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
    mark = new_mark()
    done = subprocess.run(
        [*shell, "-c", script(commands, mark=mark, environment={})],
        capture_output=True,
        check=False,
    )
    # Decoded as the container's exec output is: no newline translation.
    return split_output(done.stdout.decode(), done.stderr.decode(), mark=mark)


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
        assert results[3:] == [None]  # and the shell stops there, so the rest keep their order


def test_split_output_stops_where_the_shell_stopped() -> None:
    mark = "M"
    assert split_output("", "", mark=mark) == []
    assert split_output("OCI runtime exec failed: no /bin/sh\r\n", "", mark=mark) == []
    # The second command killed the shell: its output came, its markers never did.
    assert split_output("M start\na\nM 0\nhalf", "M start\n\nM\nx", mark=mark) == [(0, "a", "")]
    assert split_output("M start\na\nM zero\n", "M start\n\nM\n", mark=mark) == []


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
    execs = _Spy(running, "exec_run", monkeypatch)
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
    execs = _Spy(running, "exec_run", monkeypatch)
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
        execs = _Spy(container, "exec_run", monkeypatch)
        results = container.exec_batch([Command(("echo", "one")), Command(("echo", "two"))])
        assert [r.stdout for r in results] == ["one\n", "two\n"]
        assert len(execs.calls) == 3  # the shell that is not there, then one exec each
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
        execs = _Spy(container, "exec_run", monkeypatch)
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
    # The run of 4 commands: an exec alone for the first, one for the root one, one shell for
    # the last 2; the lone last command: 1. The 2 file criteria of one path: 1 read, and
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
