"""The ``dockerfile`` fixture: the build's Dockerfile, ``--dockerfile``, or a skip."""

from __future__ import annotations

import pytest


def test_fixture_parses_the_build_dockerfile_with_build_args(pytester, busybox) -> None:
    context = pytester.mkdir("ctx")
    (context / "Dockerfile").write_text(
        f"ARG BASE={busybox}\nFROM ${{BASE}} AS base\nFROM base AS runtime\nUSER svc\n"
    )
    pytester.makepyfile(
        f"""
        def test_stages(dockerfile):
            assert [s.name for s in dockerfile.stages] == ["base", "runtime"]
            assert dockerfile.stages[0].resolved_base == "{busybox}"
            assert dockerfile.stages[0].line == 2
            assert dockerfile.args["BASE"] == "{busybox}"
            assert dockerfile.stages[1].base_stage == 0
        """
    )
    pytester.runpytest(f"--build-context={context}").assert_outcomes(passed=1)


def test_dockerfile_option_with_a_named_image(pytester, sample_image) -> None:
    (pytester.path / "Dockerfile.prod").write_text("ARG TAG=1\nFROM registry/base:${TAG}\n")
    pytester.makepyfile(
        """
        def test_base(dockerfile):
            assert dockerfile.stages[0].resolved_base == "registry/base:2"
        """
    )
    result = pytester.runpytest(
        f"--image={sample_image}", "--dockerfile=Dockerfile.prod", "--build-arg=TAG=2"
    )
    result.assert_outcomes(passed=1)


def test_no_dockerfile_known_skips_with_the_reason(pytester, sample_image) -> None:
    pytester.makepyfile("def test_base(dockerfile):\n    pass\n")
    result = pytester.runpytest(f"--image={sample_image}", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no Dockerfile known: pass --build-context DIR or --dockerfile*"])


def test_malformed_dockerfile_is_one_line_with_its_location(pytester) -> None:
    (pytester.path / "Dockerfile").write_text("FROM scratch\nRUNN true\n")
    pytester.makepyfile("def test_base(dockerfile):\n    pass\n")
    result = pytester.runpytest("--dockerfile=Dockerfile")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['*Dockerfile:2: unknown instruction "RUNN"*'])
    assert "Traceback" not in result.stdout.str()


def test_external_base_follows_earlier_stages() -> None:
    from pytest_imagecheck import Dockerfile

    dockerfile = Dockerfile.from_string(
        "ARG ML=none\nARG BASE=reg/base@sha256:" + "a" * 64 + "\n"
        "FROM ${BASE} AS ml-none\nFROM scratch AS ml-cuda\nFROM ml-${ML} AS runtime\n"
    )
    assert dockerfile.external_base() == "reg/base@sha256:" + "a" * 64
    assert dockerfile.external_base("ml-cuda") is None


ARCH_STAGES = (
    "FROM scratch AS base-amd64\nFROM scratch AS base-arm64\nFROM base-${TARGETARCH} AS final\n"
)


def test_fixture_resolves_platform_args_for_the_engines_platform(pytester, client) -> None:
    from pytest_imagecheck.platforms import engine_platform

    native = engine_platform(client.version())
    (pytester.path / "Dockerfile").write_text(ARCH_STAGES)
    pytester.makepyfile(
        f"""
        from pytest_imagecheck import assert_base_images_pinned

        def test_platforms(dockerfile):
            assert dockerfile.target_platform == "{native}"
            assert dockerfile.platform_args["BUILDPLATFORM"] == "{native}"
            assert set(dockerfile.judged_platforms) == {{"linux/amd64", "linux/arm64"}}
            assert dockerfile.final_stage.resolved_base == "base-{native.split("/")[1]}"
            assert_base_images_pinned(dockerfile)
        """
    )
    pytester.runpytest("--dockerfile=Dockerfile").assert_outcomes(passed=1)


def test_platform_option_and_ini_key_name_the_platforms_judged(pytester) -> None:
    (pytester.path / "Dockerfile").write_text(ARCH_STAGES)
    pytester.makepyfile(
        """
        from pytest_imagecheck import assert_base_images_pinned

        def test_platforms(dockerfile):
            assert_base_images_pinned(dockerfile)
        """
    )
    result = pytester.runpytest("--dockerfile=Dockerfile", "--platform=linux/aarch64,linux/arm")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*Dockerfile:3 FROM base-arm is not pinned by digest on linux/arm/v7 (TARGETARCH=arm)*"]
    )
    pytester.makeini("[pytest]\nimagecheck_platform = linux/arm64,linux/amd64\n")
    pytester.runpytest("--dockerfile=Dockerfile").assert_outcomes(passed=1)


def test_platform_list_with_a_build_is_a_usage_error(pytester) -> None:
    context = pytester.mkdir("ctx")
    (context / "Dockerfile").write_text(ARCH_STAGES)
    pytester.makepyfile("def test_id(image):\n    pass\n")
    result = pytester.runpytest(f"--build-context={context}", "--platform=linux/amd64,linux/arm64")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --platform linux/amd64,linux/arm64 names 2 platforms, but a build loads one*"]
    )


def test_malformed_platform_is_a_usage_error(pytester) -> None:
    pytester.makepyfile("def test_id(dockerfile):\n    pass\n")
    result = pytester.runpytest("--platform=linux")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --platform 'linux': platform 'linux' names no architecture: use OS/ARCH*"]
    )
