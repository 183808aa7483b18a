"""The evidence report: JSON structure, Markdown verdicts and escaping, the SVG layer chart."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_imagecheck.report import (
    FORMAT,
    OUTCOMES,
    VERSION,
    FilesystemLayer,
    ImageIdentity,
    LayerRow,
    MemberRow,
    ReportData,
    Verdict,
    shared_bytes,
    write_report,
)

SVG = {"svg": "http://www.w3.org/2000/svg"}

IMAGE = ImageIdentity(
    ref="registry.example/autovoice:1.4",
    id="sha256:" + "a" * 64,
    digest="registry.example/autovoice@sha256:" + "b" * 64,
    size=2_345_678_901,
    created="2025-11-01T01:50:00Z",
    architecture="amd64",
    os="linux",
)

LAYERS = (
    LayerRow(0, 77_800_000, "ADD file:1234 in /"),
    LayerRow(1, 0, "ENV PATH=/usr/local/bin:/usr/bin"),
    LayerRow(2, 1_900_000_000, "RUN pip install torch==2.5.1 && rm -rf /root/.cache"),
    LayerRow(3, 300_000_000, "COPY /app /app"),
    LayerRow(4, 12_000, "RUN useradd -u 1000 svc"),
    LayerRow(5, 50_000_000, "COPY models/ /models"),
    LayerRow(6, 5_000_000, "RUN apt-get install -y curl"),
    LayerRow(7, 1_000, "COPY entrypoint.sh /"),
    LayerRow(8, 0, "USER svc"),
)


def verdict(outcome: str, name: str, reason: str = "", **facts: str) -> Verdict:
    return Verdict(
        nodeid=f"tests/test_image.py::test_{name.replace(' ', '_')}",
        name=name,
        outcome=outcome,
        reason=reason,
        facts=tuple((f"imagecheck.{key}", value) for key, value in facts.items()),
        duration=0.25,
    )


VERDICTS = (
    verdict("passed", "non-root user", uid="1000", user="svc"),
    verdict(
        "failed",
        "healthcheck interval",
        "healthcheck interval is 60s, expected <=30s (Dockerfile:41 HEALTHCHECK --interval=60s)",
        healthcheck_interval="60s",
    ),
    verdict("error", "endpoint ready", "container exited with code 3 before /health answered"),
    verdict("skipped", "CUDA runtime", "no NVIDIA GPU on this host"),
    verdict("waived", "base pinned by digest", "waived until 2025-12-01: vendor image, JIRA-12"),
    verdict("xfailed", "size budget", "known: torch wheel too large"),
    verdict("xpassed", "no secrets", "flaky scanner"),
)


def report_data(**changes: Any) -> ReportData:
    data = ReportData(
        image=IMAGE,
        engine_version="27.3.1",
        verdicts=VERDICTS,
        layers=LAYERS,
        size_budget=2_000_000_000,
        started="2025-11-01T01:50:00+00:00",
        finished="2025-11-01T01:52:10+00:00",
        command="pytest --image=registry.example/autovoice:1.4 --imagecheck-report=r.md",
    )
    return dataclasses.replace(data, **changes)


def markdown(tmp_path: Path, data: ReportData | None = None) -> str:
    write_report(data or report_data(), tmp_path / "report.md")
    return (tmp_path / "report.md").read_text(encoding="utf-8")


def chart(tmp_path: Path, data: ReportData | None = None) -> ET.Element:
    written = write_report(data or report_data(), tmp_path / "report.md")
    assert written[1].name == "report-layers.svg"
    return ET.parse(written[1]).getroot()


def cells(row: str) -> list[str]:
    """Split a GFM table row into cells as cmark-gfm does: a pipe right after a backslash is
    part of the cell, whatever comes before that backslash."""
    assert row.startswith("| ") and row.endswith(" |"), row
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row[1:-1])]


def criteria_rows(text: str) -> dict[str, list[str]]:
    """The criteria table's rows by criterion name (second cell)."""
    section = text.split("## Criteria\n\n", 1)[1].split("\n\n", 1)[0]
    header, _, *rows = section.splitlines()
    assert cells(header) == ["Verdict", "Criterion", "Reason", "Evidence"]
    return {cells(row)[1]: cells(row) for row in rows}


@pytest.mark.parametrize("name", ["report.json", "REPORT.JSON"])
def test_json_report_has_format_version_and_summary(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_report(report_data(), path) == [path]
    report = json.loads(path.read_text(encoding="utf-8"))
    assert (
        (report["format"], report["version"])
        == (FORMAT, VERSION)
        == (
            "pytest-imagecheck-report",
            1,
        )
    )
    assert report["summary"] == {outcome: 1 for outcome in OUTCOMES}
    assert report["command"].startswith("pytest --image=")
    assert report["started"] == "2025-11-01T01:50:00+00:00"
    assert report["finished"] == "2025-11-01T01:52:10+00:00"
    assert report["engine_version"] == "27.3.1"
    assert report["size_budget_bytes"] == 2_000_000_000
    assert not list(tmp_path.glob("*.svg"))


def test_json_report_keeps_identity_criteria_facts_and_layers_as_given(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_report(report_data(), path)
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["image"] == {
        "ref": IMAGE.ref,
        "id": IMAGE.id,
        "digest": IMAGE.digest,
        "size_bytes": 2_345_678_901,
        "created": "2025-11-01T01:50:00Z",
        "architecture": "amd64",
        "os": "linux",
    }
    assert [c["outcome"] for c in report["criteria"]] == [v.outcome for v in VERDICTS]
    first = report["criteria"][0]
    assert first == {
        "nodeid": "tests/test_image.py::test_non-root_user",
        "name": "non-root user",
        "outcome": "passed",
        "reason": "",
        "duration_s": 0.25,
        "facts": [
            {"name": "imagecheck.uid", "value": "1000"},
            {"name": "imagecheck.user", "value": "svc"},
        ],
    }
    assert report["criteria"][3]["reason"] == "no NVIDIA GPU on this host"
    assert report["layers"][2] == {
        "index": 2,
        "size_bytes": 1_900_000_000,
        "instruction": "RUN pip install torch==2.5.1 && rm -rf /root/.cache",
    }
    assert len(report["layers"]) == len(LAYERS)


def test_json_report_without_image_has_null_image_and_budget(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.json"
    data = report_data(image=None, engine_version=None, layers=(), size_budget=None)
    write_report(data, path)
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["image"] is None
    assert report["engine_version"] is None
    assert report["layers"] == []
    assert report["size_budget_bytes"] is None
    assert report["requested_ref"] is None


@pytest.mark.parametrize(
    ("name", "chart_name", "link"),
    [
        ("image check.md", "image check-layers.svg", "image%20check-layers.svg"),
        ("REPORT", "REPORT-layers.svg", "REPORT-layers.svg"),
    ],
)
def test_markdown_report_writes_svg_chart_beside_it_linked_by_relative_name(
    tmp_path: Path, name: str, chart_name: str, link: str
) -> None:
    path = tmp_path / "reports" / name
    written = write_report(report_data(), path)
    assert written == [path, tmp_path / "reports" / chart_name]
    assert all(p.is_file() for p in written)
    assert f"![Layer sizes]({link})" in path.read_text(encoding="utf-8")


def test_markdown_shows_each_outcome_in_plain_verdict_words(tmp_path: Path) -> None:
    rows = criteria_rows(markdown(tmp_path))
    assert {name: row[0] for name, row in rows.items()} == {
        "non-root user": "PASS",
        "healthcheck interval": "FAIL",
        "endpoint ready": "ERROR",
        "CUDA runtime": "NOT VERIFIED",
        "base pinned by digest": "WAIVED",
        "size budget": "FAIL (expected)",
        "no secrets": "PASS (unexpected)",
    }


def test_skipped_criterion_is_not_verified_with_its_reason_and_never_pass(
    tmp_path: Path,
) -> None:
    data = report_data(verdicts=(verdict("skipped", "CUDA runtime", "no NVIDIA GPU on this host"),))
    text = markdown(tmp_path, data)
    row = criteria_rows(text)["CUDA runtime"]
    assert row[:3] == ["NOT VERIFIED", "CUDA runtime", "no NVIDIA GPU on this host"]
    assert "PASS" not in text.split("## Criteria", 1)[1]
    assert "**1 criterion:** 0 PASS, 0 FAIL, 0 ERROR, 1 NOT VERIFIED (skipped)" in text


def test_waived_criterion_shows_its_reason(tmp_path: Path) -> None:
    row = criteria_rows(markdown(tmp_path))["base pinned by digest"]
    assert row[0] == "WAIVED"
    assert row[2] == "waived until 2025-12-01: vendor image, JIRA-12"


def test_summary_counts_each_verdict(tmp_path: Path) -> None:
    data = report_data(
        verdicts=(
            verdict("passed", "a"),
            verdict("passed", "b"),
            verdict("failed", "c", "no"),
            verdict("skipped", "d", "no GPU"),
        )
    )
    text = markdown(tmp_path, data)
    assert "**4 criteria:** 2 PASS, 1 FAIL, 0 ERROR, 1 NOT VERIFIED (skipped), 0 WAIVED\n" in text


def test_criteria_table_lists_evidence_facts_without_prefix(tmp_path: Path) -> None:
    rows = criteria_rows(markdown(tmp_path))
    assert rows["non-root user"][3] == "uid = `1000`<br>user = `svc`"
    assert rows["healthcheck interval"][3] == "healthcheck\\_interval = `60s`"


def test_long_fact_values_are_shortened_in_markdown_but_whole_in_json(tmp_path: Path) -> None:
    long = "x" * 300
    data = report_data(verdicts=(verdict("passed", "labels", labels=long),))
    evidence = criteria_rows(markdown(tmp_path, data))["labels"][3]
    assert evidence == "labels = `" + "x" * 79 + "…`"
    write_report(data, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["criteria"][0]["facts"][0]["value"] == long


def test_table_cells_escape_pipes_and_newlines(tmp_path: Path) -> None:
    data = report_data(
        verdicts=(
            Verdict(
                nodeid="t::a",
                name="grep a|b\nthen c",
                outcome="skipped",
                reason="needs x | y\nand z",
                facts=(("imagecheck.cmd", "sh -c 'a | b'\necho `x`"), ("imagecheck.p", "a\\|b")),
                duration=0.0,
            ),
        ),
        layers=(LayerRow(0, 10, "RUN a | b && \\\n    c"),),
    )
    text = markdown(tmp_path, data)
    row = criteria_rows(text)["grep a\\|b<br>then c"]
    assert len(row) == 4
    assert row[2] == "needs x \\| y and z"
    assert row[3] == "cmd = `` sh -c 'a \\| b' echo `x` ``<br>p = `a\\\\|b`"
    table = text.split("## Layers\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert cells(table[2]) == ["0", "10 B", "`RUN a \\| b && \\ c`"]
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith(" |")


def test_markdown_escapes_markup_in_names(tmp_path: Path) -> None:
    data = report_data(verdicts=(verdict("failed", "*not* <b>bold</b> [x](y) #", "no"),))
    text = markdown(tmp_path, data)
    escaped = "\\*not\\* \\<b\\>bold\\</b\\> \\[x\\](y) \\#"
    assert escaped in criteria_rows(text)
    assert f"### FAIL: {escaped}\n" in text  # a bare trailing # would close the heading


def test_failures_section_has_each_failure_and_error_in_full(tmp_path: Path) -> None:
    reason = (
        "container exited with code 3 before /health answered; last log lines:\n"
        "  fatal: DATABASE_URL is not set\n"
        "```\n"
        "| not a table |"
    )
    data = report_data(
        verdicts=(
            verdict("error", "endpoint ready", reason),
            verdict("failed", "non-root user", "image runs as root"),
            verdict("skipped", "CUDA runtime", "no GPU"),
            verdict("xfailed", "size budget", "known"),
        )
    )
    text = markdown(tmp_path, data)
    failures = text.split("## Failures\n", 1)[1].split("\n## ", 1)[0]
    assert "### ERROR: endpoint ready\n\n`tests/test_image.py::test_endpoint_ready`\n" in failures
    assert "\n````\n" + reason + "\n````\n" in failures
    assert "### FAIL: non-root user" in failures
    assert "image runs as root" in failures
    assert "CUDA runtime" not in failures
    assert "size budget" not in failures


def test_markdown_shows_image_identity_and_engine(tmp_path: Path) -> None:
    text = markdown(tmp_path)
    assert text.startswith("# Image check report: `registry.example/autovoice:1.4`\n")
    identity = text.split("## Image\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert {cells(row)[0]: cells(row)[1] for row in identity[2:]} == {
        "Reference": "`registry.example/autovoice:1.4`",
        "ID": f"`{IMAGE.id}`",
        "Digest": f"`{IMAGE.digest}`",
        "Size": "2.35 GB (2,345,678,901 bytes)",
        "Created": "2025-11-01T01:50:00Z",
        "OS/architecture": "`linux/amd64`",
        "Engine": "`27.3.1`",
    }


def test_image_without_digest_shows_none(tmp_path: Path) -> None:
    text = markdown(tmp_path, report_data(image=dataclasses.replace(IMAGE, digest=None)))
    assert "| Digest | none |" in text


def test_report_without_image_still_writes_markdown_and_no_chart(tmp_path: Path) -> None:
    data = report_data(
        image=None,
        engine_version=None,
        layers=(),
        size_budget=None,
        verdicts=(verdict("error", "image builds", "build failed: step 3/9 exited 1"),),
    )
    path = tmp_path / "report.md"
    assert write_report(data, path) == [path]
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Image check report\n")
    assert "No image was inspected in this session." in text
    assert "## Layers" not in text
    assert "build failed: step 3/9 exited 1" in text
    assert not list(tmp_path.glob("*.svg"))


def test_image_requested_but_not_inspected_is_named_as_such(tmp_path: Path) -> None:
    data = report_data(
        image=None, engine_version=None, layers=(), size_budget=None, requested_ref="app:1"
    )
    text = markdown(tmp_path, data)
    assert text.startswith("# Image check report: `app:1`\n")
    identity = text.split("## Image\n\n", 1)[1].split("\n## ", 1)[0]
    assert identity.startswith("No image was inspected in this session.\n")
    assert "| Reference | `app:1` (requested, not inspected) |" in identity
    assert "| ID |" not in identity
    write_report(data, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert (report["image"], report["requested_ref"]) == (None, "app:1")


def test_inspected_image_is_shown_whatever_reference_was_requested(tmp_path: Path) -> None:
    text = markdown(tmp_path, report_data(requested_ref="app:1"))
    assert text.startswith(f"# Image check report: `{IMAGE.ref}`\n")
    assert "requested, not inspected" not in text
    assert f"| Reference | `{IMAGE.ref}` |" in text


def test_report_with_no_results_says_none_were_recorded(tmp_path: Path) -> None:
    text = markdown(tmp_path, report_data(verdicts=()))
    assert "**0 criteria:** 0 PASS, 0 FAIL, 0 ERROR, 0 NOT VERIFIED (skipped), 0 WAIVED" in text
    assert "No test results were recorded." in text


def test_markdown_closes_with_command_and_times_only(tmp_path: Path) -> None:
    text = markdown(tmp_path)
    assert text.endswith(
        "\n---\n\nGenerated by pytest-imagecheck from "
        "`pytest --image=registry.example/autovoice:1.4 --imagecheck-report=r.md`, "
        "started 2025-11-01T01:50:00+00:00, finished 2025-11-01T01:52:10+00:00.\n"
    )


def test_markdown_layer_table_lists_each_layer_with_size_and_budget(tmp_path: Path) -> None:
    text = markdown(tmp_path)
    table = text.split("## Layers\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert cells(table[0]) == ["#", "Size", "Instruction"]
    assert len(table) == 2 + len(LAYERS)
    assert cells(table[4]) == [
        "2",
        "1.9 GB",
        "`RUN pip install torch==2.5.1 && rm -rf /root/.cache`",
    ]
    assert "Sum of layer sizes: 2.33 GB (2,332,813,000 bytes)." in text
    assert "Size budget: 2 GB (2,000,000,000 bytes)" in text


def test_layer_instructions_are_truncated_in_the_table(tmp_path: Path) -> None:
    data = report_data(layers=(LayerRow(0, 1, "RUN " + "a" * 200),))
    table = markdown(tmp_path, data).split("## Layers\n\n", 1)[1].splitlines()
    assert cells(table[2])[2] == "`RUN " + "a" * 95 + "…`"


def test_svg_chart_is_valid_xml_with_one_bar_per_layer(tmp_path: Path) -> None:
    root = chart(tmp_path)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    bars = root.findall("svg:rect[@class='layer']", SVG)
    assert len(bars) == len(LAYERS)
    widths = [float(bar.get("width", "")) for bar in bars]
    assert widths[1] == widths[8] == 0
    assert max(widths) == widths[2]


@pytest.mark.parametrize("budget", [None, 2_000_000_000])
def test_svg_chart_draws_budget_line_only_when_a_budget_is_set(
    tmp_path: Path, budget: int | None
) -> None:
    root = chart(tmp_path, report_data(size_budget=budget))
    lines = root.findall("svg:line[@class='budget']", SVG)
    assert len(lines) == (budget is not None)
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert ("budget 2 GB" in texts) == (budget is not None)


def bar_ends(root: ET.Element) -> list[float]:
    return [
        float(bar.get("x", "")) + float(bar.get("width", ""))
        for bar in root.findall("svg:rect[@class='layer']", SVG)
    ]


def test_svg_chart_scales_to_the_total_when_it_exceeds_the_budget(tmp_path: Path) -> None:
    root = chart(tmp_path, report_data(size_budget=1_000_000_000))
    ends = bar_ends(root)
    assert ends == sorted(ends)  # each bar starts where the one before ended
    budget_x = float(root.findall("svg:line[@class='budget']", SVG)[0].get("x1", ""))
    assert ends[-1] == pytest.approx(44 + 440, abs=0.2)
    assert budget_x == pytest.approx(44 + 440 * 1_000_000_000 / 2_332_813_000, abs=0.2)
    assert ends[1] < budget_x < ends[2]  # layer 2 is the one that crosses the budget


def test_svg_chart_scales_to_the_budget_when_it_exceeds_the_total(tmp_path: Path) -> None:
    root = chart(tmp_path, report_data(size_budget=4_665_626_000))
    budget_x = float(root.findall("svg:line[@class='budget']", SVG)[0].get("x1", ""))
    assert budget_x == pytest.approx(44 + 440, abs=0.2)
    assert bar_ends(root)[-1] == pytest.approx(44 + 220, abs=0.2)
    assert int(root.get("width", "")) >= budget_x


def test_svg_chart_labels_the_largest_layers(tmp_path: Path) -> None:
    root = chart(tmp_path)
    labels = [t.text for t in root.findall("svg:text[@class='label']", SVG)]
    assert labels == [
        "77.8 MB ADD file:1234 in /",
        "1.9 GB RUN pip install torch==2.5.1 && r…",
        "300 MB COPY /app /app",
        "50 MB COPY models/ /models",
        "5 MB RUN apt-get install -y curl",
    ]


def test_svg_chart_of_zero_sized_layers_has_empty_bars(tmp_path: Path) -> None:
    data = report_data(
        layers=(LayerRow(0, 0, "ENV A=1"), LayerRow(1, 0, "CMD x")), size_budget=None
    )
    root = chart(tmp_path, data)
    assert [bar.get("width") for bar in root.findall("svg:rect", SVG)] == ["0", "0"]


def test_svg_escapes_text_and_drops_characters_xml_cannot_carry(tmp_path: Path) -> None:
    instruction = 'RUN echo "<a & b>" ]]> \x1b[31m\udcff'
    data = report_data(
        image=dataclasses.replace(IMAGE, ref="app:<&>"),
        layers=(LayerRow(0, 100, instruction),),
    )
    root = chart(tmp_path, data)
    title = root.find("svg:title", SVG)
    assert title is not None and title.text is not None
    assert title.text.startswith("app:<&>: layer sizes: 100 B in 1 layer")
    bar_title = root.find("svg:rect/svg:title", SVG)
    assert bar_title is not None
    assert bar_title.text == 'layer 0: 100 B RUN echo "<a & b>" ]]> \ufffd[31m\ufffd'


def test_undecodable_file_names_in_facts_still_write_both_forms(tmp_path: Path) -> None:
    # tarfile decodes non-UTF-8 names with surrogateescape; a secrets check may record one
    name = b"/app/\xff.env".decode("utf-8", "surrogateescape")
    data = report_data(
        verdicts=(verdict("failed", "no secrets", f"{name} holds a key", path=name),)
    )
    write_report(data, tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["criteria"][0]["facts"][0]["value"] == name
    assert "/app/\ufffd.env" in markdown(tmp_path, data)


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome 'passd' for t::a: use one of passed,"):
        Verdict("t::a", "a", "passd", "", (), 0.0)


def _member(member_id: str, *layers: tuple[str, int, int]) -> MemberRow:
    """A member whose history steps are ``(diff_id, history size, file bytes)``."""
    return MemberRow(
        id=member_id,
        requested_ref=f"app:{member_id}",
        image=dataclasses.replace(
            IMAGE, ref=f"app:{member_id}", size=sum(step[1] for step in layers)
        ),
        layers=tuple(LayerRow(i, size, f"RUN step {i}") for i, (_, size, _) in enumerate(layers)),
        layer_bytes=tuple(
            FilesystemLayer(diff_id, files, i) for i, (diff_id, _, files) in enumerate(layers)
        ),
        wasted_bytes=0,
    )


def test_family_report_counts_shared_layers_as_the_size_column_does(tmp_path: Path) -> None:
    # A layer of symbolic links only: 3,216 bytes in the history, no regular file bytes.
    base = ("sha256:base", 1_000_000, 990_000)
    links = ("sha256:links", 3_216, 0)
    cpu = _member("cpu", base, links, ("sha256:cpu", 500, 500))
    cuda = _member("cuda", base, links, ("sha256:cuda", 9_000, 9_000))
    lone = dataclasses.replace(_member("lone", ("sha256:own", 10, 10)), layer_bytes=None)
    data = report_data(image=None, layers=(), size_budget=None, members=(cpu, cuda, lone))
    assert shared_bytes(cpu, data.members) == 1_003_216
    assert shared_bytes(lone, data.members) is None
    write_report(data, tmp_path / "r.json")
    members = json.loads((tmp_path / "r.json").read_text())["members"]
    assert [(m["id"], m["shared_bytes"], m["size_bytes"]) for m in members] == [
        ("cpu", 1_003_216, 1_003_716),
        ("cuda", 1_003_216, 1_012_216),
        ("lone", None, 10),
    ]
    text = markdown(tmp_path, data)
    assert "| cpu | `app:cpu` | 1 MB | 1 MB | 0 B | 1 MB | 0 | 0 | 0 |" in text
    assert "| lone | `app:lone` | 10 B | 10 B | 0 B | not read | 0 | 0 | 0 |" in text
    svg = chart(tmp_path, data)
    shared = [r for r in svg.iter(f"{{{SVG['svg']}}}rect") if "shared" in r.get("class", "")]
    assert len(shared) == 4  # two layers each of cpu and cuda; lone's layers were not read
