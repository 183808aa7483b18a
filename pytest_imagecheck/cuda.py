"""CUDA, torch and cuDNN in an image, as facts that each say where they were found.

Nothing here imports torch or needs a GPU. Files come from one pass over the image's layers
(``docker save``), so site-packages is found wherever it is: the system Python, a venv, conda.
Only ``nvcc --version`` (or ``ptxas --version``) runs, in the container you pass or in one
started for it (entrypoint ``sleep``) and removed again::

    facts = read_cuda_facts(image)
    assert facts.torch.cuda == "13.0"
    assert facts.image_cuda.version == "13.0.96"
    print(facts.image_cuda.source)  # .../nvidia_cuda_runtime-13.0.96.dist-info, layer 1

In a container started with GPUs, :func:`probe_torch_runtime` asks torch itself.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
from collections.abc import Container
from dataclasses import dataclass, replace
from email.parser import HeaderParser
from typing import TYPE_CHECKING, cast

from packaging.version import Version

from .errors import ContainerFailed, ImageCheckError
from .layers import final_filesystem

if TYPE_CHECKING:
    from .container import ExecResult, RunningContainer
    from .engine import Engine
    from .image import ImageUnderTest

_SITE = r"/(?:site|dist)-packages/"
_TORCH_VERSION = re.compile(_SITE + r"torch/version\.py$")
_RUNTIME_WHEEL = re.compile(
    _SITE + r"nvidia_cuda_runtime(?:_cu\d+)?-[^/]+\.dist-info/METADATA$", re.I
)
_CUDNN_WHEEL = re.compile(_SITE + r"nvidia_cudnn_cu\d+-[^/]+\.dist-info/METADATA$", re.I)
_TOOLKIT_VERSION = re.compile(r"/cuda(?:-[\d.]+)?/version\.(?:json|txt)$")
_CUDNN_HEADER = re.compile(r"/cudnn_version(?:_v\d+)?\.h$")
_CUDART = re.compile(r"/libcudart\.so\.(\d+(?:\.\d+)*)$")
_CUDNN_LIBRARY = re.compile(r"/libcudnn\.so\.(\d+(?:\.\d+)*)$")
_COMPILER = re.compile(r"/bin/(nvcc|ptxas)$")
_PYTHON_PREFIX = re.compile(r"^(.*)/lib/python3[^/]*" + _SITE + "torch/version\\.py$")
_RELEASE_LINE = re.compile(r"release (\d+\.\d+), V(\d+(?:\.\d+)*)")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_KEPT = (_TORCH_VERSION, _RUNTIME_WHEEL, _CUDNN_WHEEL, _TOOLKIT_VERSION, _CUDNN_HEADER)

#: Keeps a container alive while the compilers report their versions.
KEEPALIVE = ["sleep", "infinity"]

# Prints one JSON line. Exceptions and the warnings of torch.cuda (not of the import: numpy
# missing, say) are data here: they are what the check reports.
_PROBE = """\
import json, warnings
out, seen = {"available": False}, []
try:
    import torch
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out["available"] = torch.cuda.is_available()
        if out["available"]:
            out["device_count"] = torch.cuda.device_count()
            out["devices"] = [torch.cuda.get_device_name(i) for i in range(out["device_count"])]
            out["kernel"] = (torch.ones(1, device="cuda") + 1).item()
            out["cudnn"] = torch.backends.cudnn.version()
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
out["notes"] = [str(w.message) for w in seen]
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Found:
    """A version the image states, and where: a file in the image or an environment variable.

    ``layer`` is the index of the filesystem layer the file comes from, base first
    (the order of ``ImageUnderTest.diff_ids``).
    """

    version: str
    where: str
    layer: int | None = None

    @property
    def source(self) -> str:
        """Where, with the layer: ``/usr/local/cuda-12.4/version.json, layer 3``."""
        return self.where if self.layer is None else f"{self.where}, layer {self.layer}"

    @property
    def release(self) -> tuple[int, ...]:
        """The numeric components: ``(13, 0, 96)``; ``(13,)`` when only the major is known."""
        return Version(self.version).release

    def __str__(self) -> str:
        return f"{self.version} ({self.source})"


@dataclass(frozen=True)
class Compiler:
    """A CUDA compiler in the image and the release its ``--version`` printed.

    ``nvcc``, or ``ptxas`` where no nvcc is beside it (the ``nvidia-cuda-nvcc-cu12`` wheels
    ship only ptxas); both print ``Cuda compilation tools, release 13.0, V13.0.88``.
    ``error`` says why there is no release when the tool did not answer.
    """

    path: str
    layer: int
    release: str | None = None  # "13.0"
    build: str | None = None  # "13.0.88"
    error: str | None = None

    @property
    def tool(self) -> str:
        """``nvcc`` or ``ptxas``."""
        return posixpath.basename(self.path)

    @property
    def source(self) -> str:
        """The command that told the version: ``/usr/local/cuda-12.4/bin/nvcc --version``."""
        return f"{self.path} --version, layer {self.layer}"


@dataclass(frozen=True)
class TorchBuild:
    """One torch install, read from its ``torch/version.py`` (torch is never imported).

    ``cuda`` is the CUDA it was built for (``None`` for CPU and ROCm builds), ``hip`` the
    ROCm HIP version of ROCm builds. ``python`` is the interpreter that imports it.
    """

    version: str
    cuda: str | None = None
    hip: str | None = None
    path: str = "torch/version.py"
    layer: int | None = None
    python: str = "python3"

    @property
    def build(self) -> str:
        """``cuda``, ``rocm`` or ``cpu``."""
        if self.cuda:
            return "cuda"
        return "rocm" if self.hip else "cpu"

    @property
    def source(self) -> str:
        """Where its version.py is: ``/usr/.../torch/version.py, layer 2``."""
        return self.path if self.layer is None else f"{self.path}, layer {self.layer}"


@dataclass(frozen=True)
class TorchRuntime:
    """What torch said in a running container: ``kernel`` is ``(ones(1) + 1).item()`` on cuda.

    ``error`` is the exception (or exit) that stopped the probe; ``notes`` the warnings torch
    gave, such as ``CUDA initialization: ...``.
    """

    available: bool
    device_count: int = 0
    devices: tuple[str, ...] = ()
    kernel: float | None = None
    cudnn: int | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CudaFacts:
    """The CUDA toolchain, torch and cuDNN of one image.

    ``cuda_sources`` lists what states the image's CUDA, most telling first: the
    ``CUDA_VERSION`` env of nvidia/cuda bases, ``cuda*/version.json``, ``nvidia-cuda-runtime``
    wheels, ``libcudart.so.*`` files. ``compilers`` have already reported their versions.
    """

    ref: str
    env: dict[str, str]
    cuda_sources: tuple[Found, ...] = ()
    compilers: tuple[Compiler, ...] = ()
    torch_installs: tuple[TorchBuild, ...] = ()
    cudnn: Found | None = None

    @property
    def image_cuda(self) -> Found | None:
        """The image's CUDA: the first source that gives a minor, else the first, else None."""
        with_minor = [s for s in self.cuda_sources if len(s.release) > 1]
        return next(iter(with_minor or self.cuda_sources), None)

    @property
    def torch(self) -> TorchBuild | None:
        """The torch install of the newest layer (usually the only one), or None."""
        installs = sorted(self.torch_installs, key=lambda b: b.layer or 0)
        return installs[-1] if installs else None


def parse_torch_version(
    source: str, path: str = "torch/version.py", layer: int | None = None
) -> TorchBuild:
    """Read ``__version__``, ``cuda`` and ``hip`` from the text of a ``torch/version.py``.

    Both spellings torch has used work: ``cuda = '11.1'`` and ``cuda: Optional[str] = '12.1'``.

    >>> parse_torch_version("__version__ = '2.14.1+cu130'\\ncuda: Optional[str] = '13.0'").cuda
    '13.0'
    """
    values: dict[str, object] = {}
    for node in ast.parse(source, filename=path).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    version = values.get("__version__")
    if not isinstance(version, str):
        raise ImageCheckError(f"{path} sets no __version__: is torch's install complete?")
    cuda, hip = values.get("cuda"), values.get("hip")
    return TorchBuild(
        version=version,
        cuda=cuda if isinstance(cuda, str) else None,
        hip=hip if isinstance(hip, str) else None,
        path=path,
        layer=layer,
    )


def parse_compiler_output(compiler: Compiler, result: ExecResult) -> Compiler:
    """``compiler`` with the release and build its ``--version`` output names, or the error."""
    match = _RELEASE_LINE.search(result.stdout) or _RELEASE_LINE.search(result.stderr)
    if match:
        return replace(compiler, release=match.group(1), build=match.group(2))
    if result.not_run is not None:
        return replace(compiler, error=f"did not run: {result.not_run}")
    said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
    return replace(compiler, error=f"exit code {result.exit_code}: {said}")


def keep_file(path: str, size: int) -> bool:
    """Whether a layer read keeps this file's bytes: a version file the facts are read from."""
    return any(pattern.search(path) for pattern in _KEPT)


def read_cuda_facts(image: ImageUnderTest, container: RunningContainer | None = None) -> CudaFacts:
    """Read the CUDA, torch and cuDNN facts of ``image``, streaming its layers once.

    ``nvcc``/``ptxas --version`` run in ``container`` when given, else in a container of the
    image started with entrypoint ``sleep infinity`` and removed afterwards.
    """
    layers = image.layer_contents(keep=keep_file)
    present = {entry.path: (entry, index) for entry, index in final_filesystem(layers)}
    env = image.env
    toolkit: list[Found] = []
    wheels: list[Found] = []
    libraries: list[Found] = []
    cudnn: list[Found] = []
    torches: list[TorchBuild] = []
    compilers: list[Compiler] = []
    for path, (entry, index) in present.items():
        if entry.kind not in ("file", "hardlink"):
            continue
        text = layers[index].contents.get(path, b"").decode("utf-8", "replace")
        if _TORCH_VERSION.search(path) and text:
            build = parse_torch_version(text, path, index)
            torches.append(replace(build, python=_python_for(path, present)))
        elif _RUNTIME_WHEEL.search(path) and (version := _metadata_version(text)):
            wheels.append(Found(version, posixpath.dirname(path), index))
        elif _CUDNN_WHEEL.search(path) and (version := _metadata_version(text)):
            cudnn.append(Found(version, posixpath.dirname(path), index))
        elif _TOOLKIT_VERSION.search(path) and (version := _toolkit_version(path, text)):
            toolkit.append(Found(version, path, index))
        elif _CUDNN_HEADER.search(path) and (version := _cudnn_header_version(text)):
            cudnn.append(Found(version, path, index))
        elif match := _CUDART.search(path):
            libraries.append(Found(match.group(1), path, index))
        elif match := _CUDNN_LIBRARY.search(path):
            cudnn.append(Found(match.group(1), path, index))
        elif match := _COMPILER.search(path):
            compilers.append(Compiler(path, index))
    declared = _NUMBER.match(env.get("CUDA_VERSION", ""))
    from_env = [Found(declared.group(0), "env CUDA_VERSION")] if declared else []
    nvcc_dirs = {posixpath.dirname(c.path) for c in compilers if c.tool == "nvcc"}
    # ptxas beside an nvcc says the same; Triton bundles a ptxas that need not match torch.
    compilers = [
        c
        for c in compilers
        if c.tool == "nvcc"
        or (posixpath.dirname(c.path) not in nvcc_dirs and "/triton/" not in c.path)
    ]
    compilers.sort(key=lambda c: c.tool != "nvcc")
    return CudaFacts(
        ref=image.ref or image.short_id,
        env=env,
        cuda_sources=tuple(from_env + toolkit + wheels + libraries),
        compilers=_run_compilers(image, container, compilers),
        torch_installs=tuple(torches),
        cudnn=min(cudnn, key=_cudnn_rank, default=None),
    )


def _python_for(version_py: str, present: Container[str]) -> str:
    """The interpreter of the environment a torch lives in (a venv's, conda's), else python3."""
    match = _PYTHON_PREFIX.match(version_py)
    candidate = f"{match.group(1)}/bin/python3" if match else ""
    return candidate if candidate in present else "python3"


def _metadata_version(text: str) -> str | None:
    version = HeaderParser().parsestr(text).get("Version") if text else None
    return str(version) if version else None


def _toolkit_version(path: str, text: str) -> str | None:
    """``cuda.version`` of a version.json, or the number in a version.txt (CUDA <= 11.0)."""
    if not text:
        return None
    if path.endswith(".json"):
        try:
            version = json.loads(text)["cuda"]["version"]
        except (ValueError, KeyError, TypeError):
            return None
        return str(version)
    match = re.search(r"CUDA Version (\d+(?:\.\d+)*)", text)
    return match.group(1) if match else None


def _cudnn_header_version(text: str) -> str | None:
    parts = [
        re.search(rf"#define CUDNN_{n}\s+(\d+)", text) for n in ("MAJOR", "MINOR", "PATCHLEVEL")
    ]
    return ".".join(m.group(1) for m in parts if m) if all(parts) else None


def _cudnn_rank(found: Found) -> int:
    """The wheel's METADATA says it best, then cudnn_version.h, then a library's name."""
    if found.where.endswith(".dist-info"):
        return 0
    return 1 if found.where.endswith(".h") else 2


def _run_compilers(
    image: ImageUnderTest, container: RunningContainer | None, compilers: list[Compiler]
) -> tuple[Compiler, ...]:
    if not compilers:
        return ()
    if container is not None:
        return tuple(_ask_version(container, c) for c in compilers)
    if image.source is None:
        raise ImageCheckError(f"cannot run nvcc --version in {image.ref}: no engine attached")
    # An image's source is the engine it was read from (engine.Engine.image).
    engine = cast("Engine", image.source)
    try:
        started = engine.run(image, entrypoint=KEEPALIVE, ports=[])
    except ContainerFailed as exc:
        tools = ", ".join(c.path for c in compilers)
        raise ImageCheckError(
            f"cannot run {tools} --version: {exc}; pass container= (a running container of "
            "the image) to use it instead"
        ) from None
    try:
        return tuple(_ask_version(started, c) for c in compilers)
    finally:
        engine.remove(started)


def _ask_version(container: RunningContainer, compiler: Compiler) -> Compiler:
    return parse_compiler_output(compiler, container.exec([compiler.path, "--version"]))


def requested_gpu_count(container: RunningContainer) -> int | None:
    """How many GPUs the container asked the engine for: ``None`` for none, ``-1`` for all."""
    requests = container.attrs.get("HostConfig", {}).get("DeviceRequests") or []
    gpus = [r for r in requests if any("gpu" in caps for caps in r.get("Capabilities") or [])]
    if not gpus:
        return None
    if any(r.get("Count") == -1 for r in gpus):
        return -1
    return sum(len(r.get("DeviceIDs") or []) or int(r.get("Count") or 0) for r in gpus)


def probe_torch_runtime(container: RunningContainer, torch: TorchBuild) -> TorchRuntime:
    """Ask torch in ``container`` whether CUDA works: is_available, a real kernel, cuDNN.

    ``PYTORCH_NVML_BASED_CUDA_CHECK`` is cleared for the probe, so ``is_available()`` really
    initialises CUDA instead of asking NVML (torch only honours the value ``1``).
    """
    result = container.exec([torch.python, "-c", _PROBE], env={"PYTORCH_NVML_BASED_CUDA_CHECK": ""})
    lines = result.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1]) if result.ok and lines else None
    except ValueError:
        out = None
    if not isinstance(out, dict):
        if result.not_run is not None:
            return TorchRuntime(
                available=False, error=f"{torch.python} did not run: {result.not_run}"
            )
        said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        return TorchRuntime(
            available=False, error=f"{torch.python} exited with code {result.exit_code}: {said}"
        )
    return TorchRuntime(
        available=bool(out.get("available")),
        device_count=int(out.get("device_count") or 0),
        devices=tuple(out.get("devices") or ()),
        kernel=out.get("kernel"),
        cudnn=out.get("cudnn"),
        error=out.get("error"),
        notes=tuple(out.get("notes") or ()),
    )
