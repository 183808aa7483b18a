"""The evidence report: each criterion's verdict and what its test measured, in one file.

``pytest --imagecheck-report=PATH`` writes it when the session ends. The plugin fills a
:class:`ReportData` from the test reports and calls :func:`write_report`; nothing here runs a
check, reads the engine or touches pytest. The report shows what was recorded and nothing else:
a skipped criterion is ``NOT VERIFIED``, never passed, and the only sentence not read from the
data is the closing line saying which command made the report and when.

A ``.json`` path gets JSON; any other path gets Markdown, plus a chart of the layer sizes,
``<stem>-layers.svg``, in the same folder, linked from the Markdown by its file name.

The JSON is versioned. Within a version fields may be added, never removed or changed in
meaning. Version 1::

    {
      "format": "pytest-imagecheck-report",
      "version": 1,
      "command": "pytest --image=app:1 --imagecheck-report=report.json",
      "started": "2025-11-01T01:50:00+00:00",    # as the plugin gave it, ISO 8601
      "finished": "2025-11-01T01:52:10+00:00",
      "engine_version": "27.3.1",                # or null
      "image": {                                 # or null: no image was inspected
        "ref": "app:1", "id": "sha256:...", "digest": "app@sha256:..." or null,
        "size_bytes": 123456789, "created": "...", "architecture": "amd64", "os": "linux"
      },
      "summary": {"passed": 3, "failed": 1, "error": 0, "skipped": 1, "waived": 0,
                  "xfailed": 0, "xpassed": 0},
      "criteria": [
        {"nodeid": "...", "name": "...", "outcome": "passed", "reason": "",
         "duration_s": 0.12, "facts": [{"name": "imagecheck.uid", "value": "1000"}]}
      ],
      "layers": [{"index": 0, "size_bytes": 4261230, "instruction": "ADD file:... in /"}],
      "size_budget_bytes": 2000000000,           # or null
      "requested_ref": "app:1",                  # or null: --image, or the tag a build gets
      "members": [                               # a family session's images, else []
        {"id": "cpu", "requested_ref": "app:cpu",
         "image": {...} or null,                 # as "image" above; null: not inspected
         "layers": [...],                        # as "layers" above
         "size_bytes": 123, "largest_layer_bytes": 100,
         "wasted_bytes": 0 or null,              # null: its layers were not read
         "shared_bytes": 90 or null,             # bytes of layers another member has too
         "size_budget_bytes": 2500000000 or null,
         "summary": {...}}                       # as "summary" above, its criteria only
      ]
    }

In a family session ``image`` and ``layers`` are null and empty: each member has its own,
and each criterion carries its ``member`` id.

``outcome`` is one of :data:`OUTCOMES`; ``facts`` keep the order and names they were recorded
with.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from .text import shorten
from .units import format_size

__all__ = [
    "FORMAT",
    "OUTCOMES",
    "VERSION",
    "FilesystemLayer",
    "ImageIdentity",
    "LayerRow",
    "MemberRow",
    "ReportData",
    "Verdict",
    "shared_bytes",
    "write_report",
]

#: The ``format`` field of the JSON report.
FORMAT = "pytest-imagecheck-report"
#: The ``version`` field of the JSON report.
VERSION = 1

# What each outcome is called in the Markdown; a skipped criterion was not measured.
_WORDS = {
    "passed": "PASS",
    "failed": "FAIL",
    "error": "ERROR",
    "skipped": "NOT VERIFIED",
    "waived": "WAIVED",
    "xfailed": "FAIL (expected)",
    "xpassed": "PASS (unexpected)",
}
#: The outcomes a :class:`Verdict` may have.
OUTCOMES: tuple[str, ...] = tuple(_WORDS)
_ALWAYS_COUNTED = ("passed", "failed", "error", "skipped", "waived")
_FAILURES = ("failed", "error")

# Characters XML 1.0 cannot carry (C0 controls, lone surrogates from undecodable file names).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>~&#])")

_SVG_NS = "http://www.w3.org/2000/svg"
_INDEX_WIDTH = 44  # left column: layer indices
_BAR_WIDTH = 440  # the bars: the budget or the total, whichever is larger, fills it
_LABEL_WIDTH = 276  # right column: labels of the largest layers
_CHART_WIDTH = _INDEX_WIDTH + _BAR_WIDTH + _LABEL_WIDTH
_TOP = 44  # title and budget label
_ROW = 18
_BAR = 12
_LABELLED = 5


@dataclass(frozen=True)
class Verdict:
    """One criterion's result: a test's outcome and the facts its checks recorded.

    ``outcome`` is one of :data:`OUTCOMES`; ``reason`` is the failure message, skip reason or
    waiver reason ("" when passed); ``facts`` are ``("imagecheck.<fact>", text)`` pairs as
    recorded, already masked.
    """

    nodeid: str
    name: str
    outcome: str
    reason: str
    facts: tuple[tuple[str, str], ...]
    duration: float
    #: The family member whose image the criterion judged; None without a family.
    member: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(
                f"unknown outcome {self.outcome!r} for {self.nodeid}: "
                f"use one of {', '.join(OUTCOMES)}"
            )


@dataclass(frozen=True)
class ImageIdentity:
    """Which image was tested: the facts from ``docker inspect``."""

    ref: str
    id: str
    digest: str | None
    size: int
    created: str
    architecture: str
    os: str


@dataclass(frozen=True)
class LayerRow:
    """One step of the image's history: its index, size in bytes and instruction."""

    index: int
    size: int
    instruction: str


class FilesystemLayer(NamedTuple):
    """One filesystem layer of an image: its diff ID, the bytes of its regular files, and
    the index of the history step that made it (:class:`LayerRow`), None when unknown."""

    diff_id: str
    size: int
    step: int | None


@dataclass(frozen=True)
class MemberRow:
    """One member of an image family, for the family table and chart.

    ``image`` is None when no test read it; ``layer_bytes`` are its filesystem layers, base
    first, and ``wasted_bytes`` the bytes later layers overwrite or
    delete, both None when its layers were not read; ``size_budget`` is the tightest total
    budget a size check of this member judged by.
    """

    id: str
    requested_ref: str
    image: ImageIdentity | None
    layers: tuple[LayerRow, ...] = ()
    layer_bytes: tuple[FilesystemLayer, ...] | None = None
    wasted_bytes: int | None = None
    size_budget: int | None = None

    @property
    def largest_layer(self) -> int | None:
        """The bytes of its largest history step; None when it was not inspected."""
        return max((layer.size for layer in self.layers), default=0) if self.image else None


def shared_bytes(member: MemberRow, members: Iterable[MemberRow]) -> int | None:
    """Bytes of ``member``'s filesystem layers that another of ``members`` has too (by diff
    ID), each counted as its history step's size (as the Size column and the chart count
    it); None when its layers were not read."""
    if member.layer_bytes is None:
        return None
    others = _layers_of_others(member, members)
    steps = {row.index: row.size for row in member.layers}
    sizes = {
        layer.diff_id: steps.get(layer.step, layer.size) if layer.step is not None else layer.size
        for layer in member.layer_bytes
    }
    return sum(size for diff_id, size in sizes.items() if diff_id in others)


def _layers_of_others(member: MemberRow, members: Iterable[MemberRow]) -> set[str]:
    """The diff IDs of the layers the other ``members`` read have."""
    return {
        layer.diff_id
        for other in members
        if other.id != member.id
        for layer in other.layer_bytes or ()
    }


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows.

    ``image`` is None when no image was inspected (no test read it, or the session failed
    before one existed); ``size_budget`` is the total size budget in bytes when a size check
    set one; ``started`` and ``finished`` are ISO 8601 times; ``command`` is the pytest command
    line; ``requested_ref`` is the reference the session was asked to test (``--image``, or
    the tag ``--build-context`` builds), shown when no image was inspected.
    """

    image: ImageIdentity | None
    engine_version: str | None
    verdicts: tuple[Verdict, ...]
    layers: tuple[LayerRow, ...]
    size_budget: int | None
    started: str
    finished: str
    command: str
    requested_ref: str | None = None
    #: A family session's images, in declaration order; empty without a family.
    members: tuple[MemberRow, ...] = ()


def write_report(data: ReportData, path: Path) -> list[Path]:
    """Write the report to ``path`` and return the files written.

    A ``.json`` suffix writes JSON (see the module documentation for its structure). Any
    other suffix writes Markdown and, when there are layers, an SVG chart of their sizes
    named ``<stem>-layers.svg`` beside it. Missing parent folders are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        _write(path, json.dumps(_json(data), indent=2, ensure_ascii=False) + "\n")
        return [path]
    chart = path.with_name(f"{path.stem}-layers.svg")
    _write(path, _markdown(data, chart.name))
    if data.members and any(member.layers for member in data.members):
        _write(chart, _family_chart(data))
        return [path, chart]
    if not data.layers:
        return [path]
    _write(chart, _layer_chart(data))
    return [path, chart]


def _write(path: Path, text: str) -> None:
    # Lone surrogates (file names that were not UTF-8) can only reach the JSON, inside string
    # literals, where backslashreplace writes them as the JSON escape \udcXX.
    path.write_text(text, encoding="utf-8", errors="backslashreplace")


def _identity_json(image: ImageIdentity | None) -> dict[str, Any] | None:
    if image is None:
        return None
    return {
        "ref": image.ref,
        "id": image.id,
        "digest": image.digest,
        "size_bytes": image.size,
        "created": image.created,
        "architecture": image.architecture,
        "os": image.os,
    }


def _layers_json(layers: Iterable[LayerRow]) -> list[dict[str, Any]]:
    return [
        {"index": layer.index, "size_bytes": layer.size, "instruction": layer.instruction}
        for layer in layers
    ]


def _counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    counts = Counter(v.outcome for v in verdicts)
    return {outcome: counts[outcome] for outcome in OUTCOMES}


def _json(data: ReportData) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "command": data.command,
        "started": data.started,
        "finished": data.finished,
        "engine_version": data.engine_version,
        "image": _identity_json(data.image),
        "summary": _counts(data.verdicts),
        "criteria": [
            {
                "nodeid": v.nodeid,
                "name": v.name,
                "outcome": v.outcome,
                "reason": v.reason,
                "duration_s": round(v.duration, 3),
                "facts": [{"name": name, "value": value} for name, value in v.facts],
                **({"member": v.member} if v.member is not None else {}),
            }
            for v in data.verdicts
        ],
        "layers": _layers_json(data.layers),
        "size_budget_bytes": data.size_budget,
        "requested_ref": data.requested_ref,
        "members": [
            {
                "id": member.id,
                "requested_ref": member.requested_ref,
                "image": _identity_json(member.image),
                "layers": _layers_json(member.layers),
                "size_bytes": member.image.size if member.image else None,
                "largest_layer_bytes": member.largest_layer,
                "wasted_bytes": member.wasted_bytes,
                "shared_bytes": shared_bytes(member, data.members),
                "size_budget_bytes": member.size_budget,
                "summary": _counts(v for v in data.verdicts if v.member == member.id),
            }
            for member in data.members
        ],
    }


def _markdown(data: ReportData, chart: str) -> str:
    """The Markdown report; ``chart`` is the file name of the layer chart, beside it."""
    title = "Image check report"
    ref = data.image.ref if data.image is not None else data.requested_ref
    if data.members:
        title += f": a family of {len(data.members)} images"
    elif ref:
        title += ": " + _code(ref)
    lines = [f"# {title}", "", _summary(data.verdicts), ""]
    if data.members:
        lines += ["## Images", "", *_family_table(data)]
        if any(member.layers for member in data.members):
            lines += ["", f"![Layer sizes, side by side]({quote(chart)})"]
        if data.engine_version is not None:
            lines += ["", f"Engine: {_code(data.engine_version)}"]
    else:
        lines += ["## Image", "", *_identity(data)]
    lines += ["", "## Criteria", ""]
    if data.verdicts:
        lines += _table(
            ("Verdict", "Criterion", "Reason", "Evidence"),
            [
                (
                    _WORDS[v.outcome],
                    _md(v.name),
                    _md(shorten(v.reason, 200)),
                    "<br>".join(
                        f"{_md(_fact_name(k))} = {_code(shorten(x, 80))}" for k, x in v.facts
                    ),
                )
                for v in data.verdicts
            ],
        )
    else:
        lines.append("No test results were recorded.")
    failures = [v for v in data.verdicts if v.outcome in _FAILURES]
    if failures:
        lines += ["", "## Failures"]
        for v in failures:
            lines += ["", f"### {_WORDS[v.outcome]}: {_md(v.name)}", "", _code(v.nodeid), ""]
            lines += _fenced(v.reason)
    if data.layers:
        lines += ["", "## Layers", ""]
        lines += _layers(data)
        lines += ["", f"![Layer sizes]({quote(chart)})"]
    lines += [
        "",
        "---",
        "",
        f"Generated by pytest-imagecheck from {_code(data.command)}, "
        f"started {_md(data.started)}, finished {_md(data.finished)}.",
    ]
    return "\n".join(lines) + "\n"


def _family_table(data: ReportData) -> list[str]:
    """Per member: its image, size, largest layer, wasted and shared bytes, and verdicts."""

    def size(value: int | None) -> str:
        return "not read" if value is None else format_size(value)

    rows = []
    for member in data.members:
        counts = Counter(v.outcome for v in data.verdicts if v.member == member.id)
        image = member.image
        budget = f" (budget {format_size(member.size_budget)})" if member.size_budget else ""
        rows.append(
            (
                _md(member.id),
                _code(image.ref if image else member.requested_ref)
                + ("" if image else " (not inspected)"),
                (format_size(image.size) + budget) if image else "not inspected",
                size(member.largest_layer),
                size(member.wasted_bytes),
                size(shared_bytes(member, data.members)),
                str(counts["passed"]),
                str(counts["failed"] + counts["error"]),
                str(counts["skipped"]),
            )
        )
    return [
        *_table(
            (
                "Member",
                "Image",
                "Size",
                "Largest layer",
                "Wasted",
                "Shared with other members",
                "PASS",
                "FAIL or ERROR",
                "NOT VERIFIED",
            ),
            rows,
        ),
        "",
        "Shared: the bytes of layers that another member inspected in this session has too.",
    ]


def _summary(verdicts: tuple[Verdict, ...]) -> str:
    counts = Counter(v.outcome for v in verdicts)
    parts = [
        f"{counts[outcome]} {_WORDS[outcome]}" + (" (skipped)" if outcome == "skipped" else "")
        for outcome in OUTCOMES
        if counts[outcome] or outcome in _ALWAYS_COUNTED
    ]
    noun = "criterion" if len(verdicts) == 1 else "criteria"
    return f"**{len(verdicts)} {noun}:** " + ", ".join(parts)


def _identity(data: ReportData) -> list[str]:
    rows: list[tuple[str, str]] = []
    image = data.image
    if image is not None:
        rows += [
            ("Reference", _code(image.ref)),
            ("ID", _code(image.id)),
            ("Digest", _code(image.digest) if image.digest else "none"),
            ("Size", f"{format_size(image.size)} ({image.size:,} bytes)"),
            ("Created", _md(image.created)),
            ("OS/architecture", _code(f"{image.os}/{image.architecture}")),
        ]
    elif data.requested_ref:
        rows.append(("Reference", f"{_code(data.requested_ref)} (requested, not inspected)"))
    if data.engine_version is not None:
        rows.append(("Engine", _code(data.engine_version)))
    if image is None:
        note = ["No image was inspected in this session."]
        return [*note, "", *_table(("Field", "Value"), rows)] if rows else note
    return _table(("Field", "Value"), rows)


def _layers(data: ReportData) -> list[str]:
    lines = _table(
        ("#", "Size", "Instruction"),
        [
            (str(layer.index), format_size(layer.size), _code(shorten(layer.instruction, 100)))
            for layer in data.layers
        ],
    )
    total = sum(layer.size for layer in data.layers)
    lines += ["", f"Sum of layer sizes: {format_size(total)} ({total:,} bytes)."]
    if data.size_budget is not None:
        lines.append(
            f"Size budget: {format_size(data.size_budget)} ({data.size_budget:,} bytes), "
            "drawn as a line on the chart."
        )
    return lines


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    """A GFM table; pipes in cells are escaped here, once, after the cells are formatted."""

    def row(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [row(header), row(tuple("---" for _ in header)), *(row(cells) for cells in rows)]


def _md(text: str) -> str:
    """Text safe in a Markdown paragraph or table cell: markup escaped, lines kept with <br>."""
    return "<br>".join(_MARKDOWN_SPECIAL.sub(r"\\\1", line) for line in _clean(text).splitlines())


def _code(text: str) -> str:
    """An inline code span holding ``text`` on one line, fenced so no backtick in it ends it."""
    text = " ↵ ".join(_clean(text).splitlines())
    if not text:
        return ""
    runs = re.findall("`+", text)
    fence = "`" * (max(map(len, runs), default=0) + 1)
    if text[0] in "` " or text[-1] in "` ":
        text = f" {text} "  # CommonMark strips one space from each side
    return f"{fence}{text}{fence}"


def _fenced(text: str) -> list[str]:
    """A fenced code block holding ``text`` whole, its fence longer than any backtick run in it."""
    runs = re.findall("`+", text)
    fence = "`" * max(3, max(map(len, runs), default=0) + 1)
    return [fence, *_clean(text).splitlines(), fence]


def _fact_name(name: str) -> str:
    return name.removeprefix("imagecheck.")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _layer_chart(data: ReportData) -> str:
    """Horizontal bars of the layer sizes, each starting where the one before ended, so the
    last ends at the total; the budget, when there is one, is a dashed line across them."""
    layers = data.layers
    budget = data.size_budget
    total = sum(layer.size for layer in layers)
    full = max(total, budget or 0)
    scale = _BAR_WIDTH / full if full else 0.0
    bottom = _TOP + len(layers) * _ROW
    height = bottom + 24

    svg = _svg(height)
    heading = (
        f"Layer sizes: {format_size(total)} in {len(layers)} layer{'' if len(layers) == 1 else 's'}"
    )
    if data.image is not None:
        heading = f"{data.image.ref}: {heading[0].lower()}{heading[1:]}"
    if budget is not None:
        heading += f", budget {format_size(budget)}"
    ET.SubElement(svg, "title").text = _clean(heading)
    _text(svg, 8, 18, heading).set("font-size", "13")

    by_size = sorted(range(len(layers)), key=lambda i: layers[i].size, reverse=True)
    labelled = {i for i in by_size[:_LABELLED] if layers[i].size > 0}
    start = 0
    for i, layer in enumerate(layers):
        y = _TOP + i * _ROW
        bar = ET.SubElement(
            svg,
            "rect",
            {
                "class": "layer",
                "x": _number(_INDEX_WIDTH + start * scale),
                "y": str(y),
                "width": _number(layer.size * scale),
                "height": str(_BAR),
                "fill": "#4c78a8",
            },
        )
        ET.SubElement(bar, "title").text = _clean(
            f"layer {layer.index}: {format_size(layer.size)} {shorten(layer.instruction, 200)}"
        )
        _text(svg, _INDEX_WIDTH - 6, y + _BAR - 2, str(layer.index)).set("text-anchor", "end")
        if i in labelled:
            label = f"{format_size(layer.size)} {shorten(layer.instruction, 34)}"
            _text(svg, _INDEX_WIDTH + _BAR_WIDTH + 10, y + _BAR - 2, label).set("class", "label")
        start += layer.size

    if budget is not None:
        x = _number(_INDEX_WIDTH + budget * scale)
        ET.SubElement(
            svg,
            "line",
            {
                "class": "budget",
                "x1": x,
                "y1": str(_TOP - 4),
                "x2": x,
                "y2": str(bottom),
                "stroke": "#d62728",
                "stroke-width": "2",
                "stroke-dasharray": "4 3",
            },
        )
        _text(svg, float(x), _TOP - 8, f"budget {format_size(budget)}").set("text-anchor", "middle")
    _text(svg, _INDEX_WIDTH, bottom + 16, "0")
    _text(svg, _INDEX_WIDTH + _BAR_WIDTH, bottom + 16, format_size(full)).set("text-anchor", "end")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"


def _family_chart(data: ReportData) -> str:
    """One bar per member, side by side on one scale: its layers end to end, those another
    member has too in a lighter colour, and its size budget, if any, as a dashed tick."""
    members = data.members
    full = max(
        [sum(layer.size for layer in m.layers) for m in members]
        + [m.size_budget or 0 for m in members]
    )
    scale = _BAR_WIDTH / full if full else 0.0
    row = _ROW + 10
    bottom = _TOP + len(members) * row
    height = bottom + 40
    svg = _svg(height)
    heading = f"Layer sizes of {len(members)} images, side by side"
    ET.SubElement(svg, "title").text = _clean(heading)
    _text(svg, 8, 18, heading).set("font-size", "13")
    for i, member in enumerate(members):
        y = _TOP + i * row
        _text(svg, _INDEX_WIDTH - 6, y + _BAR - 2, shorten(member.id, 8)).set("text-anchor", "end")
        shared_steps = _shared_steps(member, _layers_of_others(member, members))
        start = 0
        for layer in member.layers:
            shared = layer.index in shared_steps
            bar = ET.SubElement(
                svg,
                "rect",
                {
                    "class": "layer shared" if shared else "layer",
                    "x": _number(_INDEX_WIDTH + start * scale),
                    "y": str(y),
                    "width": _number(layer.size * scale),
                    "height": str(_BAR),
                    "fill": "#9ecae9" if shared else "#4c78a8",
                    "stroke": "#ffffff",
                    "stroke-width": "0.5",
                },
            )
            ET.SubElement(bar, "title").text = _clean(
                f"{member.id} layer {layer.index}: {format_size(layer.size)}"
                f"{' (shared)' if shared else ''} {shorten(layer.instruction, 200)}"
            )
            start += layer.size
        label = f"{format_size(start)}" if member.image else "not inspected"
        if member.size_budget is not None:
            x = _number(_INDEX_WIDTH + member.size_budget * scale)
            ET.SubElement(
                svg,
                "line",
                {
                    "class": "budget",
                    "x1": x,
                    "y1": str(y - 3),
                    "x2": x,
                    "y2": str(y + _BAR + 3),
                    "stroke": "#d62728",
                    "stroke-width": "2",
                    "stroke-dasharray": "3 2",
                },
            )
            label += f", budget {format_size(member.size_budget)}"
        _text(svg, _INDEX_WIDTH + _BAR_WIDTH + 10, y + _BAR - 2, label).set("class", "label")
    legend_y = bottom + 10
    for j, (colour, text) in enumerate(
        (("#4c78a8", "own layers"), ("#9ecae9", "layers shared with another member"))
    ):
        left = _INDEX_WIDTH + j * 160
        ET.SubElement(
            svg,
            "rect",
            {"x": str(left), "y": str(legend_y), "width": "10", "height": "10", "fill": colour},
        )
        _text(svg, left + 14, legend_y + 9, text)
    _text(svg, _INDEX_WIDTH, legend_y + 28, "0")
    _text(svg, _INDEX_WIDTH + _BAR_WIDTH, legend_y + 28, format_size(full)).set(
        "text-anchor", "end"
    )
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"


def _shared_steps(member: MemberRow, others: set[str]) -> set[int]:
    """The history steps of ``member`` whose filesystem layer another member has too."""
    return {
        layer.step
        for layer in member.layer_bytes or ()
        if layer.diff_id in others and layer.step is not None
    }


def _svg(height: int) -> ET.Element:
    """An empty chart, as wide as every chart, ``height`` pixels high."""
    return ET.Element(
        "svg",
        {
            "xmlns": _SVG_NS,
            "width": str(_CHART_WIDTH),
            "height": str(height),
            "viewBox": f"0 0 {_CHART_WIDTH} {height}",
            "font-family": "sans-serif",
            "font-size": "11",
        },
    )


def _text(parent: ET.Element, x: float, y: float, text: str) -> ET.Element:
    element = ET.SubElement(parent, "text", {"x": _number(x), "y": _number(y)})
    element.text = _clean(text)
    return element


def _number(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")
