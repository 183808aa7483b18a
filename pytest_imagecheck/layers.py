"""The image's filesystem layers, read by streaming ``docker save`` once.

Nothing is held in memory but the file listing (and, on request, the bytes of a few small
files), so a 10 GB image is read in constant memory. The tars are parsed here, not with
:mod:`tarfile`: headers are decoded as they pass, and file data nobody keeps is dropped a
chunk at a time without being copied or hashed, so reading costs about what receiving the
stream costs. The save's ``manifest.json`` places each layer in build order.

Several checks read the layers of one image (wasted bytes, secrets, CUDA facts). Whoever
makes the image says which keep-predicates its reads share (:class:`SharedLayers`): the first
read keeps what each of them wants and serves the others from it, whichever check runs first.

A keep-predicate selects files by name and size; a :class:`Keep` can also select them by
content: while streaming, the first :data:`SNIFF_BYTES` of each small regular file are shown
to its sniffer, and only the files it picks are kept. Files of up to :data:`MAX_KEEP` bytes
are kept; a predicate with a ``max_size`` (:class:`KeepLarge`, for package databases such as
dpkg's status file or an rpmdb) keeps its own files up to that size, and only its own.

Hard links are entries of their own (``kind="hardlink"``, ``linkname`` the absolute path of
the first name, in the same layer): the bytes are stored once, under the first name, and a
kept file's bytes are served under each of its names.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from .errors import ImageCheckError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

#: Decides whether to keep a file's bytes while streaming: ``(path, size) -> bool``.
KeepContent = Callable[[str, int], bool]

#: Decides from a file's first bytes whether to keep all of them: ``head -> bool``.
SniffContent = Callable[[bytes], bool]

#: How much of a small regular file a sniffer sees: the first 16 KiB.
SNIFF_BYTES = 16 * 1024

#: The largest file a keep-predicate keeps, unless it says otherwise (``max_size``); the
#: largest file a sniffer is shown.
MAX_KEEP = 1 << 20


@dataclass(frozen=True)
class Keep:
    """A keep-predicate that also keeps files by their content, whatever they are called.

    Called as ``keep(path, size)`` it is ``by_name``. While a layer streams, each regular file
    of at most ``max_keep`` bytes that ``by_name`` does not select has its first
    :data:`SNIFF_BYTES` shown to ``by_content``; the file is kept when that returns true. The
    sniffer should be cheap (a substring test): it sees every small file of the image.
    """

    by_name: KeepContent
    by_content: SniffContent
    #: Files ``by_name`` selects are kept up to this size (0: :data:`MAX_KEEP`).
    max_size: int = 0

    def __call__(self, path: str, size: int) -> bool:
        return self.by_name(path, size)

    def selects(self, path: str, data: bytes) -> bool:
        """Whether this keep would have kept ``data``, found at ``path``."""
        return self.by_name(path, len(data)) or (
            len(data) <= MAX_KEEP and self.by_content(data[:SNIFF_BYTES])
        )


@dataclass(frozen=True)
class KeepLarge:
    """A keep-predicate whose files may be larger than :data:`MAX_KEEP`: up to ``max_size``.

    For the few files a fact needs whole whatever their size, such as a package database
    (dpkg's status file, apk's installed database, an rpmdb): called as ``keep(path, size)``
    it is ``by_name`` for files of at most ``max_size`` bytes. Read together with other
    predicates (:class:`SharedLayers`), each keeps only up to its own limit.
    """

    by_name: KeepContent
    max_size: int

    def __call__(self, path: str, size: int) -> bool:
        return size <= self.max_size and self.by_name(path, size)


def _limit(keep: KeepContent | None) -> int:
    """The largest file ``keep`` keeps: its ``max_size``, else :data:`MAX_KEEP`."""
    return max(MAX_KEEP, getattr(keep, "max_size", 0) or 0)


@dataclass(frozen=True)
class FileEntry:
    """One entry of a layer's tar: a file, directory, link, ..."""

    path: str  # absolute, e.g. "/app/.env"
    size: int
    mode: int
    uid: int
    gid: int
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    #: A symlink's target as written; a hard link's first name, as an absolute path.
    linkname: str = ""


@dataclass
class LayerContents:
    """What one filesystem layer adds, replaces and deletes."""

    index: int
    diff_id: str
    #: Index into ``ImageUnderTest.layers`` of the history step that made this layer.
    step: int | None = None
    entries: dict[str, FileEntry] = field(default_factory=dict)
    whiteouts: list[str] = field(default_factory=list)  # paths this layer deletes
    opaque_dirs: list[str] = field(default_factory=list)  # dirs whose lower contents it hides
    #: Kept bytes, by path; a hard link to a kept file has them under its own path too.
    contents: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes of regular files in this layer (a hard link's bytes count once)."""
        return sum(e.size for e in self.entries.values() if e.kind == "file")

    @functools.cached_property
    def _removals(self) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        # Read once the layer is complete: the reader fills the lists before any use.
        not_dirs = frozenset(path for path, entry in self.entries.items() if entry.kind != "dir")
        return frozenset(self.whiteouts), frozenset(self.opaque_dirs), not_dirs

    def hides(self, path: str) -> str | None:
        """How this layer removes a lower layer's ``path``: ``"deleted"`` (a ``.wh.`` whiteout
        of the path or a directory above it), ``"hidden"`` (below an opaque directory, whose
        lower contents it hides but not the directory itself), ``"replaced"`` (below a path
        this layer writes as a file or link: a directory replaced so leaves no whiteout), or
        None.

        The overlay rules of the OCI image spec, "Whiteouts" and "Opaque whiteout". Writing
        the same path again is not a removal: see :attr:`entries`.
        """
        deleted, opaque, not_dirs = self._removals
        if path in deleted:
            return "deleted"
        parent = posixpath.dirname(path)
        while True:
            if parent in deleted:
                return "deleted"
            if parent in opaque:
                return "hidden"
            if parent in not_dirs:
                return "replaced"
            if parent in ("/", ""):
                return None
            parent = posixpath.dirname(parent)

    def stored_files(self) -> dict[str, list[str]]:
        """Each regular file's names in this layer: ``{first name: [first name, links...]}``.

        A hard link whose first name this layer does not hold (no ``docker save`` writes
        one) is a name of its own.
        """
        names: dict[str, list[str]] = {}
        for path, entry in self.entries.items():
            if entry.kind == "file":
                names.setdefault(path, []).insert(0, path)
            elif entry.kind == "hardlink":
                target = self.entries.get(entry.linkname)
                first = entry.linkname if target is not None and target.kind == "file" else path
                names.setdefault(first, []).append(path)
        return names


class _ChunkStream(io.RawIOBase):
    """A raw stream over an iterator of byte chunks (the engine's ``docker save`` stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def stream_of(chunks: Iterable[bytes]) -> io.BufferedReader:
    """A file object over byte chunks, for ``tarfile.open(fileobj=..., mode="r|")``."""
    return io.BufferedReader(_ChunkStream(chunks), buffer_size=1 << 20)


_BLOCK = tarfile.BLOCKSIZE  # 512: a tar header, and the unit member data is padded to
_EMPTY = memoryview(b"")
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_NAME_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class _Source:
    """The bytes of a stream of chunks, read forward only.

    Headers and kept files are read exactly (``read``); everything else is skipped a chunk at
    a time without being copied (``skip``), which is what makes a 3 GB image cheap: its large
    files are never looked at. ``offset`` counts the bytes consumed.
    """

    __slots__ = ("_chunks", "_view", "offset")

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._view = _EMPTY
        self.offset = 0

    def _refill(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self._view = memoryview(chunk)
                return True
        return False

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes; fewer only where the stream ends."""
        view = self._view
        if len(view) >= size:
            self._view = view[size:]
            self.offset += size
            return bytes(view[:size])
        parts = []
        missing = size
        while missing and (self._view or self._refill()):
            part = self._view[:missing]
            parts.append(part)
            missing -= len(part)
            self._view = self._view[len(part) :]
        self.offset += size - missing
        return b"".join(parts)

    def skip(self, size: int) -> int:
        """Discard the next ``size`` bytes; how many there were (fewer where the stream ends)."""
        left = size
        while left and (self._view or self._refill()):
            view = self._view
            if len(view) > left:
                self._view = view[left:]
                left = 0
            else:
                left -= len(view)
                self._view = _EMPTY
        self.offset += size - left
        return size - left


def _exact(source: _Source, size: int, where: str) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise ImageCheckError(
            f"the image stream ended inside {where}: {len(data)} of {size} bytes came"
        )
    return data


def _pax_records(data: bytes, where: str) -> dict[str, str]:
    """The ``"%d %s=%s\\n"`` records of a pax extended header (POSIX.1-2001 pax format),
    values decoded as UTF-8 (undecodable bytes kept as surrogates, as :mod:`tarfile` does)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            length = 0
        if space < 0 or length <= space - pos or pos + length > len(data):
            raise ImageCheckError(f"{where}: a pax header record is malformed at byte {pos}")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


class _Header:
    """The fields of a tar header that a layer listing uses (:class:`tarfile.TarInfo`'s names)."""

    __slots__ = ("gid", "linkname", "mode", "name", "size", "type", "uid")

    def __init__(self, name: str, linkname: str, kind: bytes, numbers: Sequence[int]) -> None:
        self.name = name
        self.linkname = linkname
        self.type = kind
        self.mode, self.uid, self.gid, self.size = numbers

    def isfile(self) -> bool:
        return self.type in tarfile.REGULAR_TYPES

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE

    def issym(self) -> bool:
        return self.type == tarfile.SYMTYPE

    def islnk(self) -> bool:
        return self.type == tarfile.LNKTYPE


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _header(block: bytes, where: str, at: int) -> _Header:
    """Decode a 512-byte header as :meth:`tarfile.TarInfo.frombuf` does (POSIX ustar: name
    with its prefix, a directory's trailing slash dropped, the V7 directory as a file named
    with a slash), without the fields a listing does not use.

    Octal number fields and an unsigned checksum are decoded here, about 4x faster than
    ``frombuf`` (a layer of 10,000 small files has 10,000 headers); anything else (base-256
    numbers, a signed checksum, a bad header) goes to ``frombuf``.
    """
    try:
        if block[100] & 0x80 or block[108] & 0x80 or block[116] & 0x80 or block[124] & 0x80:
            raise ValueError("base-256 number")
        numbers = [int(block[i : i + n].split(b"\0", 1)[0] or b"0", 8) for i, n in _NUMBERS]
        checksum = int(block[148:156].split(b"\0", 1)[0] or b"0", 8)
    except ValueError:
        checksum = -1
    if checksum != 256 + sum(block[:148]) + sum(block[156:]):
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ImageCheckError(f"{where} is not a readable tar at byte {at}: {exc}") from None
        return _Header(
            info.name, info.linkname, info.type, (info.mode, info.uid, info.gid, info.size)
        )
    kind = block[156:157]
    name = _text(block[:100])
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        kind = tarfile.DIRTYPE
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    if block[345] and kind not in tarfile.GNU_TYPES:
        name = _text(block[345:500]) + "/" + name
    return _Header(name, _text(block[157:257]), kind, numbers)


#: Offset and length of the number fields a listing uses: mode, uid, gid, size (ustar).
_NUMBERS = ((100, 8), (108, 8), (116, 8), (124, 12))


def _field_number(field: bytes) -> int:
    """A tar number field: octal text, or base-256 (a first byte of 0x80, or 0xff for a
    negative number), as GNU tar and Go write values too large for octal."""
    if field[0] in (0x80, 0xFF):
        number = int.from_bytes(field[1:], "big")
        return number - 256 ** (len(field) - 1) if field[0] == 0xFF else number
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _members(source: _Source, end: int | None, where: str) -> Iterator[tuple[_Header, int, bool]]:
    """Each member of the tar at ``source``'s position: ``(header, stored, sparse)``.

    ``stored`` is the number of data bytes after the header; the caller may read any prefix
    of them, and the rest (and the padding) is skipped when the next member is asked for.
    Pax and GNU long-name headers are applied to the member they precede (name, link name,
    size, uid, gid), as :mod:`tarfile` applies them; a sparse file has its real size and
    ``sparse`` true (its stored bytes are not its contents). The tar ends at a zero block,
    where the stream ends, or at ``end`` (an offset of ``source``: a tar inside a tar).
    Headers are decoded as :meth:`tarfile.TarInfo.frombuf` decodes them (see :func:`_header`).
    """
    global_pax: dict[str, str] = {}
    pax: dict[str, str] = {}
    long_name: str | None = None
    long_link: str | None = None
    while end is None or source.offset + _BLOCK <= end:
        at = source.offset
        block = source.read(_BLOCK)
        if len(block) < _BLOCK:
            if not block:
                return  # the stream ended without the zero blocks: tarfile accepts that too
            raise ImageCheckError(f"the image stream ended inside a header of {where}")
        if block.count(0) == _BLOCK:
            return  # the end-of-archive marker
        info = _header(block, where, at)
        kind = info.type
        stored = info.size
        if kind in _PAX_TYPES or kind in _NAME_TYPES:
            data = _exact(source, stored, where)
            source.skip(-stored % _BLOCK)
            if kind == tarfile.XGLTYPE:
                global_pax.update(_pax_records(data, where))
            elif kind in _PAX_TYPES:
                pax.update(_pax_records(data, where))
            elif kind == tarfile.GNUTYPE_LONGNAME:
                long_name = _text(data)
            else:
                long_link = _text(data)
            continue
        found = {**global_pax, **pax} if global_pax else pax
        if long_name is not None:
            info.name = long_name
        if long_link is not None:
            info.linkname = long_link
        if "path" in found:
            info.name = found["path"]
        if "linkpath" in found:
            info.linkname = found["linkpath"]
        for key in ("size", "uid", "gid"):
            if key in found:
                setattr(info, key, _number(found[key]))
        stored = info.size
        if kind not in tarfile.REGULAR_TYPES and kind in tarfile.SUPPORTED_TYPES:
            stored = 0  # links, directories, devices: tarfile reads no data after them
        sparse = False
        if kind == tarfile.GNUTYPE_SPARSE:  # old GNU sparse: the real size, then map blocks
            sparse = True
            try:
                info.size = _field_number(block[483:495])
            except ValueError:
                raise ImageCheckError(f"{where}: bad sparse header at byte {at}") from None
            extended = block[482]
            while extended:
                extended = _exact(source, _BLOCK, where)[504]
        elif "GNU.sparse.size" in found or "GNU.sparse.realsize" in found:
            sparse = True  # pax sparse formats 0.0, 0.1 and 1.0
            info.name = found.get("GNU.sparse.name", info.name)
            info.size = _number(
                found.get("GNU.sparse.realsize") or found.get("GNU.sparse.size", "")
            )
        pax = {}
        long_name = long_link = None
        start = source.offset
        if end is not None and start + stored > end:
            raise ImageCheckError(f"{where}: {info.name!r} runs past the end of the tar")
        yield info, stored, sparse
        rest = stored + (-stored % _BLOCK) - (source.offset - start)
        if rest > 0 and source.skip(rest) != rest and source.offset - start < stored:
            raise ImageCheckError(f"the image stream ended inside {info.name!r} of {where}")


def _kind(member: _Header) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "other"


def _read_layer(
    source: _Source, end: int | None, keep: KeepContent | None, max_keep: int, where: str
) -> LayerContents:
    """The layer tar at ``source``'s position (see :func:`read_layer`), left at its end."""
    layer = LayerContents(index=-1, diff_id="")
    sniff = keep.by_content if isinstance(keep, Keep) else None
    limit = max(max_keep, getattr(keep, "max_size", 0) or 0)
    for member, _, sparse in _members(source, end, where):
        path = posixpath.normpath("/" + member.name.lstrip("/"))
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base == OPAQUE_MARKER:
            layer.opaque_dirs.append(parent)
            continue
        if base.startswith(WHITEOUT_PREFIX):
            layer.whiteouts.append(posixpath.join(parent, base[len(WHITEOUT_PREFIX) :]))
            continue
        kind = _kind(member)
        linkname = member.linkname
        if kind == "hardlink":
            linkname = posixpath.normpath("/" + linkname.lstrip("/"))
        size = member.size if kind == "file" else 0
        layer.entries[path] = FileEntry(
            path=path,
            size=size,
            mode=member.mode,
            uid=member.uid,
            gid=member.gid,
            kind=kind,
            linkname=linkname,
        )
        if kind == "hardlink" and linkname in layer.contents:
            layer.contents[path] = layer.contents[linkname]  # the same bytes, not a copy
        if kind != "file" or sparse or size > limit or keep is None or not size:
            continue
        if keep(path, size):
            layer.contents[path] = _exact(source, size, path)
        elif sniff is not None and size <= max_keep:
            head = _exact(source, min(size, SNIFF_BYTES), path)
            if sniff(head):
                layer.contents[path] = head + _exact(source, size - len(head), path)
    if end is not None and end > source.offset:
        source.skip(end - source.offset)
    return layer


def read_layer(
    stream: IO[bytes], index: int, keep: KeepContent | None = None, max_keep: int = MAX_KEEP
) -> LayerContents:
    """Read one layer tar from ``stream``, consumed to its end; its diff ID is the sha256 of
    what was read.

    Keeps the bytes of regular files of at most ``max_keep`` bytes (or ``keep``'s own
    ``max_size``, see :class:`KeepLarge`) that ``keep`` selects by name, or, when ``keep``
    is a :class:`Keep`, by their first :data:`SNIFF_BYTES`. The bytes of a sparse file (GNU
    or pax sparse formats) are never kept.
    """
    digest = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            yield chunk

    source = _Source(chunks())
    layer = _read_layer(source, None, keep, max_keep, f"layer {index}")
    while source.skip(1 << 30):
        pass
    layer.index = index
    layer.diff_id = "sha256:" + digest.hexdigest()
    return layer


def read_saved_image(
    chunks: Iterable[bytes],
    diff_ids: list[str],
    keep: KeepContent | None = None,
    image_id: str = "",
) -> list[LayerContents]:
    """Read every layer of a ``docker save`` stream of one image, in build order
    (``diff_ids``' order): :func:`read_saved_images` for one image."""
    return read_saved_images(chunks, {image_id: diff_ids}, keep)[image_id]


def read_saved_images(
    chunks: Iterable[bytes],
    images: Mapping[str, Sequence[str]],
    keep: KeepContent | None = None,
) -> dict[str, list[LayerContents]]:
    """Read the layers of every image in a ``docker save`` stream of several: ``{image ID:
    its layers in build order}``, for ``images``, ``{image ID: its diff IDs}``.

    A save of several images holds each layer once, so a layer the images share is read and
    listed once; the images' lists share its :class:`LayerContents` (treat it as read-only).
    Both save layouts are understood: ``<id>/layer.tar`` (engines before 25; a layer that
    is there twice is a symbolic link to the first) and OCI ``blobs/sha256/<diff ID>``.
    Each layer is parsed as it streams past, its file data skipped unread but for the small
    files ``keep`` selects, and placed at the end by the save's ``manifest.json``: an image's
    ``Layers`` are its diff IDs in order (Docker's save format, "manifest.json"; the engine
    checks each layer against its diff ID as it writes the stream). Without a manifest entry
    for an image, a layer is found by its OCI blob name, which is its diff ID.

    Each image's config (the blob named by its ID) says which history step made each layer:
    the engine's history API leaves that out. An image ID of ``""`` reads no config and
    takes the manifest's only image.

    Raises :class:`ImageCheckError` when the stream is cut short, is not a tar, or holds no
    layer for one of ``diff_ids`` (a save of compressed layers, say).
    """
    wanted = {diff_id for diff_ids in images.values() for diff_id in diff_ids}
    configs = {image_id.removeprefix("sha256:"): image_id for image_id in images if image_id}
    source = _Source(chunks)
    read: dict[str, LayerContents] = {}  # by their path in the save
    links: dict[str, str] = {}
    manifest: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    for member, stored, _ in _members(source, None, "the image stream"):
        name = posixpath.normpath(member.name).lstrip("/")
        base = posixpath.basename(name)
        if member.issym():
            links[name] = posixpath.normpath(
                posixpath.join(posixpath.dirname(name), member.linkname)
            )
            continue
        if not member.isfile():
            continue
        if name.endswith("/layer.tar") or (
            name.startswith("blobs/sha256/") and f"sha256:{base}" in wanted
        ):
            read[name] = _read_layer(source, source.offset + stored, keep, MAX_KEEP, name)
        elif name == "manifest.json":
            manifest = json.loads(_exact(source, stored, name))
        elif (config := configs.get(base.removesuffix(".json"))) is not None:
            histories[config] = json.loads(_exact(source, stored, name)).get("history") or []
    while source.skip(1 << 30):
        pass  # the stream's end (padding after the end-of-archive blocks), so it closes
    listed = {
        posixpath.basename(str(entry.get("Config", ""))).removesuffix(".json"): entry
        for entry in manifest
        if isinstance(entry, dict)
    }
    found: dict[str, list[LayerContents]] = {}
    for image_id, diff_ids in images.items():
        entry = listed.get(image_id.removeprefix("sha256:")) if image_id else None
        if entry is None and not image_id and len(listed) == 1:
            entry = next(iter(listed.values()))
        paths = list(entry.get("Layers") or []) if entry is not None else []
        if len(paths) != len(diff_ids):
            paths = [f"blobs/sha256/{diff_id.removeprefix('sha256:')}" for diff_id in diff_ids]
        history = histories.get(image_id, [])
        steps: list[int | None] = [
            i for i, step in enumerate(history) if not step.get("empty_layer")
        ]
        if len(steps) != len(diff_ids):
            steps = [None] * len(diff_ids)
        found[image_id] = []
        for index, (diff_id, path, step) in enumerate(zip(diff_ids, paths, steps, strict=True)):
            layer = read.get(_resolved(path, links))
            if layer is None:
                shown = image_id[:19] or "the image"
                raise ImageCheckError(
                    f"the engine's save of {shown} holds no readable layer {index} ({diff_id}, "
                    f"listed as {path!r}): only uncompressed layer tars can be read"
                )
            found[image_id].append(replace(layer, index=index, diff_id=diff_id, step=step))
    return found


def _resolved(path: str, links: Mapping[str, str]) -> str:
    """``path`` with the save's symbolic links followed (a repeated layer links to the first)."""
    for _ in range(40):
        if path not in links:
            return path
        path = links[path]
    return path


class LayerPool:
    """The layers of several images (a family's), read together in one stream the first time
    any of them is asked for, so a layer they share is streamed and listed once.

    ``read(keep)`` returns ``{image ID: layers}`` for every image of the pool, keeping the
    bytes ``keep`` selects: the union of the ``keeps`` the pool serves, the keep-predicates
    its images' reads share (see :class:`SharedLayers`). It may stream them, or load what
    another process streamed.
    """

    def __init__(
        self,
        read: Callable[[KeepContent], Mapping[str, list[LayerContents]]],
        keeps: Iterable[KeepContent],
    ) -> None:
        self._read = read
        self.keeps = frozenset(keeps)
        self._layers: Mapping[str, list[LayerContents]] | None = None

    def layers(self, image_id: str) -> list[LayerContents] | None:
        """The layers of ``image_id``; ``None`` when it is not one of the pool's images."""
        if self._layers is None:
            self._layers = self._read(_union(self.keeps))
        return self._layers.get(image_id)


class SharedLayers:
    """One image's layers, read once and shared by every call whose keep-predicate it served.

    The first :meth:`get` reads, keeping the bytes that the ``shared`` predicates and the
    caller's own select; with a ``pool`` that keeps at least what ``shared`` keeps, the pool
    serves the first read without its own predicate instead (``image_id`` is the image).
    A later call with any of those predicates, or none, is served from
    that read; a call with another predicate (an ad-hoc lambda) reads again, and its read
    replaces the one kept. The file listing is shared between callers: treat it as read-only.
    """

    def __init__(
        self,
        shared: Iterable[KeepContent] = (),
        pool: LayerPool | None = None,
        image_id: str = "",
    ) -> None:
        self._shared = frozenset(shared)
        self._layers: list[LayerContents] | None = None
        self._kept_for: frozenset[KeepContent] = frozenset()
        # A pool that keeps at least what this image's shared reads keep serves them.
        self._pool = pool if pool is not None and self._shared <= pool.keeps else None
        self._image_id = image_id

    def get(
        self, keep: KeepContent | None, read: Callable[[KeepContent], list[LayerContents]]
    ) -> list[LayerContents]:
        """The layers, each with only the bytes ``keep`` selects.

        On a miss, ``read(union)`` streams the image, keeping what any of the shared
        predicates or ``keep`` selects.
        """
        if (
            self._layers is None
            and self._pool is not None
            and (keep is None or keep in self._shared)
        ):
            self._layers = self._pool.layers(self._image_id)
            self._kept_for = self._pool.keeps
        if self._layers is None or (keep is not None and keep not in self._kept_for):
            keeps = self._shared | ({keep} if keep is not None else set())
            self._layers = read(_union(keeps))
            self._kept_for = keeps
        return [replace(layer, contents=_selected(layer.contents, keep)) for layer in self._layers]


def _union(keeps: frozenset[KeepContent]) -> KeepContent:
    """One predicate that keeps what any of ``keeps`` keeps, by name or by content, each up
    to its own size limit."""
    limits = [(k, _limit(k)) for k in keeps]
    largest = max((limit for _, limit in limits), default=MAX_KEEP)

    def by_name(path: str, size: int) -> bool:
        return any(size <= limit and k(path, size) for k, limit in limits)

    sniffs = [k.by_content for k in keeps if isinstance(k, Keep)]
    if not sniffs:
        return by_name if largest <= MAX_KEEP else KeepLarge(by_name, largest)
    if len(sniffs) == 1:  # the usual case; it runs once per small file
        return Keep(by_name, sniffs[0], largest)
    return Keep(by_name, lambda head: any(sniff(head) for sniff in sniffs), largest)


def _selected(contents: dict[str, bytes], keep: KeepContent | None) -> dict[str, bytes]:
    if keep is None:
        return {}
    limit = _limit(keep)
    if isinstance(keep, Keep):
        return {
            path: data
            for path, data in contents.items()
            if len(data) <= limit and keep.selects(path, data)
        }
    return {
        path: data
        for path, data in contents.items()
        if len(data) <= limit and keep(path, len(data))
    }


def final_filesystem(layers: Sequence[LayerContents]) -> Iterator[tuple[FileEntry, int]]:
    """Each entry of the merged filesystem with the index of the layer it comes from."""
    live: dict[str, tuple[FileEntry, int]] = {}
    for layer in layers:
        replaces_a_dir = any(
            entry.kind != "dir" and path in live and live[path][0].kind == "dir"
            for path, entry in layer.entries.items()
        )
        if layer.whiteouts or layer.opaque_dirs or replaces_a_dir:
            live = {path: seen for path, seen in live.items() if layer.hides(path) is None}
        for path, entry in layer.entries.items():
            live[path] = (entry, layer.index)
    yield from live.values()
