"""Platforms as BuildKit reads them: ``--platform`` values, the engine's platform, and the
automatic platform ARGs (``TARGETARCH`` and friends) a Dockerfile sees.

The names and rules follow containerd's ``platforms`` package (``Parse`` and ``Normalize``)
and BuildKit's Dockerfile frontend, which predefines the ARGs of :data:`PLATFORM_ARGS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ImageCheckError

#: The ARGs BuildKit predefines from the target platform and the build (engine's) platform.
PLATFORM_ARGS = (
    *("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"),
    *("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"),
)
#: The platforms tried when looking for the ones a Dockerfile evidently supports: those
#: ``docker buildx ls`` commonly lists (BuildKit's binfmt set) plus Windows.
CANDIDATE_PLATFORMS = (
    *("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386"),
    *("linux/ppc64le", "linux/s390x", "linux/riscv64", "linux/mips64le", "linux/loong64"),
    *("windows/amd64", "windows/arm64"),
)
# containerd's platforms package: the names Parse accepts as an OS or as an architecture.
_KNOWN_OS = frozenset(
    {
        *("aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios"),
        *("js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1"),
        *("windows", "zos"),
    }
)
_KNOWN_ARCH = frozenset(
    {
        *("386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64"),
        *("mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc"),
        *("ppc64", "ppc64le", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64"),
        *("wasm", "i386", "x86_64", "x86-64", "aarch64", "armhf", "armel"),
    }
)
_PLATFORM_PART = re.compile(r"[A-Za-z0-9_-]+")


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``: the architecture and variant BuildKit compares."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


def normalize_platform(text: str, *, default_os: str = "linux") -> str:
    """``OS/ARCH[/VARIANT]`` as BuildKit reads a ``--platform`` value.

    Parses like containerd's ``platforms.Parse`` and normalises like ``platforms.Normalize``
    (what BuildKit's Dockerfile frontend applies to ``--platform``): aliases become Go's
    names, ``arm`` gets its implied ``v7`` and ``arm64`` loses ``v8``. A lone architecture
    gets ``default_os`` (the engine's OS). Raises :class:`ImageCheckError` for anything else.

    >>> normalize_platform("linux/aarch64")
    'linux/arm64'
    >>> normalize_platform("linux/arm64/v8")
    'linux/arm64'
    >>> normalize_platform("Linux/x86_64")
    'linux/amd64'
    >>> normalize_platform("linux/armhf")
    'linux/arm/v7'
    >>> normalize_platform("linux/arm")
    'linux/arm/v7'
    >>> normalize_platform("arm64")
    'linux/arm64'
    """
    parts = text.strip().split("/")
    if not 1 <= len(parts) <= 3 or not all(_PLATFORM_PART.fullmatch(p) for p in parts):
        raise ImageCheckError(
            f"platform {text!r} is not understood: use OS/ARCH[/VARIANT], "
            "e.g. linux/amd64, linux/arm64 or linux/arm/v7"
        )
    if len(parts) == 1:
        if parts[0].lower() in _KNOWN_OS or parts[0].lower() == "macos":
            raise ImageCheckError(
                f"platform {text!r} names no architecture: use OS/ARCH, e.g. {parts[0]}/amd64"
            )
        if parts[0].lower() not in _KNOWN_ARCH:
            raise ImageCheckError(
                f"platform {text!r} is not a known OS or architecture: use OS/ARCH[/VARIANT], "
                "e.g. linux/amd64"
            )
        parts = [default_os, parts[0]]
    os_name = parts[0].lower()
    os_name = "darwin" if os_name == "macos" else os_name
    if os_name not in _KNOWN_OS or parts[1].lower() not in _KNOWN_ARCH:
        unknown = parts[1] if os_name in _KNOWN_OS else parts[0]
        raise ImageCheckError(
            f"platform {text!r}: {unknown!r} is not a known "
            f"{'architecture' if os_name in _KNOWN_OS else 'OS'}: use OS/ARCH[/VARIANT], "
            "e.g. linux/amd64, linux/arm64 or linux/arm/v7"
        )
    arch, variant = _normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
    return "/".join(p for p in (os_name, arch, variant) if p)


def parse_platforms(text: str, option: str = "--platform") -> tuple[str, ...]:
    """A comma-separated list of platforms, as ``docker buildx build --platform`` takes it.

    Each is normalised (:func:`normalize_platform`); repeats are dropped. Errors name
    ``option`` and the whole value.

    >>> parse_platforms("linux/amd64, linux/aarch64,linux/arm64")
    ('linux/amd64', 'linux/arm64')
    """
    items = [item for item in (part.strip() for part in text.split(",")) if item]
    if not items:
        raise ImageCheckError(
            f"{option} {text!r} names no platform: use e.g. linux/amd64 or linux/amd64,linux/arm64"
        )
    try:
        return tuple(dict.fromkeys(normalize_platform(item) for item in items))
    except ImageCheckError as exc:
        raise ImageCheckError(f"{option} {text!r}: {exc}") from None


def engine_platform(version: Mapping[str, Any]) -> str | None:
    """The engine's platform from its version document (docker-py's ``client.version()``).

    Top-level ``Os`` and ``Arch`` are the engine's (Go's ``GOOS``/``GOARCH``), normalised as
    BuildKit normalises its worker's platform; None when either is missing. A 32-bit ARM
    engine reports ``arm``, taken as ``arm/v7`` (the variant is not in the document).

    >>> engine_platform({"Os": "linux", "Arch": "amd64", "Version": "20.10.24"})
    'linux/amd64'
    >>> engine_platform({"Os": "linux", "Arch": "aarch64"})
    'linux/arm64'
    >>> engine_platform({}) is None
    True
    """
    os_name, arch = version.get("Os"), version.get("Arch")
    if not os_name or not arch:
        return None
    try:
        return normalize_platform(f"{os_name}/{arch}")
    except ImageCheckError:
        return None


def platform_args(
    target: str | None, build: str | None, build_args: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """The values BuildKit gives the automatic platform ARGs.

    ``target`` is the platform the build produces (``--platform``, else the engine's), and
    ``build`` the engine's own platform; both normalised. An unknown platform leaves its
    four ARGs None (unknown, not empty). A build arg of the same name wins, as in BuildKit.

    >>> platform_args("linux/arm/v7", "linux/amd64")["TARGETVARIANT"]
    'v7'
    >>> platform_args("linux/amd64", "linux/amd64")["TARGETVARIANT"]
    ''
    """
    values: dict[str, str | None] = {}
    for prefix, platform in (("TARGET", target), ("BUILD", build)):
        if platform is None:
            parts: list[str | None] = [None, None, None, None]
        else:
            os_name, arch, variant = [*platform.split("/"), ""][:3]
            parts = [platform, os_name, arch, variant]
        for suffix, value in zip(("PLATFORM", "OS", "ARCH", "VARIANT"), parts, strict=True):
            values[prefix + suffix] = value
    for name in PLATFORM_ARGS:
        if build_args and name in build_args:
            values[name] = build_args[name]
    return values
