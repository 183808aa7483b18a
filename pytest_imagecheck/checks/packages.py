"""What ML image reviews check, read from the layers: no container, no shell.

Each check takes the image's facts (:mod:`~pytest_imagecheck.packages` for the OS and its
packages, :mod:`~pytest_imagecheck.pythons` for the Pythons and their distributions, the
final filesystem's listing), all read in the one layer pass size, secrets and CUDA share:

:func:`assert_pip_consistent`
    every installed distribution's requirements are met, as ``pip check`` judges them, for
    each Python in the image (its ``sys.path``, first copy of a name wins).
:func:`assert_absent`
    OS packages, Python distributions, files and commands the final image must not have.
:func:`assert_no_stray_files`
    package-manager caches, files left in ``/tmp`` and ``/var/tmp``, VCS folders, editor and
    build droppings, installers and histories in home folders, files directly in ``/``.
:func:`assert_versions`
    the Python on ``PATH``, torch and the OS against expected versions or ranges.
:func:`assert_installed_once`
    one copy of a distribution across every site folder and layer.

A finding names what, where (path, layer, and the Dockerfile step from the image's history)
and the fix, one line each. What was not measured never passes: ``build-essential`` cannot
be shown absent from an image without a package database that can be read, and the check
fails saying so.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .. import kinds
from ..declaration import Check, Key, pairs
from ..errors import ImageCheckError
from ..evidence import record
from ..layers import FileEntry
from ..packages import (
    DPKG_STATUS,
    DPKG_STATUS_D,
    OsPackages,
    PackageQuery,
    check_python_name,
    default_path,
    live_files,
    resolve,
)
from ..pythons import (
    MarkerEnvironment,
    PythonInstall,
    PythonPackage,
    evaluate_marker,
    marker_environment,
    python_on_path,
    stored_bytes,
)
from ..pythons import keep_file as python_files
from ..text import shorten
from ..units import format_size
from ..versions import OsBound, VersionBound

if TYPE_CHECKING:
    from ..image import ImageUnderTest
    from ..layers import LayerContents

_WHERE_DATABASES = f"{DPKG_STATUS}, {DPKG_STATUS_D}/, /lib/apk/db/installed or an rpmdb.sqlite"


def _name(image: ImageUnderTest) -> str:
    return image.ref or image.short_id


def _made_by(image: ImageUnderTest, layer: int | None, step: int | None) -> str:
    """``layer 2 (RUN apt-get install -y make)``: the layer and the step that made it."""
    if layer is None:
        return "an unknown layer"
    steps = image.layers
    if step is None or not 0 <= step < len(steps):
        return f"layer {layer}"
    instruction = shorten(steps[step].instruction, 80) or "the base image"
    return f"layer {layer} ({instruction})"


def _step_of(layers: Sequence[LayerContents], index: int) -> int | None:
    return layers[index].step if 0 <= index < len(layers) else None


# --- assert_pip_consistent -------------------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    """A requirement of an installed distribution that what is installed does not meet.

    ``kind`` is ``missing`` or ``conflict`` (what ``pip check`` reports), ``unparsable`` (a
    requirement pip cannot read either), or ``not measured`` (``reason`` says why).
    """

    kind: str
    dependent: PythonPackage
    requirement: str
    python: PythonInstall
    dependency: PythonPackage | None = None
    reason: str = ""

    @property
    def dependency_name(self) -> str:
        """The canonical name of what is required (the requirement as written when it does
        not parse)."""
        try:
            return str(canonicalize_name(Requirement(self.requirement).name))
        except InvalidRequirement:
            return self.requirement

    def pip_check(self) -> str:
        """The line ``pip check`` prints for it, or ``""`` for what pip does not report:
        names canonical, versions normalised, as pip writes them."""
        who = f"{self.dependent.canonical_name} {_pip_version(self.dependent.version)}"
        if self.kind == "missing":
            return f"{who} requires {self.dependency_name}, which is not installed."
        if self.kind == "conflict" and self.dependency is not None:
            dependency = self.dependency
            return (
                f"{who} has requirement {Requirement(self.requirement)}, but you have "
                f"{dependency.canonical_name} {_pip_version(dependency.version)}."
            )
        return ""


def _pip_version(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def pip_problems(
    pythons: Sequence[PythonInstall], packages: Sequence[PythonPackage], architecture: str
) -> tuple[list[Broken], int]:
    """The broken requirements of the installed distributions ``packages``, for each of
    ``pythons`` (its site folders in order, the first copy of a name winning, as pip finds
    them), and how many requirements were checked.

    A requirement applies when its marker holds with ``extra`` empty, evaluated for that
    Python and ``architecture``, as ``pip check`` evaluates it in the image; one whose
    marker depends on what is not known (the kernel's ``platform_release``) is not measured
    when it is not met.
    """
    found: dict[tuple[str, str, str | None, str], Broken] = {}
    checked = 0
    by_folder: dict[str, list[PythonPackage]] = {}
    for package in packages:
        if package.installed:
            by_folder.setdefault(package.location, []).append(package)
    for python in pythons:
        installed: dict[str, PythonPackage] = {}
        for folder in python.site_dirs:
            for package in sorted(by_folder.get(folder, ()), key=lambda p: p.path):
                installed.setdefault(package.canonical_name, package)
        environment = marker_environment(python, architecture)
        for dependent in installed.values():
            for text in dependent.requires:
                checked += 1
                broken = _judge(dependent, text, installed, python, environment)
                if broken is not None:
                    key = (
                        dependent.path,
                        text,
                        broken.dependency.path if broken.dependency else None,
                        broken.kind,
                    )
                    found.setdefault(key, broken)
    ordered = sorted(found.values(), key=lambda b: (b.dependent.path, b.requirement, b.kind))
    return ordered, checked


def _judge(
    dependent: PythonPackage,
    text: str,
    installed: Mapping[str, PythonPackage],
    python: PythonInstall,
    environment: MarkerEnvironment,
) -> Broken | None:
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        return Broken("unparsable", dependent, text, python, reason=str(exc))
    applies: bool | None = True
    if requirement.marker is not None:
        try:
            applies = evaluate_marker(requirement.marker, environment)
        except InvalidMarker as exc:  # pragma: no cover - Requirement parsed the marker
            return Broken("unparsable", dependent, text, python, reason=str(exc))
    if applies is False:
        return None
    dependency = installed.get(str(canonicalize_name(requirement.name)))
    unknown = (
        "its marker depends on what the image does not say (the kernel of the machine it "
        "runs on, or the Python's micro version)"
    )
    if dependency is None:
        if applies is None:
            return Broken("not measured", dependent, text, python, reason=unknown)
        return Broken("missing", dependent, text, python)
    try:
        met = requirement.specifier.contains(Version(dependency.version), prereleases=True)
    except InvalidVersion:
        return Broken(
            "not measured",
            dependent,
            text,
            python,
            dependency,
            f"{dependency.name}'s version {dependency.version!r} is not a PEP 440 version",
        )
    if met:
        return None
    if applies is None:
        return Broken("not measured", dependent, text, python, dependency, unknown)
    return Broken("conflict", dependent, text, python, dependency)


def _normalized(requirement: str) -> str:
    """A requirement as packaging writes it (``six>=1.5`` for METADATA's ``six >=1.5``)."""
    try:
        return str(Requirement(requirement))
    except InvalidRequirement:
        return requirement


def _describe(image: ImageUnderTest, broken: Broken) -> str:
    dependent = broken.dependent
    who = f"{dependent.name} {dependent.version}"
    wants = _normalized(broken.requirement)
    at = f"{dependent.location}, {_made_by(image, dependent.layer, dependent.step)}"
    python = str(broken.python)
    if broken.kind == "missing":
        name = broken.dependency_name
        return (
            f"{who} requires {wants}, which is not installed for {python}: {who} "
            f"is in {at}; install {name} beside it (a pip install without --no-deps "
            f'resolves it) [pip check: "{broken.pip_check()}"]'
        )
    if broken.kind == "conflict" and broken.dependency is not None:
        dependency = broken.dependency
        has = f"{dependency.name} {dependency.version}"
        spec = str(Requirement(broken.requirement).specifier) or "any version"
        return (
            f"{who} requires {wants}, but {has} is installed for {python}: {who} "
            f"is in {at}, {has} in {dependency.location}, "
            f"{_made_by(image, dependency.layer, dependency.step)}; install a "
            f"{dependency.name} that meets {spec}, or a {dependent.name} that accepts "
            f'{dependency.version} [pip check: "{broken.pip_check()}"]'
        )
    if broken.kind == "unparsable":
        return (
            f"{who} ({dependent.metadata}, {_made_by(image, dependent.layer, dependent.step)}) "
            f'has a requirement that does not parse, "{broken.requirement}" ({broken.reason}): '
            f"pip check fails on it too; reinstall {dependent.name}"
        )
    return f"whether {who} ({at}) has {wants} for {python} was not measured: {broken.reason}"


def assert_pip_consistent(image: ImageUnderTest) -> None:
    """Assert that every installed Python distribution's requirements are met by what is
    installed: the static ``pip check``, for every Python in the image.

    Each distribution's ``Requires-Dist`` (an egg-info's ``requires.txt``) is evaluated as
    ``pip check`` evaluates it in the image: markers for that Python and the image's
    platform, with no extra; versions by PEP 440 with pre-releases allowed. A requirement is
    *missing* (``pip check``: "requires X, which is not installed") or *in conflict* ("has
    requirement X, but you have X v"); each finding names the distribution's folder, the
    layer and the Dockerfile step that installed it, and says which ``pip check`` line it is.
    An image with no distribution at all fails: there was nothing to measure.

    Evidence (``pip_consistent``): ``pythons`` and their site folders, ``distributions``,
    ``requirements_checked``, ``broken`` (the ``pip check`` lines), ``not_measured``.
    """
    __tracebackhide__ = True
    pythons = [p for p in image.pythons if p.site_dirs]
    packages = image.python_packages
    problems, checked = pip_problems(pythons, packages, image.architecture)
    record(
        "pip_consistent",
        pythons=[f"{p}: {', '.join(p.site_dirs)}" for p in pythons] or "none",
        distributions=len(packages),
        requirements_checked=checked,
        broken=[b.pip_check() or _describe(image, b) for b in problems if b.kind != "not measured"]
        or "none",
        not_measured=[_describe(image, b) for b in problems if b.kind == "not measured"] or "none",
    )
    if not packages:
        raise AssertionError(
            f"image {_name(image)} has no installed Python distribution (no *.dist-info or "
            "*.egg-info in any site-packages or dist-packages), so whether its requirements "
            "are met was not measured: check the image reference, or drop this check"
        )
    if problems:
        raise AssertionError("\n".join(_describe(image, b) for b in problems))


# --- assert_absent ---------------------------------------------------------------------------

_FIXES = {
    "dpkg": "apt-get purge -y --auto-remove {name} in the RUN that installed it",
    "apk": "apk del {name} in the RUN that added it (apk add --virtual .build-deps, then "
    "apk del .build-deps)",
    "rpm": "dnf remove -y {name} in the RUN that installed it",
    "python": "pip uninstall -y {name} in the RUN that installed it",
}
_STAGE = "or install it only in a build stage and COPY what the final image needs"


def _check_paths(values: Iterable[str] | None, what: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    found = []
    for value in values:
        if not isinstance(value, str) or not value.startswith("/"):
            raise ImageCheckError(
                f"{what}: {value!r} is not an absolute path: write a path or a pattern from "
                '/, like "/usr/bin/gcc" or "/usr/bin/*-gcc-*"'
            )
        found.append(value)
    return found


def _check_commands(values: Iterable[str] | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    found = []
    for value in values:
        if (
            not isinstance(value, str)
            or not value
            or re.search(r"\s", value)
            or ("/" in value and not value.startswith("/"))
        ):
            raise ImageCheckError(
                f"commands: {value!r} is not a command name: write the program's name as a "
                'shell looks it up on PATH, like "gcc", or an absolute path like "/usr/bin/gcc"'
            )
        found.append(value)
    return found


def _queries(values: Iterable[str] | None) -> list[PackageQuery]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [PackageQuery.parse(value) for value in values]


def _package_findings(
    image: ImageUnderTest,
    query: PackageQuery,
    os_packages: OsPackages,
    python_packages: Sequence[PythonPackage],
    checked: list[str],
    not_measured: list[str],
) -> list[str]:
    if query.kind == "python":
        wanted = str(canonicalize_name(query.name))
        copies = [p for p in python_packages if p.canonical_name == wanted]
        if not copies:
            checked.append(f"{query}: absent (no such distribution in any site folder)")
        return [
            f"{p.name} {p.version} is installed (Python: {p.path}), added in "
            f"{_made_by(image, p.layer, p.step)}: "
            f"{_FIXES['python'].format(name=p.name)}, {_STAGE}"
            for p in copies
        ]
    managers = [query.kind] if query.kind else list(os_packages.managers)
    readable = [db for db in os_packages.databases if db.readable and db.manager in managers]
    if not readable:
        unreadable = [str(db) for db in os_packages.databases if not db.readable]
        others = [str(db) for db in os_packages.databases if db.readable]
        kind = f"{query.kind} " if query.kind else ""
        why = f"it has no {kind}package database that can be read (no {_WHERE_DATABASES})"
        if query.kind:
            why = f"it has no {query.kind} database"
        if unreadable:
            why += f"; found {'; '.join(unreadable)}"
        if others:
            why += f"; it has {'; '.join(others)}"
        not_measured.append(
            f"{query} cannot be shown absent from image {_name(image)}: {why}; look for what "
            "it installs with files= or commands= instead"
        )
        return []
    found = [
        p
        for p in os_packages
        if os_packages.get(query.name, p.manager) is p
        and p.manager in {db.manager for db in readable}
    ]
    if not found:
        where = "; ".join(f"{db.manager}: {db.path} ({db.count} packages)" for db in readable)
        checked.append(f"{query}: absent ({where})")
    return [
        f"{p.name} {p.version} is installed ({p.manager}: {p.database}), added in "
        f"{_made_by(image, p.layer, p.step)}: {_FIXES[p.manager].format(name=p.name)}, "
        f"{_STAGE}"
        for p in found
    ]


def assert_absent(
    image: ImageUnderTest,
    *,
    packages: Sequence[str] | None = None,
    files: Sequence[str] | None = None,
    commands: Sequence[str] | None = None,
) -> None:
    """Assert that the final image has none of ``packages``, ``files`` and ``commands``.

    ``packages`` are names in the OS package databases (``"build-essential"``), of one
    manager only (``"dpkg:gcc"``, ``"apk:"``, ``"rpm:"``), or Python distributions
    (``"python:jupyter"``). ``files`` are absolute paths or patterns (``"/usr/bin/*gcc*"``;
    ``*`` also matches ``/``). ``commands`` are looked up on the image's ``PATH`` as a shell
    would (an executable file, symbolic links followed), or given as absolute paths.

    A finding names the layer and the Dockerfile step that added what was found, and how
    to leave it out. A package cannot be shown absent without a package database that can
    be read (a distroless image without ``status.d``, a Berkeley DB rpmdb): the check then
    fails saying so, rather than passing.

    Evidence (``absent``): ``absent`` (what was looked for and how), ``found``,
    ``not_measured``.
    """
    __tracebackhide__ = True
    queries = _queries(packages)
    paths = _check_paths(files, "files")
    programs = _check_commands(commands)
    if not queries and not paths and not programs:
        raise ImageCheckError(
            "assert_absent checks nothing: pass packages=, files= or commands=, e.g. "
            'packages=["build-essential", "gcc"]'
        )
    checked: list[str] = []
    not_measured: list[str] = []
    findings: list[str] = []
    if queries:
        os_packages = image.packages
        python_packages = image.python_packages
        for query in queries:
            findings += _package_findings(
                image, query, os_packages, python_packages, checked, not_measured
            )
    if paths or programs:
        layers = image.layer_contents()
        present = live_files(layers)
        for pattern in paths:
            findings += _file_findings(image, layers, present, pattern, checked)
        path_dirs = default_path(image.env)
        for program in programs:
            findings += _command_findings(image, layers, present, program, path_dirs, checked)
    record(
        "absent",
        absent=checked or "none",
        found=findings or "none",
        not_measured=not_measured or "none",
    )
    if findings or not_measured:
        raise AssertionError("\n".join(findings + not_measured))


_FILE_FIX = (
    "delete it in the step that made it, or make it in a build stage the final image does "
    "not copy it from"
)


def _file_findings(
    image: ImageUnderTest,
    layers: Sequence[LayerContents],
    present: Mapping[str, tuple[FileEntry, int]],
    pattern: str,
    checked: list[str],
) -> list[str]:
    if any(c in pattern for c in "*?["):
        matches = sorted(path for path in present if fnmatch.fnmatchcase(path, pattern))
    else:
        target = resolve(pattern, present)
        matches = [pattern] if target is not None else []
    if not matches:
        checked.append(f"{pattern}: absent (not in the final filesystem)")
    found = []
    for path in matches[:20]:
        entry, layer = present.get(path) or present[resolve(path, present) or path]
        size = f", {format_size(entry.size)}" if entry.kind == "file" else ""
        found.append(
            f"{path} is in the image ({entry.kind}{size}), added in "
            f"{_made_by(image, layer, _step_of(layers, layer))}: {_FILE_FIX}"
        )
    if len(matches) > 20:
        found.append(f"... and {len(matches) - 20} more paths that match {pattern}")
    return found


def _command_findings(
    image: ImageUnderTest,
    layers: Sequence[LayerContents],
    present: Mapping[str, tuple[FileEntry, int]],
    program: str,
    path_dirs: Sequence[str],
    checked: list[str],
) -> list[str]:
    candidates = [program] if program.startswith("/") else [f"{d}/{program}" for d in path_dirs]
    for candidate in candidates:
        target = resolve(candidate, present)
        seen = present.get(target) if target is not None else None
        if seen is None or seen[0].kind not in ("file", "hardlink") or not seen[0].mode & 0o111:
            continue
        _, layer = present.get(candidate) or seen
        via = f" -> {target}" if target != candidate else ""
        return [
            f"{program} is a command of the image: {candidate}{via}, added in "
            f"{_made_by(image, layer, _step_of(layers, layer))}: {_FILE_FIX} (or remove the "
            "package that installs it)"
        ]
    where = program if program.startswith("/") else f"PATH {':'.join(path_dirs)}"
    checked.append(f"{program}: absent (no executable file at {where})")
    return []


# --- assert_no_stray_files -------------------------------------------------------------------


@dataclass(frozen=True)
class Stray:
    """A stray file or folder of the final image: ``path``, what it is, how to leave it out,
    how many files and bytes, and the layers that wrote them (most bytes first)."""

    path: str
    what: str
    fix: str
    files: int
    size: int
    layers: tuple[int, ...]


_HOMES = r"(?:/root|/home/[^/]+)"
#: Package-manager caches: (pattern whose group "root" is the cache, what, fix).
_CACHES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"^(?P<root>/var/lib/apt/lists)/(?!lock$|partial$|auxfiles$)"),
        "apt's package lists",
        "end the RUN that runs apt-get update with && rm -rf /var/lib/apt/lists/*",
    ),
    (
        re.compile(r"^(?P<root>/var/cache/apt)/(?:archives/[^/]+\.deb$|[^/]+\.bin$)"),
        "apt's downloaded packages and caches",
        "end the RUN that runs apt-get install with && apt-get clean",
    ),
    (
        re.compile(rf"^(?P<root>{_HOMES}/\.cache/pip)/"),
        "pip's cache",
        "pip install --no-cache-dir (or ENV PIP_NO_CACHE_DIR=1)",
    ),
    (
        re.compile(rf"^(?P<root>{_HOMES}/\.cache/uv)/"),
        "uv's cache",
        "uv pip install --no-cache (or ENV UV_NO_CACHE=1)",
    ),
    (
        re.compile(rf"^(?P<root>{_HOMES}/\.cache/pypoetry)/"),
        "poetry's cache",
        "poetry install --no-cache, or rm -rf ~/.cache/pypoetry in the same RUN",
    ),
    (
        re.compile(
            rf"^(?P<root>(?:.*/(?:conda|miniconda3?|miniforge3|mambaforge|anaconda3)|"
            rf"{_HOMES}/\.conda)/pkgs)/(?!urls(?:\.txt)?$)"
        ),
        "conda's package cache",
        "end the RUN that runs conda install with && conda clean -afy",
    ),
    (
        re.compile(r"^(?P<root>/var/cache/apk)/"),
        "apk's cache",
        "apk add --no-cache",
    ),
    (
        re.compile(r"^(?P<root>/var/cache/(?:dnf|yum))/"),
        "dnf's cache",
        "end the RUN that runs dnf install with && dnf clean all",
    ),
    (
        re.compile(rf"^(?P<root>{_HOMES}/\.npm/_cacache)/"),
        "npm's cache",
        "end the RUN that runs npm install with && npm cache clean --force",
    ),
)
_TMP = re.compile(r"^(?P<root>/(?:var/)?tmp/[^/]+)")
_VCS = re.compile(r"^(?P<root>(?:/[^/]+)*?/\.(?:git|svn|hg|bzr))(?:/|$)")
_DROPPING_DIRS = re.compile(
    r"^(?P<root>(?:/[^/]+)*?/(?:CMakeFiles|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.tox|"
    r"\.nox|\.ipynb_checkpoints))(?:/|$)"
)
_DROPPING_FILES = re.compile(
    r"/(?:[^/]+~|[^/]*\.sw[po]|[^/]+\.orig|[^/]+\.rej|\.DS_Store|#[^/]*#|CMakeCache\.txt|"
    r"nohup\.out)$"
)
#: Where packages ship files that look like droppings (a .orig in a package's docs).
_PACKAGED = re.compile(r"^/usr/(?:share|lib|lib64|include)/|/(?:site|dist)-packages/")
_HOME_FILES = re.compile(
    rf"^(?P<root>{_HOMES}/(?:[^/]+\.(?:py|whl|tar|tgz|tar\.gz|tar\.bz2|tar\.xz|zip|deb|rpm|apk|"
    r"run)|(?:Miniconda|Anaconda|Miniforge|Mambaforge)[^/]*\.sh|\.(?:bash|python|sqlite|psql|"
    r"mysql)_history|\.wget-hsts|\.viminfo|\.lesshst))$"
)


def _classify(path: str, entry: FileEntry) -> tuple[str, str, str] | None:
    """``(root, what, fix)`` of the stray group ``path`` belongs to, or None."""
    for pattern, what, fix in _CACHES:
        match = pattern.match(path)
        if match:
            return match["root"], what, fix
    match = _TMP.match(path)
    if match:
        return (
            match["root"],
            f"left in {posixpath.dirname(match['root'])}",
            "delete it in the RUN that made it (or mount a tmpfs there: RUN --mount=type=tmpfs)",
        )
    match = _VCS.match(path)
    if match:
        return (
            match["root"],
            "a version-control folder",
            "add it to .dockerignore, or COPY only what the image needs",
        )
    if _PACKAGED.search(path):
        return None
    match = _DROPPING_DIRS.match(path)
    if match:
        return (
            match["root"],
            "a build or test tool's folder",
            "add it to .dockerignore, or delete it in the RUN that made it",
        )
    if entry.kind != "dir" and _DROPPING_FILES.search(path):
        return path, "an editor or build dropping", "add it to .dockerignore, or delete it"
    match = _HOME_FILES.match(path)
    if match and entry.kind != "dir":
        return (
            path,
            "an installer, archive, script or history left in a home folder",
            "delete it in the RUN that used it, or COPY it into a build stage instead",
        )
    if path.count("/") == 1 and entry.kind in ("file", "hardlink"):
        return path, "a file directly in /", "COPY it to where it is used, or delete it"
    return None


def stray_files(present: Mapping[str, tuple[FileEntry, int]]) -> list[Stray]:
    """The stray files and folders of the final filesystem ``present`` (see
    :func:`assert_no_stray_files`), grouped: a cache, a folder in ``/tmp``, a ``.git``."""
    groups: dict[str, tuple[str, str, list[tuple[FileEntry, int]]]] = {}
    for path, (entry, layer) in present.items():
        found = _classify(path, entry)
        if found is None:
            continue
        root, what, fix = found
        groups.setdefault(root, (what, fix, []))[2].append((entry, layer))
    strays = []
    for root, (what, fix, entries) in sorted(groups.items()):
        files = [(e, layer) for e, layer in entries if e.kind != "dir"]
        if not files and not _TMP.match(root):
            continue  # a cache folder with nothing in it
        by_layer: dict[int, int] = {}
        for entry, layer in files or entries:
            by_layer[layer] = by_layer.get(layer, 0) + entry.size
        strays.append(
            Stray(
                path=root,
                what=what,
                fix=fix,
                files=len(files),
                size=sum(e.size for e, _ in files),
                layers=tuple(sorted(by_layer, key=lambda i: (-by_layer[i], i))),
            )
        )
    return strays


def _allowed(stray: Stray, allow: Sequence[str]) -> bool:
    return any(
        fnmatch.fnmatchcase(stray.path, pattern)
        or stray.path == pattern.rstrip("/")
        or stray.path.startswith(pattern.rstrip("/") + "/")
        for pattern in allow
    )


def assert_no_stray_files(image: ImageUnderTest, *, allow: Sequence[str] = ()) -> None:
    """Assert that the final image holds no stray files: what a build leaves behind.

    - package-manager caches: apt's lists and downloaded packages, pip's, uv's and poetry's
      caches in a home folder, conda's ``pkgs``, apk's, dnf's and yum's caches, npm's;
    - anything in ``/tmp`` and ``/var/tmp``;
    - version-control folders (``.git``, ``.svn``, ``.hg``, ``.bzr``);
    - editor and build droppings (``*~``, ``*.swp``, ``*.orig``, ``*.rej``, ``.DS_Store``,
      ``CMakeCache.txt``, ``CMakeFiles``, ``.pytest_cache``, ``.mypy_cache``, ``.tox``, ...),
      outside the folders packages install to;
    - installers, archives, wheels, scripts and shell histories in ``/root`` and
      ``/home/*``;
    - regular files directly in ``/``.

    ``allow`` lists paths or patterns accepted (``"/tmp/.X11-unix"``, ``"/var/tmp/*"``): a
    stray at or below one is not reported. Each finding says what it is, how many files and
    bytes, the layers and Dockerfile steps that wrote them, and how to leave it out.
    A file a later layer deleted is not in the final image (its bytes are: see
    ``assert_size_within(wasted=...)``).

    Evidence (``stray_files``): ``stray`` (each with its size), ``stray_bytes``, ``allowed``.
    """
    __tracebackhide__ = True
    allowed = _check_paths(allow, "allow")
    layers = image.layer_contents()
    present = live_files(layers)
    strays = stray_files(present)
    reported = [s for s in strays if not _allowed(s, allowed)]
    passed = [s for s in strays if _allowed(s, allowed)]

    def line(stray: Stray) -> str:
        made = ", ".join(_made_by(image, i, _step_of(layers, i)) for i in stray.layers[:3])
        if len(stray.layers) > 3:
            made += f" and {len(stray.layers) - 3} more layers"
        count = f"{stray.files} file{'s' if stray.files != 1 else ''}, " if stray.files else ""
        return (
            f"{stray.path}: {stray.what}, {count}{format_size(stray.size)}, added in {made}: "
            f"{stray.fix}"
        )

    record(
        "stray_files",
        stray=[f"{s.path} ({s.what}, {s.files} files, {format_size(s.size)})" for s in reported]
        or "none",
        stray_bytes=sum(s.size for s in reported),
        allowed=[f"{s.path} ({format_size(s.size)})" for s in passed] or "none",
    )
    if reported:
        total = format_size(sum(s.size for s in reported))
        what = "stray file or folder" if len(reported) == 1 else "stray files or folders"
        raise AssertionError(
            f"image {_name(image)} has {len(reported)} {what} ({total}); allow one with "
            f'allow=["{reported[0].path}"]:\n' + "\n".join(line(s) for s in reported)
        )


# --- assert_versions -------------------------------------------------------------------------

_VERSION_FIX = "rebuild with the expected version, or correct the expectation (the image tag)"


def _python_findings(
    image: ImageUnderTest, bound: VersionBound, evidence: dict[str, object]
) -> list[str]:
    pythons = image.pythons
    layers = image.layer_contents()
    present = live_files(layers)
    chosen = python_on_path(pythons, present, image.env, default_path(image.env))
    how = ""
    if chosen is not None:
        python, command = chosen
        how = f"python on PATH: {command}"
    else:
        real = [p for p in pythons if p.found_by != "site folder"]
        if not real:
            return [
                f"expected Python {bound} but image {_name(image)} has no Python (no "
                "lib/pythonX.Y/os.py or pyvenv.cfg): its Python version was not measured"
            ]
        if len(real) > 1:
            listed = ", ".join(str(p) for p in real)
            return [
                f"expected Python {bound} but which of the {len(real)} Pythons of image "
                f"{_name(image)} is meant was not measured: neither python3 nor python is on "
                f"its PATH; they are {listed}: test one with assert_versions on its facts "
                "(image.pythons)"
            ]
        python = real[0]
        how = "the image's only Python (none on PATH)"
    evidence.update(
        python_version=python.version,
        python_source=python.version_source,
        python_executable=python.name,
        python_found_by=how,
    )
    verdict = bound.check(python.version, complete=python.complete)
    said = f"{python.name}; {how}; version from {python.version_source}"
    if verdict is None:
        return [
            f"the image's Python is known only as {python.version} ({said}), which does not "
            f"tell whether it meets {bound}: its full version was not measured"
        ]
    if not verdict:
        return [
            f"the image's Python is {python.version} ({said}), expected {bound}: {_VERSION_FIX}"
        ]
    return []


def _torch_findings(
    image: ImageUnderTest, bound: VersionBound, evidence: dict[str, object]
) -> list[str]:
    copies = [p for p in image.python_packages if p.canonical_name == "torch"]
    evidence.update(
        torch_version=[p.version for p in copies] or "none",
        torch_source=[f"{p.path}, layer {p.layer}" for p in copies] or "none",
    )
    if not copies:
        return [
            f"expected torch {bound} but image {_name(image)} has no torch (no torch dist-info "
            "or egg-info in any site-packages or dist-packages)"
        ]
    found = []
    for copy in copies:
        verdict = bound.check(copy.version)
        at = f"{copy.path}, {_made_by(image, copy.layer, copy.step)}"
        if verdict is None:
            found.append(
                f"torch's version {copy.version!r} ({at}) is not a PEP 440 version: whether it "
                f"meets {bound} was not measured"
            )
        elif not verdict:
            found.append(f"torch is {copy.version} ({at}), expected {bound}: {_VERSION_FIX}")
    return found


def _os_findings(image: ImageUnderTest, bound: OsBound, evidence: dict[str, object]) -> list[str]:
    release = image.os_release
    if release is None:
        evidence.update(os_id="none", os_version="none")
        return [
            f"expected OS {bound} but image {_name(image)} has no /etc/os-release (nor "
            "/usr/lib/os-release): its OS was not measured"
        ]
    evidence.update(
        os_id=release.id,
        os_version=release.version,
        os_source=f"{release.source}; version from {release.version_source}",
    )
    said = (
        f"{release.id} {release.version} ({release.source}; version from {release.version_source})"
    )
    if bound.id is not None and release.id != bound.id:
        return [f"the image's OS is {said}, expected {bound}: {_VERSION_FIX}"]
    if bound.version is None:
        return []
    verdict = bound.version.check(
        release.version, complete=not release.version_source.endswith("VERSION_ID")
    )
    if verdict is None:
        return [
            f"the image's OS version is {release.version} ({said}), which does not tell "
            f"whether it meets {bound}: not measured"
        ]
    if not verdict:
        return [f"the image's OS is {said}, expected {bound}: {_VERSION_FIX}"]
    return []


def assert_versions(
    image: ImageUnderTest,
    *,
    python: str | None = None,
    torch: str | None = None,
    os: str | None = None,
) -> None:
    """Assert the versions of the image's Python, torch and OS, read from the layers.

    Each expectation is a version or prefix (``"3.11"`` accepts ``3.11.2``), an exact
    version (``"2.1.0+cu121"``) or a range (``">=2.1,<2.2"``), as for ``cuda_torch``;
    ``os`` is the os-release ``ID``, a version bound, or both (``"debian 12"``,
    ``"ubuntu >=22.04"``).

    ``python``: the Python that ``python3`` (else ``python``) on the image's ``PATH`` runs,
    or the image's only Python; its version from ``patchlevel.h``, conda, the OS package,
    ``pyvenv.cfg`` or ``PYTHON_VERSION``, else only ``X.Y`` from its folder, which leaves a
    more precise bound not measured. ``torch``: every installed torch distribution.
    ``os``: ``/etc/os-release``, with Debian's point release from ``/etc/debian_version``.

    Evidence (``versions``): each version found and where.
    """
    __tracebackhide__ = True
    python_bound = VersionBound.parse(python, "python") if python is not None else None
    torch_bound = VersionBound.parse(torch, "torch") if torch is not None else None
    os_bound = OsBound.parse(os) if os is not None else None
    if python_bound is None and torch_bound is None and os_bound is None:
        raise ImageCheckError(
            'assert_versions checks nothing: pass python=, torch= or os=, e.g. python="3.11"'
        )
    evidence: dict[str, object] = {}
    problems: list[str] = []
    if python_bound is not None:
        problems += _python_findings(image, python_bound, evidence)
    if torch_bound is not None:
        problems += _torch_findings(image, torch_bound, evidence)
    if os_bound is not None:
        problems += _os_findings(image, os_bound, evidence)
    record("versions", **evidence)
    if problems:
        raise AssertionError("\n".join(problems))


# --- assert_installed_once -------------------------------------------------------------------


def _names(package: str | Sequence[str]) -> list[str]:
    names = [package] if isinstance(package, str) else list(package)
    if not names:
        raise ImageCheckError(
            'assert_installed_once checks nothing: name a distribution, e.g. "torch"'
        )
    return [check_python_name(name) for name in names]


def assert_installed_once(image: ImageUnderTest, package: str | Sequence[str]) -> None:
    """Assert that the Python distribution ``package`` (or each of several) has exactly one
    copy in the image: across every site-packages and dist-packages, and across layers.

    A second install over a base's copy (a later ``pip install`` that upgrades torch in
    place, or installs it again into a venv) is reported with both layers and their
    Dockerfile steps, and the bytes it wastes: every copy's stored bytes (its ``RECORD``'s
    files in the layer that added it) but the largest's. A copy a later layer removed still
    counts: its bytes are still in the image. No copy at all fails too.

    Evidence (``installed_once``): ``copies`` (each with where, layer and bytes),
    ``wasted_bytes``.
    """
    __tracebackhide__ = True
    names = _names(package)
    copies_of_all = image.python_package_copies
    layers = image.layer_contents(keep=python_files)
    problems: list[str] = []
    evidence: dict[str, object] = {}
    wasted_total = 0
    for name in names:
        wanted = str(canonicalize_name(name))
        copies = [c for c in copies_of_all if c.canonical_name == wanted]
        sizes = [stored_bytes(c, layers) for c in copies]
        evidence[f"{wanted}_copies"] = [
            _copy(image, layers, c, size) for c, size in zip(copies, sizes, strict=True)
        ] or "none"
        if not copies:
            problems.append(
                f"no Python distribution {name} is installed in image {_name(image)}: no "
                f"{name} dist-info or egg-info in any site-packages or dist-packages of any "
                "layer (installed_once counts Python distributions, not OS packages)"
            )
            continue
        if len(copies) == 1:
            if not copies[0].installed:
                problems.append(
                    f"{name} is not installed in image {_name(image)}: its only copy, "
                    f"{_copy(image, layers, copies[0], sizes[0])}, was removed"
                )
            continue
        known = [s for s in sizes if s is not None]
        wasted = sum(known) - max(known, default=0)
        wasted_total += wasted
        unknown = len(sizes) - len(known)
        cost = f"they waste {format_size(wasted)}"
        if unknown:
            cost += f" and more (the bytes of {unknown} copies without a RECORD were not measured)"
        listed = "; ".join(_copy(image, layers, c, s) for c, s in zip(copies, sizes, strict=True))
        problems.append(
            f"{name} is installed {len(copies)} times in image {_name(image)}: {listed}; {cost}: "
            f"install it once: have later installs keep the base's copy (a constraint "
            f"{name}=={copies[0].version} in their pip install, or a venv with "
            "--system-site-packages), or install the version they need in the base"
        )
    record("installed_once", **evidence, wasted_bytes=wasted_total)
    if problems:
        raise AssertionError("\n".join(problems))


def _copy(
    image: ImageUnderTest,
    layers: Sequence[LayerContents],
    copy: PythonPackage,
    size: int | None,
) -> str:
    stored = format_size(size) if size is not None else "bytes not measured"
    text = f"{copy.version} in {copy.location} ({_made_by(image, copy.layer, copy.step)}, {stored}"
    if copy.removed_in is not None:
        removed = _made_by(image, copy.removed_in, _step_of(layers, copy.removed_in))
        text += f", removed by {removed} but still stored"
    return text + ")"


# --- imagecheck.yaml -------------------------------------------------------------------------

PIP_CONSISTENT = Check(
    "pip_consistent",
    "Every installed Python distribution's requirements are met, as pip check judges them "
    "(assert_pip_consistent).",
    assert_pip_consistent,
    "image",
    (),
    reads_layers=True,
)

ABSENT = Check(
    "absent",
    "The final image has none of these packages, files and commands (assert_absent).",
    assert_absent,
    "image",
    (
        Key(
            "packages",
            kinds.PACKAGE_NAMES,
            'OS packages ("gcc"; "dpkg:gcc" for one manager) or Python distributions '
            '("python:jupyter") that must not be installed.',
            example=["build-essential", "gcc", "make", "git"],
        ),
        Key(
            "files",
            kinds.PATH_PATTERNS,
            'Absolute paths or patterns that must not exist: ["/usr/bin/*gcc*"].',
            example=["/usr/bin/gcc"],
        ),
        Key(
            "commands",
            kinds.COMMAND_NAMES,
            'Commands that must not be on PATH: ["gcc", "make"].',
            example=["gcc", "make"],
        ),
    ),
    title=pairs("packages", "files", "commands"),
    at_least_one=("packages", "files", "commands"),
    reads_layers=True,
)

NO_STRAY_FILES = Check(
    "no_stray_files",
    "No package-manager caches, /tmp leftovers, VCS folders, droppings or stray home and / "
    "files (assert_no_stray_files).",
    assert_no_stray_files,
    "image",
    (
        Key(
            "allow",
            kinds.PATH_PATTERNS,
            'Paths or patterns accepted: ["/tmp/.X11-unix"].',
            example=["/tmp/.X11-unix"],
        ),
    ),
    reads_layers=True,
)

VERSIONS = Check(
    "versions",
    "The Python on PATH, torch and the OS have the expected versions (assert_versions).",
    assert_versions,
    "image",
    (
        Key(
            "python",
            kinds.version_bound("python"),
            'Expected Python: a version or prefix, or a range, in quotes: "3.11", ">=3.10,<3.13".',
            example="3.11",
        ),
        Key(
            "torch",
            kinds.version_bound("torch"),
            'Expected torch: "2.1", "2.1.0+cu121" or ">=2.1,<2.2", in quotes.',
            example="2.1",
        ),
        Key(
            "os",
            kinds.OS_VERSION,
            'Expected OS: its os-release ID, a version bound, or both: "debian 12".',
            example="debian 12",
        ),
    ),
    title=pairs("python", "torch", "os"),
    at_least_one=("python", "torch", "os"),
    reads_layers=True,
)

INSTALLED_ONCE = Check(
    "installed_once",
    "A Python distribution has one copy across all site-packages and layers "
    "(assert_installed_once).",
    assert_installed_once,
    "image",
    (
        Key(
            "package",
            kinds.PYTHON_NAMES,
            'The distribution, or a list of them: "torch".',
            required=True,
            example="torch",
        ),
    ),
    title=pairs("package"),
    reads_layers=True,
)
