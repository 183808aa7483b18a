"""Options, ini keys and the one-line errors for bad ones."""

from __future__ import annotations

import pytest

OPTIONS = [
    "--image",
    "--build-context",
    "--dockerfile",
    "--build-arg",
    "--target",
    "--gpus",
    "--keep-containers",
    "--require-gpu",
]


def test_help_shows_the_imagecheck_group_with_every_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*container image acceptance checks (pytest-imagecheck)*"])
    for option in OPTIONS:
        assert option in result.stdout.str()
    for ini in ("imagecheck_image", "imagecheck_build_context", "imagecheck_build_args"):
        assert ini in result.stdout.str()


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    for name in ("image", "container", "run_container", "dockerfile", "docker_client"):
        result.stdout.fnmatch_lines([f"{name} *", "*"])
    result.stdout.fnmatch_lines(["*The image under test, as facts*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus=two"], "--gpus 'two' is not understood: use all, a count like 2, or device=0,1"),
        (["--gpus=device="], "--gpus 'device=' is not understood"),
        (["--build-arg=APP_ENV"], "--build-arg 'APP_ENV' must be KEY=VALUE"),
        (["--image=Not An Image"], "--image 'Not An Image' is not an image reference"),
        (["--build-context=does-not-exist"], "does-not-exist is not a directory"),
    ],
)
def test_bad_option_is_a_one_line_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    assert message in errors[0]
    assert "Traceback" not in result.stderr.str()


def test_no_image_configured_errors_naming_both_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_user(image): pass")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*no image under test: pass --image REF to test an image, or --build-context DIR*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_ini_key_names_the_image(pytester: pytest.Pytester, sample_image: str) -> None:
    pytester.makeini(f"[pytest]\nimagecheck_image = {sample_image}\n")
    pytester.makepyfile("def test_user(image):\n    assert image.user == 'svc'\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_command_line_wins_over_ini(pytester: pytest.Pytester, sample_image: str) -> None:
    pytester.makeini("[pytest]\nimagecheck_image = imagecheck-test/not-there:1\n")
    pytester.makepyfile("def test_user(image):\n    assert image.user == 'svc'\n")
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=1)


def test_missing_image_is_one_line_naming_it(pytester: pytest.Pytester, client) -> None:
    pytester.makepyfile("def test_user(image): pass")
    result = pytester.runpytest("--image=imagecheck-test/not-there:1")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*image 'imagecheck-test/not-there:1' not found on the engine: build or load it first*"]
    )
    assert "docker.errors" not in result.stdout.str()


def test_unreachable_engine_says_how_to_start_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    pytester.makepyfile("def test_user(image): pass")
    result = pytester.runpytest("--image=autovoice:latest")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*Docker engine unreachable at unix:///nonexistent/docker.sock*scripts/ensure-docker*"]
    )
    assert "Traceback" not in result.stdout.str()
