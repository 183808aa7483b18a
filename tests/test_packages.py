"""What ML image reviews check, read from the layers: OS and Python package facts, and the
checks built on them, against what the real tools say inside the same images.

The images are built here from the debootstrap Debian base with real Debian packages
(``apt-get install`` inside ``docker build``: python3-pip, make, git, rpm, db-util) and
real wheels from PyPI (tests/wheels.py downloads them on the host; pip cannot reach an
index inside a build, so they go in the build context and ``pip install --no-index``
installs them):

- ``consistent``: pytest 8.3.3 and what it needs, python-dateutil and six;
- ``broken``: the same with pluggy 1.0.0, which pytest rejects, and python-dateutil
  installed with ``--no-deps`` without six;
- ``history``: six 1.15.0 upgraded in place to 1.16.0, installed again into a venv, and
  make purged in a later layer;
- ``shellless``: ``FROM scratch`` with the broken set's site-packages, Python's standard
  library and binary, and a distroless-style ``/var/lib/dpkg/status.d/`` (the real status
  stanzas of the packages copied, one file per package, as Debian's distroless images
  have them) copied from a build stage;
- ``strays``: what builds leave: apt's lists and downloaded packages, pip's wheel cache
  (from a real sdist build), ``/tmp`` leftovers, a real git repository, a backup file, a
  script in ``/root``, a file in ``/``;
- ``rpm``: a real rpm SQLite database (rpmbuild and rpm from Debian), and ``bdb`` a real
  Berkeley DB file (db_load) where CentOS 7 keeps its rpmdb.

Each image is removed at the end of the module (without pruning its parents, which stay
as the engine's build cache); ``pip check``, ``pip inspect``, ``dpkg-query`` and ``rpm -qa``
run in throwaway labelled containers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import docker
import docker.errors
import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from pytest_imagecheck import (
    assert_absent,
    assert_installed_once,
    assert_no_stray_files,
    assert_pip_consistent,
    assert_versions,
)
from pytest_imagecheck.checks.packages import pip_problems, stray_files
from pytest_imagecheck.engine import LABEL_SESSION, Engine, new_session_id
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import collecting
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.packages import live_files
from pytest_imagecheck.pythons import (
    PythonInstall,
    PythonPackage,
    egg_requirements,
    evaluate_marker,
    marker_environment,
    stored_bytes,
)
from pytest_imagecheck.pythons import keep_file as python_files
from pytest_imagecheck.spec import SpecError, parse_spec
from pytest_imagecheck.units import format_size
from tests.wheels import fetch

SITE = "/usr/local/lib/python3.11/dist-packages"
CONSISTENT = [
    "pytest==8.3.3",
    "iniconfig==2.0.0",
    "packaging==24.1",
    "pluggy==1.5.0",
    "python-dateutil==2.9.0.post0",
    "six==1.16.0",
]
#: pytest 8.3.3 wants pluggy<2,>=1.5; python-dateutil wants six, which is not there. tomli
#: and Pygments are older than pytest asks for, under markers that do not hold here
#: (``tomli >=1 ; python_version < "3.11"``, ``pygments >=2.7.2 ; extra == 'dev'``): neither
#: pip check nor assert_pip_consistent reports them.
BROKEN = [
    "pytest==8.3.3",
    "iniconfig==2.0.0",
    "packaging==24.1",
    "pluggy==1.0.0",
    "python-dateutil==2.9.0.post0",
    "tomli==0.2.10",
    "pygments==2.5.2",
]
APT = (
    "RUN apt-get update && apt-get install -y --no-install-recommends python3-pip make "
    "&& apt-get clean && rm -rf /var/lib/apt/lists/*"
)
PIP = (
    "python3 -m pip install --break-system-packages --no-index --no-deps --no-cache-dir "
    "--disable-pip-version-check -q"
)
INSTALLED = """FROM {debian}
{apt}
COPY wheels/ /tmp/wheels/
RUN {pip} /tmp/wheels/*.whl && rm -rf /tmp/wheels
"""
HISTORY = """FROM {debian}
{apt}
COPY wheels/ /tmp/wheels/
RUN {pip} /tmp/wheels/six-1.15.0-*.whl
RUN {pip} --upgrade /tmp/wheels/six-1.16.0-*.whl
RUN python3 -m venv --without-pip /opt/venv \\
 && {pip} --target /opt/venv/lib/python3.11/site-packages /tmp/wheels/six-1.16.0-*.whl \\
 && rm -rf /tmp/wheels
RUN apt-get purge -y make
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""
#: The packages whose files the shell-less image copies: their status stanzas go with them.
SHELLLESS_PACKAGES = (
    "base-files",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
)
SPLIT_STATUS = (
    "import pathlib, re; out = pathlib.Path('/out/var/lib/dpkg/status.d'); "
    "out.mkdir(parents=True); "
    "stanzas = pathlib.Path('/var/lib/dpkg/status').read_text().split('\\n\\n'); "
    "[(out / m.group(1)).write_text(s.strip() + '\\n') for s in stanzas "
    "for m in [re.match(r'Package: (\\S+)', s)] if m and m.group(1) in {keep!r}]"
)
SHELLLESS = """FROM {debian} AS build
{apt}
COPY wheels/ /tmp/wheels/
RUN {pip} /tmp/wheels/*.whl && rm -rf /tmp/wheels
RUN python3 -c "{split}"

FROM scratch
COPY --from=build /usr/lib/os-release /etc/os-release
COPY --from=build /out/ /
COPY --from=build /usr/bin/python3.11 /usr/bin/python3.11
COPY --from=build /usr/lib/python3.11/ /usr/lib/python3.11/
COPY --from=build {site}/ {site}/
ENTRYPOINT ["/usr/bin/python3.11"]
"""
HELLO_PROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "hello-local"
version = "0.1"
"""
STRAYS = """FROM {debian}
RUN apt-get update && apt-get install -y --no-install-recommends git python3-pip
COPY hello/ /tmp/src/hello/
RUN cd /tmp/src/hello \\
 && python3 -c "from setuptools import build_meta; build_meta.build_sdist('/tmp/dist')" \\
 && cd / && python3 -m pip install --break-system-packages --no-index --no-build-isolation \\
    --disable-pip-version-check -q /tmp/dist/hello-local-0.1.tar.gz
RUN git init -q /app && cp /tmp/src/hello/pyproject.toml /app/ \\
 && cp /app/pyproject.toml /app/pyproject.toml~ \\
 && git -C /app add pyproject.toml \\
 && git -C /app -c user.email=ci@example.com -c user.name=ci commit -qm init
RUN cp /tmp/src/hello/pyproject.toml /requirements.txt \\
 && cp /tmp/src/hello/pyproject.toml /root/setup.py
"""
HELLO_SPEC = """Name: imagecheck-hello
Version: 1.2.3
Release: 4
Summary: a package for the rpmdb tests
License: MIT
BuildArch: noarch
%description
A package for the rpmdb tests.
%install
mkdir -p %{buildroot}/opt/hello && echo hello > %{buildroot}/opt/hello/hello.txt
%files
/opt/hello/hello.txt
"""
RPM = """FROM {debian} AS rpm
RUN apt-get update && apt-get install -y --no-install-recommends rpm db-util \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY hello.spec /tmp/hello.spec
RUN rpmbuild --quiet --define "_topdir /tmp/rb" -bb /tmp/hello.spec \\
 && rpm --dbpath /var/lib/rpm --initdb \\
 && rpm --dbpath /var/lib/rpm -i --nodeps /tmp/rb/RPMS/noarch/*.rpm 2>/dev/null \\
 && rm -rf /tmp/rb /tmp/hello.spec \\
 && mkdir /out && printf 'imagecheck\\nberkeley\\n' | db_load -T -t hash /out/Packages

FROM {busybox} AS bdb
COPY --from=rpm /out/Packages /var/lib/rpm/Packages
"""


# --- building and running ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(client: docker.DockerClient) -> Engine:
    return Engine(client, f"tests-packages-{new_session_id()}")


@pytest.fixture(scope="module")
def build(
    client: docker.DockerClient, worker_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., str]]:
    """Build ``Dockerfile`` text with wheels and files in its context; the tag is removed
    when the module ends (its parents stay, as the engine's build cache)."""
    made: list[str] = []

    def build(
        name: str,
        dockerfile: str,
        *,
        wheels: Sequence[str] = (),
        files: Mapping[str, str] | None = None,
        target: str | None = None,
    ) -> str:
        context = tmp_path_factory.mktemp(f"packages-{name}")
        (context / "Dockerfile").write_text(dockerfile)
        (context / "wheels").mkdir()
        for requirement in wheels:
            wheel = fetch(requirement)
            try:
                os.link(wheel, context / "wheels" / wheel.name)
            except OSError:
                (context / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
        for path, text in (files or {}).items():
            (context / path).parent.mkdir(parents=True, exist_ok=True)
            (context / path).write_text(text)
        tag = f"imagecheck-test/packages-{name}:1-{worker_id}"
        client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, target=target)
        made.append(tag)
        return tag

    yield build
    for tag in made:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True, noprune=True)


def run_in(client: docker.DockerClient, tag: str, *argv: str) -> tuple[int, str]:
    """Run ``argv`` in a throwaway container of ``tag``: its exit code and output."""
    container = client.containers.create(
        tag, list(argv), entrypoint=[], labels={LABEL_SESSION: "tests-packages"}
    )
    try:
        container.start()
        code = int(container.wait(timeout=120)["StatusCode"])
        return code, container.logs(stdout=True, stderr=False).decode()
    finally:
        container.remove(force=True)


def outcome(check: Callable[[], object]) -> tuple[str | None, dict[str, object]]:
    """A check's failure message (None: it passed) and the evidence it recorded."""
    with collecting() as evidence:
        try:
            check()
        except AssertionError as failure:
            return str(failure), evidence[0].facts if evidence else {}
    return None, evidence[0].facts if evidence else {}


@pytest.fixture(scope="module")
def consistent(build: Callable[..., str], debian: str) -> str:
    return build("consistent", INSTALLED.format(debian=debian, apt=APT, pip=PIP), wheels=CONSISTENT)


@pytest.fixture(scope="module")
def broken(build: Callable[..., str], debian: str) -> str:
    return build("broken", INSTALLED.format(debian=debian, apt=APT, pip=PIP), wheels=BROKEN)


@pytest.fixture(scope="module")
def history(build: Callable[..., str], debian: str) -> str:
    return build(
        "history",
        HISTORY.format(debian=debian, apt=APT, pip=PIP),
        wheels=["six==1.15.0", "six==1.16.0"],
    )


@pytest.fixture(scope="module")
def shellless(build: Callable[..., str], debian: str) -> str:
    split = SPLIT_STATUS.format(keep=set(SHELLLESS_PACKAGES))
    dockerfile = SHELLLESS.format(debian=debian, apt=APT, pip=PIP, split=split, site=SITE)
    return build("shellless", dockerfile, wheels=BROKEN)


@pytest.fixture(scope="module")
def strays(build: Callable[..., str], debian: str) -> str:
    return build(
        "strays",
        STRAYS.format(debian=debian),
        files={"hello/pyproject.toml": HELLO_PROJECT, "hello/hello_local/__init__.py": ""},
    )


@pytest.fixture(scope="module")
def rpm_image(build: Callable[..., str], debian: str, busybox: str) -> str:
    dockerfile = RPM.format(debian=debian, busybox=busybox)
    return build("rpm", dockerfile, files={"hello.spec": HELLO_SPEC}, target="rpm")


@pytest.fixture(scope="module")
def bdb_image(build: Callable[..., str], debian: str, busybox: str, rpm_image: str) -> str:
    dockerfile = RPM.format(debian=debian, busybox=busybox)
    return build("bdb", dockerfile, files={"hello.spec": HELLO_SPEC}, target="bdb")


def instruction(image: ImageUnderTest, layer: int) -> str:
    """The history step that made filesystem layer ``layer``."""
    step = image.layer_contents()[layer].step
    assert step is not None
    return image.layers[step].instruction


# --- facts, against the tools in the image -------------------------------------------------


def test_os_release_is_read_from_the_layers(engine: Engine, consistent: str) -> None:
    release = engine.image(consistent).os_release
    assert release is not None
    code, text = run_in(engine.client, consistent, "cat", "/etc/debian_version")
    assert code == 0
    assert (release.id, release.version_id, release.version) == ("debian", "12", text.strip())
    assert release.version_source == "/etc/debian_version"
    assert release.path == "/etc/os-release"


def test_dpkg_packages_are_dpkg_querys_with_the_layer_that_added_each(
    engine: Engine, consistent: str
) -> None:
    image = engine.image(consistent)
    code, text = run_in(
        engine.client,
        consistent,
        "dpkg-query",
        "-W",
        "-f",
        "${db:Status-Status} ${Package} ${Version} ${Architecture}\\n",
    )
    assert code == 0
    expected = {
        tuple(line.split()[1:])
        for line in text.splitlines()
        if line.split()[0] not in ("not-installed", "config-files")
    }
    assert {(p.name, p.version, p.arch) for p in image.packages} == expected
    assert [str(db) for db in image.packages.databases] == [
        f"dpkg: /var/lib/dpkg/status (layer 1, {len(expected)} packages)"
    ]
    make = image.packages.get("make")
    assert make is not None and make.layer == 1
    assert "apt-get install -y --no-install-recommends python3-pip make" in instruction(image, 1)
    assert image.packages.get("libc6") is not None
    assert image.packages.get("libc6").layer == 0  # type: ignore[union-attr]


def test_python_packages_are_pip_inspects_with_location_and_layer(
    engine: Engine, consistent: str
) -> None:
    image = engine.image(consistent)
    code, text = run_in(engine.client, consistent, "python3", "-m", "pip", "inspect")
    assert code == 0
    installed = json.loads(text)["installed"]
    expected = {
        (
            str(canonicalize_name(d["metadata"]["name"])),
            d["metadata"]["version"],
            d["metadata_location"],
        )
        for d in installed
    }
    found = {(p.canonical_name, p.version, p.path) for p in image.python_packages}
    assert found == expected
    by_name = {p.canonical_name: p for p in image.python_packages}
    assert by_name["pytest"].location == SITE and by_name["pytest"].layer == 3
    assert by_name["pip"].location == "/usr/lib/python3/dist-packages"
    assert by_name["pip"].layer == 1
    assert "pluggy <2,>=1.5" in by_name["pytest"].requires  # as METADATA writes it
    # Debian's wheel is an egg-info: its requires.txt sections become markers.
    assert by_name["wheel"].requires == ('pytest>=3.0.0; extra == "test"',)
    (python,) = image.pythons
    assert (python.executable, python.version, python.complete) == (
        "/usr/bin/python3.11",
        "3.11.2",
        True,
    )
    assert python.version_source.startswith("OS package python3.11-minimal 3.11.2-")
    assert python.site_dirs == (SITE, "/usr/lib/python3/dist-packages")


# --- assert_pip_consistent against pip check ------------------------------------------------


def pip_check(client: docker.DockerClient, tag: str) -> tuple[int, set[str]]:
    code, text = run_in(client, tag, "python3", "-m", "pip", "check")
    lines = {line for line in text.splitlines() if line.strip()}
    return code, lines - {"No broken requirements found."}


def test_a_consistent_set_passes_as_pip_check_passes(engine: Engine, consistent: str) -> None:
    code, lines = pip_check(engine.client, consistent)
    assert (code, lines) == (0, set())
    failure, evidence = outcome(lambda: assert_pip_consistent(engine.image(consistent)))
    assert failure is None
    assert evidence["broken"] == "none"
    assert evidence["distributions"] == 9  # 6 wheels, Debian's pip, setuptools and wheel
    # pytest's exceptiongroup and tomli (python_version < "3.11") and colorama
    # (sys_platform == "win32") are requirements that do not apply here.
    assert int(str(evidence["requirements_checked"])) > 5


def test_a_broken_set_fails_with_pip_checks_verdicts_line_by_line(
    engine: Engine, broken: str
) -> None:
    code, lines = pip_check(engine.client, broken)
    assert code == 1
    assert lines == {
        "python-dateutil 2.9.0.post0 requires six, which is not installed.",
        "pytest 8.3.3 has requirement pluggy<2,>=1.5, but you have pluggy 1.0.0.",
    }
    image = engine.image(broken)
    problems, _ = pip_problems(image.pythons, image.python_packages, image.architecture)
    assert {b.pip_check() for b in problems} == lines
    failure, evidence = outcome(lambda: assert_pip_consistent(image))
    assert failure is not None
    assert set(evidence["broken"]) == lines  # type: ignore[call-overload]
    step = instruction(image, 3)
    assert failure.splitlines() == [
        "pytest 8.3.3 requires pluggy<2,>=1.5, but pluggy 1.0.0 is installed for Python "
        f"3.11.2 (/usr/bin/python3.11): pytest 8.3.3 is in {SITE}, layer 3 ({step[:79]}…), "
        f"pluggy 1.0.0 in {SITE}, layer 3 ({step[:79]}…); install a pluggy that meets "
        '<2,>=1.5, or a pytest that accepts 1.0.0 [pip check: "pytest 8.3.3 has requirement '
        'pluggy<2,>=1.5, but you have pluggy 1.0.0."]',
        "python-dateutil 2.9.0.post0 requires six>=1.5, which is not installed for Python "
        f"3.11.2 (/usr/bin/python3.11): python-dateutil 2.9.0.post0 is in {SITE}, layer 3 "
        f"({step[:79]}…); install six beside it (a pip install without --no-deps resolves it) "
        '[pip check: "python-dateutil 2.9.0.post0 requires six, which is not installed."]',
    ]


def test_a_shell_less_image_gets_the_verdicts_pip_check_gives_its_build_stage(
    engine: Engine, shellless: str, broken: str
) -> None:
    _, lines = pip_check(engine.client, broken)  # the same wheels, where pip can run
    image = engine.image(shellless)
    problems, _ = pip_problems(image.pythons, image.python_packages, image.architecture)
    assert {b.pip_check() for b in problems} == lines
    (python,) = image.pythons
    assert (python.executable, python.version) == ("/usr/bin/python3.11", "3.11.2")
    assert python.version_source.startswith("OS package python3.11-minimal")
    assert [str(db) for db in image.packages.databases] == [
        "dpkg: /var/lib/dpkg/status.d (layer 1, 4 packages)"
    ]
    assert sorted(p.name for p in image.packages) == sorted(SHELLLESS_PACKAGES)
    assert image.os_release is not None and image.os_release.id == "debian"


# --- assert_absent -----------------------------------------------------------------------


def test_absent_names_the_layer_and_step_that_installed_a_debian_package(
    engine: Engine, consistent: str
) -> None:
    image = engine.image(consistent)
    failure, evidence = outcome(
        lambda: assert_absent(
            image, packages=["build-essential", "gcc", "make", "git"], commands=["make", "gcc"]
        )
    )
    assert failure is not None
    step = instruction(image, 1)
    assert failure.splitlines() == [
        f"make 4.3-4.1 is installed (dpkg: /var/lib/dpkg/status), added in layer 1 "
        f"({step[:79]}…): apt-get purge -y --auto-remove make in the RUN that installed it, or "
        "install it only in a build stage and COPY what the final image needs",
        f"make is a command of the image: /usr/bin/make, added in layer 1 ({step[:79]}…): "
        "delete it in the step that made it, or make it in a build stage the final image does "
        "not copy it from (or remove the package that installs it)",
    ]
    count = len(image.packages)
    assert evidence["absent"] == [
        f"build-essential: absent (dpkg: /var/lib/dpkg/status ({count} packages))",
        f"gcc: absent (dpkg: /var/lib/dpkg/status ({count} packages))",
        f"git: absent (dpkg: /var/lib/dpkg/status ({count} packages))",
        "gcc: absent (no executable file at PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:"
        "/usr/bin:/sbin:/bin)",
    ]


def test_a_dpkg_name_in_capitals_is_the_package_as_dpkg_finds_it(
    engine: Engine, consistent: str
) -> None:
    """dpkg -s Make finds make: a capitalised name must not pass as absent (it did)."""
    image = engine.image(consistent)
    for name in ("MAKE", "Make", "dpkg:MAKE"):
        failure, _ = outcome(lambda name=name: assert_absent(image, packages=[name]))
        assert failure is not None and failure.startswith("make 4.3-4.1 is installed"), name


def test_a_package_purged_in_a_later_layer_is_absent(engine: Engine, history: str) -> None:
    image = engine.image(history)
    assert_absent(image, packages=["make", "dpkg:make"], commands=["make"], files=["/usr/bin/make"])


def test_the_multi_stage_shell_less_image_leaves_the_build_tools_behind(
    engine: Engine, shellless: str
) -> None:
    failure, evidence = outcome(
        lambda: assert_absent(
            engine.image(shellless),
            packages=["make", "build-essential", "python3-pip", "python:pip"],
            commands=["make", "pip"],
            files=["/usr/bin/make", "/usr/lib/python3/dist-packages/pip*"],
        )
    )
    assert failure is None
    assert "make: absent (dpkg: /var/lib/dpkg/status.d (4 packages))" in evidence["absent"]  # type: ignore[operator]


def test_without_a_package_database_absent_is_not_measured_never_passed(
    engine: Engine, busybox: str
) -> None:
    failure, evidence = outcome(
        lambda: assert_absent(engine.image(busybox), packages=["build-essential"])
    )
    assert failure == (
        "build-essential cannot be shown absent from image imagecheck-test/busybox:1: it has "
        "no package database that can be read (no /var/lib/dpkg/status, /var/lib/dpkg/"
        "status.d/, /lib/apk/db/installed or an rpmdb.sqlite); look for what it installs with "
        "files= or commands= instead"
    )
    assert evidence["absent"] == "none"


def test_a_kind_of_package_the_image_has_no_database_for_is_one_line(
    engine: Engine, consistent: str
) -> None:
    image = engine.image(consistent)
    failure, _ = outcome(lambda: assert_absent(image, packages=["apk:gcc"]))
    assert failure == (
        f"apk:gcc cannot be shown absent from image {consistent}: it has no apk database; it "
        f"has dpkg: /var/lib/dpkg/status (layer 1, {len(image.packages)} packages); look for "
        "what it installs with files= or commands= instead"
    )


# --- rpm ---------------------------------------------------------------------------------


def test_the_sqlite_rpmdb_is_read_as_rpm_reads_it(engine: Engine, rpm_image: str) -> None:
    image = engine.image(rpm_image)
    code, text = run_in(
        engine.client,
        rpm_image,
        "rpm",
        "--dbpath",
        "/var/lib/rpm",
        "-qa",
        "--qf",
        "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}\\n",
    )
    assert code == 0
    rpms = {(p.name, p.version, p.arch) for p in image.packages if p.manager == "rpm"}
    assert rpms == {tuple(line.split()) for line in text.splitlines()}
    assert rpms == {("imagecheck-hello", "1.2.3-4", "noarch")}
    assert image.packages.managers == ("dpkg", "rpm")
    failure, _ = outcome(lambda: assert_absent(image, packages=["rpm:imagecheck-hello"]))
    assert failure is not None and failure.startswith(
        "imagecheck-hello 1.2.3-4 is installed (rpm: /var/lib/rpm/rpmdb.sqlite), added in "
        "layer 3 (RUN rpmbuild"
    )
    assert failure.endswith(
        "dnf remove -y imagecheck-hello in the RUN that installed it, or "
        "install it only in a build stage and COPY what the final image needs"
    )


def test_a_berkeley_db_rpmdb_is_not_read_and_says_so(engine: Engine, bdb_image: str) -> None:
    image = engine.image(bdb_image)
    (database,) = image.packages.databases
    assert not database.readable and not image.packages.measured
    failure, _ = outcome(lambda: assert_absent(image, packages=["gcc"]))
    last = len(image.diff_ids) - 1  # the COPY of the Berkeley DB file
    assert failure == (
        f"gcc cannot be shown absent from image {bdb_image}: it has no package database that "
        "can be read (no /var/lib/dpkg/status, /var/lib/dpkg/status.d/, /lib/apk/db/installed "
        f"or an rpmdb.sqlite); found rpm: /var/lib/rpm/Packages (layer {last}), not read: a "
        "Berkeley DB rpmdb, which is not read without running rpm (only the SQLite rpmdb of "
        "Fedora 33+, RHEL/UBI 9 and Amazon Linux 2023 is); look for what it installs with "
        "files= or commands= instead"
    )


# --- assert_installed_once ---------------------------------------------------------------


def test_a_distribution_installed_three_times_names_each_layer_and_the_bytes_wasted(
    engine: Engine, history: str
) -> None:
    image = engine.image(history)
    failure, evidence = outcome(lambda: assert_installed_once(image, "six"))
    assert failure is not None
    copies = [c for c in image.python_package_copies if c.canonical_name == "six"]
    assert [(c.version, c.location, c.layer, c.removed_in) for c in copies] == [
        ("1.15.0", SITE, 3, 4),
        ("1.16.0", SITE, 4, None),
        ("1.16.0", "/opt/venv/lib/python3.11/site-packages", 5, None),
    ]
    assert failure.startswith(
        f"six is installed 3 times in image {history}: 1.15.0 in {SITE} (layer 3 (RUN "
    )
    assert "removed by layer 4 (RUN python3 -m pip install" in failure
    assert "but still stored)" in failure
    layers = image.layer_contents(keep=python_files)
    sizes = [stored_bytes(c, layers) for c in copies]
    # six.py, its compiled .pyc and the dist-info: about 80 kB a copy, each counted once.
    assert all(size is not None and 60_000 < size < 120_000 for size in sizes)
    assert evidence["wasted_bytes"] == sum(sizes) - max(sizes)  # type: ignore[type-var]
    assert f", {format_size(sizes[0])}, removed by layer 4" in failure
    assert failure.endswith(
        "they waste " + format_size(sum(sizes) - max(sizes)) + ": install it once: have later "  # type: ignore[type-var]
        "installs keep the base's copy (a constraint six==1.15.0 in their pip install, or a "
        "venv with --system-site-packages), or install the version they need in the base"
    )


def test_one_copy_passes(engine: Engine, consistent: str) -> None:
    failure, evidence = outcome(
        lambda: assert_installed_once(engine.image(consistent), ["pytest", "six"])
    )
    assert failure is None
    assert evidence["wasted_bytes"] == 0


def test_a_distribution_that_is_not_there_is_not_installed_once(
    engine: Engine, consistent: str
) -> None:
    failure, _ = outcome(lambda: assert_installed_once(engine.image(consistent), "torch"))
    assert failure == (
        f"no Python distribution torch is installed in image {consistent}: no torch dist-info "
        "or egg-info in any site-packages or dist-packages of any layer (installed_once counts "
        "Python distributions, not OS packages)"
    )


# --- assert_versions ---------------------------------------------------------------------


def test_versions_of_the_python_on_path_and_the_os(engine: Engine, consistent: str) -> None:
    image = engine.image(consistent)
    failure, evidence = outcome(lambda: assert_versions(image, python="3.11", os="debian 12"))
    assert failure is None
    assert evidence["python_version"] == "3.11.2"
    assert evidence["python_found_by"] == "python on PATH: /usr/bin/python3"
    assert_versions(image, python=">=3.10,<3.12", os="debian >=12.1")
    assert_versions(image, python="3.11.2")
    failure, _ = outcome(lambda: assert_versions(image, python="3.12", os="ubuntu 22.04"))
    assert failure is not None
    lines = failure.splitlines()
    assert lines[0].startswith(
        "the image's Python is 3.11.2 (/usr/bin/python3.11; python on PATH: /usr/bin/python3; "
        "version from OS package python3.11-minimal 3.11.2-"
    )
    assert lines[0].endswith(
        "expected 3.12: rebuild with the expected version, or correct the expectation (the "
        "image tag)"
    )
    assert lines[1].startswith("the image's OS is debian 12.")
    assert (
        "(/etc/os-release, layer 0; version from /etc/debian_version), expected ubuntu 22.04"
        in lines[1]
    )


def test_a_venv_first_on_path_is_the_python_judged(engine: Engine, history: str) -> None:
    failure, evidence = outcome(lambda: assert_versions(engine.image(history), python="3.11.2"))
    assert failure is None
    assert evidence["python_executable"] == "/opt/venv/bin/python3.11"
    assert evidence["python_source"] == "/opt/venv/pyvenv.cfg"
    assert evidence["python_found_by"] == "python on PATH: /opt/venv/bin/python3"


@pytest.fixture(scope="module")
def torch_metadata(build: Callable[..., str], debian: str) -> str:
    """The Debian base with torch 2.13.0+cpu's own dist-info and torch/version.py, taken
    from the real wheel (its 700 MB of libraries left out: the versions are all read)."""
    wheel = zipfile.ZipFile(fetch("torch==2.13.0+cpu"))
    metadata = "torch-2.13.0+cpu.dist-info/"
    names = [
        n
        for n in wheel.namelist()
        if n == "torch/version.py" or (n.startswith(metadata) and n.count("/") == 1)
    ]
    files = {f"site/{name}": wheel.read(name).decode() for name in names}
    return build("torch", f"FROM {debian}\nCOPY site/ {SITE}/\n", files=files)


def test_torch_is_its_distributions_version_local_label_and_all(
    engine: Engine, torch_metadata: str
) -> None:
    image = engine.image(torch_metadata)
    for bound in ("2.13", "2.13.0+cpu", ">=2.13,<2.14", "~=2.13.0"):
        assert_versions(image, torch=bound)
    failure, evidence = outcome(lambda: assert_versions(image, torch="2.13.0+cu121"))
    step = instruction(image, 1)
    assert step.startswith("COPY ")
    assert failure == (
        f"torch is 2.13.0+cpu ({SITE}/torch-2.13.0+cpu.dist-info, layer 1 ({step[:79]}…)), "
        "expected 2.13.0+cu121: rebuild with the expected version, or correct the expectation "
        "(the image tag)"
    )
    assert evidence["torch_version"] == ["2.13.0+cpu"]


def test_no_torch_is_not_a_torch_version(engine: Engine, consistent: str) -> None:
    failure, _ = outcome(lambda: assert_versions(engine.image(consistent), torch="2.1"))
    assert failure == (
        f"expected torch 2.1 but image {consistent} has no torch (no torch dist-info or "
        "egg-info in any site-packages or dist-packages)"
    )


def test_an_image_without_python_or_os_release_is_not_measured(
    engine: Engine, busybox: str
) -> None:
    failure, _ = outcome(lambda: assert_versions(engine.image(busybox), python="3.11", os="12"))
    assert failure == (
        "expected Python 3.11 but image imagecheck-test/busybox:1 has no Python (no "
        "lib/pythonX.Y/os.py or pyvenv.cfg): its Python version was not measured\n"
        "expected OS 12 but image imagecheck-test/busybox:1 has no /etc/os-release (nor "
        "/usr/lib/os-release): its OS was not measured"
    )


# --- assert_no_stray_files ---------------------------------------------------------------


def test_what_a_build_leaves_is_found_with_its_size_layer_and_fix(
    engine: Engine, strays: str
) -> None:
    image = engine.image(strays)
    found = {s.path: s for s in stray_files(live_files(image.layer_contents()))}
    assert sorted(found) == [
        "/app/.git",
        "/app/pyproject.toml~",
        "/requirements.txt",
        "/root/.cache/pip",
        "/root/setup.py",
        "/tmp/dist",
        "/tmp/src",
        "/var/cache/apt",
        "/var/lib/apt/lists",
    ]
    # apt-get update rewrote what changed since the base's lists; the rest is the base's.
    assert set(found["/var/lib/apt/lists"].layers) == {0, 1}
    assert found["/var/lib/apt/lists"].size > 1_000_000
    assert found["/root/.cache/pip"].layers == (3,)  # 0 base, 1 apt, 2 COPY, 3 the sdist
    assert found["/app/.git"].files > 3
    failure, evidence = outcome(lambda: assert_no_stray_files(image, allow=["/tmp/*"]))
    assert failure is not None
    lines = failure.splitlines()
    assert lines[0].startswith(f"image {strays} has 7 stray files or folders (")
    assert lines[0].endswith('allow one with allow=["/app/.git"]:')
    assert lines[1].startswith("/app/.git: a version-control folder, ")
    assert "added in layer 4 (RUN git init -q /app" in lines[1]
    assert lines[1].endswith("add it to .dockerignore, or COPY only what the image needs")
    assert any(
        line.startswith("/var/lib/apt/lists: apt's package lists, ")
        and line.endswith(
            ": end the RUN that runs apt-get update with && rm -rf /var/lib/apt/lists/*"
        )
        for line in lines
    )
    assert any(line.startswith("/root/.cache/pip: pip's cache, 2 files, ") for line in lines)
    assert evidence["allowed"] == [
        f"/tmp/dist ({format_size(found['/tmp/dist'].size)})",
        f"/tmp/src ({format_size(found['/tmp/src'].size)})",
    ]
    assert evidence["stray_bytes"] == sum(
        s.size for path, s in found.items() if not path.startswith("/tmp/")
    )


def test_an_image_that_cleans_up_has_no_stray_files(engine: Engine, consistent: str) -> None:
    # The debootstrap base leaves apt's lists; the apt layer deletes them again.
    assert_no_stray_files(engine.image(consistent))


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda image: assert_absent(image, packages=["build essential"]),
            'bad package name "build essential": "build essential" is not a valid package '
            "name; a version belongs in assert_versions, not in a package name; write a name "
            'like "gcc", or KIND:NAME with KIND one of dpkg, apk, rpm, python (e.g. '
            '"dpkg:build-essential", "python:jupyter")',
            id="a package name with a space",
        ),
        pytest.param(
            lambda image: assert_absent(image, packages=["deb:gcc"]),
            'bad package name "deb:gcc": "deb" is not a kind of package; write a name like '
            '"gcc", or KIND:NAME with KIND one of dpkg, apk, rpm, python (e.g. '
            '"dpkg:build-essential", "python:jupyter")',
            id="an unknown kind of package",
        ),
        pytest.param(
            lambda image: assert_installed_once(image, "torch>=2"),
            "bad package name 'torch>=2': not a valid Python distribution name (letters, "
            'digits, ".", "_" and "-", starting and ending with a letter or digit, like '
            '"torch"); a version belongs in assert_versions',
            id="a distribution name with a version",
        ),
        pytest.param(
            lambda image: assert_versions(image, torch=">=2.1,<2.x"),
            'bad torch version bound ">=2.1,<2.x": write a version or prefix like "2.1", an '
            'exact version like "2.1.0+cu121", or a range like ">=2.1,<2.2"',
            id="a version bound that does not parse",
        ),
        pytest.param(
            lambda image: assert_versions(image, os="Debian 12"),
            'bad os expectation "Debian 12": "Debian" is not an os-release ID (lowercase '
            "letters, digits, ., _ and -); write the os-release ID, a version bound, or both, "
            'like "debian 12", "ubuntu >=22.04,<24.04" or "alpine"',
            id="an os ID in capitals",
        ),
        pytest.param(
            lambda image: assert_absent(image, files=["usr/bin/gcc"]),
            "files: 'usr/bin/gcc' is not an absolute path: write a path or a pattern from /, "
            'like "/usr/bin/gcc" or "/usr/bin/*-gcc-*"',
            id="a relative file",
        ),
        pytest.param(
            lambda image: assert_absent(image),
            "assert_absent checks nothing: pass packages=, files= or commands=, e.g. "
            'packages=["build-essential", "gcc"]',
            id="nothing to check",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_layer_is_read(
    call: Callable[[ImageUnderTest], None], message: str
) -> None:
    image = ImageUnderTest(attrs={"Id": "sha256:" + "0" * 64}, history=[], ref="x:1")
    with pytest.raises(ImageCheckError) as excinfo:
        call(image)
    assert str(excinfo.value) == message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "absent\n    packages: [gcc>=12]\n",
            'imagecheck.yaml:4: packages: bad package name "gcc>=12": "gcc>=12" is not a valid '
            "package name; a version belongs in assert_versions, not in a package name; write "
            'a name like "gcc", or KIND:NAME with KIND one of dpkg, apk, rpm, python (e.g. '
            '"dpkg:build-essential", "python:jupyter")',
        ),
        (
            "versions\n    python: 3.10\n",
            'imagecheck.yaml:4: python: expected a version in quotes like "3.11", got the number '
            "3.1: quote it (YAML reads 3.10 as the number 3.1)",
        ),
        (
            'versions\n    torch: ">=2.1,<"\n',
            'imagecheck.yaml:4: torch: bad torch version bound ">=2.1,<": write a version or '
            'prefix like "2.1", an exact version like "2.1.0+cu121", or a range like '
            '">=2.1,<2.2"',
        ),
        (
            "installed_once\n",
            'imagecheck.yaml:3: check installed_once needs package: add e.g. package: "torch"',
        ),
        (
            "absent\n",
            "imagecheck.yaml:3: check absent checks nothing: give at least one of packages, "
            'files, commands, e.g. packages: ["build-essential", "gcc", "make", "git"]',
        ),
    ],
)
def test_bad_yaml_is_one_line_naming_the_line_and_the_fix(item: str, message: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        parse_spec(f"version: 1\ncriteria:\n  - check: {item}")
    assert str(excinfo.value) == message


# --- imagecheck.yaml ----------------------------------------------------------------------


def test_yaml_criteria_run_the_same_checks(pytester: pytest.Pytester, broken: str) -> None:
    pytester.makefile(
        ".yaml",
        imagecheck="""version: 1
criteria:
  - check: pip_consistent
  - check: absent
    packages: [build-essential, gcc]
  - check: absent
    packages: [make]
  - check: versions
    python: "3.11"
    os: debian 12
  - check: installed_once
    package: [pytest, pluggy]
  - check: no_stray_files
""",
    )
    result = pytester.runpytest(f"--image={broken}", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=2)
    verdicts = [line.split("  ")[0].strip() for line in result.outlines if " [" in line]
    assert verdicts[:6] == [
        "imagecheck.yaml::pip_consistent FAILED",
        'imagecheck.yaml::absent packages=["build-essential", "gcc"] PASSED',
        'imagecheck.yaml::absent packages=["make"] FAILED',
        "imagecheck.yaml::versions python=3.11 os=debian 12 PASSED",
        'imagecheck.yaml::installed_once package=["pytest", "pluggy"] PASSED',
        "imagecheck.yaml::no_stray_files PASSED",
    ]
    assert (
        "imagecheck.yaml:3: pytest 8.3.3 requires pluggy<2,>=1.5, but pluggy 1.0.0 is installed "
        "for Python 3.11.2 (/usr/bin/python3.11): "
        in result.outlines
        or any(
            line.startswith("imagecheck.yaml:3: pytest 8.3.3 requires pluggy<2,>=1.5, but")
            for line in result.outlines
        )
    )


def test_a_version_known_only_in_part_is_not_measured() -> None:
    from pytest_imagecheck.versions import VersionBound

    assert VersionBound.parse("3.11", "python").check("3.11", complete=False) is True
    assert VersionBound.parse(">=3.10", "python").check("3.11", complete=False) is True
    assert VersionBound.parse("3.11.4", "python").check("3.11", complete=False) is None
    assert VersionBound.parse("==3.11.4", "python").check("3.11", complete=False) is None
    assert VersionBound.parse("2.1.0+cu121", "torch").check("2.1.0+cu121") is True
    assert VersionBound.parse("2.1.0+cu121", "torch").check("2.1.0+cu118") is False
    assert VersionBound.parse("2.1", "torch").check("2.1.0+cu121") is True
    assert VersionBound.parse(">=2.1,<2.2", "torch").check("2.1.2+cu121") is True
    assert VersionBound.parse(">=2.1,<2.2", "torch").check("2.2.0.dev20231010+cu121") is False
    assert Version("2.2.0.dev20231010") < Version("2.2")


# --- the rules alone -------------------------------------------------------------------------


REQUIRES_TXT = """six>=1.5
[test]
pytest>=3.0.0
[:python_version < "3.8"]
zipp>=0.5
[docs:sys_platform == "win32"]
colorama
[url]
pkg @ https://example.com/pkg-1.0.tar.gz
"""


def test_egg_info_requirements_read_as_importlib_metadata_reads_them(tmp_path: Path) -> None:
    egg = tmp_path / "demo-1.0.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: demo\nVersion: 1.0\n")
    (egg / "requires.txt").write_text(REQUIRES_TXT)
    expected = importlib.metadata.PathDistribution(egg).requires
    assert list(egg_requirements(REQUIRES_TXT)) == expected


PYTHON = PythonInstall("/usr", "3.11", "3.11", "the folder name", ("/site",), complete=False)


@pytest.mark.parametrize(
    ("marker", "verdict"),
    [
        ('python_version < "3.11"', False),
        ('python_version >= "3.11"', True),
        ('python_full_version < "3.11.0a7"', False),  # true of no 3.11 release
        ('python_full_version >= "3.11.4"', None),  # the micro version is not known
        ('sys_platform == "win32"', False),
        ('platform_machine == "x86_64"', True),
        ('extra == "dev"', False),
        ('platform_release >= "5.4"', None),  # the kernel of the machine it runs on
    ],
)
def test_markers_are_judged_only_on_what_the_image_says(marker: str, verdict: bool | None) -> None:
    assert evaluate_marker(marker, marker_environment(PYTHON, "amd64")) is verdict


def test_a_requirement_whose_marker_is_not_known_is_not_measured_when_unmet() -> None:
    dependent = PythonPackage(
        "app",
        "1.0",
        "/site",
        "/site/app-1.0.dist-info",
        1,
        requires=('kernel-helper; platform_release >= "5.4"', "six"),
    )
    six = PythonPackage("six", "1.16.0", "/site", "/site/six-1.16.0.dist-info", 1)
    problems, checked = pip_problems([PYTHON], [dependent, six], "amd64")
    assert checked == 2
    assert [(b.kind, b.requirement) for b in problems] == [
        ("not measured", 'kernel-helper; platform_release >= "5.4"')
    ]
    assert problems[0].pip_check() == ""
