"""Building the image under test: BuildKit, progress, failures, one build per session."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from pytest_imagecheck import build as build_module


def _context(path: Path, busybox: str, body: str) -> Path:
    context = path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {busybox} AS base\n{body}")
    return context


def test_build_with_args_and_target_is_tagged_with_image(pytester, busybox, client) -> None:
    context = _context(
        pytester.path,
        busybox,
        "ARG APP_ENV=dev\nENV APP_ENV=$APP_ENV\nFROM base AS runtime\nLABEL stage=runtime\n"
        "FROM base AS debug\nLABEL stage=debug\n",
    )
    pytester.makepyfile(
        """
        def test_facts(image):
            assert image.env["APP_ENV"] == "prod"
            assert image.labels["stage"] == "runtime"
            assert "imagecheck-test/built:runtime" in image.tags
        """
    )
    result = pytester.runpytest(
        f"--build-context={context}",
        "--build-arg=APP_ENV=prod",
        "--target=runtime",
        "--image=imagecheck-test/built:runtime",
    )
    result.assert_outcomes(passed=1)


def test_build_context_alone_gets_a_tag_named_after_it(pytester, busybox) -> None:
    context = _context(pytester.path, busybox, "LABEL x=1\n")
    pytester.makepyfile("def test_tag(image):\n    assert 'imagecheck/ctx:latest' in image.tags\n")
    pytester.runpytest(f"--build-context={context}").assert_outcomes(passed=1)


def test_run_mount_cache_dockerfile_builds(pytester, busybox) -> None:
    context = _context(
        pytester.path,
        busybox,
        "RUN --mount=type=cache,target=/cache echo cached > /cache/x && cp /cache/x /built\n",
    )
    pytester.makepyfile(
        "def test_file(image):\n    assert image.read_file('/built') == b'cached\\n'\n"
    )
    pytester.runpytest(f"--build-context={context}").assert_outcomes(passed=1)


def test_build_progress_shows_steps_as_they_happen(pytester, busybox) -> None:
    nonce = secrets.token_hex(4)
    context = _context(pytester.path, busybox, f"RUN echo {nonce} > /nonce\n")
    pytester.makepyfile("def test_id(image):\n    pass\n")
    result = pytester.runpytest(f"--build-context={context}", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "[[]imagecheck[]] building imagecheck/ctx:latest with BuildKit*",
            f"[[]imagecheck[]] *RUN echo {nonce} > /nonce*",
            "[[]imagecheck[]] built imagecheck/ctx:latest (*) in *s",
        ]
    )


def test_failed_build_shows_the_failing_step_and_its_whole_output(pytester, busybox) -> None:
    lines = " && ".join(f"echo output-line-{i}" for i in range(30))
    context = _context(pytester.path, busybox, f"LABEL a=b\nRUN {lines} && exit 7\n")
    pytester.makepyfile("def test_id(image):\n    pass\n")
    result = pytester.runpytest(f"--build-context={context}")
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "building imagecheck/ctx:latest failed at" in out
    assert "Dockerfile:3 " in out
    assert "exit code: 7" in out
    for i in range(30):
        assert f"output-line-{i}" in out
    assert "Traceback" not in out


def test_target_that_does_not_exist_lists_the_stages(pytester, busybox) -> None:
    context = _context(pytester.path, busybox, "FROM base AS runtime\n")
    pytester.makepyfile("def test_id(image):\n    pass\n")
    result = pytester.runpytest(f"--build-context={context}", "--target=prod")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ['*--target "prod" is not a stage of *; its stages are: base, runtime*']
    )


def test_without_a_buildkit_cli_the_legacy_builder_builds(
    pytester, busybox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_module, "find_buildkit_cli", lambda: None)
    context = _context(pytester.path, busybox, "RUN echo legacy > /built\n")
    pytester.makepyfile(
        "def test_file(image):\n    assert image.read_file('/built') == b'legacy\\n'\n"
    )
    result = pytester.runpytest(f"--build-context={context}", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*legacy builder (docker-py)*", "*Step 2/2 : RUN echo legacy*"])


def test_without_a_buildkit_cli_run_mount_is_a_clear_error(
    pytester, busybox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_module, "find_buildkit_cli", lambda: None)
    context = _context(pytester.path, busybox, "RUN --mount=type=cache,target=/c true\n")
    pytester.makepyfile("def test_id(image):\n    pass\n")
    result = pytester.runpytest(f"--build-context={context}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*Dockerfile:2 RUN --mount=type=cache,target=/c true needs BuildKit*"]
    )


def test_two_xdist_workers_share_one_build(pytester, busybox, client) -> None:
    nonce = secrets.token_hex(4)
    context = _context(pytester.path, busybox, f"RUN echo {nonce} > /nonce && sleep 2\n")
    pytester.makepyfile(
        **{
            f"test_w{i}": f"""
                from pathlib import Path

                def test_image(image, worker_id):
                    Path("ids-{i}.txt").write_text(image.id + " " + worker_id)
                """
            for i in range(4)
        }
    )
    result = pytester.runpytest_subprocess(f"--build-context={context}", "-n", "2")
    result.assert_outcomes(passed=4)
    ids = {(pytester.path / f"ids-{i}.txt").read_text().split()[0] for i in range(4)}
    workers = {(pytester.path / f"ids-{i}.txt").read_text().split()[1] for i in range(4)}
    assert len(ids) == 1
    assert workers == {"gw0", "gw1"}
    assert result.stderr.str().count(f"RUN echo {nonce}") == 1, result.stderr.str()
