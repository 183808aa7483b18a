"""assert_non_root: static resolution through the image's own files, and the runtime uid."""

from __future__ import annotations

import pytest

from pytest_imagecheck import assert_non_root
from pytest_imagecheck.checks.user import resolve_user
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.evidence import collecting

PASSWD = "root:x:0:0::/root:/bin/sh\nsvc:x:1000:1000::/home/svc:/bin/sh\ntoor:x:0:0::/:/bin/sh\n"
GROUP = "root:x:0:\nsvc:x:1000:\nnogroup:x:65534:\n"


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-user")


@pytest.fixture(scope="module")
def image_with_user(build_image, busybox, engine):
    """The facts of a busybox image whose passwd also maps ``toor`` to uid 0, with USER set."""

    def make(user: str | None):
        line = f"USER {user}\n" if user is not None else ""
        ref = build_image(
            f"FROM {busybox}\nRUN echo 'toor:x:0:0::/:/bin/sh' >> /etc/passwd\n{line}"
        )
        return engine.image(ref)

    return make


@pytest.mark.parametrize(
    ("spec", "uid", "gid"),
    [
        ("svc", 1000, 1000),
        ("1000", 1000, 1000),
        ("4242", 4242, 0),
        ("svc:nogroup", 1000, 65534),
        ("svc:7", 1000, 7),
        ("root", 0, 0),
        ("0:0", 0, 0),
        ("toor", 0, 0),
        ("", 0, 0),
    ],
)
def test_resolve_user_as_the_engine_does(spec: str, uid: int, gid: int) -> None:
    resolved = resolve_user(spec, PASSWD, GROUP)
    assert (resolved.uid, resolved.gid, resolved.problem) == (uid, gid, None)


def test_resolve_user_names_what_is_missing() -> None:
    assert "user 'ghost' is not in /etc/passwd" in str(resolve_user("ghost", PASSWD, GROUP).problem)
    assert "(no /etc/passwd)" in str(resolve_user("svc", None, None).problem)
    assert "group 'staff' is not in /etc/group" in str(
        resolve_user("svc:staff", PASSWD, GROUP).problem
    )


def test_named_non_root_user_passes_and_records_evidence(image_with_user) -> None:
    with collecting() as evidence:
        assert_non_root(image_with_user("svc"))
    facts = evidence[0].facts
    assert (facts["user"], facts["uid"], facts["gid"]) == ("svc", 1000, 1000)
    assert facts["resolved_by"] == "/etc/passwd in the image maps 'svc' to uid 1000"


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (None, "runs as root: Config.User is unset, so the engine runs the container as root"),
        ("0", 'Config.User is "0", which is uid 0'),
        ("0:0", 'Config.User is "0:0", which is uid 0'),
        ("root", """Config.User is "root", which /etc/passwd in the image maps 'root' to uid 0"""),
        ("root:root", """Config.User is "root:root", which /etc/passwd in the image maps 'root'"""),
        ("toor", """Config.User is "toor", which /etc/passwd in the image maps 'toor' to uid 0"""),
    ],
)
def test_root_user_fails_saying_it_runs_as_root(image_with_user, user, message) -> None:
    image = image_with_user(user)
    with pytest.raises(AssertionError) as failure:
        assert_non_root(image)
    assert message in str(failure.value)
    assert str(failure.value).startswith(f"image {image.ref} runs as root: ")


@pytest.mark.parametrize(
    ("user", "message"),
    [
        (
            "ghost",
            "user 'ghost' is not in /etc/passwd in the image, so the engine refuses to start its "
            'containers ("unable to find user ghost: no matching entries in passwd file"); add '
            "ghost to /etc/passwd in the image, or use a numeric uid (e.g. USER 1000:1000)",
        ),
        (
            "svc:staff",
            "group 'staff' is not in /etc/group of the image, so the engine refuses to start its "
            'containers ("unable to find group staff: no matching entries in group file"); add '
            "staff to /etc/group in the image, or use a numeric gid (e.g. USER svc:1000)",
        ),
    ],
)
def test_unresolvable_user_fails_saying_the_engine_cannot_start_it(
    image_with_user, user, message
) -> None:
    image = image_with_user(user)
    with pytest.raises(AssertionError) as failure:
        assert_non_root(image)
    headline = f'image {image.ref} cannot start as Config.User "{user}": '
    assert str(failure.value) == headline + message


def test_allow_accepts_a_user_missing_from_passwd_but_never_root(image_with_user) -> None:
    assert_non_root(image_with_user("ghost"), allow=["ghost"])
    with pytest.raises(AssertionError, match="maps 'root' to uid 0"):
        assert_non_root(image_with_user("root"), allow=["root"])


def test_image_without_a_shell_resolves_through_its_files(build_image, busybox, engine) -> None:
    ref = build_image(
        f"FROM {busybox} AS files\nFROM scratch\nCOPY --from=files /etc/passwd /etc/group /etc/\n"
        "USER svc\n"
    )
    assert_non_root(engine.image(ref))


def test_runtime_uid_of_pid_1_and_exec_are_checked(image_with_user, engine) -> None:
    image = image_with_user("svc")
    container = engine.run(image, command=["sleep", "60"], entrypoint=[])
    try:
        with collecting() as evidence:
            assert_non_root(image, container=container)
        assert (evidence[0].facts["pid1_uid"], evidence[0].facts["exec_uid"]) == (1000, 1000)
    finally:
        engine.remove(container)


def test_container_started_as_root_fails_at_runtime(image_with_user, engine) -> None:
    image = image_with_user("svc")
    container = engine.run(image, command=["sleep", "60"], entrypoint=[], user="0")
    try:
        with pytest.raises(AssertionError) as failure:
            assert_non_root(image, container=container)
        assert f"PID 1 of container {container.name} runs as uid 0" in str(failure.value)
        assert "`id -u` in container" in str(failure.value)
    finally:
        engine.remove(container)
