"""The evidence report's data travels one way, typed, on the test reports: the image as the
``image`` fixture read it, the size budget as a number, and waivers as the item marks them,
never parsed back out of junit properties or xfail reasons, nor read again at session end."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import docker
import pytest

from pytest_imagecheck.report import ImageIdentity, LayerRow
from pytest_imagecheck.verdicts import SeenImage

WORKERS = pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])


def _report(pytester: pytest.Pytester, *args: str) -> dict[str, Any]:
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--imagecheck-report=r.json", *args)
    return json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))


@WORKERS
def test_report_shows_the_image_as_read_although_it_is_gone_at_session_end(
    pytester: pytest.Pytester,
    build_image: Callable[..., str],
    busybox: str,
    client: docker.DockerClient,
    workers: list[str],
) -> None:
    ref = build_image(
        f"FROM {busybox}\nLABEL test=report-gone-{len(workers)}\nUSER 1000\n",
        tag=f"imagecheck-test/report-gone:{len(workers)}",
    )
    inspected = client.api.inspect_image(ref)
    layers = len(client.api.history(ref))
    pytester.makepyfile(
        """
        def test_reads_then_removes_the_image(image, docker_client):
            assert image.user == "1000"
            docker_client.images.remove(image.ref)

        def test_plain():
            pass
        """
    )
    data = _report(pytester, f"--image={ref}", *workers)
    assert [c["outcome"] for c in data["criteria"]] == ["passed", "passed"]
    assert data["image"]["ref"] == ref
    assert data["image"]["id"] == inspected["Id"]
    assert data["image"]["size_bytes"] == inspected["Size"]
    assert data["engine_version"] == client.version()["Version"]
    assert len(data["layers"]) == layers
    assert data["layers"][-1]["instruction"] == "USER 1000"


def test_image_no_test_read_is_reported_as_requested_not_inspected(
    pytester: pytest.Pytester, sample_image: str
) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    data = _report(pytester, f"--image={sample_image}")
    assert (data["image"], data["layers"], data["engine_version"]) == (None, [], None)
    assert data["requested_ref"] == sample_image
    pytester.runpytest_subprocess(f"--image={sample_image}", "--imagecheck-report=r.md")
    markdown = (pytester.path / "r.md").read_text(encoding="utf-8")
    assert "No image was inspected in this session." in markdown
    assert f"| Reference | `{sample_image}` (requested, not inspected) |" in markdown


@WORKERS
def test_size_budget_is_the_checks_tightest_not_a_junit_property_of_that_name(
    pytester: pytest.Pytester, sample_image: str, workers: list[str]
) -> None:
    pytester.makepyfile(
        """
        from pytest_imagecheck import assert_size_within

        def test_a_user_property_named_like_the_budget(record_property):
            record_property("imagecheck.size_budget_bytes", "2.5GB")

        def test_looser_size(image):
            assert_size_within(image, total="50MB")

        def test_size(image):
            assert_size_within(image, total="5MB")
        """
    )
    data = _report(pytester, f"--image={sample_image}", *workers)
    assert data["size_budget_bytes"] == 5_000_000  # the tightest, whichever ran first
    by_name = {c["name"]: c for c in data["criteria"]}
    assert by_name["test_size"]["outcome"] == "passed"
    assert {"name": "imagecheck.size_budget_bytes", "value": "2.5GB"} in by_name[
        "test_a_user_property_named_like_the_budget"
    ]["facts"]


@WORKERS
def test_waiver_is_known_by_the_item_not_by_its_xfail_reason(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.waive("waived: twice, OPS-3")
        def test_waived_with_a_reason_like_the_prefix():
            assert False

        @pytest.mark.xfail(reason="waived: x")
        def test_user_xfail_reading_like_a_waiver():
            assert False

        def test_imperative_xfail_reading_like_a_waiver():
            pytest.xfail("waived: later")

        @pytest.mark.waive("flaky upstream")
        def test_waived_that_passes():
            pass

        @pytest.mark.waive("w")
        @pytest.mark.xfail(reason="x")
        def test_waived_and_xfailed_by_its_own_mark():
            assert False
        """
    )
    data = _report(pytester, *workers)
    assert {c["name"]: (c["outcome"], c["reason"]) for c in data["criteria"]} == {
        "test_waived_with_a_reason_like_the_prefix": ("waived", "waived: twice, OPS-3"),
        "test_user_xfail_reading_like_a_waiver": ("xfailed", "waived: x"),
        "test_imperative_xfail_reading_like_a_waiver": ("xfailed", "waived: later"),
        "test_waived_that_passes": ("xpassed", "passed although waived: flaky upstream"),
        # pytest applied the test's own xfail (reason x), as the terminal and junit say.
        "test_waived_and_xfailed_by_its_own_mark": ("xfailed", "x"),
    }
    assert data["summary"]["waived"] == 1


def test_waiver_shows_as_before_in_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.waive("waived: twice, OPS-3")
        def test_waived():
            assert False
        """
    )
    result = pytester.runpytest("-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["XFAIL *::test_waived - waived: waived: twice, OPS-3"])


def test_seen_image_survives_a_json_round_trip() -> None:
    seen = SeenImage(
        identity=ImageIdentity("app:1", "sha256:" + "a" * 64, None, 10, "2025", "amd64", "linux"),
        layers=(LayerRow(0, 10, "ADD file:1 in /"), LayerRow(1, 0, "ENV A=***")),
        engine_version="20.10.24",
    )
    assert SeenImage.from_json(json.loads(json.dumps(seen.to_json()))) == seen
