"""The layer reader parses ``docker save`` itself (not with :mod:`tarfile`) and places layers
by the save's manifest (not by hashing them): its listing must be the one tarfile gives, for
every header format, and a save it cannot read completely must be an error, never a shorter
listing. Synthetic tars for the formats and the layouts; a real save for what the engine
writes.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Iterator

import docker
import pytest

from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.layers import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    FileEntry,
    Keep,
    LayerContents,
    read_layer,
    read_saved_image,
    read_saved_images,
)

KiB = 1024
#: A directory path of 173 bytes: longer than a ustar name field (100 bytes).
DEEP = "/".join(["a-rather-long-directory-name"] * 6)


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def _layer_tar(tar_format: int) -> bytes:
    """A layer with every kind of entry and the names and numbers that need extended headers
    (long names and link targets, non-ASCII names, a uid too large for octal)."""
    deep = DEEP
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        _add(tar, "etc/", type=tarfile.DIRTYPE, mode=0o755)
        _add(tar, "etc/app.conf", b"KEY=value\n", uid=1000, gid=1000)
        _add(tar, "etc/empty")
        for size in (1, 511, 512, 513, 20 * KiB):
            _add(tar, f"data/{size}.bin", bytes([size % 251]) * size)
        _add(tar, f"{deep}/model.bin", b"\x00" * (3 * KiB))
        _add(tar, f"{deep}/.env", b"DB_PASSWORD=hunter2-but-longer\n")
        _add(tar, "srv/caf\u00e9/men\u00fc.txt", b"coffee\n")
        _add(tar, "srv/link", type=tarfile.SYMTYPE, linkname=f"../{deep}/model.bin")
        _add(tar, "srv/.env", type=tarfile.LNKTYPE, linkname=f"{deep}/.env")
        _add(tar, "dev/fifo", type=tarfile.FIFOTYPE)
        _add(tar, "opt/big-uid", b"x", uid=3_000_000, gid=3_000_000)
        _add(tar, f"var/{WHITEOUT_PREFIX}old.log")
        _add(tar, f"opt/cache/{OPAQUE_MARKER}")
    return buffer.getvalue()


def _tarfile_listing(data: bytes, keep: Callable[[str, int], bool]) -> LayerContents:
    """What the reader gave when it read with :mod:`tarfile`: the reference listing."""
    layer = LayerContents(index=0, diff_id="sha256:" + hashlib.sha256(data).hexdigest())
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for member in tar:
            path = posixpath.normpath("/" + member.name.lstrip("/"))
            base, parent = posixpath.basename(path), posixpath.dirname(path)
            if base == OPAQUE_MARKER:
                layer.opaque_dirs.append(parent)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                layer.whiteouts.append(posixpath.join(parent, base[len(WHITEOUT_PREFIX) :]))
                continue
            kind = (
                "file"
                if member.isfile()
                else "dir"
                if member.isdir()
                else "symlink"
                if member.issym()
                else "hardlink"
                if member.islnk()
                else "other"
            )
            linkname = member.linkname
            if kind == "hardlink":
                linkname = posixpath.normpath("/" + linkname.lstrip("/"))
            size = member.size if kind == "file" else 0
            layer.entries[path] = FileEntry(
                path, size, member.mode, member.uid, member.gid, kind, linkname
            )
            if kind == "hardlink" and linkname in layer.contents:
                layer.contents[path] = layer.contents[linkname]
            if kind == "file" and 0 < size <= 1 << 20 and keep(path, size):
                extracted = tar.extractfile(member)
                assert extracted is not None
                layer.contents[path] = extracted.read()
    return layer


def _listed(layer: LayerContents) -> tuple[object, ...]:
    return (layer.diff_id, layer.entries, layer.whiteouts, layer.opaque_dirs, layer.contents)


def _keep_env_and_conf(path: str, size: int) -> bool:
    return path.endswith((".env", ".conf", ".txt"))


@pytest.mark.parametrize(
    "tar_format",
    [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
    ids=["ustar", "gnu", "pax"],
)
def test_layer_listing_is_tarfiles_for_every_header_format(tar_format: int) -> None:
    if tar_format == tarfile.USTAR_FORMAT:
        # ustar has no extended headers: names up to 255 bytes, octal numbers only.
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
            _add(tar, "x" * 80 + "/" + "y" * 60 + "/name.conf", b"kept")
            _add(tar, "etc/app.conf", b"A=b\n", uid=2_000_000)
            _add(tar, "etc/dir/", type=tarfile.DIRTYPE)
        data = buffer.getvalue()
    else:
        data = _layer_tar(tar_format)
    read = read_layer(io.BytesIO(data), 0, keep=_keep_env_and_conf)
    assert _listed(read) == _listed(_tarfile_listing(data, _keep_env_and_conf))
    if tar_format != tarfile.USTAR_FORMAT:
        assert read.entries["/opt/big-uid"].uid == 3_000_000
        assert read.contents["/srv/caf\u00e9/men\u00fc.txt"] == b"coffee\n"
        assert read.contents["/srv/.env"] is read.contents[f"/{DEEP}/.env"]


def test_sniffer_sees_the_first_bytes_of_each_small_file_and_its_pick_is_kept_whole() -> None:
    data = _layer_tar(tarfile.PAX_FORMAT)
    seen: list[int] = []
    marker = bytes([20 * KiB % 251])  # the first byte of data/20480.bin alone

    def sniff(head: bytes) -> bool:
        seen.append(len(head))
        return head[:1] == marker

    read = read_layer(io.BytesIO(data), 0, keep=Keep(lambda path, size: False, sniff))
    assert read.contents == {"/data/20480.bin": marker * (20 * KiB)}
    assert max(seen) == 16 * KiB  # at most SNIFF_BYTES of a file
    assert 1 in seen and 513 in seen


def _save(
    layers: list[bytes],
    *,
    layout: str = "legacy",
    order: list[int] | None = None,
    repeat_first_at: int | None = None,
) -> tuple[bytes, str, list[str]]:
    """A ``docker save`` of one image with ``layers`` (build order): ``(stream, image ID,
    diff IDs)``. Legacy: ``<dir>/layer.tar`` written in ``order`` and the manifest last; a
    layer at ``repeat_first_at`` repeats the first as a symbolic link, as engine 20.10 saves a
    repeated diff ID. OCI: ``blobs/sha256/<diff ID>``."""
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    history = [{"created_by": f"RUN step {i}"} for i in range(len(layers))]
    history.insert(1, {"created_by": "ENV A=b", "empty_layer": True})
    config = json.dumps({"rootfs": {"diff_ids": diff_ids}, "history": history}).encode()
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if layout == "oci":
            paths = [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in diff_ids]
            for path, layer in zip(paths, layers, strict=True):
                _add(tar, path, layer)
            config_name = f"blobs/sha256/{image_id.removeprefix('sha256:')}"
            _add(tar, config_name, config)
        else:
            paths = [
                f"{hashlib.sha256(str(i).encode()).hexdigest()}/layer.tar"
                for i in range(len(layers))
            ]
            for i in order or range(len(layers)):
                _add(tar, posixpath.dirname(paths[i]) + "/", type=tarfile.DIRTYPE)
                if i == repeat_first_at:
                    _add(tar, paths[i], type=tarfile.SYMTYPE, linkname=f"../{paths[0]}")
                else:
                    _add(tar, paths[i], layers[i])
            config_name = f"{image_id.removeprefix('sha256:')}.json"
            _add(tar, config_name, config)
        manifest = [{"Config": config_name, "RepoTags": None, "Layers": paths}]
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return buffer.getvalue(), image_id, diff_ids


def _layer(*files: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            _add(tar, name, data)
    return buffer.getvalue()


def _chunks(data: bytes, size: int = 32 * KiB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


LAYERS = [
    _layer(("bin/sh", b"\x7fELF" + bytes(4000))),
    _layer(("app/model.bin", bytes(100 * KiB)), ("app/.env", b"TOKEN=abc\n")),
    _layer(("app/model.bin", bytes(50 * KiB))),
]


def test_saved_layers_are_placed_by_the_manifest_whatever_order_they_stream_in() -> None:
    stream, image_id, diff_ids = _save(LAYERS, order=[2, 0, 1])
    read = read_saved_image(_chunks(stream, 7_000), diff_ids, image_id=image_id)
    assert [sorted(layer.entries) for layer in read] == [
        ["/bin/sh"],
        ["/app/.env", "/app/model.bin"],
        ["/app/model.bin"],
    ]
    assert [layer.diff_id for layer in read] == diff_ids
    assert [layer.step for layer in read] == [0, 2, 3]  # history step 1 made no layer


def test_saved_layers_are_placed_by_position_not_by_hashing_their_bytes() -> None:
    """The engine checks each layer against its diff ID as it writes the save; the reader
    trusts the manifest's order and does not hash 3 GB again."""
    stream, image_id, _ = _save(LAYERS)
    listed = [f"sha256:{str(i) * 64}" for i in range(3)]  # not the tars' digests
    read = read_saved_image(_chunks(stream), listed, image_id=image_id)
    assert [layer.diff_id for layer in read] == listed
    assert read[2].entries["/app/model.bin"].size == 50 * KiB


def test_a_layer_saved_twice_is_read_through_its_symbolic_link() -> None:
    layers = [*LAYERS, LAYERS[0]]
    stream, image_id, diff_ids = _save(layers, repeat_first_at=3)
    read = read_saved_image(_chunks(stream), diff_ids, image_id=image_id)
    assert read[3].entries == read[0].entries
    assert read[3].index == 3


def test_oci_layout_layers_are_found_by_their_blob_names() -> None:
    stream, image_id, diff_ids = _save(LAYERS, layout="oci")
    keep = lambda path, size: path.endswith(".env")  # noqa: E731
    read = read_saved_images(_chunks(stream), {image_id: diff_ids}, keep)[image_id]
    assert [len(layer.entries) for layer in read] == [1, 2, 1]
    assert read[1].contents == {"/app/.env": b"TOKEN=abc\n"}
    assert [layer.step for layer in read] == [0, 2, 3]


def test_a_stream_cut_inside_a_layer_is_an_error_not_a_shorter_listing() -> None:
    stream, image_id, diff_ids = _save(LAYERS)
    cut = stream.index(bytes(100 * KiB)) + 10 * KiB  # inside app/model.bin of layer 1
    with pytest.raises(ImageCheckError, match="stream ended inside"):
        read_saved_image(_chunks(stream[:cut]), diff_ids, image_id=image_id)


def test_a_save_without_a_readable_tar_of_a_layer_is_an_error_not_an_empty_layer() -> None:
    stream, image_id, diff_ids = _save(LAYERS, layout="oci")
    compressed = [*diff_ids[:2], "sha256:" + "f" * 64]  # as if the blob were gzipped
    with pytest.raises(ImageCheckError, match=r"no readable layer 2 \(sha256:f{64}"):
        read_saved_image(_chunks(stream), compressed, image_id=image_id)


def test_a_save_that_is_not_a_tar_is_an_error() -> None:
    with pytest.raises(ImageCheckError, match="not a readable tar"):
        read_saved_image(_chunks(b"HTTP/1.1 500 oops\r\n" * 100), ["sha256:" + "0" * 64])


# What the engine writes: a real save, against the listing tarfile gives of the same layers.

RECIPE = """FROM {busybox}
RUN mkdir -p /opt/{deep} /srv/caf\u00e9 /var/cache/app \\
 && echo "DB_PASSWORD=Tr0ub4dor-and-3-horses" > /opt/{deep}/.env \\
 && ln /opt/{deep}/.env /srv/.env \\
 && echo coffee > /srv/caf\u00e9/men\u00fc.txt \\
 && dd if=/dev/zero of=/opt/{deep}/model.bin bs=1K count=300 2>/dev/null \\
 && echo old > /var/cache/app/old.log && echo keep > /var/log.txt \\
 && chown 3000000:3000000 /srv/caf\u00e9/men\u00fc.txt
RUN rm /var/log.txt && rm -rf /var/cache/app && mkdir /var/cache/app \\
 && echo new > /var/cache/app/new.log \\
 && dd if=/dev/zero of=/opt/{deep}/model.bin bs=1K count=200 2>/dev/null
"""


@pytest.fixture(scope="module")
def formats_image(build_image: Callable[..., str], busybox: str, worker_id: str) -> str:
    return build_image(
        RECIPE.format(busybox=busybox, deep=DEEP),
        tag=f"imagecheck-test/layer-formats:1-{worker_id}",
    )


def test_layers_of_a_real_save_are_the_ones_tarfile_lists(
    client: docker.DockerClient, formats_image: str
) -> None:
    engine = Engine(client, "tests-layers-stream")
    image = engine.image(formats_image)
    keep = _keep_env_and_conf
    read = read_saved_image(engine.save(image.id), image.diff_ids, keep=keep, image_id=image.id)
    # The reference: every layer.tar of a second save, through tarfile, placed by its hash.
    reference: dict[str, LayerContents] = {}
    saved = io.BytesIO(b"".join(client.api.get_image(image.id)))
    with tarfile.open(fileobj=saved) as outer:
        for member in outer:
            if member.name.endswith("/layer.tar") and member.isfile():
                extracted = outer.extractfile(member)
                assert extracted is not None
                layer = _tarfile_listing(extracted.read(), keep)
                reference[layer.diff_id] = layer
    assert [_listed(layer) for layer in read] == [_listed(reference[d]) for d in image.diff_ids]
    top, below = read[-1], read[-2]
    assert "/var/log.txt" in top.whiteouts
    assert "/var/cache/app" in top.opaque_dirs
    menu = below.entries["/srv/caf\u00e9/men\u00fc.txt"]
    assert (menu.uid, menu.gid) == (3_000_000, 3_000_000)
    assert below.entries["/srv/.env"].kind == "hardlink"
