"""The image's filesystem layers, read by streaming ``docker save`` once.

Nothing is held in memory but the file listing (and, on request, the bytes of a few small
files), so a 10 GB image is read in constant memory. Each layer is identified by hashing its
tar as it streams past: the hash is the layer's diff ID, which places it in build order.

Several checks read the layers of one image (wasted bytes, secrets, CUDA facts). Their
keep-predicates are listed in :data:`SHARED_KEEPS`, so the first read keeps what each of them
wants and :class:`SharedLayers` serves the others from it, whichever check runs first.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Any

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

#: Decides whether to keep a file's bytes while streaming: ``(path, size) -> bool``.
KeepContent = Callable[[str, int], bool]

#: The keep-predicates of the checks that read every layer, as ``module.function``: an image's
#: first read keeps what each of them selects, so it serves them all, whichever runs first.
SHARED_KEEPS = (
    "pytest_imagecheck.checks.secrets.keep_file",
    "pytest_imagecheck.cuda.keep_file",
)


@dataclass(frozen=True)
class FileEntry:
    """One entry of a layer's tar: a file, directory, link, ..."""

    path: str  # absolute, e.g. "/app/.env"
    size: int
    mode: int
    uid: int
    gid: int
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
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
    contents: dict[str, bytes] = field(default_factory=dict)  # kept bytes, by path

    @property
    def size(self) -> int:
        """Bytes of regular files in this layer."""
        return sum(e.size for e in self.entries.values() if e.kind == "file")


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


def read_layer(
    stream: IO[bytes], index: int, keep: KeepContent | None = None, max_keep: int = 1 << 20
) -> LayerContents:
    """Read one layer tar from ``stream`` (consumed to its end to fix its diff ID)."""
    hashing = _HashingReader(stream)
    layer = LayerContents(index=index, diff_id="")
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
            entry = FileEntry(
                path=path,
                size=member.size if member.isfile() else 0,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                kind=_kind(member),
                linkname=member.linkname,
            )
            layer.entries[path] = entry
            wanted = entry.kind == "file" and entry.size <= max_keep
            if wanted and keep is not None and keep(path, entry.size):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    layer.contents[path] = extracted.read()
    layer.diff_id = hashing.drain()
    return layer


def read_saved_image(
    chunks: Iterable[bytes],
    diff_ids: list[str],
    keep: KeepContent | None = None,
    image_id: str = "",
) -> list[LayerContents]:
    """Read every layer of a ``docker save`` stream, in build order (``diff_ids``' order).

    Both save layouts are understood: ``<id>/layer.tar`` (engines before 25) and OCI
    ``blobs/sha256/<digest>``. Layers are placed by the digest of their tar, which is their
    diff ID, so the manifest, which may come last in the stream, is not needed. The image
    config (the blob named by ``image_id``) says which history step made each layer: the
    engine's history API leaves that out.
    """
    wanted = set(diff_ids)
    config_name = image_id.removeprefix("sha256:")
    by_digest: dict[str, LayerContents] = {}
    history: list[dict[str, Any]] = []
    with tarfile.open(fileobj=stream_of(chunks), mode="r|") as outer:  # type: ignore[call-overload]
        for member in outer:
            name = posixpath.basename(member.name)
            is_layer = member.name.endswith("/layer.tar") or (
                member.name.startswith("blobs/sha256/") and f"sha256:{name}" in wanted
            )
            is_config = bool(config_name) and name in (config_name, f"{config_name}.json")
            extracted = outer.extractfile(member) if member.isfile() else None
            if extracted is None:
                continue
            if is_layer:
                layer = read_layer(extracted, index=-1, keep=keep)
                by_digest[layer.diff_id] = layer
            elif is_config:
                history = json.load(extracted).get("history") or []
    steps = [i for i, step in enumerate(history) if not step.get("empty_layer")]
    if len(steps) != len(diff_ids):
        steps = [None] * len(diff_ids)  # type: ignore[list-item]
    return [
        replace(by_digest.get(diff_id) or LayerContents(index, diff_id), index=index, step=step)
        for index, (diff_id, step) in enumerate(zip(diff_ids, steps, strict=True))
    ]


class SharedLayers:
    """One image's layers, read once and shared by every call whose keep-predicate it served.

    The first :meth:`get` reads, keeping the bytes that the predicates of
    :data:`SHARED_KEEPS` and the caller's own select. A later call with any of those
    predicates, or none, is served from that read; a call with another predicate (an ad-hoc
    lambda) reads again, and its read replaces the one kept. The file listing is shared
    between callers: treat it as read-only.
    """

    def __init__(self) -> None:
        self._layers: list[LayerContents] | None = None
        self._kept_for: frozenset[KeepContent] = frozenset()

    def get(
        self, keep: KeepContent | None, read: Callable[[KeepContent], list[LayerContents]]
    ) -> list[LayerContents]:
        """The layers, each with only the bytes ``keep`` selects.

        On a miss, ``read(union)`` streams the image, keeping what any of the shared
        predicates or ``keep`` selects.
        """
        if self._layers is None or (keep is not None and keep not in self._kept_for):
            keeps = _shared_keeps() | ({keep} if keep is not None else set())
            self._layers = read(lambda path, size: any(k(path, size) for k in keeps))
            self._kept_for = keeps
        return [replace(layer, contents=_selected(layer.contents, keep)) for layer in self._layers]


@functools.cache
def _shared_keeps() -> frozenset[KeepContent]:
    """The functions :data:`SHARED_KEEPS` names, imported on the first read."""
    targets = (target.rpartition(".") for target in SHARED_KEEPS)
    return frozenset(getattr(importlib.import_module(module), name) for module, _, name in targets)


def _selected(contents: dict[str, bytes], keep: KeepContent | None) -> dict[str, bytes]:
    if keep is None:
        return {}
    return {path: data for path, data in contents.items() if keep(path, len(data))}


def final_filesystem(layers: list[LayerContents]) -> Iterator[tuple[FileEntry, int]]:
    """Each entry of the merged filesystem with the index of the layer it comes from."""
    live: dict[str, tuple[FileEntry, int]] = {}
    for layer in layers:
        for path in layer.opaque_dirs:
            _drop_under(live, path, keep_self=True)
        for path in layer.whiteouts:
            _drop_under(live, path, keep_self=False)
        for path, entry in layer.entries.items():
            live[path] = (entry, layer.index)
    yield from live.values()


def _drop_under(live: dict[str, Any], path: str, *, keep_self: bool) -> list[Any]:
    prefix = path.rstrip("/") + "/"
    doomed = [p for p in live if p.startswith(prefix) or (p == path and not keep_self)]
    return [live.pop(p) for p in doomed]
