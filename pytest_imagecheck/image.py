"""The image under test as plain facts, read from the engine's inspect data.

Facts are attributes, so tests can use plain ``assert``::

    assert image.user == "autovoice"
    assert image.healthcheck.interval <= timedelta(seconds=30)
    assert "5000/tcp" in image.exposed_ports
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from .errors import ImageCheckError
from .evidence import from_test_code, observe, observed_fact, observing
from .layers import KeepContent, LayerContents, LayerPool, SharedLayers, read_saved_image
from .packages import OsPackages, OsRelease, live_files, read_os_packages, read_os_release
from .packages import keep_file as package_files
from .pythons import PythonInstall, PythonPackage, find_pythons, read_python_packages
from .pythons import keep_file as python_files
from .units import format_duration, format_size, nanoseconds_to_timedelta

# A RUN that saw build args: "|2 A=1 B=2 /bin/sh -c cmd" (legacy) or "RUN |2 ..." (BuildKit).
_RUN_WITH_ARGS = re.compile(r"^(?:RUN )?\|(\d+) (.*)$", re.S)

#: What the engine uses when a HEALTHCHECK leaves a value unset (``docker run --help``).
HEALTHCHECK_DEFAULTS: dict[str, Any] = {
    "interval": timedelta(seconds=30),
    "timeout": timedelta(seconds=30),
    "start_period": timedelta(0),
    "retries": 3,
}


@dataclass(frozen=True)
class Healthcheck:
    """The image's HEALTHCHECK, with the engine's defaults filled in where it sets none.

    ``defaults`` names the fields that came from the engine's defaults, not the image.
    """

    test: tuple[str, ...]
    interval: timedelta
    timeout: timedelta
    start_period: timedelta
    retries: int
    defaults: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Healthcheck | None:
        """Build from ``Config.Healthcheck``; ``None`` when absent or ``HEALTHCHECK NONE``."""
        if not config or not config.get("Test") or config["Test"][0] == "NONE":
            return None
        values: dict[str, Any] = {}
        defaults = set()
        for name, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start_period", "StartPeriod"),
            ("retries", "Retries"),
        ):
            raw = config.get(key) or 0
            if not raw:
                values[name] = HEALTHCHECK_DEFAULTS[name]
                defaults.add(name)
            elif name == "retries":
                values[name] = int(raw)
            else:
                values[name] = nanoseconds_to_timedelta(int(raw))
        return cls(test=tuple(config["Test"]), defaults=frozenset(defaults), **values)

    @property
    def command(self) -> str:
        """The probe as one line: ``curl -f http://localhost:5000/health``."""
        return " ".join(self.test[1:])

    def __str__(self) -> str:
        timing = (
            f"interval={format_duration(self.interval)} timeout={format_duration(self.timeout)} "
            f"start_period={format_duration(self.start_period)} retries={self.retries}"
        )
        return f"{self.test[0]} {self.command} ({timing})"


@dataclass(frozen=True)
class Layer:
    """One step of the image's history, in build order, as ``docker history`` shows it.

    ``size`` is 0 for steps that only change metadata (ENV, LABEL, CMD, ...).
    """

    index: int
    size: int
    created_by: str
    created: int
    id: str | None = None
    comment: str = ""

    @property
    def instruction(self) -> str:
        """The Dockerfile instruction that made this step, as written, for messages.

        Both builders' prefixes go: ``/bin/sh -c #(nop)``, BuildKit's ``# buildkit`` and the
        build args a RUN saw (``|1 APP_ENV=prod``), which ``created_by`` keeps.

        >>> Layer(0, 0, "RUN |1 APP_USER=svc /bin/sh -c useradd svc # buildkit", 0).instruction
        'RUN useradd svc'
        """
        text = self.created_by.removesuffix("# buildkit").strip()
        text = text.removeprefix("/bin/sh -c #(nop) ").strip()
        with_args = _RUN_WITH_ARGS.match(text)
        if with_args and "/bin/sh -c " in with_args[2]:
            text = with_args[2][with_args[2].index("/bin/sh -c ") :]
        if text.startswith(("/bin/sh -c ", "RUN /bin/sh -c ")):
            return "RUN " + text.split("/bin/sh -c ", 1)[1]
        return text

    @property
    def run_args(self) -> tuple[int, str] | None:
        """For a RUN step that saw build args: how many, and what follows ``|N`` in
        ``created_by`` (the ``NAME=value`` pairs, then the command); ``None`` for other steps.

        >>> Layer(0, 0, "|1 APP_ENV=prod /bin/sh -c make", 0).run_args
        (1, 'APP_ENV=prod /bin/sh -c make')
        """
        found = _RUN_WITH_ARGS.match(self.created_by)
        return (int(found[1]), found[2]) if found else None

    def __str__(self) -> str:
        return f"{self.instruction} ({format_size(self.size)})"


class ImageSource(Protocol):
    """Where an image's bytes are read from when a fact needs more than the inspect data.

    The engine (:class:`~pytest_imagecheck.engine.Engine`) is one; facts never import it.
    """

    def save(self, image_id: str) -> Iterable[bytes]:
        """The ``docker save`` stream of one image, chunk by chunk."""
        ...

    def read_image_file(self, image_id: str, path: str, *, owner: str) -> bytes:
        """One file of the image's filesystem, read without running anything in it."""
        ...

    def image(self, ref: str) -> ImageUnderTest:
        """Another image's facts, from the same place (a base image, say)."""
        ...


@dataclass(frozen=True, repr=False)
class ImageUnderTest:
    """An image on the engine, as facts.

    ``attrs`` is the engine's raw inspect document; everything else is read from it.
    ``source`` is where layers and files are read from (None: inspect data only).
    ``shared_keeps`` are the keep-predicates whose layer reads share one stream (see
    :meth:`layer_contents`); ``layer_pool``, when given, reads them together with other
    images' (:class:`~pytest_imagecheck.layers.LayerPool`).
    """

    attrs: dict[str, Any]
    history: list[dict[str, Any]] = field(repr=False)
    ref: str = ""
    source: ImageSource | None = field(default=None, repr=False, compare=False)
    shared_keeps: tuple[KeepContent, ...] = field(default=(), repr=False, compare=False)
    #: Where the layers of this image and others (a family's) are read together, if anywhere.
    layer_pool: LayerPool | None = field(default=None, repr=False, compare=False)
    _layers_read: SharedLayers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_layers_read", SharedLayers(self.shared_keeps, self.layer_pool, self.id)
        )

    def __repr__(self) -> str:
        return f"<ImageUnderTest {self.ref} {self.short_id}>"

    @property
    def _config(self) -> dict[str, Any]:
        return self.attrs.get("Config") or {}

    @property
    def id(self) -> str:
        """The image ID, ``sha256:...``."""
        return str(self.attrs["Id"])

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the ID, as ``docker images`` shows it."""
        return self.id.removeprefix("sha256:")[:12]

    @property
    @observed_fact
    def tags(self) -> list[str]:
        """The image's tags (``RepoTags``)."""
        return list(self.attrs.get("RepoTags") or [])

    @property
    @observed_fact
    def repo_digests(self) -> list[str]:
        """``name@sha256:...`` for each registry the image was pushed to or pulled from."""
        return list(self.attrs.get("RepoDigests") or [])

    @property
    @observed_fact
    def digest(self) -> str | None:
        """The registry digest (``sha256:...``) of the first repo digest, if any."""
        return self.repo_digests[0].split("@", 1)[1] if self.repo_digests else None

    @property
    @observed_fact
    def user(self) -> str:
        """``Config.User`` as written in the image (``""`` when unset, which means root)."""
        return str(self._config.get("User") or "")

    @property
    @observed_fact
    def env(self) -> dict[str, str]:
        """``Config.Env`` as a dict."""
        pairs = (item.partition("=") for item in self._config.get("Env") or [])
        return {key: value for key, _, value in pairs}

    @property
    @observed_fact
    def labels(self) -> dict[str, str]:
        """``Config.Labels``."""
        return dict(self._config.get("Labels") or {})

    @property
    @observed_fact
    def exposed_ports(self) -> list[str]:
        """Exposed ports as ``"5000/tcp"``, sorted by number."""
        ports = list(self._config.get("ExposedPorts") or {})
        return sorted(ports, key=lambda p: (int(p.split("/")[0]), p))

    @property
    @observed_fact
    def entrypoint(self) -> list[str] | None:
        """``Config.Entrypoint``."""
        value = self._config.get("Entrypoint")
        return list(value) if value else None

    @property
    @observed_fact
    def cmd(self) -> list[str] | None:
        """``Config.Cmd``."""
        value = self._config.get("Cmd")
        return list(value) if value else None

    @property
    @observed_fact
    def workdir(self) -> str:
        """``Config.WorkingDir`` (``""`` when unset, which means ``/``)."""
        return str(self._config.get("WorkingDir") or "")

    @property
    @observed_fact
    def healthcheck(self) -> Healthcheck | None:
        """The HEALTHCHECK, or ``None`` when there is none or it is ``HEALTHCHECK NONE``."""
        return Healthcheck.from_config(self._config.get("Healthcheck"))

    @property
    @observed_fact
    def healthcheck_disabled(self) -> bool:
        """True when the image says ``HEALTHCHECK NONE``."""
        test = (self._config.get("Healthcheck") or {}).get("Test") or []
        return bool(test) and test[0] == "NONE"

    @property
    @observed_fact
    def size(self) -> int:
        """Uncompressed size in bytes, as ``docker images`` reports it."""
        return int(self.attrs.get("Size") or 0)

    @property
    @observed_fact
    def layers(self) -> list[Layer]:
        """The history steps in build order (oldest first), each with size and instruction."""
        return [
            Layer(
                index=i,
                size=int(entry.get("Size") or 0),
                created_by=str(entry.get("CreatedBy") or ""),
                created=int(entry.get("Created") or 0),
                id=entry.get("Id") if entry.get("Id") not in (None, "<missing>") else None,
                comment=str(entry.get("Comment") or ""),
            )
            for i, entry in enumerate(reversed(self.history))
        ]

    @property
    @observed_fact
    def diff_ids(self) -> list[str]:
        """The filesystem layers' content digests (``RootFS.Layers``), base first."""
        return list((self.attrs.get("RootFS") or {}).get("Layers") or [])

    @property
    @observed_fact
    def architecture(self) -> str:
        """CPU architecture, e.g. ``amd64``."""
        return str(self.attrs.get("Architecture") or "")

    @property
    @observed_fact
    def os(self) -> str:
        """Operating system, e.g. ``linux``."""
        return str(self.attrs.get("Os") or "")

    @property
    @observed_fact
    def created(self) -> str:
        """When the image was built (RFC 3339)."""
        return str(self.attrs.get("Created") or "")

    @property
    @observed_fact
    def os_release(self) -> OsRelease | None:
        """``/etc/os-release`` (``ID``, ``VERSION_ID``, ...), read from the layers; None when
        the image has none (``FROM scratch``). See :mod:`~pytest_imagecheck.packages`."""
        return self._package_facts[0]

    @property
    @observed_fact
    def packages(self) -> OsPackages:
        """The installed OS packages (dpkg, apk, rpm's SQLite database), each with the layer
        that added it, read from the layers; ``.databases`` says which databases were found
        and read. See :mod:`~pytest_imagecheck.packages`."""
        return self._package_facts[1]

    @property
    @observed_fact
    def python_packages(self) -> list[PythonPackage]:
        """Every installed Python distribution (dist-info, egg-info) in every site-packages
        and dist-packages of the image, with name, version, location and the layer that added
        it. See :mod:`~pytest_imagecheck.pythons`."""
        return [p for p in self._package_facts[3] if p.installed]

    @property
    @observed_fact
    def pythons(self) -> list[PythonInstall]:
        """Every Python in the image (system, ``/usr/local``, conda, venvs), with its version,
        where that was read, and its site folders in ``sys.path`` order."""
        return self._package_facts[2]

    @property
    def python_package_copies(self) -> list[PythonPackage]:
        """Every copy of a Python distribution any layer holds, installed or since removed
        (``removed_in``), in the order the layers added them."""
        return list(self._package_facts[3])

    @functools.cached_property
    def _package_facts(
        self,
    ) -> tuple[OsRelease | None, OsPackages, list[PythonInstall], list[PythonPackage]]:
        """Read once, from the layer read the image's checks share."""
        os_layers = self.layer_contents(keep=package_files)
        python_layers = self.layer_contents(keep=python_files)
        present = live_files(os_layers)
        release = read_os_release(present, lambda path, i: os_layers[i].contents.get(path))
        packages = read_os_packages(os_layers, present)
        copies = read_python_packages(python_layers)
        live = {
            path: python_layers[index].contents[path]
            for path, (_, index) in present.items()
            if path in python_layers[index].contents
        }
        pythons = find_pythons(
            present,
            live,
            copies,
            os_packages=packages,
            os_release=release,
            env=self.env,
            user=self.user,
        )
        return release, packages, pythons, copies

    def layer_contents(self, keep: KeepContent | None = None) -> list[LayerContents]:
        """Every filesystem layer's entries and deletions, base first, streamed from the engine.

        Memory stays proportional to the number of files, not their size. ``keep(path, size)``
        selects small files whose bytes to keep (``LayerContents.contents``). Each layer's
        ``step`` indexes :attr:`layers`: the instruction that made it.

        The image is streamed once for all calls without ``keep`` or with one of
        :attr:`shared_keeps`; any other predicate streams again. The listing is shared between
        those calls: treat it as read-only.
        """
        source = self.source
        if source is None:
            raise ImageCheckError(f"cannot read the layers of {self.ref}: no engine attached")
        return self._layers_read.get(
            keep,
            lambda union: read_saved_image(
                source.save(self.id), self.diff_ids, keep=union, image_id=self.id
            ),
        )

    def read_file(self, path: str) -> bytes:
        """Read one file from the image's filesystem without running anything in it.

        Works for images without a shell: the engine creates a container, never started,
        reads it with its archive API, and removes it. Symbolic links are followed.

        Raises :class:`FileNotFoundError` for a missing path and :class:`IsADirectoryError`
        for one that is not a regular file.
        """
        if self.source is None:
            raise ImageCheckError(f"cannot read {path} from {self.ref}: no engine attached")
        data = self.source.read_image_file(self.id, path, owner=self.ref)
        if observing() and from_test_code(sys._getframe(1)):
            observe("file", path, f"{len(data)} bytes, read from image {self.ref}")
        return data
