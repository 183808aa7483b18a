"""Image size: a total budget, a per-layer budget, wasted bytes, and growth over a baseline.

A size baseline is a JSON file written from an accepted image, by
:func:`write_size_baseline` or ``python -m pytest_imagecheck baseline IMAGE_REF PATH``.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from .. import kinds
from ..declaration import Check, Key, pairs
from ..errors import ImageCheckError
from ..evidence import record
from ..text import shorten
from ..units import NUMBER_PATTERN, format_size, parse_size

if TYPE_CHECKING:
    from ..image import ImageUnderTest, Layer
    from ..layers import FileEntry, LayerContents

Size = int | float | str
StrPath = str | os.PathLike[str]

BASELINE_KIND = "pytest-imagecheck size baseline"
BASELINE_COMMAND = "python -m pytest_imagecheck baseline IMAGE_REF"

_TOP = 5
_GROWTH = re.compile(rf"([+-]?) *({NUMBER_PATTERN}) *%")


@dataclass(frozen=True)
class WastedFile:
    """A stored copy of a file that later layers overwrite or delete under every name.

    The image still stores its bytes (in layer ``layer_index``) though no container can see
    them. ``path`` is the name whose loss left the bytes unreachable, ``superseded_by`` and
    ``how`` say which layer removed it and how; ``also`` holds the copy's other names (hard
    links in the same layer), removed earlier or at the same time. Layer indexes are
    positions in ``image.diff_ids`` (``LayerContents.index``).
    """

    path: str
    size: int
    layer_index: int
    superseded_by: int
    how: str  # "overwritten", "deleted" or "hidden" (by an opaque directory)
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class SizeBaseline:
    """An accepted image's size, as stored in a baseline file.

    ``layers`` holds ``(size, instruction)`` for each history step, in build order.
    """

    image: str
    id: str
    size: int
    layers: tuple[tuple[int, str], ...]
    written: str


def wasted_files(layers: Iterable[LayerContents]) -> list[WastedFile]:
    """Every stored copy of a regular file that no name reaches any more, in the order the
    layers supersede them.

    A name is superseded when a later layer writes the same path, deletes it or a directory
    above it (a ``.wh.`` whiteout), replaces a directory above it with a file, or hides the
    directory's contents (an opaque ``.wh..wh..opq`` directory). A copy is wasted when every
    one of its names is: a file with two names (``ln a b``, stored once, ``b`` a hard link
    entry) keeps its bytes live while either name does, and is wasted once when both are gone.
    A later layer that hard-links a lower file stores a new copy (the engine copies it up), so
    that lower copy's name is superseded. Each copy counts once: a file written in three
    layers leaves two wasted copies, and the surviving one is not wasted. Empty files are left
    out. The image's wasted bytes are ``sum(f.size for f in wasted_files(layers))``.
    """
    live: dict[str, tuple[FileEntry, int]] = {}
    # Direct children of each directory path, so a deleted directory costs its subtree only.
    children: dict[str, set[str]] = {}
    # Each stored copy, keyed (layer index, first name): its size and names, and the names
    # that still reach it; and the copy each live name reaches.
    stored: dict[tuple[int, str], tuple[int, list[str]]] = {}
    reaching: dict[tuple[int, str], set[str]] = {}
    copy_of: dict[str, tuple[int, str]] = {}
    wasted: list[WastedFile] = []

    def drop(path: str, by: int, how: str) -> None:
        children.get(posixpath.dirname(path), set()).discard(path)
        stack = [path]
        while stack:
            current = stack.pop()
            stack.extend(children.pop(current, ()))
            live.pop(current, None)
            copy = copy_of.pop(current, None)
            if copy is None:
                continue
            names_left = reaching[copy]
            names_left.discard(current)
            size, names = stored[copy]
            if not names_left and size > 0:
                also = tuple(name for name in names if name != current)
                wasted.append(WastedFile(current, size, copy[0], by, how, also))

    for layer in layers:
        for directory in layer.opaque_dirs:
            for child in list(children.get(directory, ())):
                drop(child, layer.index, "hidden")
        for path in layer.whiteouts:
            drop(path, layer.index, "deleted")
        for path, entry in layer.entries.items():
            old = live.get(path)
            if old is not None and not (old[0].kind == entry.kind == "dir"):
                drop(path, layer.index, "overwritten")
            live[path] = (entry, layer.index)
            # A hard link reaches its first name's copy, written earlier in the same tar.
            copy = (layer.index, path) if entry.kind == "file" else None
            if entry.kind == "hardlink":
                copy = copy_of.get(entry.linkname)
            if copy is not None:
                if entry.kind == "file":
                    stored[copy] = (entry.size, [])
                    reaching[copy] = set()
                stored[copy][1].append(path)
                reaching[copy].add(path)
                copy_of[path] = copy
            # Link every ancestor too: a tar need not list the directories above a file.
            while path != "/" and path not in children.setdefault(posixpath.dirname(path), set()):
                children[posixpath.dirname(path)].add(path)
                path = posixpath.dirname(path)
    return wasted


def write_size_baseline(image: ImageUnderTest, path: StrPath) -> SizeBaseline:
    """Write ``image``'s size to the JSON baseline file ``path`` and return what was written.

    The file holds the image reference and ID, its size in bytes, each history step's size
    and instruction, and when it was written; commit it next to the tests. The command
    ``python -m pytest_imagecheck baseline IMAGE_REF PATH`` does the same.
    """
    baseline = SizeBaseline(
        image=image.ref or image.id,
        id=image.id,
        size=image.size,
        layers=tuple((step.size, step.instruction) for step in image.layers),
        written=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    document = {
        "kind": BASELINE_KIND,
        "version": 1,
        "image": baseline.image,
        "id": baseline.id,
        "size": baseline.size,
        "layers": [{"size": size, "instruction": text} for size, text in baseline.layers],
        "written": baseline.written,
    }
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        partial.replace(target)  # a reader never sees half a file
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ImageCheckError(f"cannot write size baseline {path}: {exc.strerror}") from None
    return baseline


def read_size_baseline(path: StrPath) -> SizeBaseline:
    """Read a baseline file written by :func:`write_size_baseline`.

    A missing or unreadable file raises :class:`ImageCheckError` with one line naming the file
    and the command that writes one. Only ``size`` is required, so a hand-written
    ``{"size": 2500000000}`` works too.
    """
    fix = f"write one with `{BASELINE_COMMAND} {path}` from the image you accept"
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImageCheckError(f"size baseline {path} does not exist: {fix}") from None
    except json.JSONDecodeError as exc:
        raise ImageCheckError(
            f"size baseline {path} is not valid JSON ({exc.msg} at line {exc.lineno}): {fix}"
        ) from None
    except UnicodeDecodeError:
        raise ImageCheckError(f"size baseline {path} is not UTF-8 text: {fix}") from None
    except OSError as exc:
        raise ImageCheckError(f"cannot read size baseline {path}: {exc.strerror}") from None
    size = document.get("size") if isinstance(document, dict) else None
    if not _is_count(size):
        raise ImageCheckError(f'size baseline {path} has no whole-number "size" in bytes: {fix}')
    layers = document.get("layers") or []
    if not isinstance(layers, list) or not all(
        isinstance(step, dict)
        and _is_count(step.get("size"))
        and isinstance(step.get("instruction"), str)
        for step in layers
    ):
        raise ImageCheckError(
            f'size baseline {path} has a malformed "layers" list '
            f'(each item {{"size": bytes, "instruction": text}}): {fix}'
        )
    return SizeBaseline(
        image=str(document.get("image") or "?"),
        id=str(document.get("id") or "?"),
        size=size,
        layers=tuple((step["size"], step["instruction"]) for step in layers),
        written=str(document.get("written") or "?"),
    )


def assert_size_within(
    image: ImageUnderTest,
    *,
    total: Size | None = None,
    layer: Size | None = None,
    wasted: Size | None = None,
    baseline: StrPath | None = None,
    growth: str | None = None,
    growth_floor: Size = "10MB",
) -> None:
    """Assert that ``image`` keeps within each given size budget.

    Budgets are bytes or strings with units: ``"2.5GB"`` (decimal: kB, MB, GB) or
    ``"512MiB"`` (binary: KiB, MiB, GiB).

    ``total``
        the image's uncompressed size, as ``docker images`` shows it;
    ``layer``
        the largest single layer (history step), which the failure names;
    ``wasted``
        bytes of files that a later layer overwrites or deletes (see :func:`wasted_files`);
        ``0`` is allowed and means no waste at all. Checking it streams ``docker save``
        of the image once, in memory that grows with the number of files, not their size,
        a read that :func:`~pytest_imagecheck.checks.secrets.assert_no_secrets` and
        :func:`~pytest_imagecheck.cuda.read_cuda_facts` on the same ``image`` share;
    ``baseline`` and ``growth``
        given together: the image may grow over the size in the baseline file by at most
        ``growth``, a percentage string such as ``"10%"``, or by ``growth_floor``
        (default 10 MB), whichever is larger, so small images do not fail on noise.

    A failure lists the largest layers with the instruction that made each, and the largest
    wasted files with the layer that superseded them. The measurements are recorded as
    evidence (``size_bytes``, ``largest_layer_bytes``, ``wasted_bytes``, ...) whether the
    check passes or fails.
    """
    __tracebackhide__ = True
    total_budget = _budget("total", total)
    layer_budget = _budget("layer", layer)
    wasted_budget = None if wasted is None else _size("wasted", wasted)
    growth_fraction = _growth(growth)
    floor = _size("growth_floor", growth_floor)
    if (baseline is None) != (growth is None):
        given, missing = ("baseline", "growth") if growth is None else ("growth", "baseline")
        raise ImageCheckError(
            f"assert_size_within: {given}= needs {missing}= too: pass both, e.g. "
            'baseline="size-baseline.json", growth="10%"'
        )
    if total is None and layer is None and wasted is None and baseline is None:
        raise ImageCheckError(
            "assert_size_within checks nothing: pass total=, layer=, wasted= "
            "or baseline= with growth="
        )
    accepted = None if baseline is None else read_size_baseline(baseline)

    steps = image.layers
    largest = max(steps, key=lambda step: step.size, default=None)
    largest_size = largest.size if largest else 0
    record(
        "size",
        size_bytes=image.size,
        largest_layer_bytes=largest_size,
        largest_layer_instruction=shorten(largest.instruction, 100) if largest else "none",
    )
    problems: list[str] = []
    sections = [_largest_layers(steps)]
    if total_budget is not None:
        record("size", size_budget_bytes=total_budget)
        if image.size > total_budget:
            problems.append(
                f"is {format_size(image.size)}, budget {format_size(total_budget)} (total={total})"
            )
    if layer_budget is not None:
        record("size", layer_budget_bytes=layer_budget)
        if largest is not None and largest_size > layer_budget:
            problems.append(
                f"has a {format_size(largest_size)} layer, budget {format_size(layer_budget)} "
                f"(layer={layer}), made by {shorten(largest.instruction, 100)}"
            )
    if wasted_budget is not None:
        layers = image.layer_contents()
        files = wasted_files(layers)
        wasted_bytes = sum(f.size for f in files)
        record("size", wasted_bytes=wasted_bytes, wasted_budget_bytes=wasted_budget)
        if wasted_bytes > wasted_budget:
            problems.append(
                f"wastes {format_size(wasted_bytes)} on {len(files)} file copies that later "
                f"layers overwrite or delete, budget {format_size(wasted_budget)} "
                f"(wasted={wasted})"
            )
            sections.append(_wasted_section(files, layers, steps))
    if accepted is not None and growth_fraction is not None:
        grew = image.size - accepted.size
        allowed = max(round(accepted.size * growth_fraction), floor)
        record(
            "size",
            baseline_file=str(baseline),
            baseline_image=accepted.image,
            baseline_size_bytes=accepted.size,
            growth_bytes=grew,
            growth_allowed_bytes=allowed,
        )
        if grew > allowed:
            percent = f" (+{grew / accepted.size:.1%})" if accepted.size else ""
            problems.append(
                f"grew {format_size(grew)}{percent} over its baseline of "
                f"{format_size(accepted.size)} ({baseline}: {accepted.image} "
                f"{accepted.id.removeprefix('sha256:')[:12]}, written {accepted.written}), "
                f"more than the {format_size(allowed)} allowed (growth={growth}: the larger "
                f"of {growth} of the baseline and growth_floor={growth_floor})"
            )
            sections.append(_grown_section(steps, accepted))
    if problems:
        name = image.ref or image.short_id
        raise AssertionError(f"image {name} {'; '.join(problems)}; " + "\n".join(sections))


def _size(name: str, value: Size) -> int:
    try:
        return parse_size(value)
    except ImageCheckError as exc:
        raise ImageCheckError(f"{name}: {exc}") from None


def _budget(name: str, value: Size | None) -> int | None:
    if value is None:
        return None
    budget = _size(name, value)
    if budget == 0:
        raise ImageCheckError(
            f"{name}={value} allows 0 bytes, which no image meets: give the largest size "
            f'you accept, e.g. {name}="2.5GB"'
        )
    return budget


def _growth(value: object) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImageCheckError(
            f"growth={value!r} is ambiguous (0.1 of the size, or 0.1%?): "
            'write a percentage string, e.g. growth="10%"'
        )
    match = _GROWTH.fullmatch(value.strip())
    if match is None:
        raise ImageCheckError(f'bad growth "{value}": write a percentage, e.g. growth="10%"')
    fraction = Decimal(match[2]) / 100
    if match[1] == "-" and fraction:
        raise ImageCheckError(
            f'growth="{value}" is negative, so even an unchanged image would fail: give the '
            'growth you accept, e.g. growth="10%" ("0%" allows only growth_floor)'
        )
    return fraction


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _largest_layers(steps: list[Layer]) -> str:
    biggest = sorted((s for s in steps if s.size), key=lambda s: s.size, reverse=True)[:_TOP]
    if not biggest:
        return "largest layers: none (every layer is empty)"
    lines = [f"  {format_size(s.size):>7}  {shorten(s.instruction, 100)}" for s in biggest]
    return "largest layers:\n" + "\n".join(lines)


def _wasted_section(
    files: list[WastedFile], layers: list[LayerContents], steps: list[Layer]
) -> str:
    def made_by(index: int) -> str:
        step = layers[index].step
        return shorten(steps[step].instruction, 60) if step is not None else f"layer {index}"

    def names(f: WastedFile) -> str:
        return f"{f.path} (hard-linked as {', '.join(f.also)})" if f.also else f.path

    biggest = sorted(files, key=lambda f: f.size, reverse=True)[:_TOP]
    lines = [
        f"  {format_size(f.size):>7}  {names(f)}  {f.how} by {made_by(f.superseded_by)}"
        for f in biggest
    ]
    return f"largest wasted files ({len(biggest)} of {len(files)}):\n" + "\n".join(lines)


def _grown_section(steps: list[Layer], accepted: SizeBaseline) -> str:
    before: dict[str, list[int]] = {}
    for size, text in accepted.layers:
        before.setdefault(text, []).append(size)
    grown = []
    for step in steps:
        sizes = before.get(step.instruction)
        old = sizes.pop(0) if sizes else None
        if step.size > (old or 0):
            label = "new" if old is None else f"was {format_size(old)}"
            grown.append((step.size - (old or 0), f"{shorten(step.instruction, 100)} ({label})"))
    grown.sort(key=lambda item: item[0], reverse=True)
    lines = [f"  {'+' + format_size(delta):>8}  {text}" for delta, text in grown[:_TOP]]
    return "layers new or grown since the baseline:\n" + ("\n".join(lines) or "  none")


# --- imagecheck.yaml -----------------------------------------------------------------------

SIZE = Check(
    "size",
    "The image keeps within its size budgets (assert_size_within).",
    assert_size_within,
    "image",
    (
        Key("total", kinds.SIZE, "Budget for the uncompressed image size.", example="2.5GB"),
        Key("layer", kinds.SIZE, "Budget for the largest layer.", example="1.5GB"),
        Key("wasted", kinds.SIZE, "Budget for bytes that later layers overwrite or delete."),
        Key(
            "baseline",
            kinds.SPEC_FILE,
            "A size baseline file, relative to this file; needs growth.",
            example="size-baseline.json",
        ),
        Key("growth", kinds.PERCENT, "Growth allowed over the baseline.", example="10%"),
        Key("growth_floor", kinds.SIZE, 'Growth always allowed; default "10MB".'),
    ),
    title=pairs("total", "layer", "wasted", "growth"),
    at_least_one=("total", "layer", "wasted", "baseline"),
    together=("baseline", "growth"),
    reads_layers="wasted",
)
