"""Errors the plugin raises for bad input and engine trouble.

Every error here carries one line that names the input at fault and the fix;
the plugin layer turns them into short pytest failures instead of tracebacks.
"""

from __future__ import annotations


class ImageCheckError(Exception):
    """Base for every error pytest-imagecheck raises on bad input or engine trouble."""


class EngineUnavailable(ImageCheckError):
    """The Docker engine cannot be reached."""


class ImageNotFound(ImageCheckError):
    """The image under test does not exist on the engine."""


class BuildFailed(ImageCheckError):
    """Building the image under test failed."""


class ContainerFailed(ImageCheckError):
    """A container could not start, or stopped when it had to be running."""


class DockerfileError(ImageCheckError):
    """The Dockerfile cannot be read or parsed."""


class GpuUnavailable(ImageCheckError):
    """The engine cannot give GPUs to a container."""
