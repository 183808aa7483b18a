"""The benchmark's figures as one SVG, written by hand (no plotting library needed).

Panels: the suite's wall time three ways (median bar, min-max whisker); where the plugin's
time goes; readiness latencies against the poll interval; the large image's time and peak
memory. ``python3 bench/plot.py`` redraws bench/results/bench.svg from latest.json;
``python3 bench/plot.py --issue15`` draws bench/results/issue15.svg from the issue15-*.json
results (health verdict by interval, the example and the 20-criteria suite, the large image).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from html import escape
from pathlib import Path

from common import RESULTS

WIDTH = 900
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'
COLORS = ["#3b6fb6", "#d9822b", "#5a9e4b", "#8e6bb8", "#b8b8b8", "#c44e52", "#4bacc6"]
#: 16 distinct colours for the breakdown's segments.
SEGMENT_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
]
#: Shorter names for the suite's long run names.
SHORT = {
    "plugin, no bytecode cache (this machine's default)": "plugin, no bytecode cache",
    "plugin, every plugin installed here": "plugin, every plugin here",
    "plugin, in a venv with only pytest-imagecheck": "plugin, venv with only it",
}


def nice_maximum(value: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, ... 8 times a power of ten) >= ``value``."""
    power = 10 ** math.floor(math.log10(value)) if value > 0 else 1
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * power >= value:
            return step * power
    return 10 * power


class Canvas:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.y = 10.0

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: int = 12,
        anchor: str = "start",
        weight: str = "normal",
        color: str = "#222",
    ) -> None:
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" {FONT} '
            f'text-anchor="{anchor}" font-weight="{weight}" fill="{color}">'
            f"{escape(text)}</text>"
        )

    def rect(self, x: float, y: float, w: float, h: float, color: str) -> None:
        self.parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
            f'height="{h:.1f}" fill="{color}"/>'
        )

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        color: str = "#222",
        width: float = 1,
        dash: str = "",
    ) -> None:
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{color}" stroke-width="{width}"{extra}/>'
        )

    def circle(self, x: float, y: float, r: float, color: str) -> None:
        self.parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}" fill-opacity="0.7"/>'
        )

    def title(self, text: str) -> None:
        self.y += 26
        self.text(20, self.y, text, size=15, weight="bold")
        self.y += 12

    def svg(self) -> str:
        height = self.y + 20
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}">\n<rect width="100%" height="100%" '
            f'fill="white"/>\n' + "\n".join(self.parts) + "\n</svg>\n"
        )


def _axis(
    c: Canvas,
    left: float,
    right: float,
    top: float,
    bottom: float,
    maximum: float,
    unit: str,
    ticks: int = 5,
) -> None:
    for i in range(ticks + 1):
        value = maximum * i / ticks
        x = left + (right - left) * i / ticks
        c.line(x, top, x, bottom, color="#e4e4e4")
        c.text(x, bottom + 14, f"{value:.3g}{unit}", size=10, anchor="middle", color="#555")


def _bars(
    c: Canvas,
    rows: list[tuple[str, float, float | None, float | None, str]],
    unit: str,
    label_width: float = 270,
) -> None:
    """Horizontal bars: (label, value, low, high, annotation)."""
    left, right = 20 + label_width, WIDTH - 120
    maximum = nice_maximum(max(high or value for _, value, _, high, _ in rows) * 1.05)
    top = c.y
    bottom = top + 24 * len(rows)
    _axis(c, left, right, top, bottom, maximum, unit)
    scale = (right - left) / maximum
    for index, (label, value, low, high, note) in enumerate(rows):
        y = top + 24 * index
        c.text(left - 8, y + 15, label, anchor="end")
        c.rect(left, y + 4, value * scale, 15, COLORS[index % len(COLORS)])
        if low is not None and high is not None:
            c.line(left + low * scale, y + 11.5, left + high * scale, y + 11.5, width=1.5)
            c.line(left + low * scale, y + 6, left + low * scale, y + 17)
            c.line(left + high * scale, y + 6, left + high * scale, y + 17)
        c.text(left + (high or value) * scale + 6, y + 15, note, size=11)
    c.y = bottom + 22


def suite_panel(c: Canvas, suite: dict) -> None:
    c.title("Suite of 20 criteria: wall time, spawn to exit (bar: median; whisker: min-max)")
    rows = []
    for name, stats in suite["wall_s"].items():
        criteria = suite["criteria"].get(name, 20)
        rows.append(
            (
                f"{SHORT.get(name, name)} ({criteria})",
                stats["median"],
                stats["min"],
                stats["max"],
                f"{stats['median']:.2f} s",
            )
        )
    _bars(c, rows, " s", label_width=250)


def breakdown_panel(c: Canvas, suite: dict) -> None:
    c.title("Where the plugin's time goes (median of 3 instrumented runs), in run order")
    b = suite["breakdown"]
    moments, spent = b["moments_s"], b["spent_s"]
    cleanup = "session cleanup (labelled leftovers)"
    segments = [
        ("python + pytest start", moments["imported"]),
        ("plugins load", moments["configured"] - moments["imported"]),
        ("collect", moments["collected"] - moments["configured"]),
    ]
    segments += [
        (name.replace("checks: ", "checks: "), seconds)
        for name, seconds in spent.items()
        if not name.startswith("of which") and name != cleanup and seconds >= 0.005
    ]
    segments.append(("session end + exit", max(moments["exited"] - moments["last_test"], 0)))
    total = sum(seconds for _, seconds in segments)
    left, right = 20, WIDTH - 20
    scale = (right - left) / total
    x, y = left, c.y
    for index, (_, seconds) in enumerate(segments):
        c.rect(x, y, seconds * scale, 22, SEGMENT_COLORS[index % len(SEGMENT_COLORS)])
        x += seconds * scale
    y += 36
    columns = 3
    for index, (name, seconds) in enumerate(segments):
        cx = left + (index % columns) * (WIDTH - 40) / columns
        cy = y + (index // columns) * 16
        c.rect(cx, cy - 9, 10, 10, SEGMENT_COLORS[index % len(SEGMENT_COLORS)])
        c.text(cx + 14, cy, f"{name[:40]}: {seconds:.2f} s", size=10)
    c.y = y + 16 * ((len(segments) + columns - 1) // columns) + 6
    c.text(20, c.y, f"total {total:.2f} s", size=11, color="#555")
    c.y += 8


def readiness_panel(c: Canvas, ready: dict) -> None:
    interval = ready["interval_s"]
    c.title(
        f"Readiness: time from ready to noticed, {ready['runs']} runs, interval "
        f"{interval * 1000:.0f} ms"
    )
    values = ready["latency_s"]["values"]
    left, right = 40, WIDTH - 60
    maximum = nice_maximum(max(max(values), 1.5 * interval) * 1.05)
    top, bottom = c.y, c.y + 60
    _axis(c, left, right, top, bottom, maximum * 1000, " ms")
    scale = (right - left) / maximum
    for index, value in enumerate(sorted(values)):
        c.circle(left + value * scale, top + 12 + (index % 4) * 11, 4, COLORS[0])
    x = left + interval * scale
    c.line(x, top - 4, x, bottom, color=COLORS[5], width=2, dash="4 3")
    c.text(x + 4, top + 6, "one interval", size=10, color=COLORS[5])
    median = ready["latency_s"]["median"]
    c.line(left + median * scale, top, left + median * scale, bottom, color="#222", dash="2 2")
    c.text(left + median * scale + 4, bottom - 4, f"median {median * 1000:.0f} ms", size=10)
    c.y = bottom + 24


def large_panel(c: Canvas, large: dict) -> None:
    size_gb = large["image"]["size"] / 1e9
    c.title(
        f"Large image ({size_gb:.2f} GB, {large['image']['layers']} layers): time and peak memory"
    )
    labels = {
        "save": "docker save > /dev/null",
        "size_only": "assert_size_within(wasted=)",
        "suite": "plugin: 5 image checks (pytest)",
        "dive": "dive --ci",
    }
    rows_time, rows_mem = [], []
    for key, label in labels.items():
        runs = large.get(key) or []
        if not runs:
            continue
        walls = [r["wall"] for r in runs]
        rss = [r["peak_rss"] / 2**20 for r in runs]
        median_wall = sorted(walls)[len(walls) // 2]
        median_rss = sorted(rss)[len(rss) // 2]
        rows_time.append((label, median_wall, min(walls), max(walls), f"{median_wall:.1f} s"))
        rows_mem.append((label, median_rss, None, None, f"{median_rss:.0f} MiB"))
    c.text(20, c.y + 4, "wall time", size=11, color="#555")
    c.y += 10
    _bars(c, rows_time, " s")
    c.text(
        20,
        c.y - 6,
        f"peak RSS (image size: {large['image']['size'] / 2**20:.0f} MiB)",
        size=11,
        color="#555",
    )
    c.y += 4
    _bars(c, rows_mem, " MiB")


def draw(results: dict) -> str:
    c = Canvas()
    m = results.get("machine", {})
    c.text(
        20,
        24,
        f"pytest-imagecheck benchmarks: {m.get('nproc')} cores, "
        f"{m.get('memory_gib')} GiB, Docker {m.get('engine')}, {results.get('finished', '')}",
        size=13,
        color="#555",
    )
    c.y = 30
    if "suite" in results:
        suite_panel(c, results["suite"])
        breakdown_panel(c, results["suite"])
    if "readiness" in results:
        readiness_panel(c, results["readiness"])
    if "large" in results:
        large_panel(c, results["large"])
    return c.svg()


def health_panel(c: Canvas, health: dict) -> None:
    cap = health["cap_s"]
    c.title(
        f"Health verdict: seconds from the service ready to the verdict (median of "
        f"{len(next(iter(health['runs'].values()))['seconds'])}; capped at {cap:.0f} s)"
    )
    rows = []
    for name, run in health["runs"].items():
        values = [cap if v is None else v for v in run["seconds"]]
        median = sorted(values)[len(values) // 2]
        by = "own probe (default)" if name.endswith("probe") else "engine's status"
        interval = name.split()[0]
        note = f"> {cap:.0f} s: none by the cap" if None in run["seconds"] else f"{median:.2f} s"
        rows.append((f"interval {interval}, {by}", median, min(values), max(values), note))
    _bars(c, rows, " s")


def speed_panel(c: Canvas, speed: dict) -> None:
    c.title(
        f"Example suite (-n 2, images built) and the 20-criteria suite: wall time, "
        f"{speed['repeat']} rotated rounds"
    )
    rows = [
        (name, s["median"], s["min"], s["max"], f"{s['median']:.2f} s")
        for name, s in speed["wall_s"].items()
    ]
    _bars(c, rows, " s")


def large15_panel(c: Canvas, large: dict) -> None:
    pooled = large["pooled"]
    c.title(f"Large image (3.01 GB, 23 layers): {pooled['rounds']} rotated rounds")
    labels = {
        "save": "docker save > /dev/null",
        "stream_py": "the save stream read in Python",
        "size_only": "assert_size_within(wasted=)",
        "suite": "plugin: 5 image checks",
        "dive": "dive --ci",
    }
    rows = []
    for key, label in labels.items():
        run = pooled["runs"].get(key)
        if run:
            w = run["wall"]
            mib = run["peak_rss_max"] / 2**20
            note = f"{w['median']:.1f} s, peak {mib:.0f} MiB"
            rows.append((label, w["median"], w["min"], w["max"], note))
    _bars(c, rows, " s")


def draw_issue15(folder: Path = RESULTS) -> str:
    c = Canvas()
    speed = json.loads((folder / "issue15-speed.json").read_text())
    m = speed.get("machine", {})
    c.text(
        20,
        24,
        f"issue 15: {m.get('nproc')} cores, Docker {m.get('engine')} (bar: median; "
        "whisker: min-max)",
        size=13,
        color="#555",
    )
    c.y = 30
    health_panel(c, json.loads((folder / "issue15-health.json").read_text()))
    speed_panel(c, speed)
    large15_panel(c, json.loads((folder / "issue15-large.json").read_text()))
    return c.svg()


def _save(svg_text: str, svg: Path) -> list[Path]:
    svg.parent.mkdir(parents=True, exist_ok=True)
    svg.write_text(svg_text)
    written = [svg]
    if shutil.which("rsvg-convert"):
        png = svg.with_suffix(".png")
        subprocess.run(["rsvg-convert", "-o", str(png), str(svg)], check=True)
        written.append(png)
    return written


def write(results: dict, folder: Path = RESULTS) -> list[Path]:
    return _save(draw(results), folder / "bench.svg")


if __name__ == "__main__":
    if sys.argv[1:] == ["--issue15"]:
        print(*_save(draw_issue15(), RESULTS / "issue15.svg"), sep="\n")
        sys.exit()
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "latest.json"
    print(*write(json.loads(source.read_text())), sep="\n")
