"""A probe that cannot run is not evidence: checks judge by what could be measured, record what
could not (evidence ``not_measured``, with why), and their messages state what was found.

Each case runs on the real engine, in images built here from busybox: a distroless-style image
(no shell, no ``id``, a static binary as entrypoint), a shell without ``id``, an exec the engine
refuses (a paused container), a container that stopped, users and groups the image lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import docker
import pytest

from pytest_imagecheck import assert_cuda_torch_match, assert_healthy, assert_non_root
from pytest_imagecheck.checks.cuda import compiler_findings, runtime_findings
from pytest_imagecheck.checks.structure import assert_command, assert_file, command_of
from pytest_imagecheck.container import ExecResult, Prefetched, RunningContainer
from pytest_imagecheck.cuda import Compiler, TorchBuild, TorchRuntime
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ContainerFailed
from pytest_imagecheck.evidence import collecting

#: What engine 20.10 answers an exec of a program that is not on PATH, after "OCI runtime
#: exec failed: exec failed: unable to start container process: ".
ID_NOT_FOUND = 'exec: "id": executable file not found in $PATH'


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-not-measured")


@pytest.fixture(scope="module")
def started(engine) -> Iterator[Callable[..., RunningContainer]]:
    """Start a container of an image reference; every one is removed when the module ends."""
    made: list[RunningContainer] = []

    def start(ref: str, **kwargs: object) -> RunningContainer:
        container = engine.run(engine.image(ref), **kwargs)
        made.append(container)
        return container

    yield start
    for container in made:
        engine.remove(container)


@pytest.fixture(scope="module")
def distroless(build_image, busybox) -> str:
    """No shell, no ``id``: one static binary as the entrypoint, a passwd line for nonroot.

    Debian's busybox acts as an applet only by its own name (as ``/app/server`` it answers
    "applet not found"), so it keeps its name and the entrypoint names the applet.
    """
    return build_image(
        f"FROM {busybox} AS tools\n"
        "RUN echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >> /etc/passwd"
        " && echo 'nonroot:x:65532:' >> /etc/group\n"
        "FROM scratch\n"
        "COPY --from=tools /bin/busybox /app/busybox\n"
        "COPY --from=tools /etc/passwd /etc/group /etc/\n"
        "USER 65532:65532\n"
        'ENTRYPOINT ["/app/busybox", "httpd", "-f", "-p", "8080"]\n'
    )


@pytest.fixture(scope="module")
def without_id(build_image, busybox) -> str:
    """A shell, but no ``id``; user svc (uid 1000)."""
    return build_image(f"FROM {busybox}\nRUN rm /bin/id\nUSER svc\n")


# assert_non_root at runtime


def test_non_root_passes_on_pid_1_when_the_image_has_no_shell_and_no_id(
    distroless, started
) -> None:
    container = started(distroless)
    with collecting() as evidence:
        assert_non_root(container.image, container=container)
    facts = evidence[0].facts
    assert (facts["pid1_uid"], facts["exec_uid"]) == (65532, None)
    assert facts["not_measured"] == [
        f"`id -u`: no such program on the container's PATH ({ID_NOT_FOUND})"
    ]


def test_non_root_passes_on_pid_1_when_the_shell_exists_but_id_does_not(
    without_id, started
) -> None:
    container = started(without_id, command=["sleep", "600"], entrypoint=[])
    with collecting() as evidence:
        assert_non_root(container.image, container=container)
    assert evidence[0].facts["pid1_uid"] == 1000
    assert evidence[0].facts["not_measured"] == [
        f"`id -u`: no such program on the container's PATH ({ID_NOT_FOUND})"
    ]


def test_non_root_without_id_still_fails_when_pid_1_is_root(without_id, started) -> None:
    container = started(without_id, command=["sleep", "600"], entrypoint=[], user="0")
    with pytest.raises(AssertionError) as failure:
        assert_non_root(container.image, container=container)
    message = str(failure.value)
    assert message.startswith(f"container {container.name} of image {container.image.ref} ")
    assert f"runs as root: PID 1 of container {container.name} runs as uid 0" in message
    assert "`id -u`" not in message  # not measured: no finding, in the evidence only


def test_non_root_passes_on_pid_1_when_the_engine_refuses_the_exec(
    client: docker.DockerClient, busybox, build_image, started
) -> None:
    container = started(build_image(f"FROM {busybox}\nUSER svc\n"), command=["sleep", "600"])
    client.containers.get(container.id).pause()  # the engine answers 409 to any exec
    try:
        with collecting() as evidence:
            assert_non_root(container.image, container=container)
    finally:
        client.containers.get(container.id).unpause()
    facts = evidence[0].facts
    assert (facts["pid1_uid"], facts["exec_uid"]) == (1000, None)
    [not_measured] = facts["not_measured"]
    assert not_measured.startswith("`id -u`: the engine refused the exec (")
    assert "is paused" in not_measured


def test_non_root_says_the_runtime_uid_was_not_measured_when_the_container_stopped(
    busybox, build_image, started
) -> None:
    container = started(build_image(f"FROM {busybox}\nUSER svc\n"), command=["sleep", "600"])
    container.stop(timeout=0)
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_non_root(container.image, container=container)
    message = str(failure.value)
    assert message.startswith(
        f"container {container.name} of image {container.image.ref}: the uid it runs as was "
        f"not measured (PID 1's uid: container {container.name} "
    )
    assert "exited with code" in message
    assert "so non-root at runtime is not verified" in message
    assert "runs as root" not in message
    assert [item.split(":")[0] for item in evidence[0].facts["not_measured"]] == [
        "PID 1's uid",
        "`id -u`",
    ]


# Messages for users and groups the image lacks, checked against what the engine answers


@pytest.mark.parametrize(
    ("dockerfile", "user", "engine_says", "message"),
    [
        (
            "USER svc\n",
            "svc",
            "unable to find user svc: no matching entries in passwd file",
            "user 'svc' is not in the image (no /etc/passwd), so the engine refuses to start its "
            'containers ("unable to find user svc: no matching entries in passwd file"); add svc '
            "to /etc/passwd in the image, or use a numeric uid (e.g. USER 1000:1000)",
        ),
        (
            "USER 1000:svcgroup\n",
            "1000:svcgroup",
            "unable to find group svcgroup: no matching entries in group file",
            "group 'svcgroup' is not in the image (no /etc/group), so the engine refuses to start "
            'its containers ("unable to find group svcgroup: no matching entries in group '
            'file"); add svcgroup to /etc/group in the image, or use a numeric gid '
            "(e.g. USER 1000:1000)",
        ),
        (
            "COPY --from=tools /etc/passwd /etc/passwd\nUSER svc:svcgroup\n",
            "svc:svcgroup",
            "unable to find group svcgroup: no matching entries in group file",
            "group 'svcgroup' is not in the image (no /etc/group), so the engine refuses to start "
            'its containers ("unable to find group svcgroup: no matching entries in group '
            'file"); add svcgroup to /etc/group in the image, or use a numeric gid '
            "(e.g. USER svc:1000)",
        ),
    ],
)
def test_unresolvable_user_says_the_engine_refuses_to_start_it_not_that_it_runs_as_root(
    engine, build_image, busybox, dockerfile, user, engine_says, message
) -> None:
    ref = build_image(
        f"FROM {busybox} AS tools\nFROM scratch\nCOPY --from=tools /bin/busybox /bin/busybox\n"
        f"{dockerfile}"
    )
    image = engine.image(ref)
    with pytest.raises(AssertionError) as failure:
        assert_non_root(image)
    assert (
        str(failure.value) == f'image {image.ref} cannot start as Config.User "{user}": {message}'
    )
    # What the message says the engine does is what it does.
    with pytest.raises(ContainerFailed, match=re.escape(engine_says)):
        engine.remove(engine.run(image, command=["/bin/busybox", "true"], entrypoint=[]))


# assert_command: a program the engine cannot start is a result, named as such


@pytest.fixture(scope="module")
def plain(busybox, started) -> RunningContainer:
    return started(busybox, command=["sleep", "600"], entrypoint=[])


def test_command_of_a_missing_program_says_it_did_not_run(plain) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_command(plain, ["curl", "--version"])
    assert str(failure.value) == (
        f"command `curl --version` in container {plain.name} of {plain.image.ref} did not run: "
        'no such program on the container\'s PATH (exec: "curl": executable file not found in '
        "$PATH); the engine answered exit code 126, expected 0"
    )
    assert evidence[0].facts["command_not_run"] == (
        'no such program on the container\'s PATH (exec: "curl": executable file not found in '
        "$PATH)"
    )


def test_command_expecting_a_missing_program_gets_the_engines_exit_code(plain) -> None:
    assert_command(plain, ["curl", "--version"], exit_code=126)
    with pytest.raises(AssertionError) as failure:
        assert_command(plain, ["curl", "--version"], exit_code=127)
    assert str(failure.value).endswith(
        "the engine answered exit code 126, expected 127 (the Docker engine answers 126 for any "
        "program it cannot start, moby/moby#45795; a shell answers 127 for one it cannot find)"
    )


def test_exec_result_names_a_user_the_container_lacks() -> None:
    # Pure: engine 20.10 loses this line on about one exec in four (exit code 126, no output),
    # so an engine test of it would be flaky.
    line = "unable to find user ghost: no matching entries in passwd file\r\n"
    assert ExecResult(["true"], 126, line, "").not_run == (
        "user ghost is not in /etc/passwd of the container (unable to find user ghost: no "
        "matching entries in passwd file)"
    )
    assert ExecResult(["true"], 126, "", "").not_run is None  # the line lost: nothing says why


def test_command_as_a_user_the_container_lacks_says_it_did_not_run(plain) -> None:
    # Engine 20.10 answers with its "unable to find user" line, or (about one exec in four)
    # with 126 and no output: either way the message says the command did not run. Eight
    # tries meet a lost line nine times in ten.
    for _ in range(8):
        with collecting() as evidence, pytest.raises(AssertionError) as failure:
            assert_command(plain, ["id", "-u"], user="ghost")
        message = str(failure.value)
        assert message.startswith(
            f"command `id -u` as ghost in container {plain.name} of {plain.image.ref} did not "
            "run: user "
        )
        assert "ghost" in evidence[0].facts["command_not_run"]


@pytest.mark.parametrize(
    ("user", "why"),
    [
        ("ghost", "user 'ghost' is not in /etc/passwd of the container"),
        ("svc:ghosts", "group 'ghosts' is not in /etc/group of the container"),
        ("ghost:1000", "user 'ghost' is not in /etc/passwd of the container"),
    ],
)
def test_command_whose_engine_answer_lost_the_reason_reads_passwd_to_say_it_did_not_run(
    plain, user, why
) -> None:
    # The exec as the engine answers it one time in four (126, no output), served as a batch
    # serves results; /etc/passwd and /etc/group are read from the real container.
    lost = ExecResult(["id", "-u"], 126, "", "")
    share = Prefetched(execs={command_of(["id", "-u"], user=user): lost})
    with plain.serving(share), collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_command(plain, ["id", "-u"], user=user)
    assert str(failure.value) == (
        f"command `id -u` as {user} in container {plain.name} of {plain.image.ref} did not run: "
        f"{why}, so the engine could not start it; the engine answered exit code 126, expected 0"
    )
    assert evidence[0].facts["command_not_run"] == f"{why}, so the engine could not start it"


def test_command_whose_engine_answer_lost_the_reason_without_passwd_says_so(
    build_image, busybox, started
) -> None:
    ref = build_image(
        f"FROM {busybox} AS tools\nFROM scratch\nCOPY --from=tools /bin/busybox /bin/sleep\n"
    )
    container = started(ref, command=["/bin/sleep", "600"], entrypoint=[])
    lost = ExecResult(["true"], 126, "", "")
    share = Prefetched(execs={command_of(["true"], user="svc"): lost})
    with container.serving(share), pytest.raises(AssertionError) as failure:
        assert_command(container, ["true"], user="svc")
    assert (
        "did not run: user 'svc' cannot be resolved: the container's /etc/passwd does not "
        "exist, so the engine could not start it"
    ) in str(failure.value)


@pytest.mark.parametrize("user", ["svc", "1234", "svc:svc"])
def test_command_whose_lost_answer_names_a_user_the_container_has_claims_nothing(
    plain, user
) -> None:
    share = Prefetched(execs={command_of(["true"], user=user): ExecResult(["true"], 126, "", "")})
    with plain.serving(share), collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_command(plain, ["true"], user=user)
    assert "exited with 126, expected 0" in str(failure.value)
    assert "command_not_run" not in evidence[0].facts


def test_command_in_a_batch_says_the_same_as_alone(plain) -> None:
    commands = [command_of(["true"]), command_of(["curl", "--version"]), command_of(["true"])]
    share = Prefetched(execs=dict(zip(commands, plain.exec_batch(commands), strict=True)))
    with plain.serving(share), pytest.raises(AssertionError) as batched:
        assert_command(plain, ["curl", "--version"])
    with pytest.raises(AssertionError) as alone:
        assert_command(plain, ["curl", "--version"])
    assert str(batched.value) == str(alone.value)
    assert "did not run: no such program on the container's PATH" in str(batched.value)


@pytest.fixture(scope="module")
def programs(build_image, busybox, started) -> RunningContainer:
    """Files that exec cannot start, each for its own reason."""
    ref = build_image(
        f"FROM {busybox}\n"
        "RUN mkdir /x && printf 'echo hi\\n' > /x/no-shebang && chmod +x /x/no-shebang"
        " && printf '#!/nowhere/sh\\necho hi\\n' > /x/no-interpreter"
        " && chmod +x /x/no-interpreter && echo data > /x/data\n"
    )
    return started(ref, command=["sleep", "600"], entrypoint=[])


@pytest.mark.parametrize(
    ("argv", "kwargs", "why"),
    [
        (["id-nowhere"], {}, 'no such program on the container\'s PATH (exec: "id-nowhere": '),
        (["/x/missing"], {}, 'no such file in the container (exec: "/x/missing": stat '),
        (["/x/data"], {}, 'not an executable file (exec: "/x/data": permission denied)'),
        (["/x/no-shebang"], {}, "not a program this machine can run (built for another CPU "),
        (["/x/no-interpreter"], {}, "its interpreter (#!) or dynamic loader is missing in the "),
        (["true"], {"workdir": "/x/nowhere"}, "the working directory does not exist in the "),
    ],
)
def test_exec_result_says_why_the_engine_could_not_start_a_program(
    programs, argv, kwargs, why
) -> None:
    result = programs.exec(argv, **kwargs)
    assert result.not_run is not None
    assert result.not_run.startswith(why)


@pytest.mark.parametrize(
    "argv",
    [
        ["false"],
        ["sh", "-c", "exit 126"],
        ["cat", "/x/missing"],
        ["sh", "-c", "echo 'OCI runtime exec failed: x'; echo more; exit 126"],
    ],
)
def test_exec_result_of_a_program_that_ran_is_never_taken_for_a_refusal(programs, argv) -> None:
    result = programs.exec(argv)
    assert not result.ok
    assert result.not_run is None


def test_file_owner_by_name_without_passwd_says_the_container_cannot_resolve_it(
    build_image, busybox, started
) -> None:
    ref = build_image(
        f"FROM {busybox} AS tools\nFROM scratch\nCOPY --from=tools /bin/busybox /bin/sleep\n"
    )
    container = started(ref, command=["/bin/sleep", "600"], entrypoint=[])
    with pytest.raises(AssertionError) as failure:
        assert_file(container, "/bin/sleep", owner="svc")
    assert (
        "is owned by 0 (uid 0), expected svc, which the container cannot resolve: its "
        "/etc/passwd does not exist (give a number instead)"
    ) in str(failure.value)


# assert_healthy: a probe the engine cannot start is not a service that answered badly


@pytest.mark.parametrize(
    ("base", "healthcheck", "refusal"),
    [
        (
            "",
            'CMD ["curl", "-f", "http://localhost:8080/"]',
            '(CMD): no such program on the container\'s PATH (exec: "curl": executable file '
            "not found in $PATH), so the service itself was never probed; probe with a program "
            "the image has",
        ),
        (
            "shell-less",
            "CMD /bin/busybox true",
            '(CMD-SHELL): no such file in the container (exec: "/bin/sh": stat /bin/sh: no such '
            "file or directory), so the service itself was never probed; use the exec form, "
            'HEALTHCHECK CMD ["program", "arg"], with a program the image has',
        ),
    ],
)
def test_healthy_says_the_probe_cannot_run_rather_than_the_service_is_unhealthy(
    build_image, busybox, started, base, healthcheck, refusal
) -> None:
    first = (
        f"FROM {busybox} AS tools\nFROM scratch\nCOPY --from=tools /bin/busybox /bin/busybox\n"
        if base
        else f"FROM {busybox}\n"
    )
    ref = build_image(
        f"{first}HEALTHCHECK --interval=1s --timeout=1s --retries=1 {healthcheck}\n"
        'ENTRYPOINT ["/bin/busybox", "sleep", "600"]\n'
    )
    container = started(ref)
    with pytest.raises(AssertionError) as failure:
        assert_healthy(container, timeout="30s")
    assert f"the engine cannot run its HEALTHCHECK probe {refusal}" in str(failure.value)


@pytest.mark.parametrize(
    ("base", "healthcheck", "said"),
    [
        (
            "busybox",
            "CMD curl -f http://localhost:8080/ || exit 1",
            "/bin/sh: curl: not found; exit 1",
        ),
        ("busybox", "CMD curl -f http://localhost:8080/", "/bin/sh: curl: not found; exit 127"),
        (
            "debian",
            "CMD curl -f http://localhost:8080/ || wget -q http://localhost:8080/ || exit 1",
            "/bin/sh: 1: curl: not found; /bin/sh: 1: wget: not found; exit 1",
        ),
        (
            "debian",
            'CMD ["bash", "-c", "curl -f http://localhost:8080/"]',
            "bash: line 1: curl: command not found; exit 127",
        ),
    ],
    ids=["busybox-exit-1", "busybox-127", "dash-two-programs", "bash-exec-form"],
)
def test_healthy_says_a_shell_that_found_no_program_never_probed_the_service(
    build_image, busybox, debian, started, base, healthcheck, said
) -> None:
    ref = build_image(
        f"FROM {busybox if base == 'busybox' else debian}\n"
        f"HEALTHCHECK --interval=1s --timeout=1s --retries=1 {healthcheck}\n"
        'ENTRYPOINT ["sleep", "600"]\n'
    )
    container = started(ref)
    with pytest.raises(AssertionError) as failure:
        assert_healthy(container, timeout="30s")
    programs = "curl or wget" if "wget" in said else "curl"
    form = "CMD" if healthcheck.startswith("CMD [") else "CMD-SHELL"
    assert (
        f"turned unhealthy (`{container.image.healthcheck.command}`): its HEALTHCHECK probe "
        f"({form}) could not run: its shell found no {programs} in the container ({said}), so "
        f"the service itself was never probed; install {programs} in the image, or probe with "
        "a program the image has; last probes:\n"
    ) in str(failure.value)


def test_healthy_with_a_probe_that_ran_and_failed_does_not_say_it_never_probed(
    build_image, busybox, started
) -> None:
    ref = build_image(
        f"FROM {busybox}\nHEALTHCHECK --interval=1s --timeout=1s --retries=1 "
        "CMD wget -q -O /dev/null http://127.0.0.1:1/ || exit 1\n"
        'ENTRYPOINT ["sleep", "600"]\n'
    )
    container = started(ref)
    with pytest.raises(AssertionError) as failure:
        assert_healthy(container, timeout="30s")
    message = str(failure.value)
    assert "last probes:\n  exit 1: wget: can't connect to remote host" in message
    assert "never probed" not in message


# CUDA: a compiler or interpreter that cannot run is not measured


def test_cuda_expectation_with_an_unrunnable_nvcc_says_nothing_was_measured(
    engine, build_image, busybox
) -> None:
    ref = build_image(
        f"FROM {busybox}\nRUN mkdir -p /usr/local/cuda/bin"
        " && printf '#!/nowhere/sh\\n' > /usr/local/cuda/bin/nvcc"
        " && chmod +x /usr/local/cuda/bin/nvcc\n"
    )
    image = engine.image(ref)
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_cuda_torch_match(image, cuda="12")
    message = str(failure.value)
    assert message.startswith(
        f"expected CUDA 12 but no CUDA version of {image.ref} was measured: it has no other "
        "source of one, and its compilers gave no release (/usr/local/cuda/bin/nvcc --version, "
        "layer "
    )
    assert "exec /usr/local/cuda/bin/nvcc: no such file or directory" in message
    assert "has none" not in message
    [not_measured] = evidence[0].facts["not_measured"]
    assert not_measured.startswith("/usr/local/cuda/bin/nvcc --version, layer ")


def test_compiler_that_gave_no_release_is_not_said_to_be_unusable() -> None:
    torch = TorchBuild(version="2.14.1+cu130", cuda="13.0", path="/t/version.py", layer=1)
    nvcc = Compiler("/usr/local/cuda/bin/nvcc", 2, error="exit code 126: OCI runtime exec failed")
    found = compiler_findings(torch, nvcc, strict_minor=True)
    assert found.errors == []
    assert found.warnings == [
        "/usr/local/cuda/bin/nvcc --version, layer 2 gave no CUDA release (exit code 126: OCI "
        "runtime exec failed): its version was not measured, so it was not compared with "
        "torch's CUDA 13.0"
    ]


def test_torch_probe_whose_interpreter_cannot_run_is_not_said_to_be_torch_failing() -> None:
    error = (
        "python3 exited with code 126: OCI runtime exec failed: exec failed: unable to start "
        'container process: exec: "python3": executable file not found in $PATH: unknown'
    )
    found = runtime_findings(
        TorchRuntime(available=False, error=error), where="container c", gpus=1
    )
    assert found.errors == [
        f"torch ran no CUDA kernel in container c, which runs with GPUs: {error}"
    ]


def test_exec_result_reads_the_engines_refusal_of_a_health_probe() -> None:
    output = (
        'OCI runtime exec failed: exec failed: unable to start container process: exec: "curl": '
        "executable file not found in $PATH: unknown"
    )
    assert ExecResult.start_refused(output) == (
        'no such program on the container\'s PATH (exec: "curl": executable file not found in '
        "$PATH)"
    )
    assert ExecResult.start_refused("curl: (7) Failed to connect to localhost port 80") is None
