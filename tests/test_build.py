"""Building the image under test: BuildKit, progress, failures, one build per session."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import pytest

from pytest_imagecheck import build as build_module
from pytest_imagecheck.build import BuildSpec, single_platform
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.platforms import engine_platform


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


# Platforms


ARCH_STAGES = (
    "FROM scratch AS base-amd64\nCOPY amd64 /which\n"
    "FROM scratch AS base-arm64\nCOPY arm64 /which\n"
    "FROM base-${TARGETARCH} AS final\n"
)


@pytest.fixture
def tagged(client) -> Iterator[list[str]]:
    """Tags the test builds; removed when it ends."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True, noprune=True)


def _arch_context(path: Path) -> Path:
    context = path / "arch"
    context.mkdir()
    (context / "Dockerfile").write_text(ARCH_STAGES)
    for arch in ("amd64", "arm64"):
        (context / arch).write_text(f"{arch}\n")
    return context


def test_build_for_a_platform_builds_the_stage_buildkit_selects_for_it(
    tmp_path, client, tagged
) -> None:
    assert build_module.find_buildkit_cli() is not None, "the CLI build path needs docker.io"
    engine = Engine(client, "tests-build-platform")
    context = _arch_context(tmp_path)
    native = engine_platform(client.version())
    lines: list[str] = []
    for platform in ("linux/arm64", "linux/amd64", None):
        tag = f"imagecheck-test/platform:{secrets.token_hex(4)}"
        tagged.append(tag)
        spec = BuildSpec(context=context, tag=tag, platform=platform)
        build_module.build_image(spec, client, progress=lines.append)
        image = engine.image(tag)
        built = platform or native
        assert f"{image.os}/{image.architecture}" == built
        assert image.read_file("/which") == f"{built.split('/')[1]}\n".encode()
    assert any(" for linux/arm64 with BuildKit (" in line for line in lines), lines


def test_legacy_builder_gets_the_platform_too(
    tmp_path, client, tagged, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_module, "find_buildkit_cli", lambda: None)
    context = tmp_path / "legacy"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nCOPY which /which\n")
    (context / "which").write_text("arm64\n")
    tag = f"imagecheck-test/platform:{secrets.token_hex(4)}"
    tagged.append(tag)
    build_module.build_image(BuildSpec(context=context, tag=tag, platform="linux/arm64"), client)
    attrs = client.images.get(tag).attrs
    assert (attrs["Os"], attrs["Architecture"]) == ("linux", "arm64")


def test_validate_resolves_the_dockerfile_for_the_build_platform(tmp_path) -> None:
    context = _arch_context(tmp_path)
    dockerfile = BuildSpec(context=context, platform="linux/arm64", target="final").validate(
        engine_platform="linux/amd64"
    )
    assert dockerfile.target_platform == "linux/arm64"
    assert dockerfile.judged_platforms == ("linux/arm64",)
    assert dockerfile.platform_args["BUILDARCH"] == "amd64"
    assert dockerfile.final_stage.resolved_base == "base-arm64"
    assert dockerfile.target == "final"
    native = BuildSpec(context=context).validate(engine_platform="linux/amd64")
    assert native.judged_platforms == ("linux/amd64", "linux/arm64")


def test_build_key_depends_on_the_platform(tmp_path) -> None:
    specs = [BuildSpec(context=tmp_path, platform=p) for p in (None, "linux/arm64")]
    assert specs[0].key() != specs[1].key()


def test_a_build_takes_one_platform() -> None:
    assert single_platform(()) is None
    assert single_platform(("linux/arm64",)) == "linux/arm64"
    with pytest.raises(ImageCheckError) as excinfo:
        single_platform(("linux/amd64", "linux/arm64"))
    assert str(excinfo.value).startswith(
        "--platform linux/amd64,linux/arm64 names 2 platforms, but a build loads one image "
        "into the engine: pass one to build (e.g. --platform linux/amd64)"
    )


def test_platform_option_builds_the_image_under_test_for_it(pytester, client, tagged) -> None:
    context = _arch_context(pytester.path)
    tag = f"imagecheck-test/platform:{secrets.token_hex(4)}"
    tagged.append(tag)
    pytester.makepyfile(
        """
        def test_arm64(image, dockerfile):
            assert (image.os, image.architecture) == ("linux", "arm64")
            assert image.read_file("/which") == b"arm64\\n"
            assert dockerfile.target_platform == "linux/arm64"
        """
    )
    result = pytester.runpytest(
        f"--build-context={context}", f"--image={tag}", "--platform=linux/arm64"
    )
    result.assert_outcomes(passed=1)
