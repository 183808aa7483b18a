"""The image's Pythons and their installed distributions, read from the layers.

Nothing is run: the files come from the one layer pass that size, secrets and CUDA share
(:data:`keep_file` keeps each distribution's metadata), so shell-less images work.

A *Python* (:class:`PythonInstall`) is found by its standard library
(``<prefix>/lib/pythonX.Y/os.py``: the system Python, ``/usr/local``'s, conda's), by a
venv's ``pyvenv.cfg``, or, for a ``site-packages`` that belongs to neither, by that folder
alone. Its version comes from the best source there is, and says which:
``include/pythonX.Y/patchlevel.h``, ``conda-meta/python-X.Y.Z-*.json``, the OS package
(``pythonX.Y-minimal`` of dpkg, ``python3`` of apk or rpm), a venv's ``pyvenv.cfg``,
``PYTHON_VERSION`` of the official images, a version in the path (pyenv, uv); else only
``X.Y``, from the folder's name, and :attr:`PythonInstall.complete` is false.

Its *site folders* are its ``sys.path`` entries that hold distributions, in order: Debian's
and Ubuntu's ``/usr/local/lib/pythonX.Y/dist-packages``, ``/usr/lib/python3/dist-packages``,
``/usr/lib/pythonX.Y/dist-packages`` for the system Python; ``<prefix>/lib/pythonX.Y/
site-packages`` (and ``lib64``) elsewhere; a venv's own, then its base's when
``include-system-site-packages = true``; the user site of ``$HOME`` first.

A *distribution* (:class:`PythonPackage`) is a ``NAME-VERSION.dist-info`` (``METADATA``) or
``.egg-info`` (``PKG-INFO`` and ``requires.txt``, or one file) directly in a
``site-packages`` or ``dist-packages`` folder, with the layer that added it (the first layer
holding it at its version). :func:`read_python_packages` gives every copy the layers ever
held, each with the layer that removed it, if any (a ``pip uninstall``, an upgrade in
place): whiteouts are respected, and a copy a later layer removed is not installed.

Not read: ``.egg`` folders and zips, ``.egg-link``/``.pth`` development installs, and folders
added to ``sys.path`` by ``.pth`` files or ``PYTHONPATH``.
"""

from __future__ import annotations

import configparser
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import HeaderParser

from packaging.markers import InvalidMarker, Marker
from packaging.utils import canonicalize_name

from .layers import FileEntry, KeepLarge, LayerContents
from .packages import FileCopy, OsPackages, OsRelease, file_history, resolve

__all__ = [
    "PythonInstall",
    "PythonPackage",
    "egg_requirements",
    "evaluate_marker",
    "find_pythons",
    "keep_file",
    "marker_environment",
    "python_on_path",
    "read_python_packages",
    "stored_bytes",
]

_SITE = r"/(?:site|dist)-packages"
#: The metadata files of a distribution directly in a site folder.
_DIST_FILE = re.compile(
    r"^(?P<site>.*" + _SITE + r")/(?P<dist>[^/]+\.(?:dist-info|egg-info))"
    r"(?:/(?P<file>METADATA|RECORD|PKG-INFO|requires\.txt))?$"
)
_STDLIB = re.compile(r"^(?P<prefix>.*?)/lib(?:64)?/python(?P<minor>\d+\.\d+)t?/os\.py$")
_PATCHLEVEL = re.compile(r'#define\s+PY_VERSION\s+"(\d+\.\d+\.\d+)')
_PATH_VERSION = re.compile(r"(?:cpython-|/versions/|/python-?)(\d+\.\d+\.\d+)(?:[-/+]|$)")
_MINOR_IN_PATH = re.compile(r"/python(\d+\.\d+)t?/")
_MAX_METADATA = 4 << 20
_MAX_RECORD = 16 << 20


def _wanted(path: str, size: int) -> bool:
    if path.endswith(("/METADATA", "/PKG-INFO", "/requires.txt", ".egg-info")):
        return size <= _MAX_METADATA and _DIST_FILE.match(path) is not None
    if path.endswith("/RECORD"):
        return _DIST_FILE.match(path) is not None
    if path.endswith("/pyvenv.cfg"):
        return size <= 64 << 10
    return path.endswith("/patchlevel.h") and "/include/python" in path


#: The keep-predicate of these facts: distributions' metadata and RECORD, pyvenv.cfg,
#: patchlevel.h.
keep_file = KeepLarge(_wanted, _MAX_RECORD)


@dataclass(frozen=True)
class PythonInstall:
    """One Python in the image and the site folders its ``sys.path`` holds, in order.

    ``version`` is ``3.11.2`` where a source says so (``version_source``), else ``3.11``
    (``complete`` false); ``found_by`` is ``stdlib``, ``pyvenv.cfg`` or ``site folder`` (a
    ``site-packages`` that no Python found here uses). ``executable`` is its
    ``bin/pythonX.Y`` (or ``python3``), None when there is none.
    """

    prefix: str
    minor: str
    version: str
    version_source: str
    site_dirs: tuple[str, ...]
    found_by: str = "stdlib"
    complete: bool = False
    executable: str | None = None
    layer: int | None = None
    base: str | None = None  # a venv's base prefix

    @property
    def name(self) -> str:
        """How messages name it: its executable, else its prefix."""
        return self.executable or self.prefix

    def __str__(self) -> str:
        return f"Python {self.version} ({self.name})"


@dataclass(frozen=True)
class PythonPackage:
    """One copy of a Python distribution, in one site folder.

    ``layer`` is the layer that added it (the first holding it at this version), ``step``
    its history step (``image.layers``), ``removed_in`` the layer that removed it (None:
    installed). ``requires`` are its ``Requires-Dist`` lines (from ``requires.txt`` for an
    egg-info), as written.
    """

    name: str
    version: str
    location: str
    path: str
    layer: int
    requires: tuple[str, ...] = ()
    step: int | None = None
    removed_in: int | None = None
    #: The metadata file read: ``.../METADATA``, ``.../PKG-INFO`` or the egg-info file.
    metadata: str = ""

    @property
    def canonical_name(self) -> str:
        """The name as PEP 503 compares names: ``python-dateutil`` for ``Python_Dateutil``."""
        return str(canonicalize_name(self.name))

    @property
    def installed(self) -> bool:
        """Whether it is in the final filesystem."""
        return self.removed_in is None

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def read_python_packages(layers: Sequence[LayerContents]) -> list[PythonPackage]:
    """Every copy of every distribution the layers held, in the order they were added,
    installed or not (see :class:`PythonPackage`)."""
    copies = file_history(layers, lambda path: _DIST_FILE.match(path) is not None)
    by_path: dict[str, list[FileCopy]] = {}
    for copy in copies:
        by_path.setdefault(copy.path, []).append(copy)
    found: list[PythonPackage] = []
    for copy in copies:
        match = _DIST_FILE.match(copy.path)
        if match is None:
            continue
        kind = match["file"]
        egg_file = kind is None and copy.entry.kind != "dir" and copy.path.endswith(".egg-info")
        if kind not in ("METADATA", "PKG-INFO") and not egg_file:
            continue
        if kind == "METADATA" and not match["dist"].endswith(".dist-info"):
            continue
        text = (copy.data or b"").decode("utf-8", "replace")
        headers = HeaderParser().parsestr(text) if text else None
        name = str(headers.get("Name") or "") if headers else ""
        version = str(headers.get("Version") or "") if headers else ""
        if not name or not version:
            name, version = _from_folder_name(match["dist"])
        dist_path = posixpath.join(match["site"], match["dist"])
        if headers is not None and kind == "METADATA":
            requires = tuple(str(r) for r in headers.get_all("Requires-Dist") or ())
        else:
            requires = _egg_requires(by_path.get(f"{dist_path}/requires.txt", []), copy)
        package = PythonPackage(
            name=name,
            version=version,
            location=match["site"],
            path=dist_path,
            layer=copy.layer,
            requires=requires,
            step=layers[copy.layer].step if 0 <= copy.layer < len(layers) else None,
            removed_in=copy.until,
            metadata=copy.path,
        )
        previous = _continues(found, package)
        if previous is not None:
            # The same distribution rewritten by a later layer (a chmod, a reinstall of the
            # same version): one copy, added by the first layer.
            found[previous] = PythonPackage(
                **{**package.__dict__, "layer": found[previous].layer, "step": found[previous].step}
            )
        else:
            found.append(package)
    return found


def _continues(found: Sequence[PythonPackage], package: PythonPackage) -> int | None:
    for index in range(len(found) - 1, -1, -1):
        earlier = found[index]
        if (
            earlier.path == package.path
            and earlier.version == package.version
            and earlier.removed_in == package.layer
        ):
            return index
    return None


def _from_folder_name(folder: str) -> tuple[str, str]:
    """Name and version from ``NAME-VERSION.dist-info`` (or ``.egg-info``; the version
    may carry ``-pyX.Y``), for metadata that does not say them."""
    stem = folder.rsplit(".", 1)[0]
    name, _, rest = stem.partition("-")
    version = rest.split("-py", 1)[0] if rest else ""
    return name, version


def _egg_requires(copies: Sequence[FileCopy], of: FileCopy) -> tuple[str, ...]:
    """The requirements of an egg-info's ``requires.txt`` (the copy that lived beside the
    PKG-INFO ``of`` when ``of`` was last there), as ``Requires-Dist`` lines: ``[extra]``
    sections become ``extra == "extra"`` markers, ``[:marker]`` sections markers, as
    importlib.metadata and pip read them."""

    def beside(copy: FileCopy) -> bool:
        if of.until is None:
            return copy.until is None
        return copy.layer < of.until and (copy.until is None or copy.until >= of.until)

    copy = next((c for c in reversed(copies) if beside(c)), None)
    if copy is None or not copy.data:
        return ()
    return egg_requirements(copy.data.decode("utf-8", "replace"))


def egg_requirements(text: str) -> tuple[str, ...]:
    """The lines of an egg-info's ``requires.txt`` as ``Requires-Dist`` values, as
    importlib.metadata converts them: ``[extra]`` sections get ``extra == "extra"``,
    ``[:marker]`` sections the marker, ``[extra:marker]`` both.

    >>> egg_requirements('six\\n[test]\\npytest>=3\\n[:python_version < "3.8"]\\nzipp')
    ('six', 'pytest>=3; extra == "test"', 'zipp; python_version < "3.8"')
    """
    requires = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        extra, _, marker = section.partition(":")
        conditions = []
        if marker.strip():
            conditions.append(f"({marker.strip()})" if extra else marker.strip())
        if extra.strip():
            conditions.append(f'extra == "{extra.strip()}"')
        space = " " if "@" in line else ""  # a URL requirement needs a space before ";"
        requires.append(f"{line}{space}; {' and '.join(conditions)}" if conditions else line)
    return tuple(requires)


def stored_bytes(package: PythonPackage, layers: Sequence[LayerContents]) -> int | None:
    """Bytes of ``package``'s files (its ``RECORD``) stored in the layer that added it; None
    without a RECORD (an egg-info, a distribution packaged by the OS) or its bytes."""
    if not 0 <= package.layer < len(layers) or not package.path.endswith(".dist-info"):
        return None
    layer = layers[package.layer]
    record = layer.contents.get(f"{package.path}/RECORD")
    if record is None:
        return None
    total = 0
    for line in record.decode("utf-8", "replace").splitlines():
        relative = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
        if not relative:
            continue
        path = posixpath.normpath(posixpath.join(package.location, relative.strip('"')))
        entry = layer.entries.get(path)
        if entry is not None and entry.kind == "file":
            total += entry.size
    return total


# --- the Pythons -----------------------------------------------------------------------------


def _exists(path: str, present: Mapping[str, tuple[FileEntry, int]], sites: set[str]) -> bool:
    return path in sites or path in present


def _user_home(env: Mapping[str, str], user: str) -> str | None:
    home = env.get("HOME")
    if home:
        return home
    return "/root" if user.split(":")[0] in ("", "root", "0") else None


def find_pythons(
    present: Mapping[str, tuple[FileEntry, int]],
    contents: Mapping[str, bytes],
    packages: Sequence[PythonPackage],
    *,
    os_packages: OsPackages,
    os_release: OsRelease | None,
    env: Mapping[str, str],
    user: str = "",
) -> list[PythonInstall]:
    """Every Python in the final filesystem ``present`` (see the module's documentation).

    ``contents`` holds the kept bytes of the live files (``pyvenv.cfg``, ``patchlevel.h``);
    ``packages`` the distributions, whose site folders name the Pythons that have no
    standard library here.
    """
    sites = {p.location for p in packages if p.installed}
    family = {os_release.id, *os_release.id_like} if os_release is not None else set()
    debian = bool(family & {"debian", "ubuntu"}) or "/usr/lib/python3/dist-packages" in sites
    rpm_like = "rpm" in os_packages.managers or bool(family & {"fedora", "rhel", "suse"})
    home = _user_home(env, user)
    stdlibs = sorted(
        (match["prefix"] or "/", match["minor"], path)
        for path in present
        if path.endswith("/os.py")
        and (match := _STDLIB.match(path)) is not None
        and not re.search(_SITE, path)
        and not re.search(r"/pkgs/[^/]+$", match["prefix"])  # conda's package cache
    )
    found: list[PythonInstall] = []
    for prefix, minor, path in stdlibs:
        if any(p.prefix == prefix and p.minor == minor for p in found):
            continue
        version, source = _version(prefix, minor, present, contents, os_packages, env)
        dirs = [f"{home}/.local/lib/python{minor}/site-packages"] if home else []
        if prefix == "/usr" and debian:
            dirs += [
                f"/usr/local/lib/python{minor}/dist-packages",
                "/usr/lib/python3/dist-packages",
                f"/usr/lib/python{minor}/dist-packages",
            ]
        else:
            if prefix == "/usr" and rpm_like:
                dirs += [
                    f"/usr/local/{lib}/python{minor}/site-packages" for lib in ("lib64", "lib")
                ]
            dirs += [
                f"{prefix.rstrip('/')}/{lib}/python{minor}/site-packages"
                for lib in ("lib64", "lib")
            ]
        found.append(
            PythonInstall(
                prefix=prefix,
                minor=minor,
                version=version or minor,
                version_source=source,
                site_dirs=tuple(d for d in dict.fromkeys(dirs) if _exists(d, present, sites)),
                found_by="stdlib",
                complete=version is not None,
                executable=_executable(prefix, minor, present),
                layer=present[path][1],
            )
        )
    found += _venvs(present, contents, found, sites)
    used = {d for p in found for d in p.site_dirs}
    for site in sorted(sites - used):
        in_path = _MINOR_IN_PATH.search(site + "/")
        minor = in_path.group(1) if in_path else "3"
        found.append(
            PythonInstall(
                prefix=site.split("/lib/")[0] if "/lib/" in site else posixpath.dirname(site),
                minor=minor,
                version=minor,
                version_source=f"the folder name {site}" if in_path else "unknown",
                site_dirs=(site,),
                found_by="site folder",
            )
        )
    return found


def _executable(
    prefix: str, minor: str, present: Mapping[str, tuple[FileEntry, int]]
) -> str | None:
    for name in (f"python{minor}", "python3", "python"):
        path = posixpath.join(prefix, "bin", name)
        if resolve(path, present) in present:
            return path
    return None


def _version(
    prefix: str,
    minor: str,
    present: Mapping[str, tuple[FileEntry, int]],
    contents: Mapping[str, bytes],
    os_packages: OsPackages,
    env: Mapping[str, str],
) -> tuple[str | None, str]:
    """The full version of the Python at ``prefix`` and where it was read, or (None, why)."""
    header = contents.get(f"{prefix.rstrip('/')}/include/python{minor}/patchlevel.h")
    if header:
        found = _PATCHLEVEL.search(header.decode("utf-8", "replace"))
        if found and found.group(1).startswith(minor + "."):
            return found.group(1), f"{prefix.rstrip('/')}/include/python{minor}/patchlevel.h"
    conda = f"{prefix.rstrip('/')}/conda-meta/python-{minor}."
    for path in present:
        if path.startswith(conda) and path.endswith(".json"):
            version = re.match(r"\d+\.\d+\.\d+", path[len(conda) - len(minor) - 1 :])
            if version:
                return version.group(0), path
    if prefix == "/usr":
        for name in (
            f"python{minor}-minimal",
            f"python{minor}",
            f"libpython{minor}-minimal",
            "python3",
        ):
            package = os_packages.get(name)
            if package is not None and package.upstream_version.startswith(minor + "."):
                return (
                    package.upstream_version,
                    f"OS package {package.name} {package.version} ({package.manager})",
                )
    declared = env.get("PYTHON_VERSION", "")
    if prefix == "/usr/local" and re.fullmatch(rf"{re.escape(minor)}\.\d+", declared):
        return declared, "env PYTHON_VERSION"
    in_path = _PATH_VERSION.search(prefix + "/")
    if in_path and in_path.group(1).startswith(minor + "."):
        return in_path.group(1), f"the path {prefix}"
    return None, f"the folder name {prefix.rstrip('/')}/lib/python{minor}"


def _venvs(
    present: Mapping[str, tuple[FileEntry, int]],
    contents: Mapping[str, bytes],
    pythons: Sequence[PythonInstall],
    sites: set[str],
) -> list[PythonInstall]:
    """The venvs, each from its ``pyvenv.cfg``: ``home`` names the base Python's bin folder,
    ``version``/``version_info`` its version, ``include-system-site-packages`` whether the
    base's site folders follow the venv's own."""
    found = []
    for path in sorted(p for p in present if p.endswith("/pyvenv.cfg") and p in contents):
        root = posixpath.dirname(path)
        config = configparser.ConfigParser(interpolation=None)
        try:
            config.read_string("[venv]\n" + contents[path].decode("utf-8", "replace"))
        except configparser.Error:
            continue
        values = config["venv"]
        home = values.get("home", "").rstrip("/")
        base = next((p for p in pythons if home and _bin_folder(p) == home), None)
        declared = re.match(
            r"\d+\.\d+(?:\.\d+)?", values.get("version_info") or values.get("version") or ""
        )
        own = sorted(s for s in sites if re.match(rf"{re.escape(root)}/lib(?:64)?/python\d", s))
        in_path = _MINOR_IN_PATH.search(own[0] + "/") if own else None
        if in_path is not None:
            minor = in_path.group(1)
        elif declared is not None:
            minor = ".".join(declared.group(0).split(".")[:2])
        else:
            minor = base.minor if base is not None else "3"
        if declared is not None and declared.group(0).count(".") == 2:
            version, source, complete = declared.group(0), path, True
        elif base is not None and base.minor == minor:
            version, source, complete = base.version, base.version_source, base.complete
        else:
            version, source, complete = minor, f"the folder name {root}/lib/python{minor}", False
        dirs = [f"{root}/{lib}/python{minor}/site-packages" for lib in ("lib64", "lib")]
        site_dirs = [d for d in dirs if _exists(d, present, sites)]
        if base is not None and values.get("include-system-site-packages", "").lower() == "true":
            site_dirs += [d for d in base.site_dirs if "/.local/" not in d]
        found.append(
            PythonInstall(
                prefix=root,
                minor=minor,
                version=version,
                version_source=source,
                site_dirs=tuple(dict.fromkeys(site_dirs)),
                found_by="pyvenv.cfg",
                complete=complete,
                executable=_executable(root, minor, present),
                layer=present[path][1],
                base=base.prefix if base is not None else None,
            )
        )
    return found


def _bin_folder(python: PythonInstall) -> str:
    if python.executable:
        return posixpath.dirname(python.executable)
    return posixpath.join(python.prefix, "bin")


def python_on_path(
    pythons: Sequence[PythonInstall],
    present: Mapping[str, tuple[FileEntry, int]],
    env: Mapping[str, str],
    path_dirs: Sequence[str],
) -> tuple[PythonInstall, str] | None:
    """The Python that ``python3`` (else ``python``) on the image's PATH runs, and the path
    it was found at; None when neither is on PATH or none of ``pythons`` is it."""
    for command in ("python3", "python"):
        for folder in path_dirs:
            candidate = posixpath.join(folder, command)
            target = resolve(candidate, present)
            if target is None or target not in present or present[target][0].kind == "dir":
                continue
            for python in pythons:  # a venv's own bin first: its python links to its base's
                if python.executable and posixpath.dirname(python.executable) == folder:
                    return python, candidate
            for python in pythons:
                if python.executable and resolve(python.executable, present) == target:
                    return python, candidate
            return None
    return None


# --- markers ---------------------------------------------------------------------------------

#: platform.machine() of each of the engine's architectures.
_MACHINES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "armv7l",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "386": "i686",
}
#: Marker variables of the machine a container runs on, not of the image: never known here.
_HOST_ONLY = ("platform_release", "platform_version")


@dataclass(frozen=True)
class MarkerEnvironment:
    """The PEP 508 marker values of one Python in the image.

    ``values`` are known; ``ranges`` give the lowest and highest value of a variable known
    only in part (``python_full_version`` of a Python known as ``3.11``); ``unknown``
    variables cannot be told at all (the kernel's ``platform_release``).
    """

    values: Mapping[str, str]
    ranges: Mapping[str, tuple[str, str]]
    unknown: tuple[str, ...]


def marker_environment(python: PythonInstall, architecture: str) -> MarkerEnvironment:
    """The marker values a requirement of ``python``'s distributions is evaluated with, on
    an image for ``architecture`` (``amd64``)."""
    minor_known = re.fullmatch(r"\d+\.\d+", python.minor) is not None
    values = {
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": _MACHINES.get(architecture, ""),
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "python_version": python.minor,
        "python_full_version": python.version,
        "implementation_version": python.version,
        "platform_release": "",
        "platform_version": "",
        "extra": "",
    }
    unknown = list(_HOST_ONLY)
    if architecture not in _MACHINES:
        unknown.append("platform_machine")
    ranges: dict[str, tuple[str, str]] = {}
    if not minor_known:
        unknown += ["python_version", "python_full_version", "implementation_version"]
    elif not python.complete:
        low, high = f"{python.minor}.0", f"{python.minor}.9999"
        ranges = {"python_full_version": (low, high), "implementation_version": (low, high)}
    return MarkerEnvironment(values, ranges, tuple(unknown))


def evaluate_marker(marker: Marker | str, environment: MarkerEnvironment) -> bool | None:
    """Whether ``marker`` holds with ``extra`` empty (as ``pip check`` evaluates a
    distribution's requirements); None when that depends on what is not known.

    Raises :class:`packaging.markers.InvalidMarker` for a marker that does not parse.
    """
    marker = marker if isinstance(marker, Marker) else Marker(marker)
    text = str(marker)
    if any(re.search(rf"\b{name}\b", text) for name in environment.unknown):
        return None
    low = {**environment.values, **{k: v[0] for k, v in environment.ranges.items()}}
    high = {**environment.values, **{k: v[1] for k, v in environment.ranges.items()}}
    at_low, at_high = marker.evaluate(low), marker.evaluate(high)
    return at_low if at_low == at_high else None


__all__ += ["InvalidMarker", "MarkerEnvironment"]
