"""Nothing the user writes passes through a shell: option parsers, builds, execs, YAML commands.

The parsers are checked with Hypothesis on arbitrary text; the rest on the real engine, with
payloads that would leave a file behind (``/tmp/pwned-<nonce>`` on the host, ``/pwned-<nonce>``
in a container) if any shell interpreted them. The containers the plugin starts are inspected
for what they must never get: privileges, bind mounts, the Docker socket, non-loopback ports.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.types import DeviceRequest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_imagecheck import build as build_module
from pytest_imagecheck.build import parse_build_arg
from pytest_imagecheck.checks.structure import assert_command
from pytest_imagecheck.container import RunningContainer
from pytest_imagecheck.engine import Engine, check_reference, parse_gpus
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.units import parse_duration, parse_size

NONCE = secrets.token_hex(4)
HOST_MARKER = f"/tmp/pwned-{NONCE}"
CONTAINER_MARKER = f"/pwned-{NONCE}"  # the sample image has no /tmp; root may write to /


def payloads(marker: str) -> list[str]:
    """Shell syntax that leaves ``marker`` behind if a shell runs it."""
    return [
        f"; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"\ntouch {marker}",
        f"' \" && touch {marker} # $HOME ${{X}} | >",
    ]


PAYLOAD_IDS = ["semicolon", "$()", "backticks", "newline", "quotes"]
LITERAL = "".join(payloads(HOST_MARKER))

# Option parsers, on arbitrary input

KEY = r"[A-Za-z_][A-Za-z0-9_]*"
SHELL_SYNTAX = st.sampled_from([";", "$(", ")", "`", "\n", "'", '"', "\\", "&&", "|", "$X", " "])
#: Text that is mostly shell syntax, and arbitrary text.
NASTY_TEXT = st.lists(st.one_of(SHELL_SYNTAX, st.text(max_size=4)), max_size=12).map("".join)
EXAMPLES = settings(max_examples=150, deadline=None)
#: Options for inner sessions: pytester forgets the modules an inner run imports, so loading
#: hypothesis there again would cost seconds a run; pytest-benchmark would only warn.
INNER = ("-p", "no:hypothesispytest", "-p", "no:benchmark")


@EXAMPLES
@given(key=st.from_regex(KEY, fullmatch=True), value=st.one_of(NASTY_TEXT, st.text()))
@example(key="X", value=LITERAL)
@example(key="X", value="a=b=c")
def test_build_arg_value_round_trips_exactly_whatever_it_holds(key: str, value: str) -> None:
    assert parse_build_arg(f"{key}={value}") == (key, value)


@EXAMPLES
@given(text=st.one_of(NASTY_TEXT, st.text()).filter(lambda text: "=" not in text))
def test_build_arg_without_equals_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(ImageCheckError) as error:
        parse_build_arg(text)
    assert repr(text) in str(error.value)


@EXAMPLES
@given(
    key=st.one_of(NASTY_TEXT, st.text()).filter(
        lambda key: "=" not in key and not re.fullmatch(KEY, key)
    ),
    value=st.text(),
)
@example(key="$(id)", value="x")
@example(key="1X", value="x")
@example(key="", value="x")
def test_build_arg_with_a_bad_key_is_an_error_naming_it(key: str, value: str) -> None:
    with pytest.raises(ImageCheckError) as error:
        parse_build_arg(f"{key}={value}")
    assert repr(f"{key}={value}") in str(error.value)


@EXAMPLES
@given(value=st.one_of(NASTY_TEXT, st.text(), st.from_regex(r"(count=|device=)?[0-9a-z,=]*")))
@example(value="²")  # a digit to str.isdigit(), not to int()
@example(value="device=0;touch /tmp/x")
def test_gpus_is_a_device_request_or_a_one_line_error(value: str) -> None:
    try:
        request = parse_gpus(value)
    except ImageCheckError as error:
        assert repr(value) in str(error)
        assert "\n" not in str(error)
        return
    assert isinstance(request, DeviceRequest)
    assert request.capabilities == [["gpu"]]
    assert not any(char in "".join(request.device_ids or []) for char in ";$`'\" \n|&")


@EXAMPLES
@given(
    count=st.integers(min_value=1, max_value=10_000),
    ids=st.lists(
        st.from_regex(r"[0-9]{1,2}|GPU-[0-9a-f]{8}", fullmatch=True), min_size=1, max_size=4
    ),
)
def test_gpus_accepts_all_counts_and_device_lists(count: int, ids: list[str]) -> None:
    assert parse_gpus("all").count == -1
    assert parse_gpus(str(count)).count == count
    assert parse_gpus(f"count={count}").count == count
    assert parse_gpus("device=" + ",".join(ids)).device_ids == ids


@EXAMPLES
@given(ref=st.one_of(NASTY_TEXT, st.text()))
@example(ref="autovoice:latest\n")  # a regular expression's $ matches before a final newline
@example(ref="0123456789ab\n")
def test_image_reference_is_returned_unchanged_or_a_one_line_error(ref: str) -> None:
    try:
        assert check_reference(ref) == ref
    except ImageCheckError as error:
        assert repr(ref) in str(error)
        return
    assert not re.search(r"[;$`\s'\"|&()<>\\]", ref), f"{ref!r} was accepted"


@EXAMPLES
@given(
    before=st.from_regex(r"[a-z0-9]{1,8}(:[a-z0-9]{1,8})?", fullmatch=True),
    syntax=st.sampled_from([";", "$(", "`", " ", "\n", "\t", "|", "&", "'", '"', "\\"]),
    after=st.text(max_size=8),
)
@example(before="autovoice:latest", syntax="\n", after="")
def test_image_reference_with_shell_syntax_is_rejected(
    before: str, syntax: str, after: str
) -> None:
    ref = before + syntax + after
    with pytest.raises(ImageCheckError, match="is not an image reference"):
        check_reference(ref)


WELL_FORMED = r"([a-z0-9]{1,8}(:[0-9]{2,5})?/)?[a-z0-9]{1,8}(/[a-z0-9]{1,8})?(:[\w][\w.-]{0,9})?"


@EXAMPLES
@given(ref=st.from_regex(WELL_FORMED, fullmatch=True).filter(str.isascii))
@example(ref="127.0.0.1:5000/autovoice-base@sha256:" + "4f" * 32)
def test_well_formed_image_reference_is_accepted_unchanged(ref: str) -> None:
    assert check_reference(ref) == ref


ANY_INPUT = st.one_of(
    NASTY_TEXT,
    st.text(),
    st.from_regex(r"[0-9.]{0,30} ?[a-zA-Zµμ]{0,4}([0-9.]+[a-zµ]{1,2})*", fullmatch=True),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)


@EXAMPLES
@given(value=ANY_INPUT)
@example(value="9" * 400 + "TiB")
@example(value="2.5XB")
def test_parse_size_is_bytes_or_a_one_line_error(value: Any) -> None:
    try:
        size = parse_size(value)
    except ImageCheckError as error:
        assert "\n" not in str(error)
        return
    assert isinstance(size, int) and size >= 0


@EXAMPLES
@given(value=ANY_INPUT)
@example(value="9" * 400 + "h")
@example(value="30 seconds")
@example(value=-1)
def test_parse_duration_is_a_duration_or_a_one_line_error(value: Any) -> None:
    try:
        duration = parse_duration(value)
    except ImageCheckError as error:
        assert "\n" not in str(error)
        return
    assert duration.total_seconds() >= 0


# Strings reach the engine literally


def _pwned_on_host() -> bool:
    return Path(HOST_MARKER).exists()


@pytest.mark.parametrize("builder", ["buildkit-cli", "docker-py"])
def test_build_arg_reaches_the_image_literally_and_nothing_runs_on_the_host(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    client: docker.DockerClient,
    busybox: str,
    builder: str,
) -> None:
    if builder == "docker-py":
        monkeypatch.setattr(build_module, "find_buildkit_cli", lambda: None)
    (pytester.path / "ctx").mkdir()
    (pytester.path / "ctx" / "Dockerfile").write_text(f"FROM {busybox}\nARG X\nENV X=$X\n")
    pytester.makepyfile(
        f"""
        def test_env(image):
            assert image.env["X"] == {LITERAL!r}
        """
    )
    tag = f"imagecheck-test/injection:{builder}-{NONCE}"
    args = ["--build-context=ctx", f"--image={tag}", f"--build-arg=X={LITERAL}"]
    try:
        result = pytester.runpytest(*INNER, *args)
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True, noprune=True)
    result.assert_outcomes(passed=1)
    assert not _pwned_on_host()


@pytest.fixture(scope="module")
def engine(client: docker.DockerClient) -> Engine:
    return Engine(client, f"tests-injection-{NONCE}")


@pytest.fixture(scope="module")
def running(engine: Engine, sample_image: str) -> Iterator[RunningContainer]:
    """A container of the sample image (busybox, user svc)."""
    container = engine.run(engine.image(sample_image))
    yield container
    engine.remove(container)


def _exists(container: RunningContainer, path: str) -> bool:
    return container.exec(["test", "-e", path], user="root").exit_code == 0


@pytest.mark.parametrize("payload", payloads(CONTAINER_MARKER), ids=PAYLOAD_IDS)
def test_exec_list_passes_each_argument_verbatim(running: RunningContainer, payload: str) -> None:
    assert running.exec(["echo", payload], user="root").stdout == payload + "\n"
    assert not _exists(running, CONTAINER_MARKER)


def test_exec_string_is_split_into_words_never_given_to_a_shell(running: RunningContainer) -> None:
    assert running.exec("echo $(id)").stdout == "$(id)\n"
    assert running.exec("echo `id` $HOME").stdout == "`id` $HOME\n"
    result = running.exec(f"echo safe; touch {CONTAINER_MARKER}", user="root")
    assert result.stdout == f"safe; touch {CONTAINER_MARKER}\n"
    assert not _exists(running, CONTAINER_MARKER)


def test_assert_command_string_is_not_given_to_a_shell(running: RunningContainer) -> None:
    assert_command(
        running,
        f"echo $(id) `id`; touch {CONTAINER_MARKER}",
        user="root",
        stdout_matches=rf"^\$\(id\) `id`; touch {CONTAINER_MARKER}$",
    )
    assert not _exists(running, CONTAINER_MARKER)


def test_assert_command_runs_a_shell_only_when_given_sh_c(running: RunningContainer) -> None:
    assert_command(running, ["sh", "-c", "echo $((6 * 7))"], stdout_matches=r"^42$")
    assert_command(running, "echo $((6*7))", stdout_matches=r"^\$\(\(6\*7\)\)$")


def test_yaml_command_run_string_is_not_given_to_a_shell(
    pytester: pytest.Pytester, sample_image: str
) -> None:
    # The control criteria run the same text through sh -c: they prove the file check would
    # have seen a file, had the first command been given to a shell.
    pytester.makefile(
        ".yaml",
        imagecheck=f"""
        criteria:
          - check: command
            run: "echo safe; touch /pwned-{NONCE}"
            user: root
            stdout_matches: '^safe; touch /pwned-{NONCE}$'
          - check: file
            path: /pwned-{NONCE}
            exists: false
          - check: command
            run: [sh, -c, "echo control; touch /control-{NONCE}"]
            user: root
            stdout_matches: '^control$'
          - check: file
            path: /control-{NONCE}
        """,
    )
    result = pytester.runpytest(*INNER, f"--image={sample_image}", "-v")
    result.assert_outcomes(passed=4)


class _Untouchable:
    """A docker client that fails the test on any use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the engine was called: client.{name}")


@pytest.mark.parametrize(
    "ref",
    [f"autovoice;touch {HOST_MARKER}", f"$(touch {HOST_MARKER})", "`id`", "a b", "a\n"],
    ids=["semicolon", "$()", "backticks", "space", "trailing newline"],
)
def test_image_reference_with_shell_syntax_is_rejected_before_any_engine_call(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ref: str
) -> None:
    with pytest.raises(ImageCheckError, match="is not an image reference"):
        Engine(_Untouchable(), "s").image(ref)  # what run_container(ref) and the image fixture use
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")  # any engine call would say so
    pytester.makepyfile("def test_it(image):\n    pass\n")
    result = pytester.runpytest(*INNER, f"--image={ref}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --image {ref!r} is not an image reference" in result.stderr.str()
    assert "unreachable" not in result.stdout.str() + result.stderr.str()
    assert not _pwned_on_host()


# What the plugin's containers never get

INSPECT = """
import json


def dump(name, container):
    attrs = container.attrs
    facts = {
        "HostConfig": attrs["HostConfig"],
        "Mounts": attrs["Mounts"],
        "Ports": attrs["NetworkSettings"]["Ports"],
    }
    with open(name + ".json", "w") as out:
        json.dump(facts, out)


def test_dump(container, run_container):
    dump("session container", container)
    dump("run_container()", run_container())
    dump("run_container(ports, read_only, tmpfs)", run_container(
        ports=[8080, 9000], read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"]
    ))
"""


def _privileges(facts: dict[str, Any]) -> list[str]:
    host = facts["HostConfig"]
    return [
        f"{key} is {host.get(key)!r}"
        for key, ok in (
            ("Privileged", host["Privileged"] is False),
            ("CapAdd", not host.get("CapAdd")),
            ("Devices", not host.get("Devices")),
            ("DeviceRequests", not host.get("DeviceRequests")),  # no GPUs unless asked for
        )
        if not ok
    ]


def _mounts(facts: dict[str, Any]) -> list[str]:
    host = facts["HostConfig"]
    problems = [
        f"HostConfig.{key} is {host[key]!r}" for key in ("Binds", "Mounts") if host.get(key)
    ]
    problems += [f"mounts {m.get('Source')}" for m in facts["Mounts"] if m.get("Type") == "bind"]
    if "docker.sock" in json.dumps(facts):
        problems.append("the Docker socket is mounted")
    return problems


def _ports(facts: dict[str, Any]) -> list[str]:
    asked = [b for bindings in facts["HostConfig"]["PortBindings"].values() for b in bindings]
    bound = [b for bindings in facts["Ports"].values() if bindings for b in bindings]
    if not asked or not bound:
        return ["publishes no port, so there is nothing to check"]
    return [f"port bound on {b['HostIp']!r}" for b in asked + bound if b["HostIp"] != "127.0.0.1"]


def _namespaces(facts: dict[str, Any]) -> list[str]:
    host = facts["HostConfig"]
    modes = ("NetworkMode", "PidMode", "IpcMode", "UsernsMode", "UTSMode")
    return [f"{mode} is host" for mode in modes if host.get(mode) == "host"]


def test_containers_the_plugin_starts_are_unprivileged_unmounted_and_on_loopback_only(
    pytester: pytest.Pytester, sample_image: str
) -> None:
    """The session ``container`` and ``run_container(...)``, with and without options."""
    pytester.makepyfile(test_dump=INSPECT)
    pytester.runpytest(*INNER, f"--image={sample_image}").assert_outcomes(passed=1)
    problems = []
    for dumped in sorted(pytester.path.glob("*.json")):
        facts = json.loads(dumped.read_text())
        for rule in (_privileges, _mounts, _ports, _namespaces):
            problems += [f"{dumped.stem}: {problem}" for problem in rule(facts)]
    assert len(list(pytester.path.glob("*.json"))) == 3
    assert problems == []
