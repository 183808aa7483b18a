"""Non-root: the image's user must resolve to a uid other than 0, statically and at runtime."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..evidence import record

if TYPE_CHECKING:
    from ..container import RunningContainer
    from ..image import ImageUnderTest


@dataclass(frozen=True)
class ResolvedUser:
    """What ``Config.User`` means: uid and gid, how they were found, or why not."""

    spec: str
    uid: int | None
    gid: int | None
    how: str
    problem: str | None = None


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
            f"user {user!r} is not in {where}: the engine fails "
            f"to start it with 'unable to find user {user}'",
        )
    if group_spec.isdigit():
        gid = int(group_spec)
    elif group_spec:
        if group_spec not in groups or not groups[group_spec][2].isdigit():
            return ResolvedUser(
                spec, uid, None, how, f"group {group_spec!r} is not in /etc/group of the image"
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
    ``/etc/passwd`` and ``/etc/group``, to a uid other than 0. With ``container``, the uid of
    its PID 1 (from the engine's process table) and of an exec (``id -u``) must be non-zero
    too. ``allow`` names users accepted without an ``/etc/passwd`` entry (one the entrypoint
    creates, or a uid the platform assigns); it never lets uid 0 pass.
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
    problems = []
    if resolved.uid == 0:
        if image.user:
            problems.append(f'Config.User is "{image.user}", which {_plain(resolved.how)}')
        else:
            problems.append(resolved.how)
    elif resolved.problem and image.user.partition(":")[0] not in allowed:
        problems.append(f'Config.User is "{image.user}", but {resolved.problem}')
    if container is not None:
        problems += _runtime_problems(container)
    if problems:
        fix = "add a USER with a non-zero uid to the Dockerfile (e.g. USER 1000:1000)"
        raise AssertionError(f"image {image.ref} runs as root: {'; '.join(problems)}; {fix}")


def _plain(how: str) -> str:
    return how if how != "numeric uid" else "is uid 0"


def _runtime_problems(container: RunningContainer) -> list[str]:
    init_uid = container.init_uid
    exec_result = container.exec(["id", "-u"])
    exec_uid = int(exec_result.stdout.strip()) if exec_result.stdout.strip().isdigit() else None
    record("non_root", pid1_uid=init_uid, exec_uid=exec_uid)
    problems = []
    if init_uid == 0:
        problems.append(
            f"PID 1 of container {container.name} runs as uid 0 (engine's process table)"
        )
    if exec_uid == 0:
        problems.append(f"`id -u` in container {container.name} prints 0")
    elif exec_uid is None:
        detail = (exec_result.stderr or exec_result.stdout).strip()[:200]
        problems.append(
            f"`id -u` in container {container.name} gave no uid ({detail or 'no output'})"
        )
    return problems
