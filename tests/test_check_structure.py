"""Structure checks: ENV, labels, ports, config from inspect; files and commands in containers."""

from __future__ import annotations

import json
import re

import pytest

from pytest_imagecheck.checks.structure import (
    OUTPUT_TAIL,
    assert_command,
    assert_config,
    assert_env,
    assert_exposed_ports,
    assert_file,
    assert_labels,
)
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import collecting

SAMPLE_ENTRYPOINT = ["httpd", "-f", "-vv", "-p", "8080", "-h", "/srv/www"]


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-structure")


@pytest.fixture(scope="module")
def sample(engine, sample_image):
    return engine.image(sample_image)


@pytest.fixture(scope="module")
def files(engine, build_image, busybox):
    """A running busybox container with files of known kind, mode, owner and content."""
    ref = build_image(
        f"FROM {busybox}\n"
        "RUN mkdir -p /app/data"
        " && printf 'APP_ENV=prod\\nPORT=8080\\n' > /app/config.env && chmod 644 /app/config.env"
        " && echo topsecret > /etc/secret && chmod 600 /etc/secret && chown 1000:1000 /etc/secret"
        " && chown 1000:65534 /app/data && chmod 750 /app/data"
        " && ln -s config.env /app/current.env && ln -s /nowhere /app/dangling"
        " && ln -s /app/data /app/data-link"
        " && echo x > /app/orphan && chown 4242:4343 /app/orphan && chmod 4755 /app/orphan"
        " && mkfifo /app/fifo\n"
    )
    container = engine.run(engine.image(ref), command=["sleep", "3600"], entrypoint=[])
    yield container
    engine.remove(container)


@pytest.fixture(scope="module")
def shell_less(engine, build_image, busybox):
    """A running container of an image with no shell: one busybox binary named sleep."""
    ref = build_image(
        f"FROM {busybox} AS tools\n"
        "RUN echo hello > /greeting && chmod 640 /greeting\n"
        "FROM scratch\n"
        "COPY --from=tools /bin/busybox /bin/sleep\n"
        "COPY --from=tools /etc/passwd /etc/group /etc/\n"
        "COPY --from=tools --chown=1000:1000 /greeting /greeting\n"
    )
    container = engine.run(engine.image(ref), command=["/bin/sleep", "3600"], entrypoint=[])
    yield container
    engine.remove(container)


#: A secret ENV value of the ``leaky`` image, and how messages and evidence show it.
SECRET, MASKED = "Zq8vLw3pXr7tKm2N", "Zq8v… (16 chars)"


@pytest.fixture(scope="module")
def leaky(engine, build_image, busybox):
    """A running container of an image whose secret ENV value shows up in its label, its
    entrypoint, a file and a command's output."""
    ref = build_image(
        f"FROM {busybox}\n"
        f"ENV DB_PASSWORD={SECRET}\n"
        f"LABEL leak={SECRET}\n"
        f"RUN mkdir /app && echo DB_PASSWORD={SECRET} > /app/.env\n"
        f'ENTRYPOINT ["sh", "-c", "exec sleep 3600", "{SECRET}"]\n'
    )
    container = engine.run(engine.image(ref))
    yield container
    engine.remove(container)


def _leaked(text: str) -> bool:
    """Whether more of SECRET shows in ``text`` than its mask's own prefix."""
    return SECRET[:5] in text


def test_a_secret_env_value_is_masked_in_env_label_and_config_failures(leaky) -> None:
    image = leaky.image
    for check, expectation in (
        (assert_env, {"DB_PASSWORD": "other"}),
        (assert_labels, {"leak": "other"}),
    ):
        with collecting() as evidence, pytest.raises(AssertionError) as failure:
            check(image, expectation)
        seen = f"{failure.value}\n{evidence[0].facts}"
        assert f'"{MASKED}"' in str(failure.value)
        assert not _leaked(seen)
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_config(image, entrypoint=["sleep", "3600"])
    assert MASKED in str(failure.value)
    assert not _leaked(f"{failure.value}\n{evidence[0].facts}")


def test_a_secret_env_value_is_masked_in_command_output_and_file_content(leaky) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_command(leaky, ["sh", "-c", "echo $DB_PASSWORD"], stdout_contains="nope")
    assert f"stdout:\n  {MASKED}" in str(failure.value)
    assert not _leaked(f"{failure.value}\n{evidence[0].facts}")
    # Matching is on what came, not on what is shown.
    assert_command(leaky, ["sh", "-c", "echo $DB_PASSWORD"], stdout_contains=SECRET)
    with pytest.raises(AssertionError) as failure:
        assert_file(leaky, "/app/.env", contains="nope")
    assert f"DB_PASSWORD={MASKED}" in str(failure.value)
    assert not _leaked(str(failure.value))


# ENV and labels


def test_env_passes_when_values_match_and_unset_ones_are_absent(sample) -> None:
    with collecting() as evidence:
        assert_env(sample, {"APP_ENV": "prod", "GREETING": "hello world", "DEBUG": None})
    assert evidence[0].facts["env"] == ["APP_ENV=prod", "GREETING=hello world", "DEBUG unset"]
    assert evidence[0].facts["env_mismatches"] == 0


def test_env_lists_every_mismatch_in_one_message(sample) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_env(sample, {"APP_ENV": "dev", "GREETING": None, "DATABASE_URL": "x", "PATH": None})
    message = str(failure.value)
    assert message.startswith(f"image {sample.ref}: ")
    assert 'ENV APP_ENV is "prod", expected "dev"' in message
    assert 'ENV GREETING is set ("hello world"), expected unset' in message
    assert 'ENV DATABASE_URL is unset, expected "x"' in message
    assert "ENV PATH is set (" in message
    assert evidence[0].facts["env_mismatches"] == 4


def test_env_rejects_values_that_are_not_strings(sample) -> None:
    with pytest.raises(ImageCheckError, match=r'bad ENV expectation PORT=8080: .*"8080"'):
        assert_env(sample, {"PORT": 8080})  # type: ignore[dict-item]


def test_labels_pass_when_values_match_and_absent_ones_are_absent(sample) -> None:
    assert_labels(sample, {"org.opencontainers.image.title": "sample", "maintainer": None})


def test_labels_list_every_mismatch_in_one_message(sample) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_labels(
            sample,
            {
                "org.opencontainers.image.title": "other",
                "org.opencontainers.image.version": "1.0",
            },
        )
    assert str(failure.value) == (
        f'image {sample.ref}: LABEL org.opencontainers.image.title is "sample", expected "other"; '
        'LABEL org.opencontainers.image.version is unset, expected "1.0"'
    )


def test_label_expected_absent_fails_when_present(sample) -> None:
    with pytest.raises(AssertionError, match=r'title is set \("sample"\), expected unset'):
        assert_labels(sample, {"org.opencontainers.image.title": None})


# exposed ports


@pytest.mark.parametrize("ports", [[8080], ["8080"], ["8080/tcp"], [8080, "8080/tcp"]])
def test_exposed_ports_pass_in_every_spelling(sample, ports) -> None:
    assert_exposed_ports(sample, ports, exactly=True)


def test_missing_port_fails_naming_what_the_image_exposes(sample) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_exposed_ports(sample, [8080, 5000, "53/udp"])
    assert str(failure.value) == (
        f"image {sample.ref} does not expose 5000/tcp, 53/udp "
        "(EXPOSE in the image: 8080/tcp; expected 8080/tcp, 5000/tcp, 53/udp)"
    )
    assert evidence[0].facts["exposed_ports"] == ["8080/tcp"]


def test_extra_port_fails_only_with_exactly(engine, build_image, busybox) -> None:
    image = engine.image(build_image(f"FROM {busybox}\nEXPOSE 8080 9090/udp\n"))
    assert_exposed_ports(image, [8080])
    with pytest.raises(AssertionError) as failure:
        assert_exposed_ports(image, [8080], exactly=True)
    assert str(failure.value) == (
        f"image {image.ref} exposes 9090/udp, which is not expected "
        "(EXPOSE in the image: 8080/tcp, 9090/udp; expected exactly 8080/tcp)"
    )


@pytest.mark.parametrize("ports", [["http"], [70000], [0], ["80/icmp"], [True], 8080])
def test_bad_ports_are_rejected(sample, ports) -> None:
    with pytest.raises(ImageCheckError, match="port"):
        assert_exposed_ports(sample, ports)


# config


def test_config_passes_on_the_sample_image(sample) -> None:
    with collecting() as evidence:
        assert_config(sample, entrypoint=SAMPLE_ENTRYPOINT, cmd=[], workdir="/srv", user="svc")
    assert evidence[0].facts["config_user"] == "svc"
    assert evidence[0].facts["config_cmd"] == "unset"


def test_config_string_means_shell_form(engine, build_image, busybox) -> None:
    image = engine.image(build_image(f"FROM {busybox}\nCMD echo hello\n"))
    assert_config(image, cmd="echo hello")
    with pytest.raises(AssertionError) as failure:
        assert_config(image, cmd=["echo", "hello"])
    assert str(failure.value) == (
        f'image {image.ref}: Config.Cmd is ["/bin/sh", "-c", "echo hello"], '
        'expected ["echo", "hello"]'
    )


def test_config_lists_every_mismatch_in_one_message(sample) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_config(sample, entrypoint=["nginx"], cmd=["serve"], workdir="/app", user="")
    assert str(failure.value) == (
        f"image {sample.ref}: Config.Entrypoint is {json.dumps(SAMPLE_ENTRYPOINT)}, "
        'expected ["nginx"]; Config.Cmd is unset, expected ["serve"]; '
        'Config.WorkingDir is "/srv", expected "/app"; Config.User is "svc", expected unset'
    )


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"entrypoint": 42}, {"cmd": ["echo", 1]}, {"workdir": 1}, {"user": 1000}],
)
def test_bad_config_expectations_are_rejected(sample, kwargs) -> None:
    with pytest.raises(ImageCheckError):
        assert_config(sample, **kwargs)


# files


@pytest.mark.parametrize("mode", ["0600", "600", 0o600])
def test_file_passes_on_kind_mode_owner_group_and_content(files, mode) -> None:
    with collecting() as evidence:
        assert_file(
            files,
            "/etc/secret",
            kind="file",
            mode=mode,
            owner="svc",
            group="svc",
            contains="topsecret",
            matches=r"^top\w+$",
        )
    facts = evidence[0].facts
    assert (facts["file_kind"], facts["file_mode"], facts["file_uid"], facts["file_gid"]) == (
        "file",
        "0600",
        1000,
        1000,
    )


def test_owner_and_group_may_be_numbers(files) -> None:
    assert_file(files, "/app/data", kind="dir", mode="750", owner=1000, group="65534")
    assert_file(files, "/app/data", owner="svc", group="nogroup")


@pytest.mark.parametrize(
    ("path", "expectation", "message"),
    [
        (
            "/etc/secret",
            {"mode": "0644"},
            "/etc/secret is mode 0600, expected 0644 (owner svc:svc)",
        ),
        ("/etc/secret", {"kind": "dir"}, "/etc/secret is a file, expected a dir (owner svc:svc)"),
        (
            "/app/current.env",
            {"kind": "file"},
            "/app/current.env is a symlink to config.env, expected a file (owner root:root)",
        ),
        ("/app/fifo", {"kind": "file"}, "/app/fifo is a fifo, expected a file"),
        (
            "/etc/secret",
            {"owner": "root"},
            "/etc/secret is owned by svc (uid 1000), expected root (uid 0) (owner svc:svc)",
        ),
        ("/etc/secret", {"owner": 0}, "is owned by svc (uid 1000), expected root (uid 0)"),
        (
            "/etc/secret",
            {"group": "nogroup"},
            "/etc/secret has group svc (gid 1000), expected nogroup (gid 65534)",
        ),
        (
            "/etc/secret",
            {"owner": "app"},
            "is owned by svc (uid 1000), expected app, "
            "which /etc/passwd in the container does not have",
        ),
        (
            "/etc/secret",
            {"group": "staff"},
            "has group svc (gid 1000), expected staff, "
            "which /etc/group in the container does not have",
        ),
        (
            "/app/config.env",
            {"contains": "APP_ENV=dev"},
            '/app/config.env does not contain "APP_ENV=dev" '
            '(content: "APP_ENV=prod\\nPORT=8080\\n") (owner root:root)',
        ),
        (
            "/app/config.env",
            {"matches": r"^PORT=80$"},
            "/app/config.env does not match /^PORT=80$/ (content: ",
        ),
        ("/app/missing", {}, "/app/missing does not exist in container"),
        (
            "/etc/secret",
            {"exists": False},
            "/etc/secret exists (file, mode 0600), expected absent (owner svc:svc)",
        ),
        (
            "/app/orphan",
            {"mode": 0o755},
            "/app/orphan is mode 4755, expected 0755 (owner 4242:4343)",
        ),
        ("/app/data", {"contains": "x"}, "/app/data is a dir, which has no content to search"),
        (
            "/app/dangling",
            {"contains": "x"},
            "/app/dangling is a symlink to /nowhere, which does not exist",
        ),
        (
            "/app/data-link",
            {"matches": "x"},
            "/app/data-link is a symlink to /app/data, which has no content to search",
        ),
    ],
)
def test_file_fails_saying_what_was_found(files, path, expectation, message) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_file(files, path, **expectation)
    assert message in str(failure.value)
    assert str(failure.value).endswith(f"in container {files.name} of {files.image.ref}")


def test_file_lists_every_mismatch_in_one_message(files) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_file(files, "/etc/secret", mode="0644", owner="root", contains="public")
    assert str(failure.value).startswith(
        "/etc/secret is mode 0600, expected 0644; is owned by svc (uid 1000), expected root "
        '(uid 0); does not contain "public" (content: "topsecret\\n") (owner svc:svc) in container'
    )
    assert evidence[0].facts["file_mode"] == "0600"


def test_symlink_metadata_is_its_own_and_content_follows_it(files) -> None:
    with collecting() as evidence:
        assert_file(files, "/app/current.env", kind="symlink", mode="0777", contains="PORT=8080")
    assert evidence[0].facts["file_target"] == "config.env"
    assert_file(files, "/app/data-link", kind="symlink")


def test_absent_path_passes_with_exists_false(files) -> None:
    with collecting() as evidence:
        assert_file(files, "/app/missing", exists=False)
    assert evidence[0].facts["file_exists"] is False


@pytest.mark.parametrize(
    ("path", "kwargs", "message"),
    [
        ("/etc/secret", {"mode": "rwx"}, 'bad mode "rwx"'),
        ("/etc/secret", {"mode": "0888"}, 'bad mode "0888"'),
        ("/etc/secret", {"mode": 0o17777}, "bad mode"),
        ("/etc/secret", {"kind": "pipe"}, 'bad kind "pipe": use file, dir, symlink'),
        ("etc/secret", {}, "path 'etc/secret' must be absolute"),
        ("/etc/secret", {"exists": False, "mode": "0600"}, "exists=False takes no kind, mode"),
        ("/etc/secret", {"matches": "("}, "bad matches '('"),
        ("/etc/secret", {"contains": b"top"}, "bad contains b'top'"),
        ("/etc/secret", {"owner": -1}, 'bad owner "-1"'),
        ("/etc/secret", {"group": ""}, 'bad group ""'),
    ],
)
def test_bad_file_expectations_are_rejected(files, path, kwargs, message) -> None:
    with pytest.raises(ImageCheckError, match=re.escape(message)):
        assert_file(files, path, **kwargs)


def test_file_checks_work_in_an_image_without_a_shell(shell_less) -> None:
    assert_file(shell_less, "/bin/sh", exists=False)
    assert_file(
        shell_less,
        "/greeting",
        kind="file",
        mode="0640",
        owner="svc",
        group="svc",
        contains="hello",
    )
    with pytest.raises(
        AssertionError, match=r"/greeting is mode 0640, expected 0644 \(owner svc:svc\)"
    ):
        assert_file(shell_less, "/greeting", mode="0644")


# commands


def test_command_passes_on_exit_code_and_output(files) -> None:
    with collecting() as evidence:
        assert_command(files, ["id", "-u"], user="svc", stdout_matches=r"^1000$")
    facts = evidence[0].facts
    assert (facts["command"], facts["command_user"], facts["command_exit_code"]) == (
        "id -u",
        "svc",
        0,
    )
    assert facts["command_stdout"] == "1000"


def test_command_string_is_split_into_words_but_no_shell_expands_it(files) -> None:
    assert_command(files, "echo '$HOME' $HOME", stdout_contains="$HOME $HOME")


def test_command_gets_env_and_checks_stderr(files) -> None:
    assert_command(
        files,
        ["sh", "-c", 'echo "$GREETING" >&2; exit 3'],
        env={"GREETING": "hi there"},
        exit_code=3,
        stderr_contains="hi there",
        stderr_matches=r"^hi",
    )


def test_command_with_the_wrong_exit_code_fails_with_command_and_output(files) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_command(files, ["cat", "/etc/secret"], user="nobody")
    message = str(failure.value)
    assert message.startswith(
        f"command `cat /etc/secret` as nobody in container {files.name} of {files.image.ref} "
        "exited with 1, expected 0\nstdout:\n  (no output)\nstderr:\n  cat: can't open"
    )
    assert "Permission denied" in message
    assert evidence[0].facts["command_exit_code"] == 1


@pytest.mark.parametrize(
    ("expectation", "problem"),
    [
        ({"stdout_contains": "bye"}, 'stdout does not contain "bye"'),
        ({"stdout_matches": r"^bye$"}, "stdout does not match /^bye$/"),
        ({"stderr_contains": "warning"}, 'stderr does not contain "warning"'),
        ({"stderr_matches": re.compile("warn")}, "stderr does not match /warn/"),
    ],
)
def test_command_output_mismatch_fails_naming_it(files, expectation, problem) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_command(files, ["echo", "hello"], **expectation)
    assert str(failure.value) == (
        f"command `echo hello` in container {files.name} of {files.image.ref} exited with 0: "
        f"{problem}\nstdout:\n  hello\nstderr:\n  (no output)"
    )


def test_long_output_is_cut_to_its_end(files) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_command(files, ["seq", "1", "20000"], stdout_contains="nope")
    stdout = evidence[0].facts["command_stdout"]
    assert isinstance(stdout, str)
    length = len("\n".join(str(n) for n in range(1, 20001)))
    assert stdout.startswith(f"... ({length} characters, the last {OUTPUT_TAIL} shown)\n")
    assert stdout.endswith("\n19999\n20000")
    assert len(stdout) < OUTPUT_TAIL + 60
    assert "\n  20000\nstderr:" in str(failure.value)
    assert "\n  1\n" not in str(failure.value)


@pytest.mark.parametrize(
    ("run", "kwargs", "message"),
    [
        (["true"], {"exit_code": "zero"}, 'bad exit_code "zero"'),
        (["true"], {"exit_code": True}, 'bad exit_code "True"'),
        (["true"], {"exit_code": 256}, "bad exit_code 256: a process exits with 0 to 255"),
        (["true"], {"exit_code": -1}, "bad exit_code -1: a process exits with 0 to 255"),
        ([], {}, "bad command []"),
        ("", {}, "bad command ''"),
        (["echo", 1], {}, "bad command ['echo', 1]"),
        (["true"], {"stdout_matches": "[a-"}, "bad stdout_matches '[a-'"),
        (["true"], {"stderr_contains": 5}, "bad stderr_contains 5"),
    ],
)
def test_bad_command_expectations_are_rejected(files, run, kwargs, message) -> None:
    with pytest.raises(ImageCheckError, match=re.escape(message)):
        assert_command(files, run, **kwargs)
