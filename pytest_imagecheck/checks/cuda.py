"""CUDA and torch agree: in the image, with the host's driver, and in a container with GPUs.

The rules are pure functions over facts, each usable on its own:

:func:`static_findings` (:class:`~pytest_imagecheck.cuda.CudaFacts` only)
    every CUDA compiler in the image has torch's CUDA major, since
    ``torch.utils.cpp_extension`` refuses to build extensions otherwise (a minor difference
    warns, or fails with ``strict_minor=True``); a CPU or ROCm torch in an image that declares
    CUDA fails; ``cuda=`` and ``torch=`` expectations hold.
:func:`host_findings` (with :class:`~pytest_imagecheck.gpu.GpuHost`)
    the driver runs torch's CUDA; the image's ``NVIDIA_REQUIRE_*`` constraints hold as
    nvidia-container-toolkit evaluates them when it starts the container.
:func:`runtime_findings` (with :class:`~pytest_imagecheck.cuda.TorchRuntime`)
    torch in the container sees its GPUs and runs a kernel.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from .. import kinds
from ..cuda import (
    Compiler,
    CudaFacts,
    Found,
    TorchBuild,
    probe_torch_runtime,
    read_cuda_facts,
    requested_gpu_count,
)
from ..declaration import Check, Key, pairs
from ..errors import ImageCheckError
from ..evidence import record
from ..gpu import GpuDevice, GpuHost, NvmlUnavailable, read_gpu_host

if TYPE_CHECKING:
    from ..container import RunningContainer
    from ..cuda import TorchRuntime
    from ..image import ImageUnderTest

#: The oldest driver of each CUDA major family that runs any minor of that family ("minor
#: version compatibility"). NVIDIA's CUDA Compatibility guide, Minor Version Compatibility,
#: Table 1 (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html)
#: and the CUDA Toolkit release notes: 11.x >= 450.80.02, 12.x >= 525.60.13, 13.x >= 580.
DRIVER_FLOORS = {11: "450.80.02", 12: "525.60.13", 13: "580"}

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # Go's strconv.ParseBool, as the toolkit uses
_CONSTRAINT = re.compile(r"([^<>=!]+)([<>=!]+)(.+)")
_OPERATORS = {"=", "!=", "<", "<=", ">", ">="}


class CudaCompatibilityWarning(UserWarning):
    """CUDA and torch differ in a way that works, with limits (a minor version, say)."""


@dataclass
class Findings:
    """What the rules concluded.

    ``errors`` fail the check, ``warnings`` are shown, ``confirmed`` says what held (evidence).
    """

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        """Add ``other``'s findings to these."""
        self.errors += other.errors
        self.warnings += other.warnings
        self.confirmed += other.confirmed


def version_matches(expected: str, actual: str) -> bool:
    """True when ``actual`` is ``expected`` or starts with it, component by component.

    >>> version_matches("2.14", "2.14.1+cu130"), version_matches("2.1", "2.14.1")
    (True, False)
    >>> version_matches("2.14.1+cu130", "2.14.1+cu130"), version_matches("13.0", "13.0.96")
    (True, True)
    """
    want, have = Version(expected), Version(actual)
    if (want.pre, want.post, want.dev, want.local) != (None, None, None, None):
        return want == have
    padded = have.release + (0,) * (len(want.release) - len(have.release))
    return padded[: len(want.release)] == want.release


def _expectation(value: str, what: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        example = '"2.14" or "2.14.1+cu130"' if what == "torch" else '"13" or "13.0"'
        raise ImageCheckError(
            f'bad {what} expectation "{value}": use a version or a prefix like {example}'
        ) from None
    return value


def _major(version: str) -> int:
    return Version(version).release[0]


def _major_minor(version: str) -> tuple[int, ...]:
    return Version(version).release[:2]


def compiler_findings(torch: TorchBuild, compiler: Compiler, *, strict_minor: bool) -> Findings:
    """Compare one CUDA compiler of the image with the CUDA torch was built for.

    The rule is ``torch.utils.cpp_extension._check_cuda_version``'s: a different major is an
    error (it raises), a different minor a warning (it logs), or an error with ``strict_minor``.
    """
    found = Findings()
    if torch.cuda is None:
        return found
    if compiler.release is None:
        # Not measured is not a finding: the probe may have failed for its own reasons.
        found.warnings.append(
            f"{compiler.source} gave no CUDA release ({compiler.error}): its version was not "
            f"measured, so it was not compared with torch's CUDA {torch.cuda}"
        )
        return found
    said = (
        f"torch {torch.version} was built for CUDA {torch.cuda} but the image's {compiler.tool} "
        f"is {compiler.release} ({compiler.source})"
    )
    if _major(compiler.release) != _major(torch.cuda):
        found.errors.append(
            f"{said}: torch.utils.cpp_extension refuses to build with a different major; "
            f"install nvcc {_major(torch.cuda)}.x or a torch built for CUDA "
            f"{_major(compiler.release)}"
        )
    elif _major_minor(compiler.release) != _major_minor(torch.cuda):
        if strict_minor:
            found.errors.append(
                f"{said}: strict_minor=True wants the same minor; install nvcc {torch.cuda} "
                f"or a torch built for CUDA {compiler.release}"
            )
        else:
            found.warnings.append(
                f"{said}: torch.utils.cpp_extension builds with a warning; pass "
                "strict_minor=True to make this an error"
            )
    else:
        found.confirmed.append(
            f"{compiler.tool} {compiler.release} ({compiler.source}) and torch {torch.version} "
            f"agree on CUDA {compiler.release}"
        )
    return found


def static_findings(
    facts: CudaFacts,
    *,
    cuda: str | None = None,
    torch: str | None = None,
    strict_minor: bool = False,
) -> Findings:
    """The rules that need only the image's facts (see the module's documentation)."""
    found = Findings()
    declared = facts.image_cuda
    for build in facts.torch_installs:
        if build.cuda is None:
            if declared is not None:
                kind = f"a ROCm build (HIP {build.hip})" if build.hip else "a CPU-only build"
                found.errors.append(
                    f"torch {build.version} ({build.source}) is {kind} but the image declares "
                    f"CUDA {declared}: install a torch built for CUDA "
                    f"{declared.release[0]} or drop CUDA from the image"
                )
            continue
        for compiler in facts.compilers:
            found.extend(compiler_findings(build, compiler, strict_minor=strict_minor))
        if declared is not None and declared.release[0] != _major(build.cuda):
            found.warnings.append(
                f"the image's CUDA is {declared} but torch {build.version} was built for CUDA "
                f"{build.cuda}: torch needs its own CUDA {_major(build.cuda)} libraries "
                "(its nvidia-* wheels)"
            )
    by_major: dict[int, Found] = {}
    for source in facts.cuda_sources:
        by_major.setdefault(source.release[0], source)
    if len(by_major) > 1:
        listed = ", ".join(str(source) for source in by_major.values())
        found.warnings.append(f"the image carries CUDA of {len(by_major)} majors: {listed}")
    if cuda is not None:
        found.errors += _cuda_expectation(facts, _expectation(cuda, "cuda"))
    if torch is not None:
        found.errors += _torch_expectation(facts, _expectation(torch, "torch"))
    return found


def _cuda_expectation(facts: CudaFacts, cuda: str) -> list[str]:
    declared = facts.image_cuda
    torches = [b for b in facts.torch_installs if b.cuda]
    compilers = [c for c in facts.compilers if c.release]
    if declared is None and not torches and not compilers:
        if facts.compilers:  # the image has a compiler, but what it said was not a version
            unmeasured = "; ".join(f"{c.source}: {c.error}" for c in facts.compilers)
            return [
                f"expected CUDA {cuda} but no CUDA version of {facts.ref} was measured: it has "
                f"no other source of one, and its compilers gave no release ({unmeasured})"
            ]
        return [
            f"expected CUDA {cuda} but {facts.ref} has none: no CUDA_VERSION env, "
            "cuda/version.json, nvidia-cuda-runtime wheel, libcudart, nvcc or CUDA build of torch"
        ]
    problems = []
    if declared is not None and not version_matches(cuda, declared.version):
        problems.append(f"the image's CUDA is {declared}, expected {cuda}")
    problems += [
        f"the image's {c.tool} is {c.release} ({c.source}), expected CUDA {cuda}"
        for c in compilers
        if not version_matches(cuda, c.release or "")
    ]
    problems += [
        f"torch {b.version} ({b.source}) was built for CUDA {b.cuda}, expected {cuda}"
        for b in torches
        if not version_matches(cuda, b.cuda or "")
    ]
    return problems


def _torch_expectation(facts: CudaFacts, torch: str) -> list[str]:
    if not facts.torch_installs:
        return [
            f"expected torch {torch} but {facts.ref} has no torch "
            "(no torch/version.py in any site-packages or dist-packages)"
        ]
    return [
        f"torch is {b.version} ({b.source}), expected {torch}"
        for b in facts.torch_installs
        if not version_matches(torch, b.version)
    ]


def driver_findings(torch: TorchBuild, host: GpuHost) -> Findings:
    """Does the host's driver run the CUDA ``torch`` was built for?

    A driver of the same major family at or above the family's floor
    (:data:`DRIVER_FLOORS`) runs newer minors under minor version compatibility, with limits:
    that is a warning.
    """
    found = Findings()
    if torch.cuda is None:
        return found
    need, have = _major_minor(torch.cuda), _major_minor(host.cuda_version)
    said = (
        f"the host's driver {host.driver_version} supports CUDA {host.cuda_version} and "
        f"torch {torch.version} was built for CUDA {torch.cuda}"
    )
    floor = DRIVER_FLOORS.get(need[0])
    if have >= need:
        found.confirmed.append(said)
    elif have[0] == need[0] and floor and Version(host.driver_version) >= Version(floor):
        found.warnings.append(
            f"{said}: it runs under CUDA minor version compatibility (driver >= {floor}), but "
            f"PTX built for CUDA {torch.cuda} and features that need a newer driver fail"
        )
    else:
        fix = f"an NVIDIA driver >= {floor}" if floor else f"a driver for CUDA {torch.cuda}"
        found.errors.append(
            f"{said}: install {fix}, or use a torch built for CUDA {have[0]}.{have[1]} or older"
        )
    return found


def nvidia_requirements(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The ``(variable, constraint)`` pairs nvidia-container-toolkit checks for an image.

    Every ``NVIDIA_REQUIRE_*`` but ``NVIDIA_REQUIRE_JETPACK*``; ``cuda>=X.Y`` from
    ``CUDA_VERSION`` for legacy images that set no ``NVIDIA_REQUIRE_CUDA``; none when
    ``NVIDIA_DISABLE_REQUIRE`` is true (nvidia-container-toolkit, internal/config/image).
    """
    if env.get("NVIDIA_DISABLE_REQUIRE") in _TRUE:
        return []
    found = [
        (name, value)
        for name, value in sorted(env.items())
        if name.startswith("NVIDIA_REQUIRE_") and not name.startswith("NVIDIA_REQUIRE_JETPACK")
    ]
    legacy = re.match(r"(\d+)\.(\d+)", env.get("CUDA_VERSION", ""))
    if legacy and not env.get("NVIDIA_REQUIRE_CUDA"):
        found.append(("CUDA_VERSION", f"cuda>={legacy.group(1)}.{legacy.group(2)}"))
    return found


def requirement_holds(expression: str, host: GpuHost, device: GpuDevice | None) -> bool | None:
    """Evaluate one ``NVIDIA_REQUIRE_*`` value as libnvidia-container does (src/cli/dsl.c).

    Space-separated groups are alternatives, comma-separated constraints within a group must
    all hold: ``cuda>=12.4 brand=tesla,driver>=470,driver<471`` runs on a driver for CUDA
    12.4, or on a Tesla with a 470 driver (forward compatibility). ``arch`` and ``brand``
    hold without a device. ``None`` means the expression is invalid (the toolkit refuses it).
    """
    result: bool | None = True
    for group in expression.split(" "):
        constraints = [c for c in group.split(",") if c]
        if not constraints:
            continue
        result = True
        for constraint in constraints:
            result = _constraint_holds(constraint, host, device)
            if not result:
                break
        if result is None or result:
            return result
    return result


def _constraint_holds(constraint: str, host: GpuHost, device: GpuDevice | None) -> bool | None:
    match = _CONSTRAINT.fullmatch(constraint)
    if not match or match.group(2) not in _OPERATORS:
        return None
    name, op, value = match.group(1).lower(), match.group(2), match.group(3)
    if name == "brand":
        if device is None:
            return True
        if op not in ("=", "!="):
            return None
        return (device.brand.lower() == value.lower()) == (op == "=")
    actual = {
        "cuda": host.cuda_version,
        "driver": host.driver_version,
        "arch": device.compute_capability if device else None,
    }.get(name, "")
    if actual is None:
        return True
    if not actual or not re.fullmatch(r"[\d.]+", value) or not re.fullmatch(r"[\d.]+", actual):
        return None
    left, right = _numbers(actual), _numbers(value)
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


def _numbers(version: str) -> tuple[int, ...]:
    """``"470.57.02"`` as ``(470, 57, 2)``, trailing zeros dropped, as dsl.c compares them."""
    parts = [int(p) for p in version.split(".") if p]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def requirement_findings(env: Mapping[str, str], host: GpuHost) -> Findings:
    """Would nvidia-container-toolkit start this image's containers on this host?

    Each requirement is checked on every GPU, as the toolkit checks each visible device.
    """
    found = Findings()
    if env.get("NVIDIA_DISABLE_REQUIRE") in _TRUE:
        found.confirmed.append("NVIDIA_DISABLE_REQUIRE is set: no NVIDIA_REQUIRE_* is checked")
        return found
    for name, expression in nvidia_requirements(env):
        groups = [g for g in expression.split(" ") if g]
        shown = groups[0] + (f" (or {len(groups) - 1} more groups)" if len(groups) > 1 else "")
        for device in host.devices or (None,):
            holds = requirement_holds(expression, host, device)
            on = f" on GPU {device.index} {device.name} ({device.brand})" if device else ""
            if holds is None:
                found.errors.append(
                    f'{name}="{expression}" is not a valid constraint: nvidia-container-toolkit '
                    'refuses to start the container ("invalid expression")'
                )
                break
            if not holds:
                found.errors.append(
                    f"{name}={shown} does not hold for driver {host.driver_version} (CUDA "
                    f"{host.cuda_version}){on}: nvidia-container-toolkit refuses to start the "
                    f'container ("unsatisfied condition: {groups[0]}"); update the driver, or '
                    "set NVIDIA_DISABLE_REQUIRE=true if the image brings its own cuda-compat"
                )
                break
        else:
            found.confirmed.append(f"{name}={shown} holds for driver {host.driver_version}")
    return found


def host_findings(facts: CudaFacts, host: GpuHost) -> Findings:
    """The rules that need the host's driver.

    :func:`driver_findings` for each CUDA build of torch, :func:`requirement_findings` for the
    image's environment.
    """
    found = Findings()
    for build in facts.torch_installs:
        if build.cuda:
            found.extend(driver_findings(build, host))
    found.extend(requirement_findings(facts.env, host))
    return found


def runtime_findings(runtime: TorchRuntime, *, where: str, gpus: int | None) -> Findings:
    """Did torch in the container see ``gpus`` GPUs (``None``: unknown) and run a kernel?"""
    found = Findings()
    if runtime.error:
        # Torch raised, or the probe's interpreter could not run at all (its error says
        # which): either way no kernel ran, and that is all that is known.
        found.errors.append(
            f"torch ran no CUDA kernel in {where}, which runs with GPUs: {runtime.error}"
        )
    elif not runtime.available:
        notes = f" (torch said: {'; '.join(runtime.notes)})" if runtime.notes else ""
        found.errors.append(
            f"torch.cuda.is_available() is False in {where}, which runs with GPUs{notes}: "
            "check that the driver supports torch's CUDA and that its CUDA libraries load"
        )
    elif runtime.kernel != 2.0:
        found.errors.append(
            f"(torch.ones(1, device='cuda') + 1).item() gave {runtime.kernel} in {where}, "
            "expected 2.0"
        )
    elif gpus is not None and runtime.device_count != gpus:
        found.errors.append(
            f"torch sees {runtime.device_count} GPUs in {where} but it was given {gpus}: "
            "check CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES in the image"
        )
    else:
        found.confirmed.append(
            f"torch ran a CUDA kernel in {where} on {', '.join(runtime.devices)} "
            f"(cuDNN {runtime.cudnn})"
        )
    return found


def _one_or_all(values: list[object]) -> object:
    if not values:
        return "none"
    return values[0] if len(values) == 1 else values


def _evidence(facts: CudaFacts) -> dict[str, object]:
    declared = facts.image_cuda
    unmeasured = [f"{c.source}: {c.error}" for c in facts.compilers if c.release is None]
    return {
        **({"not_measured": unmeasured} if unmeasured else {}),
        "image_cuda": declared.version if declared else "none",
        "image_cuda_source": declared.source if declared else "none",
        "nvcc_version": _one_or_all(
            [c.build or f"did not run ({c.error})" for c in facts.compilers]
        ),
        "nvcc_source": _one_or_all([c.source for c in facts.compilers]),
        "torch_version": _one_or_all([b.version for b in facts.torch_installs]),
        "torch_cuda": _one_or_all([b.cuda for b in facts.torch_installs if b.cuda]),
        "torch_build": _one_or_all([b.build for b in facts.torch_installs]),
        "torch_source": _one_or_all([b.source for b in facts.torch_installs]),
        "cudnn_version": facts.cudnn.version if facts.cudnn else "none",
        "cudnn_source": facts.cudnn.source if facts.cudnn else "none",
    }


def _runtime(
    facts: CudaFacts,
    container: RunningContainer,
    host: GpuHost | None,
    found: Findings,
    evidence: dict[str, object],
) -> None:
    requested = requested_gpu_count(container)
    torch = facts.torch
    if requested is None:
        evidence["runtime"] = (
            f"skipped: container {container.name} has no GPUs (start it with gpus='all')"
        )
        return
    if torch is None:
        evidence["runtime"] = "skipped: no torch in the image"
        return
    if torch.cuda is None:
        evidence["runtime"] = f"skipped: torch {torch.version} is a {torch.build} build"
        return
    gpus = requested if requested >= 0 else (len(host.devices) if host else None)
    runtime = probe_torch_runtime(container, torch)
    checked = runtime_findings(runtime, where=f"container {container.name}", gpus=gpus)
    found.extend(checked)
    evidence.update(
        runtime="failed" if checked.errors else "ok",
        runtime_device_count=runtime.device_count,
        runtime_cudnn=runtime.cudnn if runtime.cudnn is not None else "none",
    )


def assert_cuda_torch_match(
    image: ImageUnderTest | CudaFacts,
    *,
    cuda: str | None = None,
    torch: str | None = None,
    strict_minor: bool = False,
    container: RunningContainer | None = None,
) -> None:
    """Assert that the image's CUDA, its torch and the host's GPU driver fit together.

    Versions are read without importing torch or needing a GPU
    (:func:`~pytest_imagecheck.cuda.read_cuda_facts`; pass its result instead of the image to
    check one image several ways). ``cuda`` and ``torch`` are versions or prefixes:
    ``torch="2.14"`` accepts ``2.14.1+cu130``. nvcc and torch on different CUDA minors is a
    warning, and an error with ``strict_minor=True``: use that for images that compile CUDA
    extensions. Without an NVIDIA driver on this host the driver rules are skipped. A
    ``container`` started with GPUs must run a CUDA kernel with torch; one without GPUs skips
    that. The evidence (``cuda_torch``) says what was found where, and what was skipped why.
    """
    __tracebackhide__ = True
    facts = image if isinstance(image, CudaFacts) else read_cuda_facts(image, container)
    found = static_findings(facts, cuda=cuda, torch=torch, strict_minor=strict_minor)
    evidence = _evidence(facts)
    host: GpuHost | None = None
    engine = container.engine if container is not None else getattr(image, "source", None)
    try:
        if engine is not None and not getattr(engine, "local", True):
            raise NvmlUnavailable(
                f"the engine {engine.target} is on another machine, and NVML reads the GPU "
                "driver of the machine pytest runs on"
            )
        host = read_gpu_host()
    except NvmlUnavailable as exc:
        evidence["host"] = f"skipped: {exc}"
    else:
        found.extend(host_findings(facts, host))
        evidence.update(
            driver_version=host.driver_version,
            driver_cuda=host.cuda_version,
            gpus=[device.name for device in host.devices] or "none",
        )
    if container is None:
        evidence["runtime"] = "skipped: no container given"
    else:
        _runtime(facts, container, host, found, evidence)
    record(
        "cuda_torch",
        **evidence,
        confirmed=found.confirmed or "none",
        warnings=found.warnings or "none",
    )
    for message in found.warnings:
        warnings.warn(CudaCompatibilityWarning(message), stacklevel=2)
    if found.errors:
        raise AssertionError("\n".join(found.errors))


# --- imagecheck.yaml -----------------------------------------------------------------------

CUDA_TORCH = Check(
    "cuda_torch",
    "The image's CUDA, its torch and the host's driver fit together (assert_cuda_torch_match).",
    assert_cuda_torch_match,
    "image",
    (
        Key("cuda", kinds.VERSION, 'Expected CUDA version or prefix, in quotes: "12.1".'),
        Key("torch", kinds.VERSION, 'Expected torch version or prefix, in quotes: "2.5".'),
        Key("strict_minor", kinds.BOOL, "A CUDA minor that differs fails instead of warning."),
        Key(
            "gpu",
            kinds.BOOL,
            "Also run a kernel in the session container (started with --gpus); the test "
            "is marked gpu.",
            needs=frozenset({"container", "gpu"}),
        ),
    ),
    title=pairs("cuda", "torch"),
    reads_layers=True,
)
