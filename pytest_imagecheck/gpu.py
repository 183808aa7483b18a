"""The GPU host as facts, read through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

NVML is the library ``nvidia-smi`` uses. It ships with the NVIDIA driver, so on a host without
the driver :func:`read_gpu_host` raises :class:`NvmlUnavailable`, whose message is the reason
to show when GPU checks are skipped::

    try:
        host = read_gpu_host()
    except NvmlUnavailable as exc:
        pytest.skip(str(exc))
    assert host.cuda_driver_version >= 12040  # CUDA 12.4

These are facts of the machine pytest runs on: with the engine on another machine they
describe the wrong host, so the plugin's GPU checks skip them there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pynvml

from .errors import ImageCheckError

#: NVML brands as nvidia-container-toolkit names them when it checks ``brand=`` in an image's
#: NVIDIA_REQUIRE_CUDA (libnvidia-container, src/driver.c): every other brand is "Unknown".
TOOLKIT_BRANDS = {
    pynvml.NVML_BRAND_QUADRO: "Quadro",
    pynvml.NVML_BRAND_TESLA: "Tesla",
    pynvml.NVML_BRAND_NVS: "NVS",
    pynvml.NVML_BRAND_GRID: "GRID",
    pynvml.NVML_BRAND_GEFORCE: "GeForce",
    pynvml.NVML_BRAND_TITAN: "TITAN",
}


class NvmlUnavailable(ImageCheckError):
    """NVML cannot be used on this host (no NVIDIA driver, or it is not loaded).

    The message says why, in one line; checks that need the host's GPUs skip with it.
    """


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML reports it."""

    index: int
    name: str
    memory: int  # bytes
    brand: str  # as nvidia-container-toolkit names it: Tesla, GeForce, ..., Unknown
    compute_capability: str  # "9.0"
    uuid: str


@dataclass(frozen=True)
class GpuHost:
    """The NVIDIA driver of the host and its GPUs.

    ``cuda_driver_version`` is NVML's number (``12040``); :attr:`cuda_version` is the same as
    ``nvidia-smi`` prints it (``"12.4"``): the newest CUDA this driver runs.
    """

    driver_version: str
    cuda_driver_version: int
    devices: tuple[GpuDevice, ...] = ()

    @property
    def cuda_version(self) -> str:
        """The newest CUDA the driver supports, ``major.minor``.

        >>> GpuHost("550.54.15", 12040).cuda_version
        '12.4'
        """
        return f"{self.cuda_driver_version // 1000}.{self.cuda_driver_version % 1000 // 10}"


def read_gpu_host() -> GpuHost:
    """The host's driver version, the CUDA version it supports and its GPUs, from NVML.

    Raises :class:`NvmlUnavailable` with the reason when NVML cannot be used, and
    :class:`~pytest_imagecheck.errors.ImageCheckError` when it starts but then fails (a GPU
    fell off the bus, say): that is trouble to report, not a reason to skip.
    """
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        raise NvmlUnavailable(
            "NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on this host"
        ) from None
    except pynvml.NVMLError_DriverNotLoaded:
        raise NvmlUnavailable(
            "NVIDIA driver not loaded (NVML found no kernel module): `nvidia-smi` says the same; "
            "load it with `modprobe nvidia` or reboot after installing the driver"
        ) from None
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML failed to start: {exc}") from None
    try:
        return GpuHost(
            driver_version=pynvml.nvmlSystemGetDriverVersion(),
            cuda_driver_version=pynvml.nvmlSystemGetCudaDriverVersion_v2(),
            devices=tuple(_device(i) for i in range(pynvml.nvmlDeviceGetCount())),
        )
    except pynvml.NVMLError as exc:
        raise ImageCheckError(f"NVML started but failed to describe the host: {exc}") from None
    finally:
        pynvml.nvmlShutdown()


def _device(index: int) -> GpuDevice:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    return GpuDevice(
        index=index,
        name=pynvml.nvmlDeviceGetName(handle),
        memory=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
        brand=TOOLKIT_BRANDS.get(pynvml.nvmlDeviceGetBrand(handle), "Unknown"),
        compute_capability=f"{major}.{minor}",
        uuid=pynvml.nvmlDeviceGetUUID(handle),
    )
