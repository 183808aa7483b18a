"""Image families on the real engine: a chain of three built in dependency order, variants
of one service with values per member, builds once under xdist, failures per member, pinning
inside the family, the family report, and one layer stream for all members."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

#: The inner runs leave out plugins that only slow them down.
INNER = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:randomly")


@pytest.fixture
def tags(client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """Unique tags for one test's family, removed afterwards."""
    suffix = secrets.token_hex(3)
    made = {
        name: f"imagecheck-family/{name}:{suffix}"
        for name in ("base", "ml", "stage", "cpu", "cuda", "tool")
    }
    yield made
    for tag in made.values():
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(tag, force=True, noprune=True)


def _chain(root: Path, busybox: str, tags: dict[str, str], *, broken_base: bool = False) -> None:
    """base (FROM busybox) <- ml (FROM ${REGISTRY}-less ARG tag) <- stage, declared out of
    order, and a tool image that depends on nothing."""
    for name in ("base", "ml", "stage", "tool"):
        (root / name).mkdir()
    fail = " && false" if broken_base else ""
    (root / "base" / "Dockerfile").write_text(
        f"FROM {busybox}\nRUN mkdir -p /opt/base && echo base > /opt/base/x{fail}\n"
        'CMD ["sleep", "3600"]\n'
    )
    (root / "ml" / "Dockerfile").write_text(
        f"ARG BASE={tags['base']}\nFROM ${{BASE}}\n"
        "RUN dd if=/dev/urandom of=/opt/ml.bin bs=1k count=64 2>/dev/null\n"
    )
    (root / "stage" / "Dockerfile").write_text(
        "ARG ML\nFROM ${ML} AS runtime\nUSER 1000\nLABEL stage=one\n"
    )
    (root / "tool" / "Dockerfile").write_text(
        f'FROM {busybox}\nLABEL tool=yes\nCMD ["sleep", "3600"]\n'
    )
    (root / "imagecheck.yaml").write_text(
        f"""images:
  stage:
    image: {tags["stage"]}
    build: {{context: stage, args: {{ML: "{tags["ml"]}"}}}}
  ml: {{image: "{tags["ml"]}", build: ml}}
  base: {{image: "{tags["base"]}", build: base}}
  tool: {{image: "{tags["tool"]}", build: tool}}
criteria:
  - check: non_root
    images: [stage]
  - check: base_images_pinned
    images: [ml, stage]
"""
    )


def _outcomes(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    return {criterion["name"]: criterion["outcome"] for criterion in data["criteria"]}


def _built(output: str) -> list[str]:
    """The members whose build ran, from the progress lines (``[id] built TAG (...)``)."""
    return re.findall(r"\[(\w+)\] built \S+ \(", output)


def test_chain_of_three_builds_in_dependency_order_and_judges_each_member(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags)
    pytester.makepyfile(
        test_family="""
        import pytest

        def test_member(image, imagecheck_member):
            assert image.ref.startswith("imagecheck-family/" + imagecheck_member + ":")

        @pytest.mark.images("stage")
        def test_stage_label(image):
            assert image.labels["stage"] == "one"
        """
    )
    result = pytester.runpytest(*INNER, "-v", "--imagecheck-report=r.json")
    output = result.stdout.str()
    # Declared stage, ml, base, tool: built base before ml before stage, tool alongside.
    built = _built(output)
    assert sorted(built) == ["base", "ml", "stage", "tool"]
    assert built.index("base") < built.index("ml") < built.index("stage")
    assert _outcomes(pytester.path / "r.json") == {
        "non_root[stage]": "passed",
        "base_images_pinned[ml]": "passed",
        "base_images_pinned[stage]": "passed",
        "test_member[stage]": "passed",
        "test_member[ml]": "passed",
        "test_member[base]": "passed",
        "test_member[tool]": "passed",
        "test_stage_label[stage]": "passed",
    }
    # The FROM on a member built here is evidence of that, never "pinned".
    data = json.loads((pytester.path / "r.json").read_text())
    facts = {c["name"]: {f["name"]: f["value"] for f in c["facts"]} for c in data["criteria"]}
    assert facts["base_images_pinned[stage]"]["imagecheck.built_here"] == (
        f"{tags['ml']} (member ml)"
    )
    assert "imagecheck.base_images" not in facts["base_images_pinned[stage]"] or (
        facts["base_images_pinned[stage]"]["imagecheck.base_images"] == "none"
    )


def test_under_xdist_each_member_is_built_exactly_once_and_tested_by_one_worker(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags)
    seen = pytester.path / "seen.txt"
    pytester.makepyfile(
        test_family=f"""
        import os

        import pytest

        def test_a(image):
            assert image.id

        def test_b(container, imagecheck_member):
            assert container.exec(["true"]).exit_code == 0
            with open({str(seen)!r}, "a") as file:
                file.write(imagecheck_member + " " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")

        @pytest.mark.parametrize("n", range(8))
        def test_c(container, imagecheck_member, n):
            with open({str(seen)!r}, "a") as file:
                file.write(imagecheck_member + " " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")
        """
    )
    result = pytester.runpytest_subprocess(*INNER, "-n", "2", "-v")
    result.assert_outcomes(passed=43, failed=0)
    output = result.stdout.str() + result.stderr.str()
    assert sorted(_built(output)) == ["base", "ml", "stage", "tool"]
    workers: dict[str, set[str]] = {}
    for line in seen.read_text().splitlines():
        member, worker = line.split()
        workers.setdefault(member, set()).add(worker)
    # Each member's containers were started by one worker; both workers had members.
    assert sorted(workers) == ["base", "ml", "stage", "tool"]
    assert all(len(used) == 1 for used in workers.values()), workers
    assert {worker for used in workers.values() for worker in used} == {"gw0", "gw1"}


def test_failed_build_fails_its_member_and_leaves_its_dependents_not_verified(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags, broken_base=True)
    pytester.makepyfile(test_family="def test_a(image):\n    assert image.id\n")
    result = pytester.runpytest(*INNER, "-rs", "--imagecheck-report=r.json")
    outcomes = _outcomes(pytester.path / "r.json")
    assert outcomes["test_a[base]"] == "error"
    # The unrelated member still runs.
    assert outcomes["test_a[tool]"] == "passed"
    for name in ("test_a[ml]", "test_a[stage]", "non_root[stage]", "base_images_pinned[ml]"):
        assert outcomes[name] == "skipped", name
    output = result.stdout.str()
    assert "member base: building " in output and "RUN mkdir -p /opt/base" in output
    assert (
        f"member stage: not built: it builds on member base ({tags['base']}), whose build "
        "failed; fix base first (its tests say why)" in output
    )
    report = (pytester.path / "r.json").read_text()
    assert '"skipped": 2' in report  # the stage member's summary in the family table


def test_variants_get_their_own_values_and_only_the_criteria_meant_for_them(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    (pytester.path / "Dockerfile").write_text(
        f"FROM {busybox} AS common\n"
        "FROM common AS cpu\nLABEL variant=cpu\nUSER 1000\n"
        "FROM common AS cuda\n"
        "RUN dd if=/dev/urandom of=/runtime.bin bs=1k count=300 2>/dev/null\n"
        "LABEL variant=cuda\nUSER 1000\n"
    )
    (pytester.path / "imagecheck.yaml").write_text(
        f"""images:
  cpu: {{image: "{tags["cpu"]}", build: {{context: ., target: cpu}}}}
  cuda: {{image: "{tags["cuda"]}", build: {{context: ., target: cuda}}}}
criteria:
  - check: size
    total: 3MB
    per_image: {{cuda: {{total: 2.1MB}}}}
  - check: labels
    expect: {{variant: cuda}}
    images: [cuda]
"""
    )
    result = pytester.runpytest(*INNER, "-v", "--imagecheck-report=r.json")
    outcomes = _outcomes(pytester.path / "r.json")
    assert outcomes == {
        "size total=3MB[cpu]": "passed",
        "size total=2.1MB[cuda]": "failed",
        "labels variant[cuda]": "passed",
    }
    assert f"image {tags['cuda']} is " in result.stdout.str()
    assert "budget 2.1 MB (total=2.1MB)" in result.stdout.str()
    data = json.loads((pytester.path / "r.json").read_text())
    members = {m["id"]: m for m in data["members"]}
    assert members["cpu"]["size_budget_bytes"] == 3_000_000
    assert members["cuda"]["size_budget_bytes"] == 2_100_000
    assert members["cuda"]["summary"]["failed"] == 1


def test_family_report_compares_members_and_streams_shared_layers_once(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str], client: docker.DockerClient
) -> None:
    _chain(pytester.path, busybox, tags)
    (pytester.path / "imagecheck.yaml").write_text(
        (pytester.path / "imagecheck.yaml").read_text() + "  - check: no_secrets\n"
    )
    # In a process of its own: an in-process run re-imports the checks, and their keep
    # predicates would no longer be the ones the engine's reads share.
    result = pytester.runpytest_subprocess(*INNER, "--imagecheck-report=r.md")
    output = result.stdout.str()
    streamed = int(
        re.search(r"streamed .* \(([\d,]+) bytes\) of image layers", output)[1].replace(",", "")
    )
    # What the engine streams for one save of all four images (each shared layer once),
    # against four saves of one image each.
    images = [tags[name] for name in ("stage", "ml", "base", "tool")]
    api = client.api
    url = f"{api.base_url}/v{api.api_version}/images/get"

    def saved(names: list[str]) -> int:
        response = api.get(url, params=[("names", name) for name in names], stream=True)
        return sum(len(chunk) for chunk in response.iter_content(1 << 20))

    together = saved(images)
    one_by_one = sum(saved([image]) for image in images)
    # The reader stops at the archive's end-of-archive blocks (at most one 10 KiB record).
    assert together - 10240 <= streamed <= together < one_by_one
    report = (pytester.path / "r.md").read_text()
    assert "# Image check report: a family of 4 images" in report
    assert (
        "| Member | Image | Size | Largest layer | Wasted | Shared with other members |" in report
    )
    stage_row = next(line for line in report.splitlines() if line.startswith("| stage |"))
    assert f"`{tags['stage']}`" in stage_row
    svg = (pytester.path / "r-layers.svg").read_text()
    assert svg.count('class="layer shared"') >= 4 and "side by side" in svg


def test_selecting_one_member_builds_only_it_and_what_it_builds_on(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags)
    pytester.makepyfile(test_family="def test_a(image):\n    assert image.id\n")
    result = pytester.runpytest(*INNER, "-k", "stage", "-v")
    result.assert_outcomes(passed=3)
    assert sorted(_built(result.stdout.str())) == ["base", "ml", "stage"]


def test_a_member_tested_by_reference_is_a_tag_to_pin(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str], client: docker.DockerClient
) -> None:
    _chain(pytester.path, busybox, tags)
    client.images.get(busybox).tag(tags["ml"])
    # ml is given by reference: the stage's FROM on it is pulled, not built here.
    result = pytester.runpytest(*INNER, f"--image=ml={tags['ml']}", "-k", "pinned and stage")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"imagecheck.yaml:11: stage/Dockerfile:2 FROM {tags['ml']} is not pinned by digest "
            f"(--build-arg ML={tags['ml']}, the tag of family member ml, which this session does "
            "not build: a build pulls it from a registry): pin it as NAME@sha256:<digest>"
        ]
    )


@pytest.mark.parametrize(
    ("images", "args", "message"),
    [
        pytest.param(
            "  a: {image: 'x/a:1', build: a}\n  b: {image: 'x/b:1', build: b}  # cycle\n",
            (),
            "ERROR: the family's builds depend on each other in a cycle: a (a/Dockerfile:1 FROM "
            "x/b:1) -> b (b/Dockerfile:1 FROM x/a:1) -> a: a member cannot be built before its "
            "own base; make one of them build FROM an image outside the family",
            id="cycle",
        ),
        pytest.param(
            "  a: {image: 'x/a:1', build: a}\n  b: {image: 'x/a:1', build: b}\n",
            (),
            "ERROR: imagecheck.yaml:1: members a and b have the same tag x/a:1 "
            "(imagecheck.yaml:2; imagecheck.yaml:3): each member needs a tag of its own, or the "
            "second build replaces the first",
            id="two members with one tag",
        ),
        pytest.param(
            "  a: {image: 'x/a:1', build: a}\n  b: {image: 'x/b:1', build: b}\n",
            ("--image=x/a:2",),
            "ERROR: --image x/a:2 gets the id a, which the family in imagecheck.yaml declares "
            "too: write --image a=x/a:2 to test x/a:2 as that member, or --image ID=x/a:2 to "
            "add it under another id",
            id="--image and the family with one id",
        ),
        pytest.param(
            "  a: {image: 'x/a:1', biuld: a}\n",
            (),
            'ERROR: imagecheck.yaml:2: a: unknown key "biuld": a member takes image (the '
            "reference to test, or the tag its build gets) and build",
            id="unknown member key",
        ),
        pytest.param(
            "  a: {image: 'x/a:1', build: nowhere}\n",
            (),
            "ERROR: imagecheck.yaml:2: a.build.context: nowhere is not a folder ({tmp}/nowhere): "
            "give the folder the Dockerfile copies from, relative to this file",
            id="missing context",
        ),
    ],
)
def test_bad_family_is_one_line(
    pytester: pytest.Pytester, images: str, args: tuple[str, ...], message: str
) -> None:
    cycle = "cycle" in images
    for name, base in (("a", "x/b:1"), ("b", "x/a:1")):
        (pytester.path / name).mkdir()
        (pytester.path / name / "Dockerfile").write_text(f"FROM {base if cycle else 'scratch'}\n")
    (pytester.path / "imagecheck.yaml").write_text(f"images:\n{images}")
    result = pytester.runpytest(*INNER, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        message.replace("{tmp}", str(pytester.path))
    ]


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        pytest.param(
            "  - check: non_root\n    images: [b, c]\n",
            'imagecheck.yaml:6: images: unknown member "c": the family\'s members are a, b',
            id="unknown id in images",
        ),
        pytest.param(
            "  - check: size\n    total: 1GB\n    images: [a]\n    per_image: {b: {total: 2GB}}\n",
            "imagecheck.yaml:8: per_image: member b is not one of this criterion's images (a): "
            "add it to images, or remove its keys",
            id="per_image for a member not selected",
        ),
        pytest.param(
            "  - check: size\n    per_image: {a: {total: 1XB}}\n",
            'imagecheck.yaml:6: for member a: total: bad size "1XB"',
            id="bad value in per_image",
        ),
    ],
)
def test_bad_family_criterion_is_a_collection_error_with_its_line(
    pytester: pytest.Pytester, criteria: str, message: str
) -> None:
    (pytester.path / "imagecheck.yaml").write_text(
        f"images:\n  a: x/a:1\n  b: x/b:1\ncriteria:\n{criteria}"
    )
    result = pytester.runpytest(*INNER, "--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert any(message in line for line in result.stdout.lines), result.stdout.str()


def test_images_marker_naming_an_unknown_member_is_a_collection_error(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "imagecheck.yaml").write_text("images:\n  a: x/a:1\n  b: x/b:1\n")
    pytester.makepyfile(
        "import pytest\n@pytest.mark.images('cuda')\ndef test_x(image):\n    pass\n"
    )
    result = pytester.runpytest(*INNER, "--collect-only")
    result.stdout.fnmatch_lines(
        [
            "*test_images_marker_naming_an_unknown_member_is_a_collection_error.py::test_x: "
            "@pytest.mark.images names unknown member 'cuda': the family's members are a, b"
        ]
    )


def test_family_criteria_in_another_file_than_the_family_file_are_refused(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "imagecheck.yaml").write_text("images:\n  c: x/c:1\n")
    result = pytester.runpytest(*INNER, "--image=x/a:1", "--collect-only")
    result.stdout.fnmatch_lines(
        [
            "*sub/imagecheck.yaml: images: declares a family of images, but the session does not "
            "read it: pass --family *sub/imagecheck.yaml to test this family (one family per "
            "session)"
        ]
    )


def test_dependents_of_a_member_missing_from_the_engine_are_not_verified(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags)
    pytester.makepyfile(test_family="def test_a(image):\n    assert image.id\n")
    missing = tags["ml"]  # given by reference (not built), and not on the engine
    result = pytester.runpytest(
        *INNER, f"--image=ml={missing}", "-rs", "--imagecheck-report=r.json"
    )
    outcomes = _outcomes(pytester.path / "r.json")
    assert outcomes["test_a[ml]"] == "error"
    assert outcomes["test_a[stage]"] == "skipped"
    assert outcomes["test_a[base]"] == outcomes["test_a[tool]"] == "passed"
    output = result.stdout.str()
    assert (
        f"member ml: image '{missing}' of member ml is not on the engine: build or pull it "
        "first\n" in output + "\n"
    )
    assert (
        f"member stage: not built: it builds on member ml ({missing}), which is not on the "
        "engine; fix ml first (its tests say why)" in output
    )
    assert "stage" not in _built(output)


def test_images_marker_where_it_cannot_apply_is_a_collection_error(
    pytester: pytest.Pytester, sample_image: str
) -> None:
    pytester.makepyfile(
        "import pytest\n@pytest.mark.images('cuda')\ndef test_cuda(image):\n    pass\n"
    )
    result = pytester.runpytest(*INNER, f"--image={sample_image}", "--collect-only")
    result.stdout.fnmatch_lines(
        [
            "*::test_cuda: @pytest.mark.images names family members, but this session tests "
            "one image: declare the family under images: (or give --image several times), or "
            "remove the marker"
        ]
    )
    (pytester.path / "imagecheck.yaml").write_text("images:\n  cuda: x/cuda:1\n")
    pytester.makepyfile("import pytest\n@pytest.mark.images('cuda')\ndef test_plain():\n    pass\n")
    result = pytester.runpytest(*INNER, "--collect-only")
    result.stdout.fnmatch_lines(
        [
            "*::test_plain: @pytest.mark.images names family members, but the test uses no "
            "fixture that follows the member (image, container, run_container, dockerfile, "
            "imagecheck_member): use one, or remove the marker"
        ]
    )


def test_stopping_the_session_stops_the_family_builds(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str], client: docker.DockerClient
) -> None:
    # Two members build side by side, so each build runs in a thread of its own: SIGTERM
    # reaches only the main thread.
    for name in ("cpu", "cuda"):
        (pytester.path / name).mkdir()
        (pytester.path / name / "Dockerfile").write_text(
            f"FROM {busybox}\nRUN echo {secrets.token_hex(8)} && sleep 25\n"
        )
    (pytester.path / "imagecheck.yaml").write_text(
        f"images:\n  cpu: {{image: '{tags['cpu']}', build: cpu}}\n"
        f"  cuda: {{image: '{tags['cuda']}', build: cuda}}\n"
    )
    pytester.makepyfile(test_family="def test_a(image):\n    pass\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *INNER, "-s"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    running = 0
    for line in proc.stdout:
        running += "&& sleep 25" in line
        if running == 2:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    # Had the builds gone on, their processes would still run, and tag the images.
    builds = subprocess.run(["pgrep", "-f", f"-t {tags['cpu']}"], capture_output=True, text=True)
    assert builds.stdout == ""
    for name in ("cpu", "cuda"):
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(tags[name])


@pytest.mark.parametrize(
    ("images", "message"),
    [
        pytest.param(
            "  1: x/a:1\n",
            "imagecheck.yaml:2: member id 1 is read by YAML as a number or a boolean, not text: "
            'quote it (e.g. "1": or "on":)',
            id="unquoted number id",
        ),
        pytest.param(
            "  a: {image: 'x/a@sha256:" + "0" * 64 + "', build: .}\n",
            "imagecheck.yaml:2: a.image: x/a@sha256:" + "0" * 64 + " names a digest, but a "
            "build gets a tag: give a tag like app:ci, or remove build: to test the image pinned "
            "by that digest",
            id="digest as a build's tag",
        ),
    ],
)
def test_member_declaration_mistakes_say_how_to_write_it(
    pytester: pytest.Pytester, images: str, message: str
) -> None:
    (pytester.path / "Dockerfile").write_text("FROM scratch\n")
    (pytester.path / "imagecheck.yaml").write_text(f"images:\n{images}")
    result = pytester.runpytest(*INNER)
    assert [line for line in result.stderr.lines if line] == [f"ERROR: {message}"]


@pytest.mark.parametrize(
    "dockerfile",
    [
        "ARG REGISTRY=reg.example\nFROM ${REGISTRY}/app-base:cuda\n",
        "ARG B\nFROM ${B:-reg.example/app-base:cuda} AS x\nFROM x\n",
        "from reg.example/app-base:cuda as Build\nFROM scratch\nCOPY --from=build / /\n",
        "FROM scratch\nCOPY --from=reg.example/app-base:cuda /x /x\n",
        "FROM scratch\nRUN --mount=type=bind,from=reg.example/app-base:cuda,target=/t true\n",
        "FROM docker.io/library/python:latest\n",
    ],
    ids=[
        "arg default",
        "arg fallback and stage",
        "lowercase and stage",
        "copy --from",
        "mount from",
        "canonical names",
    ],
)
def test_dependencies_follow_args_stages_and_from_flags(tmp_path: Path, dockerfile: str) -> None:
    from pytest_imagecheck.family import load_family

    for name, text in (("base", "FROM scratch\n"), ("app", dockerfile)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(text)
    (tmp_path / "imagecheck.yaml").write_text(
        "images:\n  app: {image: 'app:1', build: app}\n"
        "  base: {image: 'reg.example/app-base:cuda', build: base}\n"
        "  py: {image: 'python', build: base}\n"
    )
    family = load_family(tmp_path / "imagecheck.yaml")
    assert family is not None
    deps = family.dependencies("linux/amd64")
    expected = "py" if "python" in dockerfile else "base"
    assert list(deps["app"]) == [expected]
    assert family.order(deps).index(expected) < family.order(deps).index("app")


def test_a_stage_the_target_does_not_use_makes_no_dependency(tmp_path: Path) -> None:
    from pytest_imagecheck.family import load_family

    (tmp_path / "Dockerfile").write_text(
        "FROM reg.example/app-base:cuda AS gpu\nFROM scratch AS cpu\n"
    )
    (tmp_path / "imagecheck.yaml").write_text(
        "images:\n  cpu: {image: 'app:cpu', build: {context: ., target: cpu}}\n"
        "  base: reg.example/app-base:cuda\n"
    )
    family = load_family(tmp_path / "imagecheck.yaml")
    assert family is not None and family.dependencies("linux/amd64")["cpu"] == {}


def test_giving_a_member_others_build_on_another_tag_is_refused(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags)
    result = pytester.runpytest(*INNER, "--image=ml=imagecheck-family/other:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        f"ERROR: --image ml=imagecheck-family/other:1 gives member ml another tag than "
        f"{tags['ml']}, which stage build on (imagecheck.yaml:5): they would build on whatever "
        f"{tags['ml']} is on the engine; tag the image {tags['ml']} and pass --image "
        f"ml={tags['ml']}, or change the tag in the family file"
    ]


def test_members_are_selected_by_marker_and_named_in_the_marker_once(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags)
    pytester.makepyfile(
        test_family="""
        import pytest

        def test_a(image, request):
            assert request.node.get_closest_marker("member").kwargs["id"] == image.ref.split(
                "/")[1].split(":")[0]

        @pytest.mark.images(ids="stage")
        def test_kwargs(image):
            pass
        """
    )
    result = pytester.runpytest(*INNER, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "*::test_kwargs: @pytest.mark.images takes member ids as separate arguments, e.g. "
            "@pytest.mark.images('stage', 'ml')"
        ]
    )
    pytester.makepyfile(
        test_family="def test_a(image, request):\n"
        "    assert request.node.get_closest_marker('member')\n"
    )
    result = pytester.runpytest(*INNER, "-m", "member(id='ml')", "-v")
    result.assert_outcomes(passed=2)  # the Python test and the YAML criterion for ml
    result.stdout.fnmatch_lines(["*base_images_pinned?ml? PASSED*", "*test_a?ml? PASSED*"])


def test_an_image_fetched_by_name_in_a_family_says_how_to_run_per_member(
    pytester: pytest.Pytester, busybox: str, tags: dict[str, str]
) -> None:
    _chain(pytester.path, busybox, tags)
    pytester.makepyfile(test_family="def test_a(request):\n    request.getfixturevalue('image')\n")
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(failed=1, passed=3)  # the family file's criteria pass
    result.stdout.fnmatch_lines(
        [
            "*this test is not run per family member: take image (or container, run_container, "
            "dockerfile) as an argument of the test or of its fixture, not through "
            "request.getfixturevalue, so pytest runs it once per member"
        ]
    )
