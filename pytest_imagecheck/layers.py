"""The image's filesystem layers, read by streaming ``docker save`` once.

Nothing is held in memory but the file listing (and, on request, the bytes of a few small
files), so a 10 GB image is read in constant memory. Each layer is identified by hashing its
tar as it streams past: the hash is the layer's diff ID, which places it in build order.

Several checks read the layers of one image (wasted bytes, secrets, CUDA facts). Whoever
makes the image says which keep-predicates its reads share (:class:`SharedLayers`): the first
read keeps what each of them wants and serves the others from it, whichever check runs first.

A keep-predicate selects files by name and size; a :class:`Keep` can also select them by
content: while streaming, the first :data:`SNIFF_BYTES` of each small regular file are shown
to its sniffer, and only the files it picks are kept. Hard links are entries of their own
(``kind="hardlink"``, ``linkname`` the absolute path of the first name, in the same layer):
the bytes are stored once, under the first name, and a kept file's bytes are served under
each of its names.
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

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

#: Decides whether to keep a file's bytes while streaming: ``(path, size) -> bool``.
KeepContent = Callable[[str, int], bool]

#: Decides from a file's first bytes whether to keep all of them: ``head -> bool``.
SniffContent = Callable[[bytes], bool]

#: How much of a small regular file a sniffer sees: the first 16 KiB.
SNIFF_BYTES = 16 * 1024


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

    def __call__(self, path: str, size: int) -> bool:
        return self.by_name(path, size)

    def selects(self, path: str, data: bytes) -> bool:
        """Whether this keep would have kept ``data``, found at ``path``."""
        return self.by_name(path, len(data)) or self.by_content(data[:SNIFF_BYTES])


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


class _HashingReader:
    """A read-only stream that hashes what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return "sha256:" + self.digest.hexdigest()


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


def _kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "other"


def _sniffed(tar: tarfile.TarFile, member: tarfile.TarInfo, sniff: SniffContent) -> bytes | None:
    """All of ``member``'s data when ``sniff`` picks its first :data:`SNIFF_BYTES`, else None.

    A stream read (``mode="r|"``) stands at the member's data after ``next()``, so the data is
    read straight from the stream: a file object per file (``extractfile``) would cost more
    than the read, for tens of thousands of small files. A small file is read with its
    padding to the next 512-byte block, so ``next()`` finds the next header and skips nothing.
    """
    stream = tar.fileobj
    size = member.size
    if stream is None or member.sparse is not None or stream.tell() != member.offset_data:
        extracted = tar.extractfile(member)
        head = extracted.read(SNIFF_BYTES) if extracted is not None else b""
        return head + extracted.read() if extracted is not None and sniff(head) else None
    padded = size + (-size % tarfile.BLOCKSIZE)
    if padded <= SNIFF_BYTES:
        data = stream.read(padded)[:size]
        return data if sniff(data) else None
    head = stream.read(SNIFF_BYTES)
    return head + stream.read(size - len(head)) if sniff(head) else None


def read_layer(
    stream: IO[bytes], index: int, keep: KeepContent | None = None, max_keep: int = 1 << 20
) -> LayerContents:
    """Read one layer tar from ``stream`` (consumed to its end to fix its diff ID).

    Keeps the bytes of regular files of at most ``max_keep`` bytes that ``keep`` selects by
    name, or, when ``keep`` is a :class:`Keep`, by their first :data:`SNIFF_BYTES`.
    """
    hashing = _HashingReader(stream)
    layer = LayerContents(index=index, diff_id="")
    sniff = keep.by_content if isinstance(keep, Keep) else None
    with tarfile.open(fileobj=hashing, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
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
            entry = FileEntry(
                path=path,
                size=member.size if kind == "file" else 0,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                kind=kind,
                linkname=linkname,
            )
            layer.entries[path] = entry
            if kind == "hardlink" and linkname in layer.contents:
                layer.contents[path] = layer.contents[linkname]  # the same bytes, not a copy
            if kind != "file" or entry.size > max_keep or keep is None or not entry.size:
                continue
            if keep(path, entry.size):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    layer.contents[path] = extracted.read()
            elif sniff is not None:
                data = _sniffed(tar, member, sniff)
                if data is not None:
                    layer.contents[path] = data
    layer.diff_id = hashing.drain()
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
    Both save layouts are understood: ``<id>/layer.tar`` (engines before 25) and OCI
    ``blobs/sha256/<digest>``. Layers are placed by the digest of their tar, which is their
    diff ID, so the manifest, which may come last in the stream, is not needed. Each image's
    config (the blob named by its ID) says which history step made each layer: the engine's
    history API leaves that out. An image ID of ``""`` reads no config.
    """
    wanted = {diff_id for diff_ids in images.values() for diff_id in diff_ids}
    configs = {image_id.removeprefix("sha256:"): image_id for image_id in images if image_id}
    by_digest: dict[str, LayerContents] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    with tarfile.open(fileobj=stream_of(chunks), mode="r|") as outer:
        for member in outer:
            name = posixpath.basename(member.name)
            is_layer = member.name.endswith("/layer.tar") or (
                member.name.startswith("blobs/sha256/") and f"sha256:{name}" in wanted
            )
            config = configs.get(name.removesuffix(".json"))
            extracted = outer.extractfile(member) if member.isfile() else None
            if extracted is None:
                continue
            if is_layer:
                layer = read_layer(extracted, index=-1, keep=keep)
                by_digest[layer.diff_id] = layer
            elif config is not None:
                histories[config] = json.load(extracted).get("history") or []
    found: dict[str, list[LayerContents]] = {}
    for image_id, diff_ids in images.items():
        history = histories.get(image_id, [])
        steps: list[int | None] = [
            i for i, step in enumerate(history) if not step.get("empty_layer")
        ]
        if len(steps) != len(diff_ids):
            steps = [None] * len(diff_ids)
        found[image_id] = [
            replace(by_digest.get(diff_id) or LayerContents(index, diff_id), index=index, step=step)
            for index, (diff_id, step) in enumerate(zip(diff_ids, steps, strict=True))
        ]
    return found


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
    """One predicate that keeps what any of ``keeps`` keeps, by name or by content."""

    def by_name(path: str, size: int) -> bool:
        return any(k(path, size) for k in keeps)

    sniffs = [k.by_content for k in keeps if isinstance(k, Keep)]
    if not sniffs:
        return by_name
    if len(sniffs) == 1:  # the usual case; it runs once per small file
        return Keep(by_name, sniffs[0])
    return Keep(by_name, lambda head: any(sniff(head) for sniff in sniffs))


def _selected(contents: dict[str, bytes], keep: KeepContent | None) -> dict[str, bytes]:
    if keep is None:
        return {}
    if isinstance(keep, Keep):
        return {path: data for path, data in contents.items() if keep.selects(path, data)}
    return {path: data for path, data in contents.items() if keep(path, len(data))}


def final_filesystem(layers: list[LayerContents]) -> Iterator[tuple[FileEntry, int]]:
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
