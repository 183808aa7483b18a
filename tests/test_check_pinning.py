"""assert_base_images_pinned on Dockerfiles; assert_built_from against a real local registry."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pytest_imagecheck import Dockerfile, assert_base_images_pinned, assert_built_from
from pytest_imagecheck import build as build_module
from pytest_imagecheck.build import BuildSpec
from pytest_imagecheck.dockerfile import FamilyBase, canonical_reference
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import BuildFailed, ImageCheckError
from pytest_imagecheck.evidence import collecting
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.platforms import engine_platform

DIGEST = "sha256:" + "a" * 64


def _pinned(text: str, build_args: dict[str, str] | None = None, **kwargs: object) -> None:
    assert_base_images_pinned(Dockerfile.from_string(text, build_args=build_args), **kwargs)


@pytest.mark.parametrize(
    "text",
    [
        f"FROM python@{DIGEST}\n",
        f"FROM --platform=$BUILDPLATFORM python:3.11@{DIGEST} AS build\nFROM build\n",
        "FROM scratch\n",
        f"ARG BASE=python@{DIGEST}\nFROM ${{BASE}} AS a\nFROM a AS b\nCOPY --from=a / /\n",
        f"from python@{DIGEST} as Builder\nfrom scratch\ncopy --from=builder /x /x\n",
        f"FROM python@{DIGEST}\nCOPY --from=0 /x /y\n",
    ],
    ids=["digest", "platform-and-stage", "scratch", "arg-and-stage", "lowercase", "index"],
)
def test_pinned_dockerfiles_pass(text: str) -> None:
    _pinned(text)


def test_unpinned_from_fails_with_location_and_the_args_used() -> None:
    text = "ARG REGISTRY=rajiup\nFROM ${REGISTRY}/cp-whisperx-app-base-ml:cuda AS base\nRUN true\n"
    with pytest.raises(AssertionError) as failure:
        _pinned(text)
    assert str(failure.value) == (
        "Dockerfile:2 FROM rajiup/cp-whisperx-app-base-ml:cuda is not pinned by digest "
        "(ARG REGISTRY=rajiup): pin it as NAME@sha256:<digest>"
    )


def test_build_arg_overrides_the_default_and_is_named() -> None:
    with pytest.raises(
        AssertionError,
        match=r"FROM mirror/base:1 is not pinned by digest "
        r"\(--build-arg REG=mirror\)",
    ):
        _pinned("ARG REG=docker.io\nFROM ${REG}/base:1\n", build_args={"REG": "mirror"})
    _pinned("ARG REF=python:3\nFROM ${REF}\n", build_args={"REF": f"python@{DIGEST}"})


def test_unresolved_reference_fails_rather_than_passing() -> None:
    with pytest.raises(
        AssertionError,
        match=r"Dockerfile:2 FROM \$\{BASE\} cannot be resolved "
        r"\(ARG BASE has no value\)",
    ):
        _pinned("ARG BASE\nFROM ${BASE}\n")


def test_every_unpinned_reference_is_listed_including_copy_from_and_mount_from() -> None:
    text = (
        "FROM nvidia/cuda:12.1.0-devel-ubuntu22.04 AS builder\n"
        "RUN --mount=type=bind,from=tools:1,target=/t true\n"
        f"FROM python@{DIGEST}\n"
        "COPY --from=nginx:latest /etc/nginx /etc/nginx\n"
        "COPY --from=builder /x /x\n"
    )
    with pytest.raises(AssertionError) as failure:
        _pinned(text)
    lines = str(failure.value).splitlines()
    assert lines[0] == "3 base images are not pinned by digest:"
    assert lines[1:4] == [
        "  Dockerfile:1 FROM nvidia/cuda:12.1.0-devel-ubuntu22.04 is not pinned by digest",
        "  Dockerfile:2 RUN tools:1 is not pinned by digest",
        "  Dockerfile:4 COPY nginx:latest is not pinned by digest",
    ]


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("python@sha256:abc123", "6 hex digits, a sha256 digest has 64"),
        ("python@sha256:" + "A" * 64, "uppercase hex digits, a digest has lowercase ones"),
        ("python:3.12@sha256:" + "g" * 64, "characters that are not hex digits"),
        ("python@sha256:" + "a" * 65, "65 hex digits, a sha256 digest has 64"),
        ("python@md5:" + "a" * 32, "md5 is not a digest algorithm (sha256, sha384, sha512)"),
        ("python@" + "a" * 64, f'"{"a" * 64}" has no algorithm'),
    ],
)
def test_malformed_digest_is_named_as_such_with_the_form_of_a_digest(reference, why) -> None:
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        _pinned(f"FROM {reference}\n")
    assert str(failure.value) == (
        f"Dockerfile:1 FROM {reference} has a malformed digest ({why}): a digest is sha256: "
        "and 64 lowercase hex digits (0-9, a-f); docker inspect --format "
        "'{{index .RepoDigests 0}}' NAME shows it"
    )
    assert (evidence[0].facts["malformed_digests"], evidence[0].facts["unpinned"]) == (1, 0)


def test_malformed_digest_from_an_arg_names_the_arg_and_is_listed_with_unpinned_ones() -> None:
    text = "ARG DIGEST=abc123\nFROM python@sha256:${DIGEST}\nCOPY --from=nginx:latest / /\n"
    with pytest.raises(AssertionError) as failure:
        _pinned(text)
    assert str(failure.value).splitlines() == [
        "2 base images are not pinned by a well-formed digest:",
        "  Dockerfile:2 FROM python@sha256:abc123 has a malformed digest (6 hex digits, a sha256 "
        "digest has 64) (ARG DIGEST=abc123): a digest is sha256: and 64 lowercase hex digits "
        "(0-9, a-f)",
        "  Dockerfile:3 COPY nginx:latest is not pinned by digest",
        "pin each as NAME@sha256:<digest> (docker inspect --format '{{index .RepoDigests 0}}' "
        "NAME shows it)",
    ]


def test_other_oci_digest_algorithms_pin_too() -> None:
    _pinned(f"FROM python@sha512:{'a' * 128}\nCOPY --from=tool@sha384:{'b' * 96} / /\n")


def test_allow_exempts_a_reference_on_purpose_and_records_it() -> None:
    with collecting() as evidence:
        _pinned("FROM internal/base:dev\n", allow=["internal/base:dev"])
    assert evidence[0].facts["allowed"] == ["internal/base:dev"]


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-pinning")


def _push(client, repository: str) -> str:
    """Push ``repository:1`` and return its ``name@sha256:...`` reference."""
    for line in client.images.push(repository, tag="1", stream=True, decode=True):
        assert "error" not in line, line
    digests = client.images.get(f"{repository}:1").attrs["RepoDigests"]
    return next(d for d in digests if d.startswith(repository + "@"))


def test_built_from_a_pinned_base_in_a_real_registry(
    client, registry, build_image, busybox, engine, request
) -> None:
    repository = f"{registry}/imagecheck/base"
    build_image(f"FROM {busybox}\nRUN echo v1 > /version\n", tag=f"{repository}:1")
    pinned = _push(client, repository)
    dockerfile = f"FROM {pinned}\nRUN echo app > /app\n"
    assert_base_images_pinned(Dockerfile.from_string(dockerfile))
    app = engine.image(build_image(dockerfile))

    def remove_v1() -> None:
        # Once the tag moves on, only its digest names v1: build_image cannot remove it.
        for ref in (app.id, pinned):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(ref, force=True, noprune=True)

    request.addfinalizer(remove_v1)
    with collecting() as evidence:
        assert_built_from(app, pinned)
    facts = evidence[0].facts
    assert facts["base_digest"] == pinned.split("@")[1]
    assert facts["matched_layers"] == facts["base_layers"] == len(app.diff_ids) - 1

    # The base moves on: the tag now names a rebuilt base the app was not built from.
    build_image(f"FROM {busybox}\nRUN echo v2 > /version\n", tag=f"{repository}:1")
    _push(client, repository)
    with pytest.raises(AssertionError) as failure:
        assert_built_from(app, f"{repository}:1")
    assert re.match(
        rf"image \S+ is not built from {re.escape(repository)}:1 \(\w{{12}}\): layer \d+ differs: "
        r"the image has \w{12}, the base \w{12}; rebuild on that base",
        str(failure.value),
    )


def test_pinned_from_edited_away_fails_provenance(client, registry, build_image, busybox, engine):
    repository = f"{registry}/imagecheck/edited"
    build_image(f"FROM {busybox}\nRUN echo pinned > /version\n", tag=f"{repository}:1")
    pinned = _push(client, repository)
    edited = f"FROM {busybox}\nRUN echo app > /app\n"
    with pytest.raises(AssertionError, match="is not pinned by digest"):
        assert_base_images_pinned(Dockerfile.from_string(edited.replace(busybox, "busybox:1")))
    with pytest.raises(AssertionError, match=rf"is not built from {re.escape(pinned)}"):
        assert_built_from(engine.image(build_image(edited)), pinned)


def test_base_missing_from_the_engine_says_to_pull_it(engine, busybox) -> None:
    with pytest.raises(
        ImageCheckError, match=r"base image 'nope/base:1' is not on the engine: pull"
    ):
        assert_built_from(engine.image(busybox), "nope/base:1")


# Platforms: BuildKit's automatic platform ARGs (TARGETARCH, BUILDPLATFORM, ...)

AMD64 = {"build_platform": "linux/amd64"}
ARCH_BRANCHES = (
    f"FROM reg/a@{DIGEST} AS base-amd64\n"
    f"FROM reg/b@{DIGEST} AS base-arm64\n"
    "FROM base-${TARGETARCH}\n"
)


def _verdict(text: str, **kwargs: object) -> str:
    """``"pass"``, or the failure message."""
    try:
        assert_base_images_pinned(Dockerfile.from_string(text, **kwargs))
    except AssertionError as failure:
        return str(failure)
    return "pass"


def test_targetarch_selecting_earlier_stages_passes_as_buildkit_builds_it() -> None:
    text = (
        f"FROM registry.example/tool:5@{DIGEST} AS base\n"
        "FROM base AS base-amd64\n"
        "FROM base AS base-arm64\n"
        "FROM base-${TARGETARCH} AS final\n"
    )
    for engine in ("linux/amd64", "linux/arm64"):
        with collecting() as evidence:
            assert _verdict(text, build_platform=engine) == "pass"
        assert sorted(evidence[0].facts["platforms"]) == ["linux/amd64", "linux/arm64"]
        assert evidence[0].facts["base_images"] == [f"registry.example/tool:5@{DIGEST}"]


def test_reference_unpinned_on_one_platform_fails_naming_that_platform() -> None:
    text = (
        f"FROM registry.example/base@{DIGEST} AS common\n"
        "FROM common AS base-amd64\n"
        "FROM common AS base-arm64\n"
        "FROM base-${TARGETARCH} AS runtime\n"
        f"FROM registry.example/tool@{DIGEST} AS tool-amd64\n"
        "RUN true\n"
        "FROM tool-${TARGETARCH} AS final\n"
    )
    assert _verdict(text, **AMD64) == (
        "Dockerfile:7 FROM tool-arm64 is not pinned by digest on linux/arm64 "
        "(TARGETARCH=arm64): pin it as NAME@sha256:<digest>"
    )


def test_arm64_branch_naming_an_unpinned_image_fails_naming_linux_arm64() -> None:
    text = (
        f"FROM registry.example/tool@{DIGEST} AS base-amd64\n"
        "FROM registry.example/tool:arm64 AS base-arm64\n"
        "FROM base-${TARGETARCH}\n"
    )
    expected = (
        "Dockerfile:2 FROM registry.example/tool:arm64 is not pinned by digest on linux/arm64: "
        "pin it as NAME@sha256:<digest>"
    )
    assert _verdict(text, **AMD64) == expected
    assert _verdict(text, build_platform="linux/arm64") == expected


def test_engine_platform_without_a_stage_of_its_own_fails_naming_it() -> None:
    text = (
        "FROM scratch AS base-amd64\n"
        "FROM scratch AS base-armv7\n"
        "FROM base-${TARGETARCH}${TARGETVARIANT}\n"
    )
    assert _verdict(text, **AMD64) == "pass"  # TARGETVARIANT is empty on amd64
    assert _verdict(text, build_platform="linux/arm64") == (
        "Dockerfile:3 FROM base-arm64 is not pinned by digest on linux/arm64 "
        '(TARGETARCH=arm64, TARGETVARIANT=""): pin it as NAME@sha256:<digest>'
    )


def test_given_platforms_are_each_judged() -> None:
    text = ARCH_BRANCHES
    assert _verdict(text, platforms="linux/amd64,linux/arm64") == "pass"
    assert _verdict(text, platforms=["linux/amd64", "linux/arm/v7"]) == (
        "Dockerfile:3 FROM base-arm is not pinned by digest on linux/arm/v7 "
        "(TARGETARCH=arm): pin it as NAME@sha256:<digest>"
    )


def test_buildplatform_stage_and_targetos_reference() -> None:
    text = (
        f"FROM --platform=$BUILDPLATFORM golang@{DIGEST} AS build\n"
        "FROM alpine-${TARGETOS}:3.19 AS final\n"
        "COPY --from=build /app /app\n"
    )
    assert _verdict(text, **AMD64) == (
        "Dockerfile:2 FROM alpine-linux:3.19 is not pinned by digest (TARGETOS=linux): "
        "pin it as NAME@sha256:<digest>"
    )
    pinned = text.replace("alpine-${TARGETOS}:3.19", f"alpine-${{TARGETOS}}@{DIGEST}")
    assert _verdict(pinned, platforms=["linux/arm64", "linux/amd64"]) == "pass"


def test_base_pulled_for_another_platform_says_so() -> None:
    text = (
        "FROM --platform=$BUILDPLATFORM tool-${TARGETARCH}:1 AS build\n"
        "FROM scratch\n"
        "COPY --from=build /x /x\n"
    )
    assert _verdict(
        text, platforms=["linux/arm64", "linux/amd64"], build_platform="linux/amd64"
    ) == (
        "2 base images are not pinned by digest:\n"
        "  Dockerfile:1 FROM tool-arm64:1 is not pinned by digest on linux/arm64 "
        "(TARGETARCH=arm64, pulled for linux/amd64 by --platform=$BUILDPLATFORM)\n"
        "  Dockerfile:1 FROM tool-amd64:1 is not pinned by digest on linux/amd64 "
        "(TARGETARCH=amd64)\n"
        "pin each as NAME@sha256:<digest> (docker inspect --format "
        "'{{index .RepoDigests 0}}' NAME shows it)"
    )


@pytest.mark.parametrize(
    ("instruction", "written"),
    [
        ("COPY --from=tool-${TARGETARCH} /x /x", "tool-${TARGETARCH}"),
        ("RUN --mount=type=bind,from=tool-$TARGETARCH,target=/t true", "tool-$TARGETARCH"),
    ],
    ids=["copy-from", "mount-from"],
)
def test_from_flag_with_a_variable_fails_because_no_builder_substitutes_it(
    instruction: str, written: str
) -> None:
    text = (
        "FROM scratch AS tool-amd64\n"
        "FROM scratch AS tool-arm64\n"
        f"FROM busybox@{DIGEST}\n"
        "ARG TARGETARCH\n"
        f"{instruction}\n"
    )
    keyword = instruction.split()[0]
    assert _verdict(text, **AMD64) == (
        f"Dockerfile:5 {keyword} --from={written} cannot be resolved: no builder substitutes "
        f"variables in --from, so the build fails (add a stage FROM {written} AS <name>, where "
        "ARGs work, and use --from=<name>): pin it as NAME@sha256:<digest>"
    )


def test_user_arg_that_shadows_nothing_is_judged_once() -> None:
    text = (
        "ARG FLAVOUR=slim\n"
        f"FROM reg/base@{DIGEST} AS base-slim\n"
        "FROM base-${FLAVOUR}\n"
        "FROM tool:${FLAVOUR}\n"
    )
    with collecting() as evidence:
        assert _verdict(text, **AMD64) == (
            "Dockerfile:4 FROM tool:slim is not pinned by digest (ARG FLAVOUR=slim): "
            "pin it as NAME@sha256:<digest>"
        )
    assert evidence[0].facts["platforms"] == ["linux/amd64"]


def test_build_arg_overriding_targetarch_is_followed_as_buildkit_does() -> None:
    text = ARCH_BRANCHES.replace(f"reg/b@{DIGEST}", "reg/b:1")
    assert _verdict(text, build_args={"TARGETARCH": "arm64"}, **AMD64) == (
        "Dockerfile:2 FROM reg/b:1 is not pinned by digest: pin it as NAME@sha256:<digest>"
    )


def test_platform_reference_without_a_known_platform_fails_rather_than_passing() -> None:
    text = ARCH_BRANCHES
    with collecting() as evidence:
        assert _verdict(text) == (
            "Dockerfile:3 FROM base-${TARGETARCH} cannot be resolved (TARGETARCH has no value: "
            "the target platform is unknown, pass --platform): pin it as NAME@sha256:<digest>"
        )
    assert evidence[0].facts["platforms"] == "unknown"


# The verdict against what BuildKit really builds (the plugin's CLI build path)


@pytest.fixture
def buildkit(client, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Build as the plugin does: ``build(dockerfile_text, files=None, **buildspec_fields)``.

    Returns the tag; images are removed when the test ends.
    """
    if build_module.find_buildkit_cli() is None:
        pytest.fail("no docker CLI that drives BuildKit: install docker.io (scripts/run-tests)")
    made: list[str] = []

    def build(text: str, files: dict[str, str] | None = None, **spec: Any) -> str:
        context = tmp_path / f"ctx{len(made)}"
        context.mkdir()
        (context / "Dockerfile").write_text(text)
        for name, content in (files or {}).items():
            (context / name).write_text(content)
        tag = spec.pop("tag", None) or f"imagecheck-test/platforms:{secrets.token_hex(4)}"
        made.append(tag)
        build_module.build_image(BuildSpec(context=context, tag=tag, **spec), client)
        return tag

    yield build
    for tag in made:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True, noprune=True)


def test_platform_verdict_matches_the_bases_buildkit_builds_on(
    client, registry, build_image, busybox, buildkit, engine
) -> None:
    native = engine_platform(client.version())
    assert native is not None
    other = "linux/arm64" if native != "linux/arm64" else "linux/amd64"
    native_arch, other_arch = native.split("/")[1], other.split("/")[1]
    # A base pinned by digest for the engine's platform; for the other one an image pushed
    # under a tag (FROM scratch, so that building it for that platform runs nothing).
    build_image(f"FROM {busybox}\nRUN echo pinned > /which\n", tag=f"{registry}/imagecheck/pb:1")
    pinned = _push(client, f"{registry}/imagecheck/pb")
    tagged = f"{registry}/imagecheck/other:1"
    buildkit("FROM scratch\nCOPY which /which\n", {"which": "other\n"}, platform=other, tag=tagged)
    for line in client.images.push(
        f"{registry}/imagecheck/other", tag="1", stream=True, decode=True
    ):
        assert "error" not in line, line
    text = (
        f"FROM {pinned} AS base-{native_arch}\n"
        f"FROM {tagged} AS base-{other_arch}\n"
        "FROM base-${TARGETARCH} AS final\n"
        "LABEL built=yes\n"
    )

    dockerfile = Dockerfile.from_string(text, build_platform=native)
    with pytest.raises(AssertionError) as failure:
        assert_base_images_pinned(dockerfile)
    assert str(failure.value) == (
        f"Dockerfile:2 FROM {tagged} is not pinned by digest on {other}: "
        "pin it as NAME@sha256:<digest>"
    )

    # What BuildKit did: the engine's platform built on the pinned base only, the other
    # platform on the tagged image.
    on_native = engine.image(buildkit(text))
    assert_built_from(on_native, pinned)
    with pytest.raises(AssertionError, match="is not built from"):
        assert_built_from(on_native, tagged)
    on_other = engine.image(buildkit(text, platform=other))
    assert f"{on_other.os}/{on_other.architecture}" == other
    assert on_other.read_file("/which") == b"other\n"
    assert_built_from(on_other, tagged)
    # Judged for the engine's platform only, the unused stage still counts (a --target could
    # build it), without a platform to name.
    with pytest.raises(AssertionError, match=rf"FROM {re.escape(tagged)} is not pinned by digest:"):
        assert_base_images_pinned(Dockerfile.from_string(text, platforms=[native]))


def test_from_flag_with_a_variable_fails_like_the_build(buildkit) -> None:
    text = (
        "FROM scratch AS tool\n"
        "COPY which /which\n"
        "FROM scratch\n"
        "ARG SOURCE=tool\n"
        "COPY --from=${SOURCE} /which /which\n"
    )
    with pytest.raises(BuildFailed):
        buildkit(text, {"which": "tool\n"})
    with pytest.raises(AssertionError, match=r"Dockerfile:5 COPY --from=\$\{SOURCE\} cannot be"):
        assert_base_images_pinned(Dockerfile.from_string(text, build_platform="linux/amd64"))


# Families: a FROM naming a member built in this session (inspect data only, no engine)


def _image(ref: str, *layers: str) -> ImageUnderTest:
    diff_ids = [f"sha256:{layer * 64}" for layer in layers]
    return ImageUnderTest({"Id": f"sha256:{ref[-1] * 64}", "RootFS": {"Layers": diff_ids}}, [], ref)


def _in_family(text: str, built: ImageUnderTest | None, **bases: ImageUnderTest | None) -> str:
    dockerfile = dataclasses.replace(
        Dockerfile.from_string(text, build_platform="linux/amd64"),
        family_bases={
            canonical_reference(tag): FamilyBase(f"member-{i}", tag, image)
            for i, (tag, image) in enumerate(bases.items())
        },
        built_image=built,
    )
    try:
        with collecting() as evidence:
            assert_base_images_pinned(dockerfile)
    except AssertionError as failure:
        return str(failure)
    return f"pass {evidence[0].facts.get('built_here')!s}"


def test_from_on_a_member_built_here_passes_when_the_image_starts_with_its_layers() -> None:
    base = _image("reg/base:ml", "a", "b")
    text = "ARG REG=reg\nFROM ${REG}/base:ml AS runtime\nRUN true\n"
    assert _in_family(text, _image("reg/app:1", "a", "b", "c"), **{"reg/base:ml": base}) == (
        "pass ['reg/base:ml (member member-0)']"
    )


def test_from_on_a_member_built_here_fails_when_the_image_does_not_derive_from_it() -> None:
    base = _image("reg/base:ml", "a", "b")
    text = "FROM reg/base:ml\nRUN true\n"
    assert _in_family(text, _image("reg/app:1", "a", "x", "c"), **{"reg/base:ml": base}) == (
        "Dockerfile:1 FROM reg/base:ml is family member member-0, built in this session, but "
        "image reg/app:1 does not start with its 2 layers: the build used another "
        "reg/base:ml; rebuild it after member-0"
    )


def test_a_member_the_session_does_not_build_is_a_tag_like_any_other() -> None:
    text = f"FROM reg/base:ml\nCOPY --from=python@{DIGEST} / /\n"
    assert _in_family(text, _image("reg/app:1", "a"), **{"reg/base:ml": None}) == (
        "Dockerfile:1 FROM reg/base:ml is not pinned by digest (the tag of family member "
        "member-0, which this session does not build: a build pulls it from a registry): pin "
        "it as NAME@sha256:<digest>"
    )
