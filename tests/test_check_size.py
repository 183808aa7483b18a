"""assert_size_within: total and layer budgets, wasted bytes and growth over a baseline."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from pytest_imagecheck.checks.size import (
    WastedFile,
    assert_size_within,
    read_size_baseline,
    wasted_files,
    write_size_baseline,
)
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import collecting
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.layers import FileEntry, LayerContents
from pytest_imagecheck.units import format_size

KiB, MiB = 1024, 1024**2

# What each image adds to the busybox base (three layers: indexes 0-2).
RECIPES = {
    "small": "FROM {busybox}\nRUN dd if=/dev/zero of=/big bs=1M count=5\n",
    "grown-2mb": "FROM {small}\nRUN dd if=/dev/zero of=/more bs=1M count=2\n",
    "grown-20mb": "FROM {small}\nRUN dd if=/dev/zero of=/more bs=1M count=20\n",
    # Layer 3 writes everything; layer 4 overwrites and deletes; layer 5 hides /data/opq.
    "wasted": """FROM {busybox}
RUN mkdir -p /data/tree/a/b /data/opq \\
 && dd if=/dev/zero of=/data/over bs=1K count=100 \\
 && dd if=/dev/zero of=/data/gone bs=1K count=200 \\
 && dd if=/dev/zero of=/data/tree/a/b/f1 bs=1K count=300 \\
 && dd if=/dev/zero of=/data/tree/f2 bs=1K count=400 \\
 && dd if=/dev/zero of=/data/opq/old bs=1K count=500 \\
 && dd if=/dev/zero of=/data/thrice bs=1M count=1
ENV NOT_A_LAYER=1
RUN dd if=/dev/zero of=/data/over bs=1K count=150 \\
 && rm /data/gone && rm -rf /data/tree \\
 && dd if=/dev/zero of=/data/thrice bs=1M count=1
RUN rm -rf /data/opq && mkdir /data/opq && echo new > /data/opq/new \\
 && dd if=/dev/zero of=/data/thrice bs=1M count=1
""",
    "root-delete": "FROM {busybox}\nRUN dd if=/dev/zero of=/gone bs=1K count=10\nRUN rm /gone\n",
    "huge": "FROM {busybox}\nRUN mkdir /data && dd if=/dev/zero of=/data/huge bs=1M count=200\n"
    "RUN rm /data/huge\n",
}
WASTED_BYTES = (100 + 200 + 300 + 400 + 500) * KiB + 2 * MiB


@pytest.fixture(scope="module")
def engine(client: docker.DockerClient) -> Engine:
    return Engine(client, "tests-size")


@pytest.fixture(scope="module")
def built(
    client: docker.DockerClient, busybox: str, engine: Engine, worker_id: str
) -> Iterator[Callable[[str], ImageUnderTest]]:
    """``built("small")``: the image of ``RECIPES["small"]``, built once; removed at the end."""
    tags: dict[str, str] = {"busybox": busybox}

    def build(name: str) -> ImageUnderTest:
        if name not in tags:
            if name.startswith("grown"):
                build("small")
            # One tag per xdist worker: a worker's teardown must not untag another's image.
            tag = f"imagecheck-test/size-{name}:1-{worker_id}"
            dockerfile = RECIPES[name].format(**tags).encode()
            client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True)
            tags[name] = tag
        return engine.image(tags[name])

    yield build
    for tag in reversed([t for name, t in tags.items() if name != "busybox"]):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=True)


@pytest.fixture(scope="module")
def small(built: Callable[[str], ImageUnderTest]) -> ImageUnderTest:
    return built("small")


@pytest.fixture(scope="module")
def wasted_image(built: Callable[[str], ImageUnderTest]) -> ImageUnderTest:
    return built("wasted")


@pytest.fixture(scope="module")
def wasted(wasted_image: ImageUnderTest) -> list[WastedFile]:
    return wasted_files(wasted_image.layer_contents())


def copies(wasted: list[WastedFile], path: str) -> list[tuple[int, int, int, str]]:
    """``(size, layer_index, superseded_by, how)`` of each wasted copy of ``path``."""
    return [(f.size, f.layer_index, f.superseded_by, f.how) for f in wasted if f.path == path]


# Total and largest layer


def test_total_within_budget_passes_in_decimal_and_binary_units(small: ImageUnderTest) -> None:
    assert 7_000_000 < small.size < 7 * MiB
    assert_size_within(small, total="8MB")
    assert_size_within(small, total="7MiB")
    assert_size_within(small, total=small.size)


def test_total_over_budget_says_size_budget_and_largest_layers(small: ImageUnderTest) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_size_within(small, total="5MB")
    lines = str(failure.value).splitlines()
    assert lines[0] == (
        f"image {small.ref} is {format_size(small.size)}, budget 5 MB (total=5MB); largest layers:"
    )
    assert lines[1] == "  5.24 MB  RUN dd if=/dev/zero of=/big bs=1M count=5"
    assert lines[2].startswith("  1.98 MB  COPY file:")
    assert len(lines) == 5  # the three non-empty layers of busybox, and /big


def test_layer_budget_names_the_instruction_of_the_largest_layer(small: ImageUnderTest) -> None:
    assert_size_within(small, layer="6MB")
    with pytest.raises(AssertionError) as failure:
        assert_size_within(small, layer="4MB", total="10MB")
    assert str(failure.value).startswith(
        f"image {small.ref} has a 5.24 MB layer, budget 4 MB (layer=4MB), made by "
        "RUN dd if=/dev/zero of=/big bs=1M count=5; largest layers:\n"
    )


def test_every_failed_budget_is_named_in_one_message(small: ImageUnderTest) -> None:
    with pytest.raises(
        AssertionError, match=r"is 7\.\d+ MB, .*\(total=5MB\); has a 5\.24 MB layer"
    ):
        assert_size_within(small, total="5MB", layer="4MB")


def test_evidence_is_recorded_even_when_the_check_fails(small: ImageUnderTest) -> None:
    with collecting() as evidence, pytest.raises(AssertionError):
        assert_size_within(small, total="5MB", layer="6MB")
    assert [e.check for e in evidence] == ["size"]
    assert evidence[0].facts == {
        "size_bytes": small.size,
        "largest_layer_bytes": 5 * MiB,
        "largest_layer_instruction": "RUN dd if=/dev/zero of=/big bs=1M count=5",
        "size_budget_bytes": 5_000_000,
        "layer_budget_bytes": 6_000_000,
    }


# Budgets the check refuses before measuring anything


def test_malformed_budget_is_a_one_line_error_naming_the_argument(small: ImageUnderTest) -> None:
    with pytest.raises(ImageCheckError, match=r'^total: bad size "2\.5XB": use bytes or') as error:
        assert_size_within(small, total="2.5XB")
    assert "\n" not in str(error.value)
    with pytest.raises(ImageCheckError, match=r"^growth_floor: bad size -1"):
        assert_size_within(small, total="1GB", growth_floor=-1)


@pytest.mark.parametrize(("argument", "value"), [("total", 0), ("layer", "0MB")])
def test_zero_budget_is_refused_with_the_fix(
    small: ImageUnderTest, argument: str, value: int | str
) -> None:
    with pytest.raises(
        ImageCheckError, match=rf'^{argument}={value} allows 0 bytes, .* e\.g\. {argument}="2\.5GB"'
    ):
        assert_size_within(small, **{argument: value})  # type: ignore[arg-type]


def test_zero_wasted_is_a_real_budget(small: ImageUnderTest) -> None:
    assert_size_within(small, wasted=0)


def test_negative_or_bare_number_growth_is_refused(small: ImageUnderTest, tmp_path: Path) -> None:
    path = tmp_path / "size.json"
    write_size_baseline(small, path)
    with pytest.raises(ImageCheckError, match=r'^growth="-5%" is negative, .*growth="10%"'):
        assert_size_within(small, baseline=path, growth="-5%")
    with pytest.raises(ImageCheckError, match=r"^growth=0\.1 is ambiguous .*growth=\"10%\""):
        assert_size_within(small, baseline=path, growth=0.1)  # type: ignore[arg-type]
    with pytest.raises(ImageCheckError, match=r'^bad growth "ten percent"'):
        assert_size_within(small, baseline=path, growth="ten percent")


def test_growth_and_baseline_need_each_other(small: ImageUnderTest, tmp_path: Path) -> None:
    with pytest.raises(ImageCheckError, match=r"^assert_size_within: growth= needs baseline="):
        assert_size_within(small, growth="10%")
    with pytest.raises(ImageCheckError, match=r"^assert_size_within: baseline= needs growth="):
        assert_size_within(small, baseline=tmp_path / "size.json")


def test_checking_nothing_is_an_error(small: ImageUnderTest) -> None:
    with pytest.raises(ImageCheckError, match="checks nothing: pass total=, layer=, wasted="):
        assert_size_within(small)


# Wasted bytes, on a real image


def test_wasted_counts_an_overwritten_file(wasted: list[WastedFile]) -> None:
    assert copies(wasted, "/data/over") == [(100 * KiB, 3, 4, "overwritten")]


def test_wasted_counts_a_file_deleted_by_a_whiteout(wasted: list[WastedFile]) -> None:
    assert copies(wasted, "/data/gone") == [(200 * KiB, 3, 4, "deleted")]


def test_wasted_counts_the_whole_subtree_of_a_deleted_directory(wasted: list[WastedFile]) -> None:
    under_tree = sorted(f.path for f in wasted if f.path.startswith("/data/tree/"))
    assert under_tree == ["/data/tree/a/b/f1", "/data/tree/f2"]
    assert copies(wasted, "/data/tree/a/b/f1") == [(300 * KiB, 3, 4, "deleted")]
    assert copies(wasted, "/data/tree/f2") == [(400 * KiB, 3, 4, "deleted")]


def test_wasted_counts_files_an_opaque_directory_hides(
    wasted_image: ImageUnderTest, wasted: list[WastedFile]
) -> None:
    assert wasted_image.layer_contents()[5].opaque_dirs == ["/data/opq"]
    assert copies(wasted, "/data/opq/old") == [(500 * KiB, 3, 5, "hidden")]
    assert copies(wasted, "/data/opq/new") == []


def test_wasted_counts_each_superseded_copy_once_not_the_survivor(
    wasted: list[WastedFile],
) -> None:
    assert copies(wasted, "/data/thrice") == [
        (MiB, 3, 4, "overwritten"),
        (MiB, 4, 5, "overwritten"),
    ]


def test_wasted_counts_a_file_deleted_at_the_root(built: Callable[[str], ImageUnderTest]) -> None:
    files = wasted_files(built("root-delete").layer_contents())
    assert files == [WastedFile("/gone", 10 * KiB, 3, 4, "deleted")]


def test_wasted_over_budget_lists_files_and_the_layer_that_superseded_them(
    wasted_image: ImageUnderTest,
) -> None:
    with collecting() as evidence:
        assert_size_within(wasted_image, wasted="4MB")
    assert evidence[0].facts["wasted_bytes"] == WASTED_BYTES
    with pytest.raises(AssertionError) as failure:
        assert_size_within(wasted_image, wasted="1MB")
    message = str(failure.value)
    assert message.startswith(
        f"image {wasted_image.ref} wastes 3.63 MB on 7 file copies that later layers overwrite "
        "or delete, budget 1 MB (wasted=1MB); largest layers:\n"
    )
    assert "\nlargest wasted files (5 of 7):\n  1.05 MB  /data/thrice  overwritten by RUN dd" in (
        message
    )
    assert (
        "\n   512 kB  /data/opq/old  hidden by RUN rm -rf /data/opq && mkdir /data/opq" in message
    )


# Wasted bytes, on hand-made layers


def layer(index: int, files: dict[str, int], whiteouts: tuple[str, ...] = ()) -> LayerContents:
    """A layer with regular files (``path: size``; size -1 makes a directory)."""

    def entry(path: str, size: int) -> FileEntry:
        kind = "dir" if size < 0 else "file"
        return FileEntry(path, max(size, 0), 0o755, 0, 0, kind)

    entries = {path: entry(path, size) for path, size in files.items()}
    return LayerContents(index, f"sha256:{index}", entries=entries, whiteouts=list(whiteouts))


def test_a_file_replacing_a_directory_wastes_the_directory_subtree() -> None:
    layers = [layer(0, {"/d": -1, "/d/a": 5, "/d/e/b": 7}), layer(1, {"/d": 3})]
    assert sorted((f.path, f.size, f.how) for f in wasted_files(layers)) == [
        ("/d/a", 5, "overwritten"),
        ("/d/e/b", 7, "overwritten"),
    ]


def test_a_directory_changed_again_keeps_its_files() -> None:
    layers = [layer(0, {"/d": -1, "/d/a": 5}), layer(1, {"/d": -1, "/d/b": 2})]
    assert wasted_files(layers) == []


def test_deleting_what_no_lower_layer_has_and_empty_files_waste_nothing() -> None:
    layers = [layer(0, {"/empty": 0}), layer(1, {}, whiteouts=("/empty", "/never"))]
    assert wasted_files(layers) == []


def test_a_file_written_again_after_deletion_is_wasted_once() -> None:
    layers = [layer(0, {"/f": 4}), layer(1, {}, whiteouts=("/f",)), layer(2, {"/f": 4})]
    assert wasted_files(layers) == [WastedFile("/f", 4, 0, 1, "deleted")]


@pytest.mark.slow
def test_wasted_streams_a_200mb_layer_in_bounded_memory(
    built: Callable[[str], ImageUnderTest],
) -> None:
    image = built("huge")
    tracemalloc.start()
    try:
        files = wasted_files(image.layer_contents())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files == [WastedFile("/data/huge", 200 * MiB, 3, 4, "deleted")]
    assert peak < 32 * MiB, f"peak {format_size(peak)} while streaming a 200 MiB layer"


# Baseline and growth


def test_baseline_file_holds_ref_id_size_layers_and_when(
    small: ImageUnderTest, tmp_path: Path
) -> None:
    path = tmp_path / "size.json"
    written = write_size_baseline(small, path)
    document = json.loads(path.read_text())
    assert document["image"] == small.ref
    assert document["id"] == small.id
    assert document["size"] == small.size
    assert document["layers"][-1] == {
        "size": 5 * MiB,
        "instruction": "RUN dd if=/dev/zero of=/big bs=1M count=5",
    }
    assert document["written"].startswith("20")
    assert read_size_baseline(path) == written
    assert_size_within(small, baseline=path, growth="0%")


def test_growth_over_the_allowance_fails_with_the_numbers(
    small: ImageUnderTest, built: Callable[[str], ImageUnderTest], tmp_path: Path
) -> None:
    path = tmp_path / "size.json"
    write_size_baseline(small, path)
    grown = built("grown-20mb")
    grew = grown.size - small.size
    assert grew == 20 * MiB
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_size_within(grown, baseline=path, growth="10%")
    message = str(failure.value)
    assert message.startswith(
        f"image {grown.ref} grew 21 MB (+{grew / small.size:.1%}) over its baseline of "
        f"{format_size(small.size)} ({path}: {small.ref} {small.short_id}, written 20"
    )
    assert (
        "more than the 10 MB allowed (growth=10%: the larger of 10% of the baseline "
        "and growth_floor=10MB)" in message
    )
    assert message.endswith(
        "layers new or grown since the baseline:\n"
        "    +21 MB  RUN dd if=/dev/zero of=/more bs=1M count=20 (new)"
    )
    assert evidence[0].facts["growth_bytes"] == grew
    assert evidence[0].facts["growth_allowed_bytes"] == 10_000_000
    assert evidence[0].facts["baseline_size_bytes"] == small.size


def test_growth_floor_stops_a_small_image_failing_on_noise(
    small: ImageUnderTest, built: Callable[[str], ImageUnderTest], tmp_path: Path
) -> None:
    path = tmp_path / "size.json"
    write_size_baseline(small, path)
    grown = built("grown-2mb")  # +2 MiB is about 29%, but under the 10 MB floor
    assert_size_within(grown, baseline=path, growth="10%")
    allowed = format_size(round(small.size / 10))
    with pytest.raises(AssertionError, match=rf"more than the {allowed} allowed"):
        assert_size_within(grown, baseline=path, growth="10%", growth_floor=0)


def test_missing_baseline_file_says_how_to_write_one(small: ImageUnderTest, tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ImageCheckError) as error:
        assert_size_within(small, baseline=path, growth="10%")
    assert str(error.value) == (
        f"size baseline {path} does not exist: write one with "
        f"`python -m pytest_imagecheck baseline IMAGE_REF {path}` from the image you accept"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"size": 12', "is not valid JSON (Expecting ',' delimiter at line 1)"),
        ('{"size": "big"}', 'has no whole-number "size" in bytes'),
        ("[1, 2]", 'has no whole-number "size" in bytes'),
        ('{"size": 5, "layers": [{"size": 5}]}', 'has a malformed "layers" list'),
    ],
)
def test_corrupt_baseline_file_is_a_one_line_error(
    small: ImageUnderTest, tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "size.json"
    path.write_text(text)
    with pytest.raises(ImageCheckError) as error:
        assert_size_within(small, baseline=path, growth="10%")
    assert str(error.value).startswith(f"size baseline {path} {problem}")
    assert str(error.value).endswith(f"baseline IMAGE_REF {path}` from the image you accept")
    assert "\n" not in str(error.value)


def test_a_hand_written_baseline_with_only_a_size_works(
    small: ImageUnderTest, tmp_path: Path
) -> None:
    path = tmp_path / "size.json"
    path.write_text('{"size": 1000000}')
    with pytest.raises(
        AssertionError, match=r"over its baseline of 1 MB \(.*: \? \?, written \?\)"
    ):
        assert_size_within(small, baseline=path, growth="10%", growth_floor=0)


# The baseline command


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_imagecheck", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_baseline_command_writes_a_file_the_check_reads(
    small: ImageUnderTest, built: Callable[[str], ImageUnderTest], tmp_path: Path
) -> None:
    path = tmp_path / "size.json"
    done = run_cli("baseline", small.ref, str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"wrote {path}: {small.ref} ({small.short_id}) is {format_size(small.size)} "
        f"in {len(small.layers)} history steps\n"
    )
    assert read_size_baseline(path).id == small.id
    assert_size_within(built("grown-2mb"), baseline=path, growth="10%")
    with pytest.raises(AssertionError, match="grew 21 MB"):
        assert_size_within(built("grown-20mb"), baseline=path, growth="10%")


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (
            ("baseline", "imagecheck-test/nope:0", "{tmp}/size.json"),
            "error: image 'imagecheck-test/nope:0' not found on the engine: build or load it",
        ),
        (
            ("baseline", "{busybox}", "{tmp}/no/such/dir/size.json"),
            "error: cannot write size baseline {tmp}/no/such/dir/size.json: No such file or "
            "directory",
        ),
        (
            ("baseline", "{busybox}"),
            "error: the following arguments are required: PATH (see --help)",
        ),
    ],
)
def test_baseline_command_errors_are_one_line_with_status_2(
    busybox: str, tmp_path: Path, args: tuple[str, ...], stderr: str
) -> None:
    done = run_cli(*(arg.format(busybox=busybox, tmp=tmp_path) for arg in args))
    assert done.returncode == 2
    expected = stderr.format(tmp=tmp_path)
    assert done.stderr.startswith(f"python -m pytest_imagecheck baseline: {expected}")
    assert done.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())
