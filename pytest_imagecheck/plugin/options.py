"""The ``imagecheck`` option group: every option, its ini key, and the resolved
:class:`Settings` of a run. A bad option is a one-line usage error (exit 4)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from ..build import BuildSpec, parse_build_arg, single_platform
from ..dockerfile import canonical_reference
from ..engine import check_reference, parse_gpus
from ..enginehost import EngineTarget, Publishing, engine_target, publishing
from ..errors import ImageCheckError
from ..family import Family, Member, family_from_refs, load_family, unique_members
from ..platforms import parse_platforms

SETTINGS = pytest.StashKey["Settings"]()

_T = TypeVar("_T")

#: The ini types the options use.
IniType = Literal["string", "linelist", "bool"]

# (option, ini type, help); each ini key is the option's dest (see _dest).
_OPTIONS: list[tuple[str, IniType, str]] = [
    (
        "--image",
        "linelist",
        "image under test: NAME[:TAG], NAME@sha256:..., or an image ID; repeat it to test "
        "several, each as ID=REF to name its test ids",
    ),
    (
        "--family",
        "string",
        "the YAML file whose images: declares the family of images under test "
        "(default: imagecheck.yaml beside the ini file, when it has images:)",
    ),
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
    (
        "--no-start-ahead",
        "bool",
        "start each container when its test needs it, not ahead of it in the background "
        "(one service up at a time)",
    ),
    ("--imagecheck-report", "string", "write the evidence report here (.md with an SVG, or .json)"),
    (
        "--engine",
        "linelist",
        "the Docker engine: tcp://HOST:2376, ssh://USER@HOST, unix:///PATH or a Docker "
        "context's name; repeat it to spread a pytest-xdist session over several engines "
        "(default: DOCKER_HOST, DOCKER_CONTEXT, the CLI's current context, the local socket)",
    ),
    (
        "--publish-host",
        "string",
        "where a remote engine's containers publish their ports: an address of the engine's "
        "host, engine (the address in its URL), or tunnel (ssh:// engines, their default); a "
        "local engine publishes on 127.0.0.1",
    ),
]


#: Options that take one value, where a repeat is an error, not a silent last-one-wins, and
#: what to do instead.
_ONCE = {
    "--platform": "give it once, with the platforms as a list (linux/amd64,linux/arm64)",
}


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


#: Ini keys that are not the option's dest (plus "s" for a list): kept from before the option
#: took a list.
_INI_KEYS = {"--image": "imagecheck_image"}


def _ini_key(option: str, kind: IniType) -> str:
    return _INI_KEYS.get(option) or _dest(option) + ("s" if kind == "linelist" else "")


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
        parser.addini(_ini_key(option, kind), help_text, type=kind)
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
    #: The images under test when there are several (or a family file declares them);
    #: ``image`` and ``build`` are then None.
    family: Family | None = None
    dockerfile: Path | None = None
    gpus: str | None = None
    keep_containers: bool = False
    require_gpu: bool = False
    #: Start the containers tests will need ahead of them (``--no-start-ahead``: no).
    start_ahead: bool = True
    build_args: dict[str, str] = field(default_factory=dict)
    report: Path | None = None
    #: ``--platform``, normalised: the build's platform, and the ones the Dockerfile is judged on.
    platforms: tuple[str, ...] = ()
    #: The engines of the session (``--engine``, else the one the environment names) and
    #: where each publishes its containers' ports; several: one per pytest-xdist worker.
    engines: tuple[EngineTarget, ...] = ()
    publishings: tuple[Publishing, ...] = ()
    #: Why the engine options cannot work, in a session that names no image (raised when a
    #: test uses the engine).
    engine_error: str | None = None

    @property
    def configured(self) -> bool:
        """Whether the run names an image to test or to build."""
        return bool(self.image or self.build or self.family)


@dataclass(frozen=True)
class _Given:
    """One option's value, where it came from, and how messages name it."""

    value: Any
    #: Relative paths are relative to this folder.
    base: Path
    #: ``--dockerfile``, or ``imagecheck_dockerfile in pytest.ini`` for an ini key.
    label: str
    #: ``where pytest runs``, or ``the ini file``.
    relative_to: str


def _setting(config: pytest.Config, option: str, kind: IniType) -> _Given:
    dest = _dest(option)
    value = config.getoption(dest)
    given = getattr(config.option, f"{dest}_given", None) or []
    if len(set(given)) > 1:
        raise ImageCheckError(
            f"{option} was given {len(given)} times ({', '.join(given)}): {_ONCE[option]}"
        )
    if value is not None:
        return _Given(value, Path.cwd(), option, "where pytest runs")
    key = _ini_key(option, kind)
    where = config.inipath.name if config.inipath else "the ini file"
    try:
        ini_value = config.getini(key)
    except ValueError:  # pytest's own reading of a bool ini value
        raw = (getattr(config, "inicfg", {}) or {}).get(key, "")
        raise ImageCheckError(
            f"{key} = {raw!r} in {where} is not true or false: use true or false"
        ) from None
    base = config.inipath.parent if config.inipath else config.rootpath
    return _Given(ini_value or None, base, f"{key} in {where}", "the ini file")


def _relabelled(given: _Given, option: str, check: Callable[[Any], _T]) -> _T:
    """``check(given.value)``, its one-line error naming the ini key where one gave it."""
    try:
        return check(given.value)
    except ImageCheckError as exc:
        if given.label == option:
            raise
        raise ImageCheckError(str(exc).replace(option, given.label, 1)) from None


def _resolve_settings(config: pytest.Config) -> Settings:
    values = {option: _setting(config, option, kind) for option, kind, _ in _OPTIONS}

    def path(option: str) -> Path | None:
        given = values[option]
        return (given.base / given.value).resolve() if given.value else None

    images: list[str] = values["--image"].value or []
    family = _family(config, values, images)
    image = images[0] if images and family is None else None
    if image:
        _relabelled(dataclasses.replace(values["--image"], value=image), "--image", check_reference)
    gpus = values["--gpus"].value
    if gpus:
        _relabelled(values["--gpus"], "--gpus", parse_gpus)
    build_args = dict(
        _relabelled(
            values["--build-arg"], "--build-arg", lambda args: [parse_build_arg(a) for a in args]
        )
        if values["--build-arg"].value
        else ()
    )
    platforms = (
        _relabelled(values["--platform"], "--platform", parse_platforms)
        if values["--platform"].value
        else ()
    )
    context, dockerfile = path("--build-context"), path("--dockerfile")
    report = path("--imagecheck-report")
    if dockerfile is not None:
        _check_file(values["--dockerfile"], dockerfile)
    if report is not None:
        _check_writable(values["--imagecheck-report"], report)
    build = None
    if family is not None:
        family = _family_builds(family, values, build_args, platforms)
    elif context is not None:
        build = BuildSpec(
            context=context,
            dockerfile=dockerfile,
            build_args=build_args,
            target=values["--target"].value,
            platform=single_platform(platforms),
            tag=image,
        )
        if not context.is_dir():
            build.validate()  # raises the one-line error for a context that is not a folder
        if dockerfile is None and not build.dockerfile_path.is_file():
            given = values["--build-context"]
            raise ImageCheckError(
                f"{given.label} {given.value} has no Dockerfile ({build.dockerfile_path}): add "
                "one, or pass --dockerfile PATH"
            )
    try:
        engines, publishings = _engines(config, values)
        engine_error = None
    except ImageCheckError as exc:
        if image or build or family:
            raise
        # A session that names no image may never use the engine: fail when one does.
        engines, publishings, engine_error = (), (), str(exc)
    return Settings(
        engines=engines,
        publishings=publishings,
        engine_error=engine_error,
        image=image,
        build=build,
        family=family,
        dockerfile=dockerfile,
        gpus=gpus,
        keep_containers=bool(values["--keep-containers"].value),
        require_gpu=bool(values["--require-gpu"].value),
        start_ahead=not values["--no-start-ahead"].value,
        build_args=build_args,
        report=report,
        platforms=platforms,
    )


def _engines(
    config: pytest.Config, values: dict[str, _Given]
) -> tuple[tuple[EngineTarget, ...], tuple[Publishing, ...]]:
    """The session's engines and where each publishes ports; several need as many pytest-xdist
    workers at least, and a ``--publish-host`` that is not one address."""
    given = values["--engine"]
    names: list[str | None] = list(dict.fromkeys(given.value or [])) or [None]
    targets = tuple(engine_target(name, os.environ, given.label) for name in names)
    urls = [target.url for target in targets]
    if len(set(urls)) < len(urls):
        raise ImageCheckError(
            f"{given.label} names the same engine twice ({', '.join(urls)}): give each once"
        )
    publish = values["--publish-host"]
    if len(targets) > 1:
        workers = getattr(config.option, "numprocesses", None) or 0
        if not hasattr(config, "workerinput") and workers < len(targets):
            raise ImageCheckError(
                f"{given.label} names {len(targets)} engines, which a session spreads over "
                f"pytest-xdist workers, one engine each: run with -n {len(targets)} or more"
                + ("" if config.pluginmanager.hasplugin("xdist") else " (pip install pytest-xdist)")
            )
        if publish.value not in (None, "engine", "tunnel"):
            raise ImageCheckError(
                f"{publish.label} {publish.value} is one address, but the session spreads over "
                f"{len(targets)} engines: use {publish.label} engine (each engine's own "
                "address)"
            )
    publishings = tuple(
        _relabelled(publish, "--publish-host", functools.partial(_publishing, target))
        if publish.value is not None
        else _publishing(target, None)
        for target in targets
    )
    return targets, publishings


def _publishing(target: EngineTarget, value: str | None) -> Publishing:
    return publishing(target, value, "--publish-host")


def _family(config: pytest.Config, values: dict[str, _Given], images: list[str]) -> Family | None:
    """The family of images under test: the family file's, with ``--image`` given several
    times added (``ID=REF`` with a member's id tests that reference as the member); None for
    one image."""
    given = values["--family"]
    if given.value:
        path = (given.base / given.value).resolve()
        if not path.is_file():
            problem = "is a directory" if path.is_dir() else "does not exist"
            raise ImageCheckError(
                f"{given.label} {given.value} {problem} ({path}): pass the YAML file that "
                f"declares images:, relative to {given.relative_to}"
            )
        declared = load_family(path)
        if declared is None:
            raise ImageCheckError(
                f"{given.label} {given.value} declares no images: add a top-level images: "
                "mapping (see the README's Families section)"
            )
    else:
        default = (config.inipath.parent if config.inipath else config.rootpath) / "imagecheck.yaml"
        declared = load_family(default, if_declared=True) if default.is_file() else None
    label = values["--image"].label
    if declared is None:
        several = len(images) > 1 or any("=" in image for image in images)
        return family_from_refs(images, label) if several else None
    if not images:
        return declared
    if values["--build-context"].value or values["--target"].value or values["--dockerfile"].value:
        return declared  # refused by _family_builds, which names the option
    overrides = family_from_refs(images, label)
    members = {member.id: member for member in declared.members}
    source = declared.source.name if declared.source else "the family file"
    for member in overrides.members:
        explicit = any(text.startswith(f"{member.id}=") for text in images)
        if member.id in members and not explicit:
            raise ImageCheckError(
                f"{member.where}, which the family in {source} declares too: write "
                f"{label} {member.id}={member.ref} to test {member.ref} as that member, or "
                f"{label} ID={member.ref} to add it under another id"
            )
        if member.id in members:
            _check_override(declared, members[member.id], member, label)
        members[member.id] = member
    return unique_members(list(members.values()), declared.source).checked()


def _check_override(declared: Family, old: Member, new: Member, label: str) -> None:
    """Refuse ``--image ID=REF`` that gives a member another tag while other members build
    on its declared one: they would build on whatever that tag names on the engine."""
    if canonical_reference(old.tag) == canonical_reference(new.ref or ""):
        return
    users = [m for m, deps in declared.dependencies().items() if old.id in deps]
    if users:
        raise ImageCheckError(
            f"{label} {old.id}={new.ref} gives member {old.id} another tag than "
            f"{old.tag}, which {', '.join(users)} build on ({old.where}): they would build on "
            f"whatever {old.tag} is on the engine; tag the image {old.tag} and pass "
            f"{label} {old.id}={old.tag}, or change the tag in the family file"
        )


def _family_builds(
    family: Family,
    values: dict[str, _Given],
    build_args: dict[str, str],
    platforms: tuple[str, ...],
) -> Family:
    """The family with ``--build-arg`` and ``--platform`` applied to every member's build; the
    options that describe one build are refused."""
    for option in ("--build-context", "--dockerfile", "--target"):
        given = values[option]
        if given.value:
            where = family.source.name if family.source else "--image given several times"
            raise ImageCheckError(
                f"{given.label} describes one build, but this session tests a family of "
                f"images ({where}): declare each member's build under images: instead"
            )
    platform = single_platform(platforms)
    members = tuple(
        dataclasses.replace(
            member,
            build=dataclasses.replace(
                member.build,
                build_args={**member.build.build_args, **build_args},
                platform=platform or member.build.platform,
            ),
        )
        if member.build is not None
        else member
        for member in family.members
    )
    return Family(members, family.source).checked()


def _check_file(given: _Given, path: Path) -> None:
    """A one-line usage error unless ``path`` (``given`` as written) is a readable file."""
    if path.is_file():
        return
    problem = "is a directory" if path.is_dir() else "does not exist"
    raise ImageCheckError(
        f"{given.label} {given.value} {problem} ({path}): pass the path of a Dockerfile, "
        f"relative to {given.relative_to} (as docker build -f)"
    )


def _check_writable(given: _Given, path: Path) -> None:
    """A one-line usage error unless a file can be written at ``path`` (its folder is made)."""
    if path.is_dir():
        raise ImageCheckError(
            f"{given.label} {given.value} is a directory: pass a file name, e.g. "
            f"{str(given.value).rstrip('/')}/report.md"
        )
    existing = next(folder for folder in path.parents if folder.exists())
    if not existing.is_dir():
        raise ImageCheckError(
            f"{given.label} {given.value} cannot be written: {existing} is a file, not a folder"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageCheckError(
            f"{given.label} {given.value} cannot be written: {path.parent} cannot be made "
            f"({exc.strerror})"
        ) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ImageCheckError(
            f"{given.label} {given.value} cannot be written: {path.parent} is not writable"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the options first, so every other feature finds :data:`SETTINGS`."""
    try:
        config.stash[SETTINGS] = _resolve_settings(config)
    except ImageCheckError as exc:
        raise pytest.UsageError(str(exc)) from None
