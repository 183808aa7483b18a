"""pytest-imagecheck: container image acceptance tests as ordinary pytest tests.

Fixtures (``image``, ``container``, ``run_container``, ``dockerfile``, ``docker_client``)
come from the plugin; the classes here are what they return.
"""

from .build import BuildSpec
from .container import ExecResult, RunningContainer
from .dockerfile import Dockerfile
from .engine import Engine
from .errors import ImageCheckError
from .image import Healthcheck, ImageUnderTest, Layer

__all__ = [
    "BuildSpec",
    "Dockerfile",
    "Engine",
    "ExecResult",
    "Healthcheck",
    "ImageCheckError",
    "ImageUnderTest",
    "Layer",
    "RunningContainer",
]
