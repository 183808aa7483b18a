"""The image's OS and its OS packages, read from the layers: no container, no shell.

Everything here is read from the one layer pass that size, secrets and CUDA share (the
package databases are kept by :data:`keep_file`), so it works for shell-less images:

``/etc/os-release`` (or ``/usr/lib/os-release``)
    :class:`OsRelease`: ``ID``, ``VERSION_ID``, ``PRETTY_NAME``; Debian's point release
    from ``/etc/debian_version``, Ubuntu's from ``VERSION``.
dpkg
    ``/var/lib/dpkg/status``, and the one-file-per-package ``/var/lib/dpkg/status.d/*`` of
    Debian's distroless images. A package counts as installed in every state but
    ``not-installed`` and ``config-files`` (``apt-get remove`` leaves that one).
apk
    ``/lib/apk/db/installed``.
rpm
    the SQLite rpmdb (``/var/lib/rpm/rpmdb.sqlite`` or ``/usr/lib/sysimage/rpm/``: Fedora
    33+, RHEL/UBI 9, Amazon Linux 2023), read with Python's :mod:`sqlite3` from the kept bytes,
    each package's header blob decoded here (name, epoch, version, release, arch). The
    Berkeley DB rpmdb (``/var/lib/rpm/Packages``: CentOS 7/8, RHEL/UBI 7/8, Amazon Linux 2)
    and SUSE's ndb (``Packages.db``) are **not** read: they would need rpm itself or a
    Berkeley DB reader. An image with one of those has its packages *not measured*
    (:attr:`PackageDatabase.readable` is false and says why), never "none installed".

Each package says which layer added it: the first layer whose database lists it at the
version the image has (an upgrade in a later layer is that layer's), so a check can name
the Dockerfile step. Whiteouts are respected throughout: a database a later layer deletes,
a package purged in a later layer, is not in the image.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shlex
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ImageCheckError
from .layers import FileEntry, KeepLarge, LayerContents, final_filesystem
from .versions import release_of

__all__ = [
    "DPKG_STATUS",
    "DPKG_STATUS_D",
    "FileCopy",
    "Filesystem",
    "OsPackage",
    "OsPackages",
    "OsRelease",
    "PackageDatabase",
    "PackageQuery",
    "check_python_name",
    "default_path",
    "file_history",
    "keep_file",
    "live_files",
    "read_os_packages",
    "read_os_release",
    "resolve",
]

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
APK_INSTALLED = "/lib/apk/db/installed"
RPM_SQLITE = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")
RPM_UNREADABLE = {
    "/var/lib/rpm/Packages": "a Berkeley DB rpmdb",
    "/usr/lib/sysimage/rpm/Packages": "a Berkeley DB rpmdb",
    "/var/lib/rpm/Packages.db": "an ndb rpmdb",
    "/usr/lib/sysimage/rpm/Packages.db": "an ndb rpmdb",
}
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
DEBIAN_VERSION = "/etc/debian_version"

#: The package managers whose databases are read, in the order they are looked for.
MANAGERS = ("dpkg", "apk", "rpm")

#: The largest package database kept whole (a dpkg status file of a large image is a few MB,
#: an rpmdb.sqlite tens of MB).
MAX_DATABASE = 128 << 20

_KEPT = frozenset(
    {
        *OS_RELEASE,
        DEBIAN_VERSION,
        DPKG_STATUS,
        APK_INSTALLED,
        *RPM_SQLITE,
        *(f"{path}-wal" for path in RPM_SQLITE),
    }
)


def _wanted(path: str, size: int) -> bool:
    return path in _KEPT or path.startswith(DPKG_STATUS_D + "/")


#: The keep-predicate of these facts: os-release and the package databases, whole.
keep_file = KeepLarge(_wanted, MAX_DATABASE)


# --- files across layers ---------------------------------------------------------------------


@dataclass(frozen=True)
class FileCopy:
    """One layer's copy of a file: written by layer ``layer``, superseded (overwritten,
    deleted, hidden) by layer ``until``, or in the final filesystem when ``until`` is None.

    ``data`` is its bytes as the layer read kept them (None: not kept).
    """

    path: str
    layer: int
    entry: FileEntry
    until: int | None = None
    data: bytes | None = None


def file_history(layers: Sequence[LayerContents], wanted: Callable[[str], bool]) -> list[FileCopy]:
    """Every copy of every regular file ``wanted`` selects, in the order the layers wrote
    them, each with the layer that superseded it (see :class:`FileCopy`)."""
    copies: list[FileCopy] = []
    live: dict[str, int] = {}  # path -> index in copies
    for layer in layers:
        if live:
            for path in [p for p in live if layer.hides(p) is not None]:
                index = live.pop(path)
                copies[index] = _until(copies[index], layer.index)
        for path, entry in layer.entries.items():
            if path in live:
                index = live.pop(path)
                copies[index] = _until(copies[index], layer.index)
            if entry.kind in ("file", "hardlink") and wanted(path):
                live[path] = len(copies)
                copies.append(FileCopy(path, layer.index, entry, None, layer.contents.get(path)))
    return copies


def _until(copy: FileCopy, layer: int) -> FileCopy:
    return FileCopy(copy.path, copy.layer, copy.entry, layer, copy.data)


class Filesystem(dict[str, tuple[FileEntry, int]]):
    """The final filesystem by path: each entry with the index of the layer it comes from.

    :attr:`folders` also holds the folders a tar implies without listing them (the parents of
    what it lists), computed once.
    """

    @functools.cached_property
    def folders(self) -> frozenset[str]:
        """Every folder: those listed, and the parents of every path."""
        found = {path for path, (entry, _) in self.items() if entry.kind == "dir"}
        for path in self:
            parent = posixpath.dirname(path)
            while parent not in found and parent != "/":
                found.add(parent)
                parent = posixpath.dirname(parent)
        found.add("/")
        return frozenset(found)


def live_files(layers: Sequence[LayerContents]) -> Filesystem:
    """The final filesystem (:func:`~pytest_imagecheck.layers.final_filesystem`) by path:
    each entry with the index of the layer it comes from."""
    return Filesystem((entry.path, (entry, index)) for entry, index in final_filesystem(layers))


def resolve(path: str, present: Mapping[str, tuple[FileEntry, int]]) -> str | None:
    """``path`` in the final filesystem ``present`` with every symbolic link on the way
    followed (its folders' too, such as Debian's ``/lib -> usr/lib``); None when it is not
    there, or the links loop.

    >>> entry = FileEntry("/etc/os-release", 0, 0o777, 0, 0, "symlink", "../usr/lib/os-release")
    >>> file = FileEntry("/usr/lib/os-release", 10, 0o644, 0, 0, "file")
    >>> resolve("/etc/os-release", {e.path: (e, 0) for e in (entry, file)})
    '/usr/lib/os-release'
    """
    parts = [p for p in path.split("/") if p]
    done = "/"
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == ".":
            continue
        if name == "..":
            done = posixpath.dirname(done)
            continue
        candidate = posixpath.join(done, name)
        seen = present.get(candidate)
        if seen is not None and seen[0].kind == "symlink":
            hops += 1
            if hops > 40:
                return None
            target = seen[0].linkname
            base = "/" if target.startswith("/") else done
            parts = [p for p in target.split("/") if p] + parts
            done = base
            continue
        if seen is None and not _is_folder(candidate, present):
            return None
        done = candidate
    return done


def _is_folder(path: str, present: Mapping[str, tuple[FileEntry, int]]) -> bool:
    """A tar need not list a folder: any live path below it makes it one."""
    if isinstance(present, Filesystem):
        return path in present.folders
    prefix = path.rstrip("/") + "/"
    return any(other.startswith(prefix) for other in present)


# --- os-release ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OsRelease:
    """The image's ``/etc/os-release`` (os-release(5)).

    ``version`` is the most precise version known: Debian's ``/etc/debian_version``
    (``12.5``) or Ubuntu's ``VERSION`` (``22.04.4 LTS``) where they extend ``VERSION_ID``,
    else ``VERSION_ID``; ``version_source`` says which. ``layer`` is the layer of the file.
    """

    id: str
    version_id: str
    version: str
    version_source: str
    pretty_name: str
    path: str
    layer: int
    id_like: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where it was read: ``/etc/os-release, layer 0``."""
        return f"{self.path}, layer {self.layer}"

    def __str__(self) -> str:
        return f"{self.id} {self.version}".strip()


def parse_os_release(text: str) -> dict[str, str]:
    """The ``KEY=value`` assignments of an os-release file, shell quoting removed.

    >>> parse_os_release('ID=debian\\nPRETTY_NAME="Debian GNU/Linux 12"\\n')["PRETTY_NAME"]
    'Debian GNU/Linux 12'
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value, posix=True)
        except ValueError:
            words = [value.strip("\"'")]
        fields[key.strip()] = " ".join(words)
    return fields


def read_os_release(
    present: Mapping[str, tuple[FileEntry, int]], contents: Callable[[str, int], bytes | None]
) -> OsRelease | None:
    """The image's os-release, or None when it has none (``FROM scratch``, busybox).

    ``contents(path, layer)`` gives a kept file's bytes in that layer.
    """
    for name in OS_RELEASE:
        path = resolve(name, present)
        if path is None or path not in present or present[path][0].kind == "dir":
            continue
        layer = present[path][1]
        data = contents(path, layer)
        if data is None:
            continue
        fields = parse_os_release(data.decode("utf-8", "replace"))
        version_id = fields.get("VERSION_ID", "")
        version, source = version_id, f"{name} VERSION_ID"
        found = _more_precise(fields, version_id, present, contents)
        if found is not None:
            version, source = found
        return OsRelease(
            id=fields.get("ID", "linux").lower(),
            version_id=version_id,
            version=version,
            version_source=source,
            pretty_name=fields.get("PRETTY_NAME", fields.get("NAME", "")),
            path=name,
            layer=layer,
            id_like=tuple(fields.get("ID_LIKE", "").split()),
            fields=fields,
        )
    return None


def _more_precise(
    fields: Mapping[str, str],
    version_id: str,
    present: Mapping[str, tuple[FileEntry, int]],
    contents: Callable[[str, int], bytes | None],
) -> tuple[str, str] | None:
    """A version that extends ``VERSION_ID``: Debian's point release, Ubuntu's ``VERSION``."""
    short = release_of(version_id)
    if short is None:
        return None
    candidates: list[tuple[str, str]] = []
    path = resolve(DEBIAN_VERSION, present)
    if path is not None and path in present:
        data = contents(path, present[path][1])
        if data:
            candidates.append((data.decode("utf-8", "replace").strip(), DEBIAN_VERSION))
    match = re.match(r"\d+(?:\.\d+)+", fields.get("VERSION", ""))
    if match:
        candidates.append((match.group(0), "/etc/os-release VERSION"))
    for version, source in candidates:
        release = release_of(version)
        if release is not None and len(release) > len(short) and release[: len(short)] == short:
            return version, source
    return None


# --- OS packages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageDatabase:
    """A package database found in the image: what it is, where, and whether it was read.

    ``reason`` says why an unreadable one was not (and so its packages are not measured).
    """

    manager: str  # "dpkg", "apk" or "rpm"
    path: str
    layer: int
    readable: bool = True
    reason: str = ""
    count: int = 0

    def __str__(self) -> str:
        if not self.readable:
            return f"{self.manager}: {self.path} (layer {self.layer}), not read: {self.reason}"
        return f"{self.manager}: {self.path} (layer {self.layer}, {self.count} packages)"


@dataclass(frozen=True)
class OsPackage:
    """One installed OS package, and the layer whose database first lists it at this version.

    ``version`` is as the manager writes it (dpkg ``1:2.38-4``, apk ``3.11.8-r0``, rpm
    ``[EPOCH:]VERSION-RELEASE``); ``status`` is dpkg's package state (``installed``,
    ``unpacked``, ...; ``installed`` for apk and rpm). ``database`` is the file it is listed
    in. ``step`` indexes the image's history (``image.layers``) when known.
    """

    name: str
    version: str
    manager: str
    database: str
    layer: int
    arch: str = ""
    status: str = "installed"
    step: int | None = None
    source_package: str = ""

    @property
    def upstream_version(self) -> str:
        """The version without epoch and packaging revision: ``3.11.2`` of dpkg's
        ``3.11.2-6+deb12u1``, apk's ``3.11.8-r0`` or rpm's ``3.9.18-3.el9``."""
        version = self.version.split(":", 1)[1] if ":" in self.version else self.version
        return version.rsplit("-", 1)[0] if "-" in version else version

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class OsPackages(list[OsPackage]):
    """The image's installed OS packages (a list of :class:`OsPackage`), with the package
    databases found (:attr:`databases`), read or not."""

    def __init__(
        self, packages: Iterable[OsPackage] = (), databases: Iterable[PackageDatabase] = ()
    ) -> None:
        super().__init__(packages)
        self.databases: tuple[PackageDatabase, ...] = tuple(databases)

    @property
    def managers(self) -> tuple[str, ...]:
        """The managers whose database was read (``("dpkg",)``)."""
        return tuple(dict.fromkeys(db.manager for db in self.databases if db.readable))

    @property
    def measured(self) -> bool:
        """Whether any package database was read: without one, no package is known absent."""
        return bool(self.managers)

    def get(self, name: str, manager: str | None = None) -> OsPackage | None:
        """The installed package called ``name`` (of ``manager``, if given), or None.

        dpkg names are lowercase, and dpkg finds ``Git`` as ``git``, so a dpkg package is
        matched whatever the case of ``name``; apk and rpm names match exactly
        (``NetworkManager``).
        """
        return next(
            (
                p
                for p in self
                if manager in (None, p.manager)
                and (p.name == name or (p.manager == "dpkg" and p.name == name.lower()))
            ),
            None,
        )


_NOT_INSTALLED = ("not-installed", "config-files")


def parse_dpkg_status(text: str) -> list[tuple[str, str, str, str, str]]:
    """``(name, version, arch, state, source)`` of each stanza of a dpkg status file (or a
    distroless ``status.d`` file) that lists an installed package.

    >>> parse_dpkg_status("Package: make\\nStatus: install ok installed\\nVersion: 4.3-4.1\\n")
    [('make', '4.3-4.1', '', 'installed', '')]
    """
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line or line[0] in " \t":
                continue
            key, sep, value = line.partition(":")
            if sep and key in ("Package", "Status", "Version", "Architecture", "Source"):
                fields[key] = value.strip()
        name = fields.get("Package")
        if not name:
            continue
        state = (fields.get("Status") or "install ok installed").split()[-1]
        if state in _NOT_INSTALLED:
            continue
        source = fields.get("Source", "").split(" ")[0]
        found.append(
            (name, fields.get("Version", ""), fields.get("Architecture", ""), state, source)
        )
    return found


def parse_apk_installed(text: str) -> list[tuple[str, str, str, str, str]]:
    """``(name, version, arch, "installed", origin)`` of each record of apk's installed
    database (``P:``, ``V:``, ``A:``, ``o:`` lines; blank lines between packages).

    >>> parse_apk_installed("P:musl\\nV:1.2.4-r2\\nA:x86_64\\n\\nP:zlib\\nV:1.3-r2\\n")
    [('musl', '1.2.4-r2', 'x86_64', 'installed', ''), ('zlib', '1.3-r2', '', 'installed', '')]
    """
    found = []
    for record in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in record.splitlines():
            if len(line) > 2 and line[1] == ":" and line[0] in "PVAo":
                fields.setdefault(line[0], line[2:])
        if fields.get("P"):
            found.append(
                (
                    fields["P"],
                    fields.get("V", ""),
                    fields.get("A", ""),
                    "installed",
                    fields.get("o", ""),
                )
            )
    return found


# RPM header tags (rpm's lib/rpmtag.h) and value types (RPM_STRING_TYPE, ...).
_RPMTAG = {
    1000: "name",
    1001: "version",
    1002: "release",
    1003: "epoch",
    1022: "arch",
    1044: "sourcerpm",
}
_INT32, _STRING, _I18NSTRING = 4, 6, 9


def parse_rpm_header(blob: bytes) -> dict[str, str]:
    """Name, epoch, version, release and arch from one rpmdb header blob (the ``Packages``
    table's ``blob``: a header without its magic, as rpm's ``headerExport`` writes it: index
    count and data length, 16-byte index entries of tag, type, offset and count, then the
    data store; big-endian)."""
    if len(blob) < 8:
        raise ValueError("header shorter than 8 bytes")
    entries, length = struct.unpack(">II", blob[:8])
    start = 8 + 16 * entries
    if start + length > len(blob):
        raise ValueError(f"header of {entries} entries and {length} bytes runs past its end")
    data = blob[start : start + length]
    found: dict[str, str] = {}
    for i in range(entries):
        tag, kind, offset, count = struct.unpack(">IIII", blob[8 + 16 * i : 24 + 16 * i])
        name = _RPMTAG.get(tag)
        if name is None or offset >= len(data):
            continue
        if kind in (_STRING, _I18NSTRING):
            end = data.find(b"\0", offset)
            found[name] = data[offset : end if end >= 0 else None].decode("utf-8", "replace")
        elif kind == _INT32 and count >= 1 and offset + 4 <= len(data):
            found[name] = str(struct.unpack(">I", data[offset : offset + 4])[0])
    return found


def parse_rpmdb_sqlite(db: bytes, wal: bytes | None = None) -> list[tuple[str, str, str, str, str]]:
    """``(name, [epoch:]version-release, arch, "installed", source rpm)`` of each package of
    an rpm SQLite database (its bytes, and its write-ahead log's when not empty).

    Raises ValueError when the bytes are not an rpm SQLite database.
    """
    with tempfile.TemporaryDirectory(prefix="imagecheck-rpmdb-") as folder:
        path = Path(folder) / "rpmdb.sqlite"
        path.write_bytes(db)
        if wal:
            Path(f"{path}-wal").write_bytes(wal)
            uri = f"file:{path}"
        else:
            uri = f"file:{path}?immutable=1"
        try:
            connection = sqlite3.connect(uri, uri=True)
            try:
                rows = connection.execute("SELECT blob FROM Packages").fetchall()
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise ValueError(f"not an rpm SQLite database ({exc})") from None
    found = []
    for (blob,) in rows:
        header = parse_rpm_header(bytes(blob))
        if not header.get("name"):
            continue
        version = f"{header.get('version', '')}-{header.get('release', '')}".strip("-")
        if header.get("epoch"):
            version = f"{header['epoch']}:{version}"
        found.append(
            (
                header["name"],
                version,
                header.get("arch", ""),
                "installed",
                header.get("sourcerpm", ""),
            )
        )
    return found


def _database_of(path: str) -> tuple[str, str] | None:
    """``(manager, database)`` when ``path`` is (part of) a package database."""
    if path == DPKG_STATUS:
        return "dpkg", DPKG_STATUS
    if path.startswith(DPKG_STATUS_D + "/"):
        return "dpkg", DPKG_STATUS_D
    if path == APK_INSTALLED:
        return "apk", APK_INSTALLED
    if path in RPM_SQLITE:
        return "rpm", path
    return None


def read_os_packages(
    layers: Sequence[LayerContents], present: Mapping[str, tuple[FileEntry, int]]
) -> OsPackages:
    """The installed OS packages of the final filesystem, each with the layer that added it,
    from every copy of every package database in the layers (kept by :data:`keep_file`)."""
    copies = file_history(
        layers, lambda p: _database_of(p) is not None or p.endswith("rpmdb.sqlite-wal")
    )
    parsed: dict[int, list[tuple[str, str, str, str, str]]] = {}
    problems: dict[str, str] = {}
    by_layer: dict[int, list[int]] = {}
    for index, copy in enumerate(copies):
        by_layer.setdefault(copy.layer, []).append(index)
        if copy.until is not None:
            by_layer.setdefault(copy.until, [])
    # Replay the databases layer by layer: a package keeps the layer that first listed it at
    # its version, across layers that rewrite the database without changing it.
    added: dict[tuple[str, str, str], tuple[int, str, str, str, str, str]] = {}
    state: dict[tuple[str, str, str], tuple[int, str, str, str, str, str]] = {}
    for layer_index in sorted(by_layer):
        live = [
            (i, c)
            for i, c in enumerate(copies)
            if c.layer <= layer_index and (c.until is None or c.until > layer_index)
        ]
        wals = {c.path.removesuffix("-wal"): c for _, c in live if c.path.endswith("-wal")}
        current: dict[tuple[str, str, str], tuple[int, str, str, str, str, str]] = {}
        for i, copy in live:
            where = _database_of(copy.path)
            if where is None:
                continue
            manager, database = where
            if i not in parsed:
                parsed[i] = _parse_copy(copy, manager, wals.get(copy.path), problems)
            for name, version, arch, status, source in parsed[i]:
                key = (manager, name, arch)
                before = state.get(key)
                first = before[0] if before is not None and before[1] == version else layer_index
                current[key] = (first, version, arch, status, database, source)
        state = current
        added = current
    packages = [
        OsPackage(
            name=name,
            version=version,
            manager=manager,
            database=database,
            layer=first,
            arch=arch,
            status=status,
            step=layers[first].step if 0 <= first < len(layers) else None,
            source_package=source,
        )
        for (manager, name, _), (first, version, arch, status, database, source) in sorted(
            added.items(), key=lambda item: (item[0][0], item[0][1], item[0][2])
        )
    ]
    return OsPackages(packages, _databases(copies, present, packages, problems))


def _parse_copy(
    copy: FileCopy, manager: str, wal: FileCopy | None, problems: dict[str, str]
) -> list[tuple[str, str, str, str, str]]:
    if copy.data is None:
        if copy.entry.size:
            problems[copy.path] = (
                f"{copy.entry.size} bytes, more than the {MAX_DATABASE >> 20} MiB a database "
                "is kept to"
            )
        return []
    try:
        if manager == "dpkg":
            return parse_dpkg_status(copy.data.decode("utf-8", "replace"))
        if manager == "apk":
            return parse_apk_installed(copy.data.decode("utf-8", "replace"))
        return parse_rpmdb_sqlite(copy.data, wal.data if wal is not None else None)
    except ValueError as exc:
        problems[copy.path] = str(exc)
        return []


def _databases(
    copies: Sequence[FileCopy],
    present: Mapping[str, tuple[FileEntry, int]],
    packages: Sequence[OsPackage],
    problems: Mapping[str, str],
) -> list[PackageDatabase]:
    found: dict[str, PackageDatabase] = {}
    for copy in copies:
        where = _database_of(copy.path)
        if copy.until is not None or where is None:
            continue
        manager, database = where
        count = sum(1 for p in packages if p.database == database)
        problem = problems.get(copy.path)
        previous = found.get(database)
        layer = max(copy.layer, previous.layer) if previous is not None else copy.layer
        if problem is not None:
            found[database] = PackageDatabase(manager, database, layer, False, problem)
        elif previous is None or previous.readable:
            found[database] = PackageDatabase(manager, database, layer, True, "", count)
    for path, what in RPM_UNREADABLE.items():
        if path in present and not any(
            db.manager == "rpm" and db.readable for db in found.values()
        ):
            found[path] = PackageDatabase(
                "rpm",
                path,
                present[path][1],
                False,
                f"{what}, which is not read without running rpm (only the SQLite rpmdb of "
                "Fedora 33+, RHEL/UBI 9 and Amazon Linux 2023 is)",
            )
    return sorted(found.values(), key=lambda db: (MANAGERS.index(db.manager), db.path))


# --- what assert_absent asks about -----------------------------------------------------------

#: What a package name may look like for each kind of package asked about.
_OS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._~-]*$")
_PYTHON_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.I)
QUERY_KINDS = ("dpkg", "apk", "rpm", "python")


@dataclass(frozen=True)
class PackageQuery:
    """A package asked about: ``gcc`` (any OS package manager's), ``dpkg:gcc`` (dpkg's only),
    ``python:jupyter`` (a Python distribution in any site-packages)."""

    text: str
    name: str
    kind: str | None = None  # None: the image's OS package managers

    @classmethod
    def parse(cls, text: object) -> PackageQuery:
        """Parse ``[KIND:]NAME``; raises :class:`ImageCheckError`, one line, for a value that
        is not a package name.

        >>> PackageQuery.parse("python:Jupyter").kind
        'python'
        """
        forms = (
            'write a name like "gcc", or KIND:NAME with KIND one of dpkg, apk, rpm, python '
            '(e.g. "dpkg:build-essential", "python:jupyter")'
        )
        if not isinstance(text, str) or not text.strip():
            raise ImageCheckError(f"bad package name {text!r}: {forms}")
        kind, sep, name = text.strip().partition(":")
        if not sep:
            kind, name = "", kind
        if sep and kind not in QUERY_KINDS:
            raise ImageCheckError(
                f'bad package name "{text}": "{kind}" is not a kind of package; {forms}'
            )
        pattern = _PYTHON_NAME if kind == "python" else _OS_NAME
        if not pattern.match(name):
            versioned = re.search(r"[<>=!~ ]", name)
            hint = (
                "; a version belongs in assert_versions, not in a package name" if versioned else ""
            )
            what = "Python distribution" if kind == "python" else "package"
            raise ImageCheckError(
                f'bad package name "{text}": "{name}" is not a valid {what} name{hint}; {forms}'
            )
        return cls(text.strip(), name, kind or None)

    def __str__(self) -> str:
        return self.text


def check_python_name(name: object) -> str:
    """``name`` if it is a valid Python distribution name (PEP 508), else a one-line
    :class:`ImageCheckError`.

    >>> check_python_name("torch")
    'torch'
    """
    if isinstance(name, str) and _PYTHON_NAME.match(name):
        return name
    versioned = isinstance(name, str) and re.search(r"[<>=!~ ]", name)
    hint = "; a version belongs in assert_versions" if versioned else ""
    raise ImageCheckError(
        f"bad package name {name!r}: not a valid Python distribution name (letters, digits, "
        f'".", "_" and "-", starting and ending with a letter or digit, like "torch"){hint}'
    )


def default_path(env: Mapping[str, str]) -> list[str]:
    """The folders a command is looked up in: the image's ``PATH``, else Docker's default."""
    value = env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return [folder for folder in value.split(os.pathsep) if folder.startswith("/")]
