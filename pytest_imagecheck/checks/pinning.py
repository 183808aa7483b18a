"""Base image pinning by digest, and provenance: does the image really derive from its base?"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import kinds
from ..declaration import Check, Key, value_of
from ..errors import ImageCheckError, ImageNotFound
from ..evidence import record
from ..platforms import PLATFORM_ARGS

if TYPE_CHECKING:
    from ..dockerfile import Dockerfile, FamilyBase, Instruction
    from ..image import ImageUnderTest

#: Digest algorithms a reference may name, with the hex digits of each (the OCI image spec's
#: registered algorithms, which the engine's reference parser takes).
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
#: How a digest looks, for messages.
DIGEST_FORM = "sha256: and 64 lowercase hex digits (0-9, a-f)"
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_EMPTY = '""'
_NO_VARIABLES_IN_FROM = (
    "no builder substitutes variables in --from, so the build fails (add a stage "
    "FROM {written} AS <name>, where ARGs work, and use --from=<name>)"
)


@dataclass(frozen=True)
class BaseReference:
    """An external image a Dockerfile builds on (``FROM``) or copies from (``--from``)."""

    instruction: Instruction
    written: str
    resolved: str | None
    #: Why ``resolved`` is None when that is not a variable without a value.
    reason: str | None = None

    @property
    def pinned(self) -> bool:
        """Whether the resolved reference carries a well-formed digest (``@sha256:<64 hex>``)."""
        return bool(self.resolved and "@" in self.resolved and self.malformed is None)

    @property
    def malformed(self) -> str | None:
        """What is wrong with the resolved reference's digest, or ``None`` when it has none
        or a well-formed one: see :func:`digest_problem`."""
        return digest_problem(self.resolved) if self.resolved else None


def digest_problem(reference: str) -> str | None:
    """What is wrong with the digest after ``@`` in ``reference``, in a few words; ``None``
    when there is no ``@`` or the digest is well formed: ``sha256:`` and 64 lowercase hex
    digits (sha384: 96, sha512: 128), as the OCI image spec and the engine write digests.

    >>> digest_problem("python@sha256:abc123")
    '6 hex digits, a sha256 digest has 64'
    >>> digest_problem("python@sha256:" + "AB" * 32)
    'uppercase hex digits, a digest has lowercase ones'
    >>> digest_problem("python:3.12") is None
    True
    """
    _, at, digest = reference.partition("@")
    if not at:
        return None
    algorithm, colon, encoded = digest.partition(":")
    if not colon:
        return f'"{digest}" has no algorithm'
    if algorithm not in DIGEST_LENGTHS:
        return f"{algorithm} is not a digest algorithm ({', '.join(DIGEST_LENGTHS)})"
    if not re.fullmatch(r"[0-9a-fA-F]*", encoded):
        return "characters that are not hex digits"
    if encoded != encoded.lower():
        return "uppercase hex digits, a digest has lowercase ones"
    if len(encoded) != DIGEST_LENGTHS[algorithm]:
        return f"{len(encoded)} hex digits, a {algorithm} digest has {DIGEST_LENGTHS[algorithm]}"
    return None


def base_references(dockerfile: Dockerfile) -> list[BaseReference]:
    """Every external image the Dockerfile uses: ``FROM``, ``COPY --from``, ``RUN --mount=from``.

    Resolved for ``dockerfile.target_platform`` (see :meth:`Dockerfile.on`). ``scratch`` and
    earlier stages are not external. ARGs are substituted in FROM lines; a reference whose
    variables have no value has ``resolved=None``. A ``--from`` with a variable has
    ``resolved=None`` and a ``reason``: no builder substitutes variables there.
    """
    found = []
    for stage in dockerfile.stages:
        if not stage.is_scratch and stage.base_stage is None:
            found.append(BaseReference(stage.instruction, stage.base, stage.resolved_base))
    for instruction in dockerfile.instructions:
        for source in instruction.sources:
            if "$" in source:
                reason = _NO_VARIABLES_IN_FROM.format(written=source)
                found.append(BaseReference(instruction, source, None, reason))
                continue
            if source == "scratch" or dockerfile.source_stage(source) is not None:
                continue
            found.append(BaseReference(instruction, source, source))
    return sorted(found, key=lambda ref: ref.instruction.line)


def _arguments_note(dockerfile: Dockerfile, written: str) -> list[str]:
    """``["ARG REGISTRY=rajiup", "TARGETARCH=arm64"]`` for the variables a reference uses."""
    notes = []
    unknown: dict[str, list[str]] = {"TARGET": [], "BUILD": []}
    automatic = dockerfile.platform_args
    for name in dict.fromkeys(_VARIABLE.findall(written)):
        value = dockerfile.args.get(name)
        if name in dockerfile.build_args:
            notes.append(f"--build-arg {name}={dockerfile.build_args[name]}")
        elif name in PLATFORM_ARGS and value in (None, automatic[name]):
            if automatic[name] is None:
                unknown["BUILD" if name.startswith("BUILD") else "TARGET"].append(name)
            else:
                notes.append(f"{name}={automatic[name] or _EMPTY}")
        elif value is not None:
            notes.append(f"ARG {name}={value}")
        else:
            notes.append(f"ARG {name} has no value")
    for kind, names in unknown.items():
        if names:
            verb = "has" if len(names) == 1 else "have"
            why = (
                "the target platform is unknown, pass --platform"
                if kind == "TARGET"
                else "the engine's platform is unknown"
            )
            notes.append(f"{', '.join(names)} {verb} no value: {why}")
    return notes


def _problem(dockerfile: Dockerfile, ref: BaseReference, platforms: list[str]) -> str | None:
    """The failure line for ``ref`` as resolved in ``dockerfile``, or None when it is pinned.

    A malformed digest is its own failure, with the form of a digest: the reference is
    meant to be pinned, and the engine refuses to pull it (``invalid reference format``,
    ``invalid checksum digest format``).

    ``platforms`` are named in the line (``on linux/arm64``) when the verdict is theirs only.
    """
    if ref.pinned:
        return None
    where = f"{dockerfile.location(ref.instruction)} {ref.instruction.keyword}"
    on = f" on {', '.join(platforms)}" if platforms else ""
    member = dockerfile.family_base(ref.resolved)
    notes = _arguments_note(dockerfile, ref.written)
    if member is not None:
        notes.append(
            f"the tag of family member {member.member}, which this session does not build: "
            "a build pulls it from a registry"
        )
    if ref.instruction.keyword == "FROM" and platforms and ref.resolved is not None:
        stage = dockerfile.stages[ref.instruction.stage or 0]
        if stage.base_platform and stage.base_platform != dockerfile.target_platform:
            notes.append(f"pulled for {stage.base_platform} by --platform={stage.platform}")
    note = f" ({', '.join(notes)})" if notes else ""
    if ref.reason:
        return f"{where} --from={ref.written} cannot be resolved{on}: {ref.reason}"
    if ref.resolved is None:
        return f"{where} {ref.written} cannot be resolved{on}{note}"
    if ref.malformed is not None:
        return (
            f"{where} {ref.resolved} has a malformed digest{on} ({ref.malformed}){note}: "
            f"a digest is {DIGEST_FORM}"
        )
    return f"{where} {ref.resolved} is not pinned by digest{on}{note}"


def _not_derived(
    dockerfile: Dockerfile, ref: BaseReference, member: FamilyBase, where: str
) -> str | None:
    """Why a FROM naming a family member this session built is wrong, or None: the image
    built from it must start with that member's layers (layer-prefix provenance). A FROM of
    a stage the image does not build on, and a ``--from`` source, are built here too, with
    nothing in the image to verify them by."""
    built, base = dockerfile.built_image, member.image
    if built is None or base is None or ref.instruction.keyword != "FROM":
        return None
    start = (
        dockerfile.check_target(dockerfile.target) if dockerfile.target else dockerfile.final_stage
    )
    while start.base_stage is not None:
        start = dockerfile.stages[start.base_stage]
    if start.instruction is not ref.instruction:
        return None
    ours, theirs = built.diff_ids, base.diff_ids
    if ours[: len(theirs)] == theirs:
        return None
    return (
        f"{where} {ref.resolved} is family member {member.member}, built in this session, but "
        f"image {built.ref} does not start with its {len(theirs)} layers: the build used "
        f"another {ref.resolved}; rebuild it after {member.member}"
    )


def assert_base_images_pinned(dockerfile: Dockerfile, *, allow: Iterable[str] = ()) -> None:
    """Assert that every external image the Dockerfile uses is pinned by ``@sha256:`` digest.

    A digest that is not ``sha256:`` and 64 lowercase hex digits (or another OCI algorithm's,
    sha384 or sha512) is malformed: the failure says so, with the form of a digest, rather
    than "not pinned".

    ``FROM`` lines (with ``--platform`` and ``AS``), ``COPY --from=<image>`` and
    ``RUN --mount=from=<image>`` count; ``scratch`` and earlier stages don't. ARG values,
    with ``--build-arg`` overrides, are substituted; a reference that stays unresolved fails,
    and so does a ``--from`` with a variable (no builder substitutes one there).
    ``allow`` lists references exempt on purpose (as written or as resolved).

    Platforms: BuildKit's automatic platform ARGs (``TARGETARCH``, ``BUILDPLATFORM``, ...)
    are resolved for each of ``dockerfile.judged_platforms``: the build's ``--platform``
    list, else the engine's platform plus those the Dockerfile evidently supports
    (``FROM base-${TARGETARCH}`` with stages ``base-amd64`` and ``base-arm64``). A
    reference that fails on some of them only names those (``on linux/arm64
    (TARGETARCH=arm64)``); so does an unpinned FROM in a stage that only their builds use.
    With no platform known, a reference that needs one cannot be resolved, and fails.

    Families: a FROM that names a member of the image family this session built is built
    here, not pulled: it passes without a digest, and is verified instead by layer-prefix
    provenance (the image starts with that member's layers). It is never reported as
    pinned. A member's tag the session does not build is a tag like any other: unpinned,
    and the failure says it is a family member's.
    """
    __tracebackhide__ = True
    allowed = set(allow)
    platforms = list(dockerfile.judged_platforms)
    views = [dockerfile.on(platform) for platform in platforms] or [dockerfile]
    found: dict[tuple[int, str, str], list[tuple[Dockerfile, BaseReference]]] = {}
    for view in views:
        for ref in base_references(view):
            key = (ref.instruction.line, ref.instruction.keyword, ref.written)
            found.setdefault(key, []).append((view, ref))
    problems: list[str] = []
    malformed = 0
    exempt: list[str] = []
    used: list[str] = []
    here: list[str] = []
    not_derived: list[str] = []
    for key in sorted(found):
        entries = found[key]
        built_here = []
        for view, ref in entries:
            member = view.family_base(ref.resolved)
            if member is not None and member.image is not None and not ref.pinned:
                here.append(f"{ref.resolved} (member {member.member})")
                where = f"{view.location(ref.instruction)} {ref.instruction.keyword}"
                built_here.append(_not_derived(view, ref, member, where))
            else:
                used.append(ref.resolved or ref.written)
        if len(built_here) == len(entries):
            not_derived.extend(dict.fromkeys(p for p in built_here if p is not None))
            continue
        if any(ref.written in allowed or ref.resolved in allowed for _, ref in entries):
            exempt.extend(ref.resolved or ref.written for _, ref in entries)
            continue
        same_everywhere = len(entries) == len(views) and len({r.resolved for _, r in entries}) == 1
        if same_everywhere:
            # One verdict; named with the platforms whose builds use its stage, if not all.
            users = [(v, r) for v, r in entries if r.instruction.stage in v.used_stages]
            view, ref = users[0] if users else entries[0]
            named = [str(v.target_platform) for v, _ in users] if len(users) < len(views) else []
            problem = _problem(view, ref, named)
            if problem:
                problems.append(problem)
                malformed += ref.malformed is not None
            continue
        for view, ref in entries:
            problem = _problem(view, ref, [str(view.target_platform)])
            if problem:
                problems.append(problem)
                malformed += ref.malformed is not None
    record(
        "base_images_pinned",
        base_images=list(dict.fromkeys(used)) or "none",
        **({"built_here": list(dict.fromkeys(here))} if here else {}),
        unpinned=len(problems) - malformed,
        malformed_digests=malformed,
        allowed=list(dict.fromkeys(exempt)) or "none",
        platforms=platforms or "unknown",
    )
    shows = "docker inspect --format '{{index .RepoDigests 0}}' NAME shows it"
    if not_derived:
        rest = [*problems, "pin those as NAME@sha256:<digest>"] if problems else []
        raise AssertionError("\n".join([*not_derived, *rest]))
    if len(problems) == 1:
        raise AssertionError(
            f"{problems[0]}; {shows}"
            if malformed
            else f"{problems[0]}: pin it as NAME@sha256:<digest>"
        )
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        what = "are not pinned by a well-formed digest" if malformed else "are not pinned by digest"
        raise AssertionError(
            f"{len(problems)} base images {what}:\n{listed}\n"
            f"pin each as NAME@sha256:<digest> ({shows})"
        )


def assert_built_from(image: ImageUnderTest, base: ImageUnderTest | str) -> None:
    """Assert that ``image`` derives from ``base``: base's layers are the image's first layers.

    ``base`` is an ``ImageUnderTest`` or a reference (``name@sha256:...`` or ``name:tag``) on
    the engine. Layer diff IDs are compared, so a pinned FROM that was edited away, or an image
    built on a stale base, fails even when names and tags agree.
    """
    __tracebackhide__ = True
    if isinstance(base, str):
        if image.source is None:
            raise ImageCheckError(f"cannot look up base {base!r}: no engine attached")
        try:
            base = image.source.image(base)
        except ImageNotFound:
            raise ImageCheckError(
                f"base image {base!r} is not on the engine: pull it first (docker pull {base})"
            ) from None
    ours, theirs = image.diff_ids, base.diff_ids
    matched = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
        min(len(ours), len(theirs)),
    )
    record(
        "built_from",
        base=base.ref,
        base_id=base.id,
        base_digest=base.digest,
        base_layers=len(theirs),
        image_layers=len(ours),
        matched_layers=matched,
    )
    if matched == len(theirs) and len(ours) >= len(theirs):
        return
    if len(theirs) > len(ours) and matched == len(ours):
        detail = f"the base has {len(theirs)} layers, the image only {len(ours)}"
    else:
        detail = (
            f"layer {matched + 1} differs: the image has {_short(ours[matched])}, "
            f"the base {_short(theirs[matched])}"
        )
    raise AssertionError(
        f"image {image.ref} is not built from {base.ref} ({base.short_id}): {detail}; "
        "rebuild on that base, or update the expected base"
    )


def _short(diff_id: str) -> str:
    return diff_id.removeprefix("sha256:")[:12]


# --- imagecheck.yaml -----------------------------------------------------------------------

BASE_IMAGES_PINNED = Check(
    "base_images_pinned",
    "Every external image the Dockerfile uses is pinned by @sha256 digest "
    "(assert_base_images_pinned).",
    assert_base_images_pinned,
    "dockerfile",
    (Key("allow", kinds.TEXTS, "References exempt on purpose, as written or as resolved."),),
)
BUILT_FROM = Check(
    "built_from",
    "The image's first layers are the layers of this base (assert_built_from).",
    assert_built_from,
    "image",
    (
        Key(
            "base",
            kinds.TEXT,
            "The base image reference on the engine.",
            required=True,
            example="registry.example/base@sha256:4f0d...",
        ),
    ),
    title=value_of("base"),
)
