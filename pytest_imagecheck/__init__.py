"""pytest-imagecheck: container image acceptance tests as ordinary pytest tests.

Fixtures (``image``, ``container``, ``run_container``, ``dockerfile``, ``docker_client``)
come from the plugin, and :func:`container_fixture` makes more; the classes here are what
they return, and the ``assert_*`` checks take them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .build import BuildSpec
    from .checks.cuda import assert_cuda_torch_match
    from .checks.endpoint import assert_endpoint_ready
    from .checks.health import assert_healthy
    from .checks.healthcheck import assert_healthcheck
    from .checks.packages import (
        assert_absent,
        assert_installed_once,
        assert_no_stray_files,
        assert_pip_consistent,
        assert_versions,
    )
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
    from .packages import OsPackage, OsPackages, OsRelease, PackageDatabase
    from .plugin.ahead import container_fixture
    from .pythons import PythonInstall, PythonPackage

# Each name is imported on first use, so that loading the plugin (which pytest does in every
# session, also of projects that never touch a container) costs only what the session uses.
_WHERE = {
    "container_fixture": ".plugin.ahead",
    "BuildSpec": ".build",
    "CudaFacts": ".cuda",
    "Dockerfile": ".dockerfile",
    "Engine": ".engine",
    "ExecResult": ".container",
    "GpuHost": ".gpu",
    "Healthcheck": ".image",
    "ImageCheckError": ".errors",
    "ImageUnderTest": ".image",
    "Layer": ".image",
    "NvmlUnavailable": ".gpu",
    "OsPackage": ".packages",
    "OsPackages": ".packages",
    "OsRelease": ".packages",
    "PackageDatabase": ".packages",
    "PythonInstall": ".pythons",
    "PythonPackage": ".pythons",
    "RunningContainer": ".container",
    "assert_absent": ".checks.packages",
    "assert_base_images_pinned": ".checks.pinning",
    "assert_built_from": ".checks.pinning",
    "assert_command": ".checks.structure",
    "assert_config": ".checks.structure",
    "assert_cuda_torch_match": ".checks.cuda",
    "assert_endpoint_ready": ".checks.endpoint",
    "assert_env": ".checks.structure",
    "assert_exposed_ports": ".checks.structure",
    "assert_file": ".checks.structure",
    "assert_healthcheck": ".checks.healthcheck",
    "assert_healthy": ".checks.health",
    "assert_installed_once": ".checks.packages",
    "assert_labels": ".checks.structure",
    "assert_no_secrets": ".checks.secrets",
    "assert_no_stray_files": ".checks.packages",
    "assert_non_root": ".checks.user",
    "assert_pip_consistent": ".checks.packages",
    "assert_size_within": ".checks.size",
    "assert_versions": ".checks.packages",
    "read_cuda_facts": ".cuda",
    "read_gpu_host": ".gpu",
    "write_size_baseline": ".checks.size",
}

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
    "OsPackage",
    "OsPackages",
    "OsRelease",
    "PackageDatabase",
    "PythonInstall",
    "PythonPackage",
    "RunningContainer",
    "assert_absent",
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
    "assert_installed_once",
    "assert_labels",
    "assert_no_secrets",
    "assert_no_stray_files",
    "assert_non_root",
    "assert_pip_consistent",
    "assert_size_within",
    "assert_versions",
    "container_fixture",
    "read_cuda_facts",
    "read_gpu_host",
    "write_size_baseline",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
