"""Hard links: one stored file with several names, in wasted bytes and in secret findings.

A layer tar stores a hard-linked file once, under the name it meets first (walk order, not
creation order), and writes each other name as a link entry (tar type LNK) to it. Bytes are
wasted only when no live name reaches them, and each stored copy counts once. What Docker
20.10's overlay2 ``docker save`` writes for each case is asserted on the layers first.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pytest_imagecheck.checks.secrets import Finding, find_secrets
from pytest_imagecheck.checks.size import WastedFile, assert_size_within, wasted_files
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.layers import FileEntry, LayerContents, read_layer

MiB = 1024**2
MAKE = "RUN mkdir /d && dd if=/dev/zero of=/d/a bs=1K count=1024 && ln /d/a /d/b\n"

# What each image adds to the busybox base (three layers: indexes 0-2).
RECIPES = {
    "delete-first-name": MAKE + "RUN rm /d/a\n",
    "delete-link-name": MAKE + "RUN rm /d/b\n",
    # /aa comes first in the tar, so the name made first (/d/z) is the link entry.
    "walk-order": "RUN mkdir /d && dd if=/dev/zero of=/d/z bs=1K count=1024 && ln /d/z /aa\n"
    "RUN rm /aa\n",
    "delete-both-at-once": MAKE + "RUN rm /d/a /d/b\n",
    "delete-both-in-turn": MAKE + "RUN rm /d/a\nRUN rm /d/b\n",
    "delete-directory": MAKE + "RUN rm -rf /d\n",
    # Layer 4 links to a lower file: the engine copies /d/a up, and links /d/c to the copy.
    "link-across-layers": MAKE + "RUN ln /d/a /d/c\nRUN rm /d/a\n",
    "link-across-layers-alone": "RUN mkdir /d && dd if=/dev/zero of=/d/a bs=1K count=1024\n"
    "RUN ln /d/a /d/c\n",
    # Appending through one name copies that name up alone: the link breaks.
    "rewrite-one-name": MAKE + "RUN echo more >> /d/b\nRUN rm /d/a\n",
}


@pytest.fixture(scope="module")
def built(
    client: docker.DockerClient, busybox: str, worker_id: str
) -> Iterator[Callable[[str], ImageUnderTest]]:
    """``built("delete-first-name")``: the image of that recipe, built once; removed at the end."""
    engine = Engine(client, "tests-hardlinks")
    tags: dict[str, str] = {}

    def build(name: str) -> ImageUnderTest:
        if name not in tags:
            tag = f"imagecheck-test/hardlinks-{name}:1-{worker_id}"
            dockerfile = f"FROM {busybox}\n{RECIPES[name]}".encode()
            client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True)
            tags[name] = tag
        return engine.image(tags[name])

    yield build
    for tag in tags.values():
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=True)


def entries(image: ImageUnderTest, index: int, under: str = "/d") -> dict[str, tuple[str, str]]:
    """``path: (kind, linkname)`` of layer ``index``'s entries at or under ``under``."""
    layer = image.layer_contents()[index]
    return {
        path: (entry.kind, entry.linkname)
        for path, entry in layer.entries.items()
        if path == under or path.startswith(under + "/")
    }


# What the engine writes


def test_engine_stores_a_hard_linked_file_once_with_a_link_entry(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("delete-first-name")
    assert entries(image, 3) == {
        "/d": ("dir", ""),
        "/d/a": ("file", ""),
        "/d/b": ("hardlink", "/d/a"),
    }
    assert image.layer_contents()[3].size == MiB
    assert image.layer_contents()[4].whiteouts == ["/d/a"]


def test_engine_links_to_the_name_first_in_walk_order(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("walk-order")
    assert entries(image, 3, "/aa") == {"/aa": ("file", "")}
    assert entries(image, 3)["/d/z"] == ("hardlink", "/aa")


def test_engine_copies_a_lower_file_up_to_link_it_in_a_later_layer(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("link-across-layers")
    layer = image.layer_contents()[4]
    assert entries(image, 4) == {
        "/d": ("dir", ""),
        "/d/a": ("file", ""),
        "/d/c": ("hardlink", "/d/a"),
    }
    assert layer.entries["/d/a"].size == MiB
    assert "/d/b" not in layer.entries  # the lower copy keeps its other name


def test_engine_copies_up_only_the_name_written_through(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("rewrite-one-name")
    assert entries(image, 4) == {"/d": ("dir", ""), "/d/b": ("file", "")}


# Wasted bytes, on the engine


@pytest.mark.parametrize("name", ["delete-first-name", "delete-link-name", "walk-order"])
def test_deleting_one_name_wastes_nothing_while_another_name_lives(
    built: Callable[[str], ImageUnderTest], name: str
) -> None:
    image = built(name)
    assert wasted_files(image.layer_contents()) == []
    assert_size_within(image, wasted=0)


def test_deleting_every_name_at_once_wastes_the_bytes_once(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("delete-both-at-once")
    assert wasted_files(image.layer_contents()) == [
        WastedFile("/d/b", MiB, 3, 4, "deleted", also=("/d/a",))
    ]


def test_deleting_every_name_in_turn_wastes_the_bytes_once_when_the_last_goes(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("delete-both-in-turn")
    assert wasted_files(image.layer_contents()) == [
        WastedFile("/d/b", MiB, 3, 5, "deleted", also=("/d/a",))
    ]


def test_deleting_the_directory_of_both_names_wastes_the_bytes_once(
    built: Callable[[str], ImageUnderTest],
) -> None:
    (wasted,) = wasted_files(built("delete-directory").layer_contents())
    assert (wasted.size, wasted.layer_index, wasted.superseded_by, wasted.how) == (
        MiB,
        3,
        4,
        "deleted",
    )
    assert sorted([wasted.path, *wasted.also]) == ["/d/a", "/d/b"]


def test_a_link_made_in_a_later_layer_wastes_nothing_while_each_copy_has_a_name(
    built: Callable[[str], ImageUnderTest],
) -> None:
    assert wasted_files(built("link-across-layers").layer_contents()) == []


def test_a_link_made_in_a_later_layer_wastes_the_lower_copy_it_replaced(
    built: Callable[[str], ImageUnderTest],
) -> None:
    files = wasted_files(built("link-across-layers-alone").layer_contents())
    assert files == [WastedFile("/d/a", MiB, 3, 4, "overwritten")]


def test_a_name_copied_up_alone_leaves_the_bytes_to_the_other_name(
    built: Callable[[str], ImageUnderTest],
) -> None:
    files = wasted_files(built("rewrite-one-name").layer_contents())
    assert files == [WastedFile("/d/a", MiB, 3, 5, "deleted", also=("/d/b",))]


def test_wasted_listing_names_the_last_name_and_its_hard_links(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("delete-both-at-once")
    with pytest.raises(AssertionError) as failure:
        assert_size_within(image, wasted="100kB")
    message = str(failure.value)
    assert message.startswith(
        f"image {image.ref} wastes 1.05 MB on 1 file copies that later layers overwrite or "
        "delete, budget 100 kB (wasted=100kB); largest layers:\n"
    )
    assert message.endswith(
        "largest wasted files (1 of 1):\n"
        "  1.05 MB  /d/b (hard-linked as /d/a)  deleted by RUN rm /d/a /d/b"
    )


# Wasted bytes, on hand-made layers


def layer(
    index: int,
    files: dict[str, int | str],
    whiteouts: tuple[str, ...] = (),
    opaque: tuple[str, ...] = (),
) -> LayerContents:
    """A layer of regular files (``path: size``) and hard links (``path: "first name"``)."""

    def entry(path: str, spec: int | str) -> FileEntry:
        if isinstance(spec, str):
            return FileEntry(path, 0, 0o644, 0, 0, "hardlink", spec)
        return FileEntry(path, spec, 0o644, 0, 0, "file")

    return LayerContents(
        index,
        f"sha256:{index}",
        entries={path: entry(path, spec) for path, spec in files.items()},
        whiteouts=list(whiteouts),
        opaque_dirs=list(opaque),
    )


def test_a_link_name_overwritten_by_a_file_leaves_the_first_name_live() -> None:
    layers = [layer(0, {"/a": 9, "/b": "/a"}), layer(1, {"/b": 4})]
    assert wasted_files(layers) == []


def test_an_opaque_directory_hiding_one_name_leaves_the_other_live() -> None:
    layers = [layer(0, {"/x/a": 9, "/y/b": "/x/a"}), layer(1, {}, opaque=("/x",))]
    assert wasted_files(layers) == []
    layers.append(layer(2, {}, whiteouts=("/y",)))
    assert wasted_files(layers) == [WastedFile("/y/b", 9, 0, 2, "deleted", also=("/x/a",))]


def test_a_link_entry_to_a_lower_file_keeps_that_copy_live() -> None:
    # No docker save writes this (the engine copies up), but a tar from another tool may.
    layers = [layer(0, {"/a": 9}), layer(1, {"/b": "/a"}), layer(2, {}, whiteouts=("/a",))]
    assert wasted_files(layers) == []


def test_three_names_deleted_one_by_one_waste_one_copy() -> None:
    layers = [
        layer(0, {"/a": 9, "/b": "/a", "/c": "/a"}),
        layer(1, {}, whiteouts=("/b",)),
        layer(2, {}, whiteouts=("/a",)),
        layer(3, {}, whiteouts=("/c",)),
    ]
    assert wasted_files(layers) == [WastedFile("/c", 9, 0, 3, "deleted", also=("/a", "/b"))]


def test_layer_read_records_link_entries_and_serves_kept_bytes_under_each_name() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("app/.env")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"A=b\nC=d"[:7]))
        link = tarfile.TarInfo("srv/.env")
        link.type = tarfile.LNKTYPE
        link.linkname = "app/.env"
        tar.addfile(link)
    buffer.seek(0)
    read = read_layer(buffer, 0, keep=lambda path, size: path.endswith(".env"))
    assert read.entries["/srv/.env"] == FileEntry(
        "/srv/.env", 0, 0o644, 0, 0, "hardlink", "/app/.env"
    )
    assert read.contents["/srv/.env"] is read.contents["/app/.env"]
    assert read.stored_files() == {"/app/.env": ["/app/.env", "/srv/.env"]}
    assert read.size == 7


# Secret findings: one per stored file, under whichever name breaks a rule


@pytest.fixture(scope="module")
def leaky(
    client: docker.DockerClient,
    busybox: str,
    worker_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageUnderTest]:
    """Layer 3: a key at /tmp/k; 4: hard-linked files; 5: deletes one name of the key."""
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = tmp_path_factory.mktemp("hardlinks-secrets")
    (context / "k").write_bytes(key)
    (context / "Dockerfile").write_text(
        f"""FROM {busybox}
COPY k /tmp/k
RUN mkdir -p /app /srv /aaa /opt/a /root \\
 && echo "DB_PASSWORD=Tr0ub4dor-and-3" > /app/.env && ln /app/.env /srv/.env \\
 && echo "API_TOKEN=tok-live-0123" > /aaa/settings && ln /aaa/settings /app/.env.production \\
 && echo "//registry.npmjs.org/:_authToken=npm-0123456789" > /aaa/npm \\
 && ln /aaa/npm /root/.npmrc \\
 && cp /tmp/k /opt/a/one && ln /opt/a/one /opt/a/two && rm /tmp/k
RUN rm /opt/a/one
"""
    )
    tag = f"imagecheck-test/hardlinks-secrets:1-{worker_id}"
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    yield Engine(client, "tests-hardlinks").image(tag)
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(tag, noprune=True)


@pytest.fixture(scope="module")
def findings(leaky: ImageUnderTest) -> dict[str, Finding]:
    return {f.id: f for f in find_secrets(leaky)}


def test_each_hard_linked_secret_is_one_finding(findings: dict[str, Finding]) -> None:
    assert sorted(findings) == [
        "file:/app/.env",
        "file:/app/.env.production",
        "file:/opt/a/one",
        "file:/root/.npmrc",
        "file:/tmp/k",
    ]


def test_a_secret_file_with_two_names_names_its_link(findings: dict[str, Finding]) -> None:
    found = findings["file:/app/.env"]
    assert found.rule == "env-file"
    assert found.where.endswith(", hard-linked as /srv/.env")


def test_a_hard_link_with_a_secret_name_is_found_though_its_first_name_is_plain(
    findings: dict[str, Finding],
) -> None:
    found = findings["file:/app/.env.production"]
    assert found.rule == "env-file"
    assert found.where.endswith(", hard-linked as /aaa/settings")


def test_a_hard_link_whose_content_was_not_read_is_reported_as_not_measured(
    findings: dict[str, Finding],
) -> None:
    found = findings["file:/root/.npmrc"]
    assert found.rule == "npmrc-token"
    assert found.where.endswith(
        ", hard-linked as /aaa/npm: its content was not read (over 1 MiB, or a hard link to "
        "a file read by no name), so whether it holds a credential is not measured"
    )


def test_a_key_deleted_under_one_name_is_still_live_under_its_link(
    leaky: ImageUnderTest, findings: dict[str, Finding]
) -> None:
    found = findings["file:/opt/a/one"]
    assert found.rule == "private-key"
    assert found.where.startswith("in layer 4 (RUN mkdir -p /app")
    assert found.where.endswith(
        ", hard-linked as /opt/a/two, deleted in layer 5, still in the image as /opt/a/two"
    )
    assert leaky.read_file("/opt/a/two").startswith(b"-----BEGIN PRIVATE KEY-----")
