"""assert_base_images_pinned on Dockerfiles; assert_built_from against a real local registry."""

from __future__ import annotations

import re

import pytest

from pytest_imagecheck import Dockerfile, assert_base_images_pinned, assert_built_from
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import collecting

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
    client, registry, build_image, busybox, engine
) -> None:
    repository = f"{registry}/imagecheck/base"
    build_image(f"FROM {busybox}\nRUN echo v1 > /version\n", tag=f"{repository}:1")
    pinned = _push(client, repository)
    dockerfile = f"FROM {pinned}\nRUN echo app > /app\n"
    assert_base_images_pinned(Dockerfile.from_string(dockerfile))
    app = engine.image(build_image(dockerfile))
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
