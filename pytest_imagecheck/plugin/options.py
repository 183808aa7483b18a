"""The ``imagecheck`` option group: every option, its ini key, and the resolved
:class:`Settings` of a run. A bad option is a one-line usage error (exit 4)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from ..build import BuildSpec, parse_build_arg, single_platform
from ..engine import check_reference, parse_gpus
from ..errors import ImageCheckError
from ..platforms import parse_platforms

SETTINGS = pytest.StashKey["Settings"]()

#: The ini types the options use.
IniType = Literal["string", "linelist", "bool"]

# (option, ini type, help); each ini key is the option's dest (see _dest).
_OPTIONS: list[tuple[str, IniType, str]] = [
    ("--image", "string", "image under test: NAME[:TAG], NAME@sha256:..., or an image ID"),
    ("--build-context", "string", "build the image under test from this directory"),
    ("--dockerfile", "string", "the Dockerfile to build, or to check when testing --image"),
    ("--build-arg", "linelist", "KEY=VALUE build argument (repeatable)"),
    ("--target", "string", "the Dockerfile stage to build"),
    (
        "--platform",
        "string",
        "target platform(s), as docker buildx build --platform: linux/arm64 to build for it; "
        "a list (linux/amd64,linux/arm64) to judge the Dockerfile on each",
    ),
    ("--gpus", "string", "give containers GPUs as docker run --gpus does: all, N, device=0,1"),
    ("--keep-containers", "bool", "leave containers running after the session, for debugging"),
    ("--require-gpu", "bool", "fail, instead of skipping, when --gpus cannot be honoured"),
    ("--imagecheck-report", "string", "write the evidence report here (.md with an SVG, or .json)"),
]


#: Options that take one value, where a repeat is an error, not a silent last-one-wins.
_ONCE = ("--image",)


class _StoreOnce(argparse.Action):
    """``store``, and every value given kept under ``<dest>_given`` so a repeat is seen."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        given = getattr(namespace, f"{self.dest}_given", None) or []
        setattr(namespace, f"{self.dest}_given", [*given, values])


def _dest(option: str) -> str:
    """``--build-arg`` -> ``imagecheck_build_arg``: the option's dest, and its ini key's stem."""
    name = option.lstrip("-").replace("-", "_")
    return name if name.startswith("imagecheck_") else f"imagecheck_{name}"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``imagecheck`` option group and an ini key for each option."""
    group = parser.getgroup("imagecheck", "container image acceptance checks (pytest-imagecheck)")
    for option, kind, help_text in _OPTIONS:
        dest = _dest(option)
        if kind == "bool":
            group.addoption(option, action="store_true", default=None, dest=dest, help=help_text)
        elif option in _ONCE:
            group.addoption(option, action=_StoreOnce, default=None, dest=dest, help=help_text)
        elif kind == "linelist":
            group.addoption(option, action="append", default=None, dest=dest, help=help_text)
        else:
            group.addoption(option, default=None, dest=dest, help=help_text)
        parser.addini(dest + ("s" if kind == "linelist" else ""), help_text, type=kind)
    parser.addini(
        "imagecheck_yaml",
        "file name patterns collected as criteria files",
        type="args",
        default=["imagecheck.yaml", "imagecheck.yml"],
    )


@dataclass(frozen=True)
class Settings:
    """The options of this run, resolved from the command line, then the ini file."""

    image: str | None = None
    build: BuildSpec | None = None
    dockerfile: Path | None = None
    gpus: str | None = None
    keep_containers: bool = False
    require_gpu: bool = False
    build_args: dict[str, str] = field(default_factory=dict)
    report: Path | None = None
    #: ``--platform``, normalised: the build's platform, and the ones the Dockerfile is judged on.
    platforms: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        """Whether the run names an image to test or to build."""
        return bool(self.image or self.build)


def _setting(config: pytest.Config, option: str, kind: IniType) -> Any:
    dest = _dest(option)
    value = config.getoption(dest)
    given = getattr(config.option, f"{dest}_given", None) or []
    if len(set(given)) > 1:
        raise ImageCheckError(
            f"{option} was given {len(given)} times ({', '.join(given)}): a session tests "
            f"one image; run pytest once per image"
        )
    if value is not None:
        return value, Path.cwd()
    ini_value = config.getini(dest + ("s" if kind == "linelist" else ""))
    base = config.inipath.parent if config.inipath else config.rootpath
    return (ini_value or None), base


def _resolve_settings(config: pytest.Config) -> Settings:
    values = {option: _setting(config, option, kind) for option, kind, _ in _OPTIONS}

    def path(option: str) -> Path | None:
        value, base = values[option]
        return (base / value).resolve() if value else None

    image = values["--image"][0]
    if image:
        check_reference(image)
    gpus = values["--gpus"][0]
    if gpus:
        parse_gpus(gpus)
    build_args = dict(parse_build_arg(arg) for arg in values["--build-arg"][0] or [])
    platforms = parse_platforms(values["--platform"][0]) if values["--platform"][0] else ()
    context, dockerfile = path("--build-context"), path("--dockerfile")
    report = path("--imagecheck-report")
    if dockerfile is not None:
        _check_file("--dockerfile", values["--dockerfile"][0], dockerfile)
    if report is not None:
        _check_writable("--imagecheck-report", values["--imagecheck-report"][0], report)
    build = None
    if context is not None:
        build = BuildSpec(
            context=context,
            dockerfile=dockerfile,
            build_args=build_args,
            target=values["--target"][0],
            platform=single_platform(platforms),
            tag=image,
        )
        if not context.is_dir():
            build.validate()  # raises the one-line error for a context that is not a folder
        if dockerfile is None:
            _check_file("the Dockerfile", "Dockerfile in --build-context", build.dockerfile_path)
    return Settings(
        image=image,
        build=build,
        dockerfile=dockerfile,
        gpus=gpus,
        keep_containers=bool(values["--keep-containers"][0]),
        require_gpu=bool(values["--require-gpu"][0]),
        build_args=build_args,
        report=report,
        platforms=platforms,
    )


def _check_file(option: str, given: str, path: Path) -> None:
    """A one-line usage error unless ``path`` (``given`` as written) is a readable file."""
    if path.is_file():
        return
    problem = "is a directory" if path.is_dir() else "does not exist"
    raise ImageCheckError(
        f"{option} {given} {problem} ({path}): pass the path of a Dockerfile, relative to "
        "where pytest runs (as docker build -f)"
    )


def _check_writable(option: str, given: str, path: Path) -> None:
    """A one-line usage error unless a file can be written at ``path``."""
    if path.is_dir():
        raise ImageCheckError(
            f"{option} {given} is a directory: pass a file name, e.g. {given.rstrip('/')}/report.md"
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ImageCheckError(
            f"{option} {given} cannot be written: {parent} is not a writable directory"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the options first, so every other feature finds :data:`SETTINGS`."""
    try:
        config.stash[SETTINGS] = _resolve_settings(config)
    except ImageCheckError as exc:
        raise pytest.UsageError(str(exc)) from None
