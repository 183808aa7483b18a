"""The ``dockerfile`` fixture: the build's Dockerfile, ``--dockerfile``, or a skip."""

from __future__ import annotations


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
