"""Announced commands share one exec, and each still gets exactly what an exec of it gets;
announced reads of one path share one archive read.

The script is checked first with the host's own shells (dash and busybox ash, the two
``/bin/sh`` of the test images) on arbitrary arguments; then on the real engine, every
command of a table is run batched and alone in the same container and the results compared;
last, a YAML suite through the plugin is counted in the engine's exec and archive events.
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
from pytest_imagecheck.container import ExecResult, RunningContainer
from pytest_imagecheck.engine import Engine
from tests.test_injection import CONTAINER_MARKER, INNER, PAYLOAD_IDS, payloads

#: Arguments no shell may touch: quotes, expansions, separators, newlines, non-ASCII.
ARGUMENT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
SHELLS = {"dash": ["/bin/sh"], "busybox ash": ["/bin/busybox", "sh"]}
#: A printf each shell runs exactly: coreutils' for dash; for this busybox, which prefers its
#: applets, its own (a bare "printf" would be left to a plain exec, as the next test shows).
PRINTF = {"dash": ("printf",), "busybox ash": ("/bin/busybox", "printf")}


def _run_locally(shell: list[str], commands: list[Command]) -> list[tuple[int, str, str]]:
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
    results = _run_locally(
        SHELLS[shell],
        [
            Command(("echo", "--version")),  # the builtin or applet would print --version
            Command(("/bin/sh", "-c", "printf out; printf err >&2; exit 3")),
            Command(("/usr/bin/env",)),
            Command(("/bin/sh", "-c", "printf '\\n\\n'")),
        ],
    )
    if shell == "dash":
        alone = subprocess.run([echo, "--version"], capture_output=True, check=False)
        assert results[0] == (0, alone.stdout.decode(), "")
    else:  # this busybox runs its applets first: coreutils' echo is left to a plain exec
        assert results[0][0] == 126
    assert results[1] == (3, "out", "err")
    assert not {line.partition("=")[0] for line in results[2][1].splitlines()} & {
        "PWD",
        "OLDPWD",
        "SHLVL",
    }
    assert results[3] == (0, "\n\n", "")


def test_split_output_stops_where_the_shell_stopped() -> None:
    mark = "M"
    assert split_output("", "", mark=mark) == []
    assert split_output("OCI runtime exec failed: no /bin/sh\r\n", "", mark=mark) == []
    # The second command killed the shell: its output came, its markers never did.
    assert split_output("a\nM 0\nhalf", "\nM\nx", mark=mark) == [(0, "a", "")]
    assert split_output("a\nM zero\n", "\nM\n", mark=mark) == []


def test_first_words_a_shell_would_read_as_options_are_not_batched() -> None:
    assert not Command(("-x",)).batchable
    assert Command.of("id -u", user="root") == Command(("id", "-u"), user="root")
    assert Command.of(["env"], env={"B": "2", "A": "1"}).env == (("A", "1"), ("B", "2"))


# On the engine


@pytest.fixture(scope="module")
def engine(client: docker.DockerClient) -> Engine:
    return Engine(client, f"tests-batch-{secrets.token_hex(4)}")


class _ExecCounter:
    """Counts the execs a container's docker-py object makes (each a real engine call)."""

    def __init__(self, container: RunningContainer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.argvs: list[Any] = []
        raw = container._container
        real = raw.exec_run

        def exec_run(cmd: Any, **kwargs: Any) -> Any:
            self.argvs.append(cmd)
            return real(cmd, **kwargs)

        monkeypatch.setattr(raw, "exec_run", exec_run)


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
    Command(("env",), env=(("PWD", "/given"),)),
    Command(("sh", "-c", "echo out; echo err >&2; exit 3")),
    Command(("sh", "-c", "printf '\\377\\n'")),
    Command(("sh", "-c", "kill -9 $$")),
    Command(("no-such-program", "x")),
    Command(("/etc/passwd",)),
    Command(("-x",)),
    Command(("sh", "-c", "yes 0123456789 | head -c 300000")),
    Command(("ls", "/proc/self/fd")),  # no descriptor of the shell's leaks into the program
]


def _exec(container: RunningContainer, command: Command) -> ExecResult:
    return container.exec(
        list(command.argv),
        user=command.user or None,
        env=dict(command.env) or None,
        workdir=command.workdir or None,
    )


def test_batched_results_are_what_an_exec_of_each_gives(
    running: RunningContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = [_exec(running, command) for command in TABLE]
    counter = _ExecCounter(running, monkeypatch)
    running.announce(TABLE)
    batched = [_exec(running, command) for command in TABLE]
    for command, one, other in zip(TABLE, alone, batched, strict=True):
        if command.argv == ("env",):  # the same variables; a shell may pass them reordered
            assert sorted(other.stdout.splitlines()) == sorted(one.stdout.splitlines())
            continue
        assert (other.exit_code, other.stdout, other.stderr) == (
            one.exit_code,
            one.stdout,
            one.stderr,
        ), command
    # One shell per user/env/workdir group, plus the three a shell can't run exactly
    # (the missing program, the non-executable file, the "-x") alone.
    shells = [argv for argv in counter.argvs if argv[:2] == ["/bin/sh", "-c"]]
    assert len(shells) == 4
    assert len(counter.argvs) == 4 + 3


def test_announced_commands_run_in_order_and_once_each(
    running: RunningContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = Command(("sh", "-c", "echo x >> /dev/shm/count; wc -l < /dev/shm/count"), user="root")
    touch = Command(("touch", "/dev/shm/flag"), user="root")
    check = Command(("test", "-f", "/dev/shm/flag"), user="root")
    counter = _ExecCounter(running, monkeypatch)
    running.announce([count, touch, check, count])
    assert _exec(running, check).exit_code == 0
    assert [_exec(running, count).stdout.strip() for _ in range(3)] == ["1", "2", "3"]
    assert _exec(running, touch).exit_code == 0
    assert len(counter.argvs) == 2  # the batch, and the third count, which was announced twice


@pytest.mark.parametrize("payload", payloads(CONTAINER_MARKER), ids=PAYLOAD_IDS)
def test_batched_arguments_are_never_interpreted(running: RunningContainer, payload: str) -> None:
    commands = [
        Command(("echo", payload), user="root"),
        Command(("test", "-e", CONTAINER_MARKER), user="root"),
    ]
    running.announce(commands)
    assert _exec(running, commands[0]).stdout == payload + "\n"
    assert _exec(running, commands[1]).exit_code == 1


def test_image_without_a_shell_gets_one_exec_per_command(
    engine: Engine, build_image: Any, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = build_image(f'FROM {busybox}\nRUN ["/bin/busybox", "rm", "/bin/sh"]\n')
    container = engine.run(engine.image(tag), command=["sleep", "3600"], ports=[])
    try:
        counter = _ExecCounter(container, monkeypatch)
        commands = [Command(("echo", "one")), Command(("echo", "two"))]
        container.announce(commands)
        assert [_exec(container, c).stdout for c in commands] == ["one\n", "two\n"]
        assert len(counter.argvs) == 3  # the shell that is not there, then one exec each
    finally:
        engine.remove(container)


@pytest.mark.parametrize("env", [{"IFS": ","}, {"my-var": "1"}], ids=["IFS", "my-var"])
def test_environment_a_shell_would_not_pass_on_is_not_batched(
    engine: Engine, sample_image: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    container = engine.run(engine.image(sample_image), env=env)
    try:
        counter = _ExecCounter(container, monkeypatch)
        container.announce([Command(("env",)), Command(("true",))])
        assert f"{next(iter(env))}=" in _exec(container, Command(("env",))).stdout
        assert _exec(container, Command(("true",))).exit_code == 0
        assert counter.argvs == [["env"], ["true"]]
    finally:
        engine.remove(container)


def test_announced_reads_of_a_path_share_one_archive_read(
    engine: Engine, sample_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = engine.run(engine.image(sample_image))
    try:
        raw = container._container
        real, paths = raw.get_archive, []

        def get_archive(path: str, *args: Any, **kwargs: Any) -> Any:  # a counting spy
            paths.append(path)
            return real(path, *args, **kwargs)

        monkeypatch.setattr(raw, "get_archive", get_archive)
        page = "/srv/www/index.html"
        container.announce(
            reads=[(page, False), ("/etc/passwd", True), (page, True), ("/nope", False)]
        )
        assert_file(container, page, kind="file", owner="root")
        assert_file(container, page, contains="<")
        assert_file(container, "/nope", exists=False)
        assert paths == [page, "/etc/passwd", "/nope"]
        with pytest.raises(AssertionError, match="/nope does not exist"):
            assert_file(container, "/nope")  # beyond the announced uses: read again
        assert paths[-1] == "/nope" and len(paths) == 4
    finally:
        engine.remove(container)


def test_yaml_command_criteria_share_one_exec_of_the_session_container(
    pytester: pytest.Pytester, sample_image: str, client: docker.DockerClient
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def name(container):
            open("container-name", "w").write(container.name)
        """
    )
    pytester.makefile(
        ".yaml",
        imagecheck="""
        criteria:
          - check: command
            run: [id, -un]
            stdout_contains: svc
          - check: command
            run: "echo $HOME"
            stdout_matches: '^[$]HOME$'
          - check: file
            path: /srv/www
            kind: dir
            owner: root
          - check: file
            path: /srv/www
            mode: "0755"
          - check: command
            run: [sh, -c, "exit 4"]
            exit_code: 4
          - check: command
            run: [id, -u]
            user: root
            stdout_matches: '^0$'
          - check: command
            run: [id, -u]
            stdout_matches: '^0$'
        """,
    )
    since = int(time.time()) - 1
    result = pytester.runpytest(*INNER, f"--image={sample_image}", "-v")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(["*command `id -u` in container * exited with 0: stdout does*"])
    name = (pytester.path / "container-name").read_text()
    events = [
        event["Action"]
        for event in client.events(
            since=since,
            until=int(time.time()) + 1,
            decode=True,
            filters={"type": "container", "event": ["exec_create", "archive-path"]},
        )
        if event["Actor"]["Attributes"].get("name") == name
    ]
    # One shell for the four commands of the image's user, one for the command run as root.
    assert len([action for action in events if action.startswith("exec_create")]) == 2, events
    # One read of /srv/www for both file criteria, one of /etc/passwd for the owner.
    assert events.count("archive-path") == 2, events
