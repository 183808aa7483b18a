"""read_gpu_host: the real answer on a host without a driver, and NVML stubbed for the rest."""

from __future__ import annotations

import ctypes
from typing import NamedTuple

import pynvml
import pytest

from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.gpu import GpuDevice, GpuHost, NvmlUnavailable, read_gpu_host

GIB = 1 << 30


class FakeGpu(NamedTuple):
    """One GPU as the stubbed NVML describes it."""

    name: str
    memory: int
    brand: int
    capability: tuple[int, int]
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"


def stub_nvml(
    monkeypatch: pytest.MonkeyPatch, *, driver: str, cuda: int, gpus: list[FakeGpu]
) -> list[str]:
    """Make ``pynvml`` answer as a host with ``driver`` (CUDA ``cuda`` in NVML's numbering).

    Returns the list of init/shutdown calls NVML receives.
    """
    calls: list[str] = []
    answers = {
        "nvmlInit": lambda: calls.append("init"),
        "nvmlShutdown": lambda: calls.append("shutdown"),
        "nvmlSystemGetDriverVersion": lambda: driver,
        "nvmlSystemGetCudaDriverVersion_v2": lambda: cuda,
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": lambda index: gpus[index],
        "nvmlDeviceGetName": lambda gpu: gpu.name,
        "nvmlDeviceGetMemoryInfo": lambda gpu: pynvml.c_nvmlMemory_t(total=gpu.memory),
        "nvmlDeviceGetBrand": lambda gpu: gpu.brand,
        "nvmlDeviceGetCudaComputeCapability": lambda gpu: gpu.capability,
        "nvmlDeviceGetUUID": lambda gpu: gpu.uuid,
    }
    for name, answer in answers.items():
        monkeypatch.setattr(pynvml, name, answer)
    return calls


def nvml_loads() -> bool:
    """True where libnvidia-ml.so.1 loads: this host has an NVIDIA driver."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_read_gpu_host_without_a_driver_says_why() -> None:
    if nvml_loads():
        pytest.skip("this host has an NVIDIA driver (libnvidia-ml.so.1 loads)")
    with pytest.raises(NvmlUnavailable) as failure:
        read_gpu_host()
    assert str(failure.value) == (
        "NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on this host"
    )


def test_read_gpu_host_reads_driver_cuda_and_devices_with_stubbed_nvml(monkeypatch) -> None:
    calls = stub_nvml(
        monkeypatch,
        driver="550.54.15",
        cuda=12040,
        gpus=[
            FakeGpu("Tesla T4", 16 * GIB, pynvml.NVML_BRAND_TESLA, (7, 5)),
            FakeGpu("NVIDIA RTX A6000", 48 * GIB, pynvml.NVML_BRAND_NVIDIA_RTX, (8, 6)),
        ],
    )
    host = read_gpu_host()
    assert host.driver_version == "550.54.15"
    assert host.cuda_version == "12.4"
    assert host.devices[0] == GpuDevice(
        index=0,
        name="Tesla T4",
        memory=16 * GIB,
        brand="Tesla",
        compute_capability="7.5",
        uuid="GPU-00000000-0000-0000-0000-000000000000",
    )
    # nvidia-container-toolkit knows only the six classic brands; the rest are "Unknown".
    assert host.devices[1].brand == "Unknown"
    assert calls == ["init", "shutdown"]


@pytest.mark.parametrize(("number", "shown"), [(11040, "11.4"), (12020, "12.2"), (13000, "13.0")])
def test_cuda_version_reads_nvml_numbering(number: int, shown: str) -> None:
    assert GpuHost("580.65.06", number).cuda_version == shown


def test_driver_not_loaded_is_unavailable_with_the_fix_with_stubbed_nvml(monkeypatch) -> None:
    def init() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", init)
    with pytest.raises(NvmlUnavailable, match=r"NVIDIA driver not loaded .*modprobe nvidia"):
        read_gpu_host()


def test_failing_query_is_an_error_not_a_skip_with_stubbed_nvml(monkeypatch) -> None:
    calls = stub_nvml(monkeypatch, driver="550.54.15", cuda=12040, gpus=[])

    def lost() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    monkeypatch.setattr(pynvml, "nvmlSystemGetCudaDriverVersion_v2", lost)
    with pytest.raises(
        ImageCheckError, match=r"failed to describe the host: GPU is lost"
    ) as failure:
        read_gpu_host()
    assert not isinstance(failure.value, NvmlUnavailable)
    assert calls == ["init", "shutdown"]
