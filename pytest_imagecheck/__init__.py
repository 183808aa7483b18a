"""pytest-imagecheck: container image acceptance tests as ordinary pytest tests.

Fixtures (``image``, ``container``, ``run_container``, ``dockerfile``, ``docker_client``)
come from the plugin; the classes here are what they return, and the ``assert_*`` checks
take them.
"""

from .build import BuildSpec
from .checks.cuda import assert_cuda_torch_match
from .checks.endpoint import assert_endpoint_ready
from .checks.health import assert_healthy
from .checks.healthcheck import assert_healthcheck
from .checks.pinning import assert_base_images_pinned, assert_built_from
from .checks.secrets import assert_no_secrets
from .checks.size import assert_size_within, write_size_baseline
from .checks.structure import (
    assert_command,
    assert_config,
    assert_env,
    assert_exposed_ports,
    assert_file,
    assert_labels,
)
from .checks.user import assert_non_root
from .container import ExecResult, RunningContainer
from .cuda import CudaFacts, read_cuda_facts
from .dockerfile import Dockerfile
from .engine import Engine
from .errors import ImageCheckError
from .gpu import GpuHost, NvmlUnavailable, read_gpu_host
from .image import Healthcheck, ImageUnderTest, Layer

__all__ = [
    "BuildSpec",
    "CudaFacts",
    "Dockerfile",
    "Engine",
    "ExecResult",
    "GpuHost",
    "Healthcheck",
    "ImageCheckError",
    "ImageUnderTest",
    "Layer",
    "NvmlUnavailable",
    "RunningContainer",
    "assert_base_images_pinned",
    "assert_built_from",
    "assert_command",
    "assert_config",
    "assert_cuda_torch_match",
    "assert_endpoint_ready",
    "assert_env",
    "assert_exposed_ports",
    "assert_file",
    "assert_healthcheck",
    "assert_healthy",
    "assert_labels",
    "assert_no_secrets",
    "assert_non_root",
    "assert_size_within",
    "read_cuda_facts",
    "read_gpu_host",
    "write_size_baseline",
]
