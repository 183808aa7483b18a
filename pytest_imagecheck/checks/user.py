"""Non-root: the image's user must resolve to a uid other than 0, statically and at runtime."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import kinds
from ..declaration import Check, Key
from ..errors import ContainerFailed
from ..evidence import record

if TYPE_CHECKING:
    from ..container import RunningContainer
    from ..image import ImageUnderTest


@dataclass(frozen=True)
class ResolvedUser:
    """What ``Config.User`` means: uid and gid, how they were found, or why not.

    ``problem`` says what the image lacks when the user or group does not resolve,
    ``engine_error`` is what the engine then answers when asked to start a container of it
    (verified on engine 20.10), and ``fix`` how to resolve it.
    """

    spec: str
    uid: int | None
    gid: int | None
    how: str
    problem: str | None = None
    engine_error: str | None = None
    fix: str | None = None


def parse_table(text: str | None) -> dict[str, list[str]]:
    """``/etc/passwd`` or ``/etc/group`` as ``{name: fields}``; the first line of a name wins.

    >>> parse_table("svc:x:1000:1000::/home/svc:/bin/sh")["svc"][2]
    '1000'
    """
    rows: dict[str, list[str]] = {}
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and not line.startswith("#"):
            rows.setdefault(fields[0], fields)
    return rows


def resolve_user(spec: str, passwd: str | None, group: str | None) -> ResolvedUser:
    """Resolve a ``USER`` value (``name``, ``uid``, ``name:group``, ``uid:gid``) as the engine does.

    ``passwd`` and ``group`` are the image's own files (``None`` when missing).

    >>> resolve_user("svc", "svc:x:1000:1000::/home/svc:/bin/sh", None).uid
    1000
    >>> resolve_user("", None, None).how
    'Config.User is unset, so the engine runs the container as root'
    """
    if not spec:
        return ResolvedUser(
            spec, 0, 0, "Config.User is unset, so the engine runs the container as root"
        )
    user, _, group_spec = spec.partition(":")
    users, groups = parse_table(passwd), parse_table(group)
    if user.isdigit():
        uid = int(user)
        entry = next((f for f in users.values() if f[2] == user), None)
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
        how = "numeric uid"
    elif user in users and users[user][2].isdigit():
        uid, gid = int(users[user][2]), int(users[user][3] or 0)
        how = f"/etc/passwd in the image maps {user!r} to uid {uid}"
    else:
        where = "/etc/passwd in the image" if passwd is not None else "the image (no /etc/passwd)"
        return ResolvedUser(
            spec,
            None,
            None,
            "not found",
            f"user {user!r} is not in {where}",
            f"unable to find user {user}: no matching entries in passwd file",
            f"add {user} to /etc/passwd in the image, or use a numeric uid (e.g. USER 1000:1000)",
        )
    if group_spec.isdigit():
        gid = int(group_spec)
    elif group_spec:
        if group_spec not in groups or not groups[group_spec][2].isdigit():
            where = "/etc/group of the image" if group is not None else "the image (no /etc/group)"
            return ResolvedUser(
                spec,
                uid,
                None,
                how,
                f"group {group_spec!r} is not in {where}",
                f"unable to find group {group_spec}: no matching entries in group file",
                f"add {group_spec} to /etc/group in the image, or use a numeric gid "
                f"(e.g. USER {user}:1000)",
            )
        gid = int(groups[group_spec][2])
    return ResolvedUser(spec, uid, gid, how)


def _read_optional(image: ImageUnderTest, path: str) -> str | None:
    try:
        return image.read_file(path).decode("utf-8", "replace")
    except (FileNotFoundError, IsADirectoryError):
        return None


def assert_non_root(
    image: ImageUnderTest,
    *,
    container: RunningContainer | None = None,
    allow: Iterable[str] = (),
) -> None:
    """Assert that ``image`` runs as a user other than root.

    Statically, ``Config.User`` must be set and resolve, through the image's own
    ``/etc/passwd`` and ``/etc/group``, to a uid other than 0; a user or group they do not
    have fails too, since the engine refuses to start the container (``unable to find user
    svc``). With ``container``, the uid of its PID 1 (from the engine's process table) and of
    an exec (``id -u``) must be non-zero too. ``allow`` names users accepted without an
    ``/etc/passwd`` entry (one the entrypoint creates, or a uid the platform assigns); it
    never lets uid 0 pass.

    A runtime probe that cannot run (no ``id`` in the image, an exec the engine refuses, a
    container that stopped) is not evidence either way: it is recorded under
    ``not_measured`` with the reason, and the check judges by the other probe. When neither
    gives a uid, the check fails saying that the runtime uid was not measured, and why.
    """
    __tracebackhide__ = True
    allowed = set(allow)
    passwd = _read_optional(image, "/etc/passwd")
    group = _read_optional(image, "/etc/group")
    resolved = resolve_user(image.user, passwd, group)
    record(
        "non_root",
        user=image.user or "(unset)",
        uid=resolved.uid,
        gid=resolved.gid,
        resolved_by=resolved.how,
    )
    root = []
    if resolved.uid == 0:
        if image.user:
            root.append(f'Config.User is "{image.user}", which {_plain(resolved.how)}')
        else:
            root.append(resolved.how)
    failures = []
    if container is not None:
        runtime = _runtime_uids(container)
        if runtime.not_measured:
            record("non_root", not_measured=runtime.not_measured)
        where = f"container {container.name} of image {image.ref}"
        if runtime.root and not root and resolved.uid is not None:
            # The image's user is not root but the container's is: not the Dockerfile's fault.
            failures.append(
                f"{where} runs as root: {'; '.join(runtime.root)}, though Config.User "
                f'"{image.user}" is uid {resolved.uid}: it was started as another user '
                "(docker run --user), or PID 1 runs a setuid-root program"
            )
        else:
            root += runtime.root
        if runtime.nothing_measured and not root and resolved.uid != 0:
            failures.append(
                f"{where}: the uid it runs as was not measured "
                f"({'; '.join(runtime.not_measured)}), so non-root at runtime is not verified"
            )
    if root:
        failures.insert(
            0,
            f"image {image.ref} runs as root: {'; '.join(root)}; "
            "add a USER with a non-zero uid to the Dockerfile (e.g. USER 1000:1000)",
        )
    if resolved.problem and (
        resolved.uid is not None or image.user.partition(":")[0] not in allowed
    ):
        failures.append(
            f'image {image.ref} cannot start as Config.User "{image.user}": '
            f"{resolved.problem}, so the engine refuses to start its containers "
            f'("{resolved.engine_error}"); {resolved.fix}'
        )
    if failures:
        raise AssertionError("\n".join(failures))


def _plain(how: str) -> str:
    return how if how != "numeric uid" else "is uid 0"


@dataclass(frozen=True)
class RuntimeUids:
    """What the runtime probes found: findings of uid 0, and what was not measured, why."""

    root: list[str]
    not_measured: list[str]
    nothing_measured: bool


def _reason(error: Exception) -> str:
    """The first line of an engine error, without the log tail it announces."""
    lines = str(error).splitlines() or ["no reason given"]
    return lines[0].removesuffix("; last log lines:")


def _runtime_uids(container: RunningContainer) -> RuntimeUids:
    """The uid of PID 1 (engine's process table) and of ``id -u`` in an exec.

    A probe that cannot run is recorded as not measured, with why, and is no finding.
    """
    not_measured = []
    init_uid: int | None = None
    try:
        init_uid = container.init_uid
    except ContainerFailed as failed:
        not_measured.append(f"PID 1's uid: {_reason(failed)}")
    exec_uid: int | None = None
    try:
        result = container.exec(["id", "-u"])
    except ContainerFailed as refused:
        not_measured.append(f"`id -u`: the engine refused the exec ({_reason(refused)})")
    else:
        printed = result.stdout.strip()
        if printed.isdigit():
            exec_uid = int(printed)
        elif result.not_run is not None:
            not_measured.append(f"`id -u`: {result.not_run}")
        else:
            said = (result.stderr or result.stdout).strip()[:200] or "no output"
            not_measured.append(f"`id -u`: exited with {result.exit_code}, no uid ({said})")
    record("non_root", pid1_uid=init_uid, exec_uid=exec_uid)
    root = []
    if init_uid == 0:
        root.append(f"PID 1 of container {container.name} runs as uid 0 (engine's process table)")
    if exec_uid == 0:
        root.append(f"`id -u` in container {container.name} prints 0")
    return RuntimeUids(root, not_measured, init_uid is None and exec_uid is None)


# --- imagecheck.yaml -----------------------------------------------------------------------

NON_ROOT = Check(
    "non_root",
    "The image's user resolves to a uid other than 0 (assert_non_root).",
    assert_non_root,
    "image",
    (
        Key(
            "runtime",
            kinds.BOOL,
            "Also check the uid of the running session container (PID 1 and an exec).",
            needs=frozenset({"container"}),
        ),
        Key("allow", kinds.TEXTS, "Users accepted without an /etc/passwd entry; never uid 0."),
    ),
)
