"""Options and ini keys; the one-line errors for bad ones are in test_bad_input.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

OPTIONS = [
    "--image",
    "--build-context",
    "--dockerfile",
    "--build-arg",
    "--target",
    "--platform",
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


def test_ini_key_names_the_image(pytester: pytest.Pytester, sample_image: str) -> None:
    pytester.makeini(f"[pytest]\nimagecheck_image = {sample_image}\n")
    pytester.makepyfile("def test_user(image):\n    assert image.user == 'svc'\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_command_line_wins_over_ini(pytester: pytest.Pytester, sample_image: str) -> None:
    pytester.makeini("[pytest]\nimagecheck_image = imagecheck-test/not-there:1\n")
    pytester.makepyfile("def test_user(image):\n    assert image.user == 'svc'\n")
    pytester.runpytest(f"--image={sample_image}").assert_outcomes(passed=1)


def test_loading_the_plugin_imports_no_check_and_every_public_name_resolves() -> None:
    # pytest loads the plugin in every session, also of projects that never start a container:
    # the checks, the YAML spec, the report and NVML load when a session first uses them.
    code = (
        "import sys, pytest_imagecheck.plugin\n"
        "print(' '.join(sorted(sys.modules)))\n"
        "import pytest_imagecheck as package\n"
        "for name in package.__all__: getattr(package, name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    for module in (
        "pytest_imagecheck.checks.cuda",
        "pytest_imagecheck.checks.secrets",
        "pytest_imagecheck.spec",
        "pytest_imagecheck.report",
        "pytest_imagecheck.dockerfile",
        "pytest_imagecheck.gpu",
        "pynvml",
        "yaml",
    ):
        assert module not in loaded


def test_the_plugin_loads_where_fcntl_does_not_exist() -> None:
    # Windows has no fcntl: installing the plugin must not break pytest there.
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import pytest_imagecheck.plugin, pytest_imagecheck.build\n"
        "import pytest_imagecheck.plugin.fixtures\n"
        "print('loaded')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "loaded" in done.stdout, done.stderr[-2000:]
