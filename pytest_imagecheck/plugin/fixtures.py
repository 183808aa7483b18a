"""The fixtures: the image under test, its containers, its Dockerfile, the engine.

Each is a thin function over the classes below it (:class:`~pytest_imagecheck.image.ImageUnderTest`,
:class:`~pytest_imagecheck.container.RunningContainer`, ...), whose docstrings document them.
Our one-line errors become pytest failures without a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import pytest

from ..build import build_image, build_once
from ..container import RunningContainer
from ..dockerfile import FamilyBase, canonical_reference
from ..engine import ENGINE_ERRORS, Engine
from ..errors import GpuUnavailable, ImageCheckError
from ..family import MemberNotBuilt
from ..image import ImageUnderTest
from .ahead import (
    read_layers_ahead,
    run_container_key,
    run_container_options,
    session_container_key,
    session_container_options,
    start_ahead,
    take_ahead,
)
from .evidence_report import image_read
from .family import family_run
from .options import SETTINGS, Settings
from .outcomes import GPU_USED, USED
from .session import STATE, is_worker, worker_input

if TYPE_CHECKING:
    from ..dockerfile import Dockerfile
    from ..gpu import GpuHost


@contextlib.contextmanager
def _errors_as_failures() -> Iterator[None]:
    """Turn our one-line errors into pytest failures without a traceback."""
    try:
        yield
    except GpuUnavailable:
        raise  # judged per test in pytest_runtest_makereport: skip only where marked gpu
    except ImageCheckError as exc:
        # from None: else pytest prints the message twice ("During handling of the above...")
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """Print build progress as it happens, past pytest's output capture.

    xdist workers have no terminal of their own; their stderr reaches the controller's.
    """
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    worker = worker_input(config).get("workerid")

    def write(line: str) -> None:
        suspended = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with suspended:
            if worker is not None:
                print(f"[imagecheck {worker}] {line}", file=sys.stderr, flush=True)
            elif reporter is not None:
                reporter.write_line(f"[imagecheck] {line}")

    return write


@pytest.fixture(scope="session")
def imagecheck_engine(pytestconfig: pytest.Config) -> Engine:
    """The Docker engine of this session: labels, runs and removes the plugin's containers.

    Connected on first use from ``DOCKER_HOST`` or the local socket; an unreachable engine
    is one error that says how to start one.
    """
    with _errors_as_failures():
        return pytestconfig.stash[STATE].engine()


@pytest.fixture(scope="session")
def docker_client(imagecheck_engine: Engine) -> docker.DockerClient:
    """A docker-py client for the engine under test (``DOCKER_HOST``, else the local socket)."""
    return imagecheck_engine.client


@pytest.fixture(scope="session")
def imagecheck_member(request: pytest.FixtureRequest) -> str | None:
    """The id of the family member the test is for (``"asr"`` in ``test_x[asr]``); None when
    the session tests one image.

    With a family, every test that uses the image under test is parametrized over the
    members (``@pytest.mark.images("cpu")`` selects some); ``image``, ``container``,
    ``run_container`` and ``dockerfile`` follow the member.
    """
    return getattr(request, "param", None)


@pytest.fixture(scope="session")
def image(
    pytestconfig: pytest.Config,
    imagecheck_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
    record_testsuite_property: Callable[[str, object], None],
    imagecheck_member: str | None,
) -> ImageUnderTest:
    """The image under test, as facts: ``image.user``, ``image.healthcheck``, ``image.size``...

    Named by ``--image`` (or ini ``imagecheck_image``), or built once per session from
    ``--build-context`` (tagged with ``--image`` when both are given). Under pytest-xdist the
    workers share one build.

    In a family session, the image of the test's member (``imagecheck_member``): the family
    is built once per session, in dependency order. A member whose build failed fails its
    tests with the build's output; a member that builds on it is not built, and its tests
    skip (NOT VERIFIED) naming the member that failed.
    """
    settings = pytestconfig.stash[SETTINGS]
    if imagecheck_member is not None:
        found = _member_image(pytestconfig, imagecheck_member, tmp_path_factory)
    else:
        with _errors_as_failures():
            found = _image_under_test(pytestconfig, settings, imagecheck_engine, tmp_path_factory)
    start_ahead(pytestconfig, imagecheck_member, found)
    image_read(pytestconfig, found, imagecheck_engine, imagecheck_member)
    prefix = (
        "imagecheck.image"
        if imagecheck_member is None
        else f"imagecheck.image[{imagecheck_member}]"
    )
    for name, value in (
        ("ref", found.ref),
        ("id", found.id),
        ("digest", found.digest),
        ("size_bytes", found.size),
        ("created", found.created),
        ("architecture", found.architecture),
    ):
        if value is not None:
            record_testsuite_property(f"{prefix}.{name}", value)
    return found


def _shared_dir(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every process of the run that uses the same engine shares (xdist workers:
    the base temp's parent; a folder of it per engine when the session has several, so each
    engine gets its own builds)."""
    basetemp = tmp_path_factory.getbasetemp()
    shared = basetemp.parent if is_worker(config) else basetemp
    target = config.stash[STATE].target
    if target is not None and len(config.stash[SETTINGS].engines) > 1:
        shared = shared / f"engine-{target.key}"
    return shared


def _member_image(
    config: pytest.Config, member: str, tmp_path_factory: pytest.TempPathFactory
) -> ImageUnderTest:
    run = family_run(config, _shared_dir(config, tmp_path_factory), _progress(config))
    try:
        found = run.image(member)
        if read_layers_ahead(config):
            run.read_layers_ahead()
        return found
    except MemberNotBuilt as exc:
        pytest.skip(f"member {member}: {exc}")
    except ImageCheckError as exc:
        raise pytest.fail.Exception(f"member {member}: {exc}", pytrace=False) from None


def _image_under_test(
    config: pytest.Config,
    settings: Settings,
    engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> ImageUnderTest:
    if settings.build is not None:
        spec = settings.build
        image_id = build_once(
            spec,
            _shared_dir(config, tmp_path_factory),
            lambda: build_image(
                spec,
                engine.client,
                progress=_progress(config),
                verbose=config.get_verbosity() > 1,
            ),
        )
        built = engine.image(image_id)
        return dataclasses.replace(built, ref=spec.image_tag)
    if settings.image:
        return engine.image(settings.image)
    if settings.family is not None:
        raise ImageCheckError(
            "this test is not run per family member: take image (or container, "
            "run_container, dockerfile) as an argument of the test or of its fixture, not "
            "through request.getfixturevalue, so pytest runs it once per member"
        )
    raise ImageCheckError(
        "no image under test: pass --image REF to test an image, or --build-context DIR "
        "to build one (or set imagecheck_image in the ini file)"
    )


def _member_dockerfile(
    config: pytest.Config, member_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Dockerfile:
    """A member's Dockerfile, with the family's tags: those this session built carry their
    images (what the member's FROM must derive from)."""
    family = config.stash[SETTINGS].family
    assert family is not None  # only family tests have a member
    member = family[member_id]
    if member.build is None:
        pytest.skip(
            f"member {member_id} is tested by reference ({member.ref}): no Dockerfile known"
        )
    run = family_run(config, _shared_dir(config, tmp_path_factory), _progress(config))
    with _errors_as_failures():
        blocked = run.not_built(member_id)
    if blocked is not None:
        pytest.skip(f"member {member_id}: {blocked}")
    native = None
    with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
        native = config.stash[STATE].engine().platform
    with _errors_as_failures():
        parsed = member.build.validate(engine_platform=native)

    def built(member_id: str) -> ImageUnderTest | None:
        if family[member_id].build is None:
            return None
        with contextlib.suppress(ImageCheckError):
            return run.image(member_id)
        return None

    bases = {
        canonical_reference(other.tag): FamilyBase(other.id, other.tag, built(other.id))
        for other in family.members
        if other.id != member_id
    }
    return dataclasses.replace(parsed, family_bases=bases, built_image=built(member_id))


@pytest.fixture(scope="session")
def container(
    pytestconfig: pytest.Config,
    image: ImageUnderTest,
    imagecheck_engine: Engine,
    imagecheck_member: str | None,
) -> Iterator[RunningContainer]:
    """One running container of ``image``, shared by the whole session.

    Every exposed port is published on 127.0.0.1 at a free port (``container.url(5000,
    "/health")``), ``--gpus`` is applied, and the container is removed at the end. Started
    ahead of the first test that uses it, unless ``--no-start-ahead``.
    """
    options = session_container_options(pytestconfig)
    with _errors_as_failures():
        running = take_ahead(
            pytestconfig, session_container_key(imagecheck_member), options, image
        ) or imagecheck_engine.run(image, **options)
    yield running
    imagecheck_engine.remove_later(running)


@pytest.fixture
def run_container(
    request: pytest.FixtureRequest, image: ImageUnderTest, imagecheck_engine: Engine
) -> Iterator[Callable[..., RunningContainer]]:
    """A factory for containers with their own run options, removed when the test ends.

    ``run_container(image=None, *, command=None, entrypoint=None, env=None, user=None, ports=None,
    read_only=False, tmpfs=None, cap_drop=None, security_opt=None, gpus=None)``; ``image``
    defaults to the image under test, and can be another ``ImageUnderTest`` or a reference.
    """
    started: list[RunningContainer] = []
    request.node.stash[USED] = started

    def run(image_: ImageUnderTest | str | None = None, /, **options: Any) -> RunningContainer:
        with _errors_as_failures():
            if image_ is None:
                image_ = options.pop("image", None)
            if image_ is not None and not isinstance(image_, (ImageUnderTest, str)):
                raise ImageCheckError(
                    f"run_container({image_!r}): the image is an image reference (a string) "
                    "or the image fixture's ImageUnderTest"
                )
            options = run_container_options(request.node.nodeid, options)
            target = image_ or image
            if isinstance(target, str):
                target = imagecheck_engine.image(target)
            key = run_container_key(request.node.nodeid, options)
            running = (
                take_ahead(request.config, key, options, target) if image_ is None else None
            ) or imagecheck_engine.run(target, **options)
        started.append(running)
        if options["gpus"]:
            request.node.stash[GPU_USED] = True
        return running

    yield run
    for running in started:
        imagecheck_engine.remove_later(running)


@pytest.fixture(scope="session")
def gpu_host(pytestconfig: pytest.Config) -> GpuHost:
    """The GPU host's driver and devices, read through NVML (``nvidia-ml-py``).

    Tests that use it skip, with the reason, where there is no NVIDIA driver, and where the
    engine is on another machine (NVML reads the driver of the machine pytest runs on).
    """
    from ..gpu import NvmlUnavailable, read_gpu_host

    target = pytestconfig.stash[STATE].target
    if target is not None and not target.local:
        pytest.skip(
            f"the engine {target} is on another machine, and NVML reads the GPU driver of "
            "the machine pytest runs on"
        )
    try:
        return read_gpu_host()
    except NvmlUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def dockerfile(
    pytestconfig: pytest.Config,
    imagecheck_member: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Dockerfile:
    """The parsed Dockerfile: stages, instructions with line numbers, ARGs with build args.

    The one being built, or ``--dockerfile`` when testing a named image; tests that use it
    skip when neither is known. In a family session, the member's own, which knows the
    family's tags (a FROM naming a member built here is built here, not pulled: see
    :func:`~pytest_imagecheck.checks.pinning.assert_base_images_pinned`); a member tested by
    reference has none, and its tests that use it skip, as do those of a member that was not
    built because a member it builds on failed to build.
    """
    settings = pytestconfig.stash[SETTINGS]
    if imagecheck_member is not None:
        return _member_dockerfile(pytestconfig, imagecheck_member, tmp_path_factory)
    if settings.build is None and settings.dockerfile is None:
        pytest.skip("no Dockerfile known: pass --build-context DIR or --dockerfile PATH")
    # The engine's platform gives BUILDPLATFORM, and TARGETPLATFORM without --platform. An
    # unreachable engine leaves it unknown: references that need it then fail as unresolved.
    native = None
    with contextlib.suppress(ImageCheckError, *ENGINE_ERRORS):
        native = pytestconfig.stash[STATE].engine().platform
    with _errors_as_failures():
        if settings.build is not None:
            return settings.build.validate(engine_platform=native)
        from ..dockerfile import Dockerfile

        return Dockerfile.parse(
            settings.dockerfile,  # type: ignore[arg-type]  # not None: see the skip above
            build_args=settings.build_args,
            platforms=settings.platforms,
            build_platform=native,
        )
