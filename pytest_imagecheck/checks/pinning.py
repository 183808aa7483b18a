"""Base image pinning by digest, and provenance: does the image really derive from its base?"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DockerfileError, ImageCheckError, ImageNotFound
from ..evidence import record

if TYPE_CHECKING:
    from ..dockerfile import Dockerfile, Instruction
    from ..image import ImageUnderTest

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class BaseReference:
    """An external image a Dockerfile builds on (``FROM``) or copies from (``--from``)."""

    instruction: Instruction
    written: str
    resolved: str | None

    @property
    def pinned(self) -> bool:
        """Whether the resolved reference carries ``@sha256:<64 hex>``."""
        return bool(self.resolved and _DIGEST.search(self.resolved))


def _is_stage(dockerfile: Dockerfile, name: str) -> bool:
    try:
        dockerfile.stage(name)
    except DockerfileError:
        return False
    return True


def base_references(dockerfile: Dockerfile) -> list[BaseReference]:
    """Every external image the Dockerfile uses: ``FROM``, ``COPY --from``, ``RUN --mount=from``.

    ``scratch`` and earlier stages are not external. ARGs are substituted; a reference whose
    variables have no value has ``resolved=None``.
    """
    found = []
    for stage in dockerfile.stages:
        if not stage.is_scratch and stage.base_stage is None:
            found.append(BaseReference(stage.instruction, stage.base, stage.resolved_base))
    for instruction in dockerfile.instructions:
        sources = [
            v
            for k, v in instruction.flags
            if k == "from" and instruction.keyword in ("COPY", "ADD")
        ]
        for name, value in instruction.flags:
            if name == "mount":
                options = dict(p.partition("=")[::2] for p in value.split(","))
                if options.get("from"):
                    sources.append(options["from"])
        for source in sources:
            resolved = dockerfile.substitute(source, stage=instruction.stage)
            if resolved is not None and (_is_stage(dockerfile, resolved) or resolved == "scratch"):
                continue
            found.append(BaseReference(instruction, source, resolved))
    return sorted(found, key=lambda ref: ref.instruction.line)


def _arguments_note(dockerfile: Dockerfile, written: str) -> str:
    """`` (ARG REGISTRY=rajiup)`` for the variables a reference uses."""
    notes = []
    for name in dict.fromkeys(_VARIABLE.findall(written)):
        if name in dockerfile.build_args:
            notes.append(f"--build-arg {name}={dockerfile.build_args[name]}")
        elif dockerfile.args.get(name) is not None:
            notes.append(f"ARG {name}={dockerfile.args[name]}")
        else:
            notes.append(f"ARG {name} has no value")
    return f" ({', '.join(notes)})" if notes else ""


def assert_base_images_pinned(dockerfile: Dockerfile, *, allow: Iterable[str] = ()) -> None:
    """Assert that every external image the Dockerfile uses is pinned by ``@sha256:`` digest.

    ``FROM`` lines (with ``--platform`` and ``AS``), ``COPY --from=<image>`` and
    ``RUN --mount=from=<image>`` count; ``scratch`` and earlier stages don't. ARG values,
    with ``--build-arg`` overrides, are substituted; a reference that stays unresolved fails.
    ``allow`` lists references exempt on purpose (as written or as resolved).
    """
    __tracebackhide__ = True
    allowed = set(allow)
    references = base_references(dockerfile)
    problems, exempt = [], []
    for ref in references:
        if ref.written in allowed or ref.resolved in allowed:
            exempt.append(ref.resolved or ref.written)
            continue
        where = f"{dockerfile.location(ref.instruction)} {ref.instruction.keyword}"
        note = _arguments_note(dockerfile, ref.written)
        if ref.resolved is None:
            problems.append(f"{where} {ref.written} cannot be resolved{note}")
        elif not ref.pinned:
            problems.append(f"{where} {ref.resolved} is not pinned by digest{note}")
    record(
        "base_images_pinned",
        base_images=[r.resolved or r.written for r in references] or "none",
        unpinned=len(problems),
        allowed=exempt or "none",
    )
    if len(problems) == 1:
        raise AssertionError(f"{problems[0]}: pin it as NAME@sha256:<digest>")
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise AssertionError(
            f"{len(problems)} base images are not pinned by digest:\n{listed}\n"
            "pin each as NAME@sha256:<digest> (docker inspect --format "
            "'{{index .RepoDigests 0}}' NAME shows it)"
        )


def assert_built_from(image: ImageUnderTest, base: ImageUnderTest | str) -> None:
    """Assert that ``image`` derives from ``base``: base's layers are the image's first layers.

    ``base`` is an ``ImageUnderTest`` or a reference (``name@sha256:...`` or ``name:tag``) on
    the engine. Layer diff IDs are compared, so a pinned FROM that was edited away, or an image
    built on a stale base, fails even when names and tags agree.
    """
    __tracebackhide__ = True
    if isinstance(base, str):
        if image.engine is None:
            raise ImageCheckError(f"cannot look up base {base!r}: no engine attached")
        try:
            base = image.engine.image(base)
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
