"""container-structure-test files run natively (issue 16): reading them as CST does, the Go
behaviour its verdicts depend on, collection, bad input, and the sharing of a container that
no verdict may see. ``tests/test_cst_differential.py`` compares every verdict with the binary.
"""

from __future__ import annotations

import json
import os
import signal
import tarfile
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import docker
import pytest

from pytest_imagecheck.cst import golang
from pytest_imagecheck.cst.runner import _own_container
from pytest_imagecheck.cst.schema import (
    CommandTest,
    CstError,
    CstFile,
    FileExistenceTest,
    parse_cst,
    validation_errors,
)
from pytest_imagecheck.engine import LABEL_PID
from tests.conftest import leftovers, wait_for

# --- reading a file as yaml.v2 does -----------------------------------------------------------


def _decode(body: str) -> CstFile:
    return parse_cst("schemaVersion: 2.0.0\n" + textwrap.dedent(body))


def test_values_decode_as_yaml_v2_decodes_them_not_as_pyyaml() -> None:
    cst = _decode(
        """\
        fileExistenceTests:
          - {name: a, path: /x, shouldExist: n, uid: 0x3e8, gid: 01750}
          - {name: b, path: /x, uid: 1_000, gid: 1000.9}
          - {name: c, path: /x, uid: ~, shouldExist: ~}
          - {name: d, path: /x, shouldExist: On}
        commandTests:
          - name: e
            command: env
            exitCode: 2.9
            envVars: [{key: MODE, value: 0644}, {key: FLAG, value: yes}]
        """
    )
    first, second, third, fourth = cst.file_existence_tests
    assert (first.should_exist, first.uid, first.gid) == (False, 1000, 1000)
    assert (second.uid, second.gid) == (1000, 1000)
    # null is Go's zero value, not the default: uid 0 is checked, shouldExist is false
    assert (third.uid, third.should_exist) == (0, False)
    assert fourth.should_exist is True
    command = cst.command_tests[0]
    assert command.exit_code == 2
    assert [(v.key, v.value) for v in command.env_vars] == [("MODE", "0644"), ("FLAG", "yes")]


def test_left_out_keys_take_cst_defaults() -> None:
    test = _decode("fileExistenceTests:\n  - {name: a, path: /x}\n").file_existence_tests[0]
    assert (test.should_exist, test.uid, test.gid) == (True, -1, -1)


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (
            "metadataTest:\n  env:\n    - {key: A, value: b}\n",
            3,
            'unknown key "env" in metadataTest (did you mean envVars?)',
        ),
        (
            "fileExistenceTests:\n  - name: a\n    path: /x\n    uid: '0'\n",
            5,
            'fileExistenceTests[0].uid: expected an integer, got the string "0" (quoted)',
        ),
        (
            "commandTests:\n  - name: a\n    command: echo\n    args: hello\n",
            5,
            "commandTests[0].args: expected a list of strings",
        ),
        (
            "commandTests:\n  - name: a\n    command: echo\n    command: true\n",
            5,
            'duplicate key "command" in commandTests[0] (first on line 4)',
        ),
        ("fileTests: []\n", 2, 'unknown top-level key "fileTests"'),
        ("commandTests:\n  - name: a\n    setup: [touch]\n", 4, "setup: [[touch, /tmp/ready]]"),
    ],
)
def test_a_mistake_is_one_line_with_the_file_and_line(body: str, line: int, words: str) -> None:
    with pytest.raises(CstError) as raised:
        parse_cst("schemaVersion: 2.0.0\n" + body, "app/structure-test.yaml")
    message = str(raised.value)
    assert message.startswith(f"app/structure-test.yaml:{line}: "), message
    assert words in message
    assert "\n" not in message


def test_schema_version_1_is_refused_with_the_reason() -> None:
    with pytest.raises(CstError, match=r"st.yaml:1: schemaVersion 1.0.0 is .*first schema"):
        parse_cst("schemaVersion: 1.0.0\ncommandTests: []\n", "st.yaml")


@pytest.mark.parametrize("version", ["'2.0'", "3.0.0"])
def test_an_unknown_schema_version_is_refused(version: str) -> None:
    with pytest.raises(CstError, match=r"write schemaVersion: 2.0.0"):
        parse_cst(f"schemaVersion: {version}\n")


def test_what_cst_refuses_per_test_is_that_tests_failure_not_the_files() -> None:
    cst = _decode(
        """\
        commandTests:
          - command: echo
          - name: no command
          - {name: empty env, command: echo, envVars: [{key: A, value: ''}]}
        fileExistenceTests:
          - name: no path
        """
    )
    errors = [validation_errors(t) for t in (*cst.command_tests, *cst.file_existence_tests)]
    assert errors == [
        ["Please provide a valid name for every test"],
        ["Please provide a valid command to run for test no command"],
        ["Please provide non-empty keys and values for all specified env vars"],
        ["Please provide a valid file path for test no path"],
    ]
    assert validation_errors(CommandTest(name="ok", command="true")) == []
    assert validation_errors(FileExistenceTest(name="ok", path="/x")) == []


# --- the Go behaviour -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$APP_ENV/${APP_ENV}", "prod/prod"),
        ("$NOPE.", "."),
        ("$$ $1 ${}", "  "),
        ("$(id) x$", "$(id) x$"),
        ("${unclosed", "unclosed"),
        ("${APP_ENV:-x}", ""),
    ],
)
def test_expansion_is_go_os_expand(text: str, expanded: str) -> None:
    assert golang.expand_env(text, {"APP_ENV": "prod"}) == expanded


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^hello$", "hello\n", False),
        ("(?m)^hello$", "hello\n", True),
        ("^hello\\n$", "hello\n", True),
        ("v\\sx", "v\x0bx", False),  # Go's \s has no vertical tab
        ("\\d", "\u0663", False),  # ASCII digits only
        ("(?i)k", "\u212a", True),  # Unicode case folding: the Kelvin sign
        ("(?<=x)y", "xy", None),  # no lookarounds
        ("(a)\\1", "aa", None),  # no backreferences
        ("a\\Cb", "axb", None),  # RE2 takes \C, Go does not
        ("\\Qa\\Cb\\E", "a\\Cb", True),  # ...but quoted it is text
        ("l{1001}", "l", None),
    ],
)
def test_regular_expressions_are_go_re2(pattern: str, text: str, matches: bool | None) -> None:
    assert golang.regexp_matches(pattern, text) is matches


def test_invalid_utf8_becomes_one_replacement_per_byte_as_go_json_writes_it() -> None:
    assert golang.decode(b"caf\xc3\xa9 \xe2\x82 x") == "café \ufffd\ufffd x"


@pytest.mark.parametrize(
    ("mode", "kind", "shown"),
    [
        (0o100644, tarfile.REGTYPE, "-rw-r--r--"),
        (0o104755, tarfile.REGTYPE, "urwxr-xr-x"),
        (0o102750, tarfile.REGTYPE, "grwxr-x---"),
        (0o41777, tarfile.DIRTYPE, "dtrwxrwxrwx"),
        (0o120777, tarfile.SYMTYPE, "Lrwxrwxrwx"),
        (0o20666, tarfile.CHRTYPE, "Dcrw-rw-rw-"),
    ],
)
def test_modes_are_written_as_go_writes_them(mode: int, kind: bytes, shown: str) -> None:
    info = tarfile.TarInfo("x")
    info.mode, info.type = mode, kind
    assert golang.file_mode(info) == shown


@pytest.mark.parametrize(
    ("logs", "read"),
    [
        (b"", (b"", b"")),
        (b"hello\r\n", (b"", b"")),  # under 8 bytes: no header, no output, no error
        (b"out\r\nerr\r\n", "Unrecognized input header: 111"),
        (b"\x01\0\0\0\0\0\0\x02ok\x02\0\0\0\0\0\0\x01e", (b"ok", b"e")),
        (b"\x01\0\0\0\0\0\0\x09abc", (b"", b"")),  # the frame cut short
        (b"\x03\0\0\0\0\0\0\x03abc", "error from daemon in stream: abc"),
    ],
)
def test_logs_are_read_as_go_stdcopy_reads_them(logs: bytes, read: object) -> None:
    """CST reads a TTY container's logs, which are not multiplexed, through StdCopy."""
    if isinstance(read, str):
        with pytest.raises(golang.StdCopyError, match=f"^{read}$"):
            golang.stdcopy(logs)
    else:
        assert golang.stdcopy(logs) == read


def test_env_files_are_read_as_godotenv_reads_them() -> None:
    text = (
        "# comment\nA=1\nexport B=two\nC='single $A'\nD=\"double ${A}\\n\"\n"
        "E=plain # note\nF=\nG: colon\n"
    )
    assert golang.parse_env_file(text) == {
        "A": "1",
        "B": "two",
        "C": "single $A",
        "D": "double 1\n",
        "E": "plain",
        "F": "",
        "G": "colon",
    }


@pytest.mark.parametrize(
    ("argv", "own"),
    [
        (["echo", "hello"], False),
        (["sh", "-c", "a && b || c"], False),
        (["sh", "-c", "echo x 2>&1 >/dev/null"], False),
        (["sh", "-c", "sleep 3 & echo started"], True),
        (["ps"], True),
        (["cat", "/proc/1/cmdline"], True),
        (["sh", "-c", "kill -TERM 1"], True),
        (["sh", "-c", "echo 1.2.3.4 x >> /etc/hosts"], True),
        # /dev is a tmpfs, in no diff: a file made there would outlive the exec
        (["sh", "-c", "echo x > /dev/leftover"], True),
        (["ls", "/dev/leftover"], True),
        (["sh", "-c", "cd /dev && echo x > shm/y"], True),
        (["mknod", "/dev/mynull", "c", "1", "3"], True),
        (["sh", "-c", "head -c 4 /dev/urandom >/dev/null 2>/dev/stderr; ls /dev/fd/"], False),
    ],
)
def test_commands_that_could_tell_an_exec_from_pid_1_get_their_own_container(
    argv: list[str], own: bool
) -> None:
    assert (_own_container(argv) is not None) is own


# --- collection -------------------------------------------------------------------------------

SIMPLE = """\
schemaVersion: 2.0.0
commandTests:
  - name: says hello
    command: echo
    args: [hello]
  - name: says hello
    command: echo
fileExistenceTests:
  - name: the root
    path: /
licenseTests:
  - debian: true
metadataTest:
  workdir: /
"""


def test_a_cst_file_given_on_the_command_line_is_collected_with_cst_names(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", checks=SIMPLE)
    result = pytester.runpytest("--collect-only", "-q", "checks.yaml")
    result.stdout.fnmatch_lines(
        [
            "checks.yaml::says hello",
            "checks.yaml::says hello #2",
            "checks.yaml::the root",
            "checks.yaml::licenseTests",
            "checks.yaml::metadataTest",
        ]
    )


def test_cst_files_in_a_folder_are_collected_by_their_name_pattern(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", **{"app_structure-test": SIMPLE, "other": SIMPLE})
    pytester.makefile(".yml", notcst_structure_test="version: 1\nitems: []\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["app_structure-test.yaml::says hello", "*5 tests collected*"])
    assert "other.yaml" not in result.stdout.str()
    pytester.makeini("[pytest]\nimagecheck_cst = other.yaml\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["other.yaml::says hello", "*5 tests collected*"])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("commandTests:\n\t- name: a\n", "checks.yaml:3: not valid YAML (found character '\\t'*"),
        (
            "commandTests:\n  - {name: a, command: echo, args: [x\n",
            "checks.yaml:3: not valid YAML*",
        ),
        (
            "---\nschemaVersion: 2.0.0\ncommandTests: [{name: a, command: 'true'}]\n",
            "checks.yaml:2: not valid YAML (but found another document): a container-structure-"
            "test file is one document: remove the --- line",
        ),
    ],
    ids=["tab", "unclosed", "second-document"],
)
def test_a_cst_file_that_is_not_yaml_says_where_not_that_it_was_not_found(
    pytester: pytest.Pytester, body: str, words: str
) -> None:
    pytester.makefile(".yaml", checks="schemaVersion: 2.0.0\n" + body)
    result = pytester.runpytest("checks.yaml")
    result.stdout.fnmatch_lines([f"*{words}"])
    assert "not found" not in result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_empty_documents_after_the_first_are_read_as_yaml_v2_reads_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".yaml", checks="schemaVersion: 2.0.0\ncommandTests: [{name: a, command: echo}]\n---\n"
    )
    result = pytester.runpytest("--collect-only", "-q", "checks.yaml")
    result.stdout.fnmatch_lines(["checks.yaml::a", "*1 test collected*"])


def test_a_bad_cst_file_stops_collection_with_one_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", checks="schemaVersion: 2.0.0\nmetadataTest:\n  env: []\n")
    result = pytester.runpytest("checks.yaml")
    result.stdout.fnmatch_lines(['*checks.yaml:3: unknown key "env" in metadataTest*'])
    assert result.ret == pytest.ExitCode.INTERRUPTED


@pytest.mark.parametrize(
    ("options", "allow"),
    [
        ("privileged: true", "--cst-allow-privileged"),
        ("bindMounts: ['/etc:/host-etc']", "--cst-allow-bind-mounts"),
    ],
)
def test_privileged_and_bind_mounts_are_refused_unless_allowed_by_name(
    pytester: pytest.Pytester, options: str, allow: str
) -> None:
    pytester.makefile(
        ".yaml",
        checks=f"schemaVersion: 2.0.0\ncontainerRunOptions:\n  {options}\n"
        "commandTests:\n  - {name: a, command: 'true'}\n",
    )
    refused = pytester.runpytest("--collect-only", "checks.yaml")
    refused.stdout.fnmatch_lines([f"*checks.yaml:3: containerRunOptions.*pass {allow} to allow it"])
    allowed = pytester.runpytest("--collect-only", "-q", allow, "checks.yaml")
    allowed.stdout.fnmatch_lines(["checks.yaml::a"])


def test_a_cst_file_without_an_image_fails_as_other_criteria_files(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", checks=SIMPLE)
    result = pytester.runpytest("checks.yaml")
    result.stdout.fnmatch_lines(["*no image under test: pass --image REF*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


# --- on the engine ----------------------------------------------------------------------------

SHARING = """\
schemaVersion: 2.0.0
commandTests:
  - name: id
    command: id
    expectedOutput: ['uid=0']
  - name: writes a file
    command: touch
    args: [/made]
  - name: the file is gone
    command: ls
    args: [/made]
  - name: starts a server that forks
    command: httpd
    args: [-p, '8081', -h, /]
  - name: the server is gone
    command: wget
    args: [-q, -O-, 'http://127.0.0.1:8081/']
  - name: echo
    command: echo
    args: [hello]
    expectedOutput: ['^hello$']
  - name: pwd
    command: pwd
    expectedOutput: ['^/\\n$']
"""


def _cases(report: Path) -> dict[str, tuple[bool, dict[str, str]]]:
    cases = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        properties = {p.get("name") or "": p.get("value") or "" for p in case.iter("property")}
        passed = case.find("failure") is None and case.find("error") is None
        cases[str(case.get("name"))] = (passed, properties)
    return cases


@pytest.mark.parametrize("ahead", [[], ["--no-start-ahead"]], ids=["ahead", "on-demand"])
def test_sharing_a_container_between_command_tests_changes_no_verdict(
    pytester: pytest.Pytester, busybox: str, client: docker.DockerClient, ahead: list[str]
) -> None:
    pytester.makefile(".yaml", checks=SHARING)
    result = pytester.runpytest(
        f"--image={busybox}", "checks.yaml", "--junitxml=report.xml", *ahead
    )
    cases = _cases(pytester.path / "report.xml")
    verdicts = {name: passed for name, (passed, _) in cases.items()}
    assert verdicts == {
        "id": True,
        "writes a file": True,
        "the file is gone": False,  # a fresh container in CST: no /made
        "starts a server that forks": True,
        "the server is gone": False,  # nothing listens in a fresh container
        "echo": False,  # Go: $ is the end of the text, and echo ends with a newline
        "pwd": True,
    }, result.stdout.str()
    ran_in = {name: props["imagecheck.cst_ran_in"] for name, (_, props) in cases.items()}
    assert ran_in["id"].startswith("exec in shared container")
    assert ran_in["pwd"].startswith("exec in shared container")
    assert not leftovers(client, os.getpid())


def test_a_file_made_in_dev_is_gone_in_the_next_test(
    pytester: pytest.Pytester, busybox: str
) -> None:
    """/dev is a tmpfs: what an exec makes there is in no overlay directory. CST's verdicts:
    each test's own container has a fresh /dev. The glob (de?) hides /dev from the words."""
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\ncommandTests:\n"
        "  - {name: writes, command: sh, args: [-c, 'echo x > /dev/left']}\n"
        "  - {name: reads, command: ls, args: [/dev/left]}\n"
        "  - {name: writes hidden, command: sh, args: [-c, 'cd /de? && echo x > hidden']}\n"
        "  - {name: reads hidden, command: sh, args: [-c, 'cd /de? && cat hidden']}\n"
        "  - {name: writes shm, command: sh, args: [-c, 'cd /de?/s?m && echo x > hidden']}\n"
        "  - {name: reads shm, command: sh, args: [-c, 'cd /de?/s?m && cat hidden']}\n"
        "  - {name: echo, command: echo}\n",
    )
    pytester.runpytest(f"--image={busybox}", "checks.yaml", "--junitxml=report.xml")
    cases = _cases(pytester.path / "report.xml")
    assert {name: passed for name, (passed, _) in cases.items()} == {
        "writes": True,
        "reads": False,
        "writes hidden": True,
        "reads hidden": False,
        "writes shm": True,
        "reads shm": False,
        "echo": True,
    }


def test_a_tty_command_that_prints_under_8_bytes_passes_as_in_cst(
    pytester: pytest.Pytester, busybox: str
) -> None:
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\ncontainerRunOptions: {allocateTty: true}\ncommandTests:\n"
        "  - {name: short, command: echo, args: [hi]}\n"
        "  - {name: seven, command: printf, args: ['1234567'], expectedOutput: ['^$']}\n"
        "  - {name: eight, command: printf, args: ['12345678']}\n",
    )
    result = pytester.runpytest(f"--image={busybox}", "checks.yaml", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*checks.yaml:6: * printed 8 bytes or more (Unrecognized input header: 49)*"]
    )


def test_the_image_health_check_runs_as_in_csts_fresh_containers(
    pytester: pytest.Pytester, busybox: str, build_image
) -> None:
    """A shared container (or its spare) started long before an exec would have run the
    image's health check, which CST's fresh container has not; a command that runs long
    enough for the check to run during it in CST gets a container of its own."""
    image = build_image(f"FROM {busybox}\nHEALTHCHECK --interval=1s CMD touch /hc\n")
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\ncommandTests:\n"
        "  - {name: waits, command: sleep, args: ['1.5']}\n"
        "  - {name: no check yet, command: ls, args: [/hc]}\n"
        "  - {name: waits again, command: sleep, args: ['1.5']}\n"
        "  - {name: still no check, command: ls, args: [/hc]}\n"
        "  - {name: sees the check, command: sh, args: [-c, 'sleep 1.5; ls /hc']}\n",
    )
    pytester.runpytest(f"--image={image}", "checks.yaml", "--junitxml=report.xml")
    cases = _cases(pytester.path / "report.xml")
    assert {name: passed for name, (passed, _) in cases.items()} == {
        "waits": True,
        "no check yet": False,
        "waits again": True,
        "still no check": False,
        "sees the check": True,
    }
    ran_in = cases["sees the check"][1]["imagecheck.cst_ran_in"]
    assert "health check" in ran_in


LOSES_ITS_READER = """\
import docker, os, pytest

@pytest.fixture(autouse=True)
def remove_the_reader(request):
    if request.node.name == "missing":
        api = docker.from_env().api
        labels = ["pytest-imagecheck.cst=files", f"pytest-imagecheck.pid={os.getpid()}"]
        for found in api.containers(all=True, filters={"label": labels}):
            api.remove_container(found["Id"], force=True)
"""


def test_a_file_test_whose_container_is_lost_has_no_verdict_not_a_pass(
    pytester: pytest.Pytester, busybox: str
) -> None:
    """``shouldExist: false`` must not pass because the container it reads is gone."""
    pytester.makeconftest(LOSES_ITS_READER)
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\nfileExistenceTests:\n"
        "  - {name: there, path: /bin}\n"
        "  - {name: missing, path: /nope, shouldExist: false}\n",
    )
    result = pytester.runpytest(f"--image={busybox}", "checks.yaml", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["checks.yaml:4: the container file tests read was lost while the test ran (*"]
    )
    assert "Traceback" not in result.stdout.str()


KILLS_THE_SHARED_CONTAINER = """\
import docker, os, threading, time, pytest

@pytest.fixture(autouse=True)
def kill_the_shared_container(request):
    if request.node.name == "slow":
        def kill():  # once the exec runs in it
            api = docker.from_env().api
            labels = ["pytest-imagecheck.cst=shared", f"pytest-imagecheck.pid={os.getpid()}"]
            for _ in range(200):
                for found in api.containers(filters={"label": labels}):
                    if api.inspect_container(found["Id"]).get("ExecIDs"):
                        time.sleep(0.3)
                        api.kill(found["Id"])
                        return
                time.sleep(0.05)
        threading.Thread(target=kill, daemon=True).start()
"""


def test_an_exec_killed_with_its_shared_container_runs_again_in_its_own(
    pytester: pytest.Pytester, busybox: str
) -> None:
    """Its exit code (137) is the engine's doing, not the command's: CST's verdict is what
    the command gives in a container of its own."""
    pytester.makeconftest(KILLS_THE_SHARED_CONTAINER)
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\ncommandTests:\n"
        "  - {name: slow, command: sleep, args: ['3']}\n"
        "  - {name: after, command: 'true'}\n",
    )
    pytester.runpytest(
        f"--image={busybox}", "checks.yaml", "--no-start-ahead", "--junitxml=report.xml"
    )
    cases = _cases(pytester.path / "report.xml")
    assert {name: passed for name, (passed, _) in cases.items()} == {"slow": True, "after": True}
    assert "stopped while it ran" in cases["slow"][1]["imagecheck.cst_ran_in"]


def test_a_path_cst_does_not_see_says_so(
    pytester: pytest.Pytester, busybox: str, build_image
) -> None:
    image = build_image(f"FROM {busybox}\nRUN mkfifo /fifo\n")
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\nfileExistenceTests:\n"
        "  - {name: fifo, path: /fifo, shouldExist: true}\n",
    )
    result = pytester.runpytest(f"--image={image}", "checks.yaml")
    result.stdout.fnmatch_lines(
        ["*/fifo is a named pipe, which container-structure-test does not see: it counts as*"]
    )


def test_a_failure_names_the_line_and_says_why_go_did_not_match(
    pytester: pytest.Pytester, busybox: str
) -> None:
    pytester.makefile(".yaml", checks=SHARING)
    result = pytester.runpytest(f"--image={busybox}", "checks.yaml", "-k", "echo")
    result.stdout.fnmatch_lines(
        [
            "checks.yaml:18: stdout has no match for '^hello$': \"hello\\n\" (in Go ^ and $ "
            "match only at the ends of the whole text: write (?m) before the pattern*"
        ]
    )


def test_cst_tests_are_in_the_evidence_report(pytester: pytest.Pytester, busybox: str) -> None:
    pytester.makefile(".yaml", checks=SHARING)
    pytester.runpytest(
        f"--image={busybox}", "checks.yaml", "-k", "id or pwd", "--imagecheck-report=r.json"
    )
    report = json.loads((pytester.path / "r.json").read_text())
    text = json.dumps(report)
    assert "Command Test: id" in text and "Command Test: pwd" in text


def test_a_write_to_a_volume_is_gone_in_the_next_test(
    pytester: pytest.Pytester, busybox: str, build_image
) -> None:
    image = build_image(f"FROM {busybox}\nVOLUME /data\n")
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\ncommandTests:\n"
        "  - {name: writes, command: touch, args: [/data/x]}\n"
        "  - {name: reads, command: ls, args: [/data/x]}\n"
        "  - {name: again, command: ls, args: [/data]}\n",
    )
    pytester.runpytest(f"--image={image}", "checks.yaml", "--junitxml=report.xml")
    cases = _cases(pytester.path / "report.xml")
    assert {name: passed for name, (passed, _) in cases.items()} == {
        "writes": True,
        "reads": False,
        "again": True,
    }
    assert "volumes" in cases["reads"][1]["imagecheck.cst_ran_in"]


def test_each_family_member_gets_each_cst_test(
    pytester: pytest.Pytester, busybox: str, build_image
) -> None:
    other = build_image(f"FROM {busybox}\nLABEL member=two\n", tag="imagecheck-test/cst-two:1")
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\ncommandTests:\n  - {name: true, command: 'true'}\n"
        "metadataTest:\n  cmd: [sh]\n",
    )
    result = pytester.runpytest(
        f"--image=one={busybox}", f"--image=two={other}", "checks.yaml", "-v"
    )
    result.stdout.fnmatch_lines_random(
        [
            "*checks.yaml::true?one? PASSED*",
            "*checks.yaml::true?two? PASSED*",
            "*checks.yaml::metadataTest?one? PASSED*",
            "*checks.yaml::metadataTest?two? PASSED*",
        ]
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_containers_and_committed_images_are_removed_on_interrupt(
    pytester: pytest.Pytester, inner_pytest, busybox: str, client: docker.DockerClient, sig
) -> None:
    pytester.makefile(
        ".yaml",
        checks="schemaVersion: 2.0.0\ncommandTests:\n"
        "  - {name: quick, command: 'true'}\n"
        "  - {name: slow, command: sleep, args: ['60']}\n"
        "  - {name: set up, setup: [[touch, /x], [sleep, '60']], command: 'true'}\n"
        "  - {name: after, command: 'true'}\n",
    )
    run = inner_pytest(f"--image={busybox}", "checks.yaml")

    def running() -> list[str]:
        found = client.api.containers(filters={"label": [f"{LABEL_PID}={run.pid}"]})
        return [c["Command"] for c in found]

    assert wait_for(lambda: any("sleep 60" in c for c in running()), timeout=60), running()
    run.signal(sig)
    code, output = run.finish()
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert leftovers(client, run.pid) == [], output
    committed = client.api.images(filters={"dangling": True, "label": f"{LABEL_PID}={run.pid}"})
    assert committed == []


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("x_cst.yaml", b"schemaVersion: 2.0.0\ncommandTests: ['\xff']\n", "is not UTF-8 text"),
        ("empty_cst.yaml", b"", ":1: the top level is not a mapping"),
        ("list_cst.yaml", b"- a\n", ":1: the top level is not a mapping"),
        ("imagecheck.yaml", b"schemaVersion: 2.0.0\n", ":1: schemaVersion makes this a "),
    ],
)
def test_a_file_named_as_a_cst_file_is_read_as_one(pytester, busybox, name, content, says):
    """A file the patterns name gets the reader's one-line error (it was "not found")."""
    (pytester.path / name).write_bytes(content)
    result = pytester.runpytest(f"--image={busybox}", name)
    output = result.stdout.str()
    assert says in output, output
    assert "not found" not in output
