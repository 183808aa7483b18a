"""Every bad input a user can give the plugin, and the one line it answers with.

``CASES`` is the table: one row per input, its id reads as the input, then how the input is
given and what the run does (the outcome), then the exact line the user reads, which names
the input and the fix. Each row runs a real inner pytest session (``pytester.runpytest``) on
the real engine, and checks that the line is printed once, whole, as a line of its own (a
failing Python test may put its ``file:line: `` in front), that the run ends as the row says,
and that no traceback, no frame of the plugin's code and no docker-py exception is shown.

Placeholders: ``{tmp}`` is the inner session's folder, ``{image}`` the sample image (busybox
httpd exposing 8080), ``{busybox}`` its base, ``{container}`` the name of a container the
plugin started (``imagecheck-<session>-<random>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

#: How a run ends: pytest's exit code for the session, or the outcome of its one test.
USAGE_ERROR = "usage error (exit 4)"
SETUP_ERROR = "error at setup"
TEST_FAILS = "test fails"
COLLECTION_ERROR = "collection error (exit 2)"

CONTAINER_NAME = r"imagecheck-[0-9a-f]+-[0-9a-f]+"
#: Where a failing Python test made the call, as the plugin may show it: ``test_it.py:5: ``.
AT = r"(?:\S+:\d+: )?"

NO_IMAGE = "def test_it(image):\n    pass\n"


@dataclass(frozen=True)
class Given:
    """How a bad input reaches the plugin, and how the run must end."""

    outcome: str
    args: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def option(*args: str) -> Given:
    """Options alone: rejected before any test runs."""
    return Given(USAGE_ERROR, args, {"test_it.py": NO_IMAGE})


def session(*args: str, files: dict[str, str] | None = None, **env: str) -> Given:
    """Options and files the session fixtures (``image``, ``dockerfile``) cannot use."""
    return Given(SETUP_ERROR, args, {"test_it.py": NO_IMAGE, **(files or {})}, env)


def in_test(call: str, files: dict[str, str] | None = None) -> Given:
    """A Python test, run against the sample image, whose line 5 is ``call``."""
    used = [name for name in ("container", "run_container") if re.search(rf"\b{name}\(?\b", call)]
    fixtures = ", ".join(["image", *used])
    test = f"import pytest_imagecheck as ic\n\n\ndef test_it({fixtures}):\n    {call}\n"
    return Given(TEST_FAILS, ("--image={image}",), {"test_it.py": test, **(files or {})})


def in_yaml(criteria: str, outcome: str = COLLECTION_ERROR, **files: str) -> Given:
    """An ``imagecheck.yaml`` on the sample image; ``criteria`` is what follows ``criteria:``."""
    return Given(
        outcome, ("--image={image}",), {"imagecheck.yaml": "criteria:\n" + criteria, **files}
    )


def row(case_id: str, given: Given, line: str) -> Any:
    return pytest.param(given, line, id=case_id)


RUNN = {"ctx/Dockerfile": "FROM {busybox}\nRUNN true\n"}
BASE_STAGE = {"ctx/Dockerfile": "FROM {busybox} AS base\nLABEL stage=base\n"}
NOT_PUBLISHED = (
    "port 9999 is not published by {container} (published: 8080/tcp): EXPOSE it in the "
    "Dockerfile or pass ports=[...] to run_container"
)
BAD_SIZE = (
    'total: bad size "2.5XB": use bytes or a number with B, kB, MB, GB, TB, KiB, MiB, GiB, TiB '
    '(e.g. "2.5GB")'
)
BAD_DURATION = (
    'timeout: bad duration "30 seconds": use Docker\'s form, e.g. "30s", "1m30s", "500ms"'
)
WRITE_BASELINE = (
    "write one with `python -m pytest_imagecheck baseline IMAGE_REF {path}` from the image you "
    "accept"
)
CORRUPT = '{"size": 12'

CASES = [
    # The command line: one ERROR line on stderr and exit 4, before anything runs.
    row(
        "--image='Not An Image'",
        option("--image=Not An Image"),
        "ERROR: --image 'Not An Image' is not an image reference: use NAME[:TAG], "
        "NAME@sha256:DIGEST or an image ID (lowercase, no spaces)",
    ),
    row(
        "--image='autovoice:latest<newline>' (trailing newline)",
        option("--image=autovoice:latest\n"),
        "ERROR: --image 'autovoice:latest\\n' is not an image reference: use NAME[:TAG], "
        "NAME@sha256:DIGEST or an image ID (lowercase, no spaces)",
    ),
    row(
        "--build-context=does-not-exist",
        option("--build-context=does-not-exist"),
        "ERROR: --build-context {tmp}/does-not-exist is not a directory: pass the folder that "
        "holds the files the Dockerfile copies",
    ),
    row(
        "--build-context=test_it.py (a file)",
        option("--build-context=test_it.py"),
        "ERROR: --build-context {tmp}/test_it.py is not a directory: pass the folder that holds "
        "the files the Dockerfile copies",
    ),
    row(
        "--build-arg=APP_ENV (no =)",
        option("--build-arg=APP_ENV"),
        "ERROR: --build-arg 'APP_ENV' must be KEY=VALUE with KEY a variable name, "
        "e.g. --build-arg APP_ENV=prod",
    ),
    row(
        "--build-arg=1APP=prod (bad key)",
        option("--build-arg=1APP=prod"),
        "ERROR: --build-arg '1APP=prod' must be KEY=VALUE with KEY a variable name, "
        "e.g. --build-arg APP_ENV=prod",
    ),
    row(
        "--gpus=two",
        option("--gpus=two"),
        "ERROR: --gpus 'two' is not understood: use all, a count like 2, or device=0,1 "
        "(as for docker run --gpus)",
    ),
    row(
        "--gpus=device=",
        option("--gpus=device="),
        "ERROR: --gpus 'device=' is not understood: use all, a count like 2, or device=0,1 "
        "(as for docker run --gpus)",
    ),
    row(
        "--gpus=0",
        option("--gpus=0"),
        "ERROR: --gpus '0' is not understood: use all, a count like 2, or device=0,1 "
        "(as for docker run --gpus)",
    ),
    row(
        "--gpus=<superscript 2>",
        option("--gpus=\u00b2"),
        "ERROR: --gpus '\u00b2' is not understood: use all, a count like 2, or device=0,1 "
        "(as for docker run --gpus)",
    ),
    # The session: every test that uses the image (or Dockerfile) errors with one line.
    row(
        "no --image or --build-context",
        session(),
        "no image under test: pass --image REF to test an image, or --build-context DIR to build "
        "one (or set imagecheck_image in the ini file)",
    ),
    row(
        "--image=imagecheck-test/not-there:1 (missing)",
        session("--image=imagecheck-test/not-there:1"),
        "image 'imagecheck-test/not-there:1' not found on the engine: build or load it first, "
        "or pass --build-context DIR to have pytest build it",
    ),
    row(
        "DOCKER_HOST=unix:///nonexistent.sock",
        session("--image=imagecheck-test/sample:1", DOCKER_HOST="unix:///nonexistent.sock"),
        "Docker engine unreachable at unix:///nonexistent.sock (No such file or directory): "
        "start one (`sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST "
        "at a running engine",
    ),
    # Engines: named wrongly, or remote without a choice of where ports go (issue 17).
    row(
        "--engine=10.0.0.5:2375 (no scheme)",
        option("--image={image}", "--engine=10.0.0.5:2375"),
        "ERROR: --engine '10.0.0.5:2375' is not an engine URL: use unix:///var/run/docker.sock, "
        "tcp://HOST:2376, ssh://USER@HOST, or the name of a Docker context",
    ),
    row(
        "--engine=nope (no such Docker context)",
        Given(
            USAGE_ERROR,
            ("--image={image}", "--engine=nope"),
            {"test_it.py": NO_IMAGE},
            {"DOCKER_CONFIG": "{tmp}/docker"},
        ),
        "ERROR: --engine nope: Docker context 'nope' does not exist "
        "({tmp}/docker/contexts/meta/"
        "ca3704aa0b06f5954c79ee837faa152d84d6b2d42838f0637a15eda8337dbdce/meta.json is missing): "
        "list them with `docker context ls`",
    ),
    row(
        "DOCKER_HOST=tcp://192.0.2.1:2375 (remote), no --publish-host",
        Given(
            USAGE_ERROR,
            ("--image={image}",),
            {"test_it.py": NO_IMAGE},
            {"DOCKER_HOST": "tcp://192.0.2.1:2375"},
        ),
        "ERROR: the engine tcp://192.0.2.1:2375 is on another machine: choose where its "
        "containers' ports are published with --publish-host engine (on 192.0.2.1, the address "
        "pytest reaches the engine at, which the machines of that network can reach too) or "
        "--publish-host ADDRESS (an address of the engine's host), or reach the engine over "
        "ssh:// to tunnel them",
    ),
    row(
        "--publish-host=gpu-host (not an address)",
        option("--image={image}", "--engine=tcp://192.0.2.1:2375", "--publish-host=gpu-host"),
        "ERROR: --publish-host 'gpu-host' is not an IP address: give an address of the engine's "
        "host (e.g. 10.0.0.5), engine (the address in the engine's URL) or tunnel (ssh:// "
        "engines)",
    ),
    row(
        "--engine twice without pytest-xdist workers",
        option("--image={image}", "--engine=unix:///var/run/docker.sock", "--engine=ssh://ci@h"),
        "ERROR: --engine names 2 engines, which a session spreads over pytest-xdist workers, "
        "one engine each: run with -n 2 or more",
    ),
    row(
        "--engine=tcp://127.0.0.1:1 (refused)",
        session("--image={image}", "--engine=tcp://127.0.0.1:1"),
        "Docker engine unreachable at tcp://127.0.0.1:1 (Connection refused): check the address "
        "and that the engine listens on tcp there (dockerd -H tcp://...)",
    ),
    row(
        "--target=prod (no such stage)",
        session("--build-context=ctx", "--target=prod", files=BASE_STAGE),
        '--target "prod" is not a stage of {tmp}/ctx/Dockerfile; its stages are: base',
    ),
    row(
        "--build-context with Dockerfile RUNN",
        session("--build-context=ctx", files=RUNN),
        '{tmp}/ctx/Dockerfile:2: unknown instruction "RUNN" (did you mean RUN?)',
    ),
    row(
        "--dockerfile with RUNN, dockerfile fixture",
        session(
            "--image={image}",
            "--dockerfile=ctx/Dockerfile",
            files={**RUNN, "test_it.py": "def test_it(dockerfile):\n    pass\n"},
        ),
        '{tmp}/ctx/Dockerfile:2: unknown instruction "RUNN" (did you mean RUN?)',
    ),
    # Path options are checked at start, whether or not a test uses them.
    row(
        "--dockerfile=nope/Dockerfile (missing) beside --image, no test uses it",
        option("--image={image}", "--dockerfile=nope/Dockerfile"),
        "ERROR: --dockerfile nope/Dockerfile does not exist ({tmp}/nope/Dockerfile): pass the "
        "path of a Dockerfile, relative to where pytest runs (as docker build -f)",
    ),
    row(
        "--dockerfile=. (a directory) beside --build-context",
        option("--build-context=.", "--dockerfile=."),
        "ERROR: --dockerfile . is a directory ({tmp}): pass the path of a Dockerfile, relative "
        "to where pytest runs (as docker build -f)",
    ),
    row(
        "--build-context=. without a Dockerfile in it",
        option("--build-context=."),
        "ERROR: --build-context . has no Dockerfile ({tmp}/Dockerfile): add one, or pass "
        "--dockerfile PATH",
    ),
    row(
        "--imagecheck-report=test_it.py/report.md (under a file)",
        option("--image={image}", "--imagecheck-report=test_it.py/report.md"),
        "ERROR: --imagecheck-report test_it.py/report.md cannot be written: {tmp}/test_it.py "
        "is a file, not a folder",
    ),
    row(
        "--imagecheck-report=. (a directory)",
        option("--image={image}", "--imagecheck-report=."),
        "ERROR: --imagecheck-report . is a directory: pass a file name, e.g. ./report.md",
    ),
    row(
        "--imagecheck-report=/proc/nope/r.md (a folder that cannot be made)",
        option("--image={image}", "--imagecheck-report=/proc/nope/r.md"),
        "ERROR: --imagecheck-report /proc/nope/r.md cannot be written: /proc/nope cannot be made "
        "(No such file or directory)",
    ),
    row(
        "ini imagecheck_keep_containers = maybe",
        Given(
            USAGE_ERROR,
            ("--image={image}",),
            {
                "test_it.py": NO_IMAGE,
                "pytest.ini": "[pytest]\nimagecheck_keep_containers = maybe\n",
            },
        ),
        "ERROR: imagecheck_keep_containers = 'maybe' in pytest.ini is not true or false: use true "
        "or false",
    ),
    row(
        "ini imagecheck_dockerfile = missing/Dockerfile",
        Given(
            USAGE_ERROR,
            ("--image={image}",),
            {
                "test_it.py": NO_IMAGE,
                "pytest.ini": "[pytest]\nimagecheck_dockerfile = missing/Dockerfile\n",
            },
        ),
        "ERROR: imagecheck_dockerfile in pytest.ini missing/Dockerfile does not exist "
        "({tmp}/missing/Dockerfile): pass the path of a Dockerfile, relative to the ini file (as "
        "docker build -f)",
    ),
    row(
        "ini imagecheck_gpus = two",
        Given(
            USAGE_ERROR,
            ("--image={image}",),
            {"test_it.py": NO_IMAGE, "pytest.ini": "[pytest]\nimagecheck_gpus = two\n"},
        ),
        "ERROR: imagecheck_gpus in pytest.ini 'two' is not understood: use all, a count like 2, or "
        "device=0,1 (as for docker run --gpus)",
    ),
    row(
        "ini imagecheck_build_args = NOEQUALS",
        Given(
            USAGE_ERROR,
            ("--image={image}",),
            {
                "test_it.py": NO_IMAGE,
                "pytest.ini": "[pytest]\nimagecheck_build_args =\n    NOEQUALS\n",
            },
        ),
        "ERROR: imagecheck_build_args in pytest.ini 'NOEQUALS' must be KEY=VALUE with KEY a "
        "variable name, e.g. --build-arg APP_ENV=prod",
    ),
    row(
        "--platform twice",
        option("--image={image}", "--platform=linux/amd64", "--platform=linux/arm64"),
        "ERROR: --platform was given 2 times (linux/amd64, linux/arm64): give it once, with the "
        "platforms as a list (linux/amd64,linux/arm64)",
    ),
    row(
        "--platform=linux/arm64,linux/bogus",
        option("--image={image}", "--platform=linux/arm64,linux/bogus"),
        "ERROR: --platform 'linux/arm64,linux/bogus': platform 'linux/bogus': 'bogus' is not a "
        "known architecture: use OS/ARCH[/VARIANT], e.g. linux/amd64, linux/arm64 or linux/arm/v7",
    ),
    row(
        "--image twice, one id",
        option("--image=imagecheck-test/a:1", "--image=imagecheck-test/a:2"),
        "ERROR: two members have the id a (--image imagecheck-test/a:1 gets the id a; --image "
        "imagecheck-test/a:2 gets the id a): give them ids of their own, e.g. --image "
        "a-2=imagecheck-test/a:2",
    ),
    row(
        "--image twice, one reference",
        option("--image=x=imagecheck-test/a:1", "--image=y=imagecheck-test/a:1"),
        "ERROR: members x and y have the same tag imagecheck-test/a:1 (--image "
        "x=imagecheck-test/a:1; --image y=imagecheck-test/a:1): each member needs a tag of its "
        "own",
    ),
    row(
        "--image twice with --build-context",
        option("--image=imagecheck-test/a:1", "--image=imagecheck-test/b:1", "--build-context=."),
        "ERROR: --build-context describes one build, but this session tests a family of images "
        "(--image given several times): declare each member's build under images: instead",
    ),
    row(
        "--image id that is not an id",
        option("--image=a b=imagecheck-test/a:1", "--image=imagecheck-test/b:1"),
        'ERROR: --image a b=imagecheck-test/a:1: member id "a b" is not a valid id: use '
        "letters, digits, '_', '.' and '-', starting with a letter or digit (it becomes part of "
        "test ids, like test_non_root[asr])",
    ),
    # Python tests: the test fails with the message, at the line that made the call.
    row(
        "assert_size_within(total='2.5XB')",
        in_test('ic.assert_size_within(image, total="2.5XB")'),
        BAD_SIZE,
    ),
    row(
        "assert_endpoint_ready(timeout='30 seconds')",
        in_test('ic.assert_endpoint_ready(container, "/", timeout="30 seconds")'),
        BAD_DURATION,
    ),
    row(
        "run_container(42)",
        in_test("run_container(42)"),
        "run_container(42): the image is an image reference (a string) or the image fixture's "
        "ImageUnderTest",
    ),
    row(
        "run_container(privileged=True)",
        in_test("run_container(privileged=True)"),
        "run option privileged=True is not one the plugin sets: use command, entrypoint, env, "
        "user, ports, read_only, tmpfs, cap_drop, security_opt, gpus, labels (it never runs "
        "privileged containers or mounts host paths)",
    ),
    row(
        'run_container(command="sh -c \'echo hi")',
        in_test('run_container(command="sh -c \'echo hi")'),
        'run option command="sh -c \'echo hi" cannot be split into words (No closing '
        "quotation): close the quote, or pass a list of words",
    ),
    row(
        'run_container(env={"A=B": "x"})',
        in_test('run_container(env={"A=B": "x"})'),
        "run option env has the name 'A=B': a variable name cannot be empty or hold \"=\", "
        'like {"MODE": "ro"}',
    ),
    row(
        'container.exec("echo \'hi")',
        in_test('container.exec("echo \'hi")'),
        'command "echo \'hi" cannot be split into words (No closing quotation): close the '
        "quote, or pass a list of words",
    ),
    row(
        'assert_healthy(container, wait_for_engine="no")',
        in_test('ic.assert_healthy(container, wait_for_engine="no")'),
        "wait_for_engine='no': expected True or False",
    ),
    row("container.url(9999)", in_test("container.url(9999)"), NOT_PUBLISHED),
    row(
        "assert_endpoint_ready(port=9999)",
        in_test('ic.assert_endpoint_ready(container, "/", port=9999)'),
        NOT_PUBLISHED,
    ),
    row(
        "assert_endpoint_ready('health') (no leading /)",
        in_test('ic.assert_endpoint_ready(container, "health")'),
        "endpoint path 'health' must start with '/', e.g. '/health'",
    ),
    row(
        "container.url(8080, 'health') (no leading /)",
        in_test('container.url(8080, "health")'),
        "path 'health' must start with '/', e.g. '/health'",
    ),
    row(
        "assert_size_within(baseline='nope.json') (missing)",
        in_test('ic.assert_size_within(image, baseline="nope.json", growth="10%")'),
        "size baseline nope.json does not exist: " + WRITE_BASELINE.format(path="nope.json"),
    ),
    row(
        "assert_size_within(baseline='size.json') (corrupt JSON)",
        in_test(
            'ic.assert_size_within(image, baseline="size.json", growth="10%")',
            {"size.json": CORRUPT},
        ),
        "size baseline size.json is not valid JSON (Expecting ',' delimiter at line 1): "
        + WRITE_BASELINE.format(path="size.json"),
    ),
    # imagecheck.yaml: a bad file stops collection (exit 2) naming the file and line; a bad
    # criterion fails its test naming the criterion's line.
    row(
        "yaml: total: [ (not YAML)",
        in_yaml("  - check: size\n   total: [\n"),
        "{tmp}/imagecheck.yaml:3: not valid YAML (expected <block end>, but found '<block "
        'mapping start>\'): check the indentation, and quote values that contain ": " or '
        "start with a special character",
    ),
    row(
        "yaml: intervall: 30s (unknown key)",
        in_yaml("  - check: healthcheck\n    intervall: 30s\n"),
        '{tmp}/imagecheck.yaml:3: unknown key "intervall" for check healthcheck (did you mean '
        "interval?): healthcheck takes interval, timeout, start_period, retries, test "
        "(and name, waive)",
    ),
    row(
        "yaml: runtime: maybe (wrong type)",
        in_yaml("  - check: non_root\n    runtime: maybe\n"),
        '{tmp}/imagecheck.yaml:3: runtime: expected true or false, got "maybe"',
    ),
    row(
        "yaml: total: 2.5XB",
        in_yaml("  - check: size\n    total: 2.5XB\n"),
        "{tmp}/imagecheck.yaml:3: " + BAD_SIZE,
    ),
    row(
        "yaml: timeout: 30 seconds",
        in_yaml("  - check: endpoint\n    timeout: 30 seconds\n"),
        "{tmp}/imagecheck.yaml:3: " + BAD_DURATION,
    ),
    row(
        "yaml: path: health (no leading /)",
        in_yaml("  - check: endpoint\n    path: health\n"),
        '{tmp}/imagecheck.yaml:3: path: expected an absolute path like "/app", got "health"',
    ),
    row(
        "yaml: port: 9999",
        in_yaml("  - check: endpoint\n    port: 9999\n", TEST_FAILS),
        "imagecheck.yaml:2: " + NOT_PUBLISHED,
    ),
    row(
        "yaml: baseline: nope.json (missing)",
        in_yaml("  - check: size\n    baseline: nope.json\n    growth: 10%\n", TEST_FAILS),
        "imagecheck.yaml:2: size baseline {tmp}/nope.json does not exist: "
        + WRITE_BASELINE.format(path="{tmp}/nope.json"),
    ),
    row(
        "yaml: baseline: size.json (corrupt JSON)",
        in_yaml(
            "  - check: size\n    baseline: size.json\n    growth: 10%\n",
            TEST_FAILS,
            **{"size.json": CORRUPT},
        ),
        "imagecheck.yaml:2: size baseline {tmp}/size.json is not valid JSON (Expecting ',' "
        "delimiter at line 1): " + WRITE_BASELINE.format(path="{tmp}/size.json"),
    ),
]


def _filled(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def _line_pattern(line: str, tmp: str, at: str) -> re.Pattern[str]:
    escaped = re.escape(line.replace("{tmp}", tmp)).replace(re.escape("{container}"), "{c}")
    return re.compile(at + escaped.replace("{c}", CONTAINER_NAME))


@pytest.mark.parametrize(("given", "line"), CASES)
def test_bad_input_is_one_line_naming_the_input_and_the_fix(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    given: Given,
    line: str,
) -> None:
    tmp = str(pytester.path.resolve())
    values = {"tmp": tmp}
    for name, fixture in (("image", "sample_image"), ("busybox", "busybox")):
        wanted = "{" + name + "}"
        if any(wanted in text for text in (*given.args, *given.files.values())):
            values[name] = request.getfixturevalue(fixture)
    for path, text in given.files.items():
        (pytester.path / path).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / path).write_text(_filled(text, values))
    for name, value in given.env.items():
        monkeypatch.setenv(name, _filled(value, values))

    # The inner runs leave hypothesis out: pytester forgets the modules an inner run imports,
    # and importing hypothesis again costs seconds per row (pytest-benchmark only warns).
    args = ("-p", "no:hypothesispytest", "-p", "no:benchmark")
    result = pytester.runpytest(*args, *(_filled(arg, values) for arg in given.args))

    output = result.outlines + result.errlines
    pattern = _line_pattern(line, tmp, AT if given.outcome == TEST_FAILS else "")
    shown = [text for text in output if pattern.fullmatch(text)]
    everything = "\n".join(output)
    assert len(shown) == 1, f"expected once, as a line of its own:\n{line}\n\n{everything}"
    assert "Traceback" not in everything
    assert "docker.errors" not in everything
    assert "pytest_imagecheck/" not in everything, "a frame of the plugin's code is shown"
    assert "During handling of the above exception" not in everything
    if given.outcome == USAGE_ERROR:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert shown[0] in result.errlines
    elif given.outcome == COLLECTION_ERROR:
        assert result.ret == pytest.ExitCode.INTERRUPTED
        result.assert_outcomes(errors=1)
    elif given.outcome == SETUP_ERROR:
        result.assert_outcomes(errors=1)
    else:
        result.assert_outcomes(failed=1)


def test_every_check_hides_its_own_frames_from_a_failing_test() -> None:
    """A failing ``assert_*`` in a Python test shows the test's line and the check's message,
    never the check's body (pytest prints the frames of functions without
    ``__tracebackhide__``)."""
    import inspect

    import pytest_imagecheck

    checks = [name for name in pytest_imagecheck.__all__ if name.startswith("assert_")]
    assert len(checks) >= 10
    shown = [
        name
        for name in checks
        if "__tracebackhide__ = True" not in inspect.getsource(getattr(pytest_imagecheck, name))
    ]
    assert shown == []
