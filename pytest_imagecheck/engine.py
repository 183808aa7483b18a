"""The Docker engine as the plugin uses it: one client, one session label, cleanup.

Every container the plugin creates carries the labels from :meth:`Engine.labels`:

``pytest-imagecheck.session``
    the pytest session that made it (shared by all xdist workers of one run);
``pytest-imagecheck.pid`` and ``pytest-imagecheck.host``
    the process that made it, so a later session can tell a crashed session's
    leftovers (dead pid on this host and PID namespace, :func:`this_host`) from a session
    that is still running;
``pytest-imagecheck.keep``
    set with ``--keep-containers``: never swept.

``docker ps -a --filter label=pytest-imagecheck.session`` lists them all.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shlex
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import TYPE_CHECKING, Any

import docker
import docker.constants
import docker.errors
import docker.tls
import requests
from docker.types import DeviceRequest

from .enginehost import (
    LOOPBACK,
    EngineTarget,
    Publishing,
    Tunnels,
    check_reachable,
    engine_target,
)
from .errors import (
    ContainerFailed,
    EngineUnavailable,
    GpuUnavailable,
    ImageCheckError,
    ImageNotFound,
)
from .platforms import engine_platform
from .units import port_key

if TYPE_CHECKING:
    from .container import RunningContainer
    from .image import ImageUnderTest
    from .layers import KeepContent

LABEL_SESSION = "pytest-imagecheck.session"
LABEL_PID = "pytest-imagecheck.pid"
LABEL_HOST = "pytest-imagecheck.host"
LABEL_KEEP = "pytest-imagecheck.keep"
LABEL_TEST = "pytest-imagecheck.test"

#: How long a new container must stay up before it is handed to a test: long enough to see an
#: entrypoint that fails at once exit (it takes milliseconds), short enough not to slow suites.
START_SETTLE_SECONDS = 0.2
_GPU_DRIVER_ERROR = re.compile(r"could not select device driver .* with capabilities")
_REFERENCE = re.compile(
    r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?"  # registry or first path part
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_IMAGE_ID = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")

ENGINE_HINT = (
    "start one (`sudo systemctl start docker`, or `sudo dockerd &`), "
    "or point DOCKER_HOST at a running engine"
)


#: What docker-py raises when the engine is gone: its own errors, or the HTTP layer's.
ENGINE_ERRORS = (
    docker.errors.DockerException,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def engine_address() -> str:
    """Where the engine is reached: ``DOCKER_HOST``, else the local socket."""
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def engine_lost(exc: BaseException) -> EngineUnavailable:
    """The one-line error for an engine that stopped answering in the middle of a session."""
    return EngineUnavailable(
        f"Docker engine at {engine_address()} stopped answering ({short_reason(exc)}): "
        f"{ENGINE_HINT}; containers left behind are swept by the next session"
    )


def from_engine(exc: BaseException, client: docker.DockerClient | None) -> bool:
    """Whether ``exc`` is a failure of the engine's own API connection.

    A ``requests`` error is the engine's only when its request went to the engine's API
    (``client``'s base URL) or, with no request attached, when docker-py raised it. A refused
    or reset connection to a container's published port is the service's, not the engine's.
    """
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    if url:
        return client is not None and str(url).startswith(str(client.api.base_url))
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("docker."):
            return True
        traceback = traceback.tb_next
    return isinstance(exc, docker.errors.DockerException)


def this_host() -> str:
    """Who made a container, for :meth:`Engine.sweep_stale`: the host name and this process's
    PID namespace (``ci-7/pid:[4026531836]``), so a session in another container or namespace
    with the same host name never takes this one's live processes for dead ones."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace}"


def new_session_id() -> str:
    """A fresh, short session id for labels and container names."""
    return secrets.token_hex(6)


@functools.cache
def shared_keeps() -> tuple[KeepContent, ...]:
    """The keep-predicates an engine's images share one layer read between: the secret
    rules' candidate files, the CUDA facts' version files, the OS facts' os-release and
    package databases, and the Python facts' distribution metadata. Whichever of those
    checks (or facts) runs first streams the image once for all of them.

    Imported on first use: the rules are large and most sessions read no layer.
    """
    from .cuda import keep_file as cuda_files
    from .packages import keep_file as package_files
    from .pythons import keep_file as python_files
    from .secret_rules import keep_file as secret_files

    return (secret_files, cuda_files, package_files, python_files)


def connect(target: EngineTarget | None = None, timeout: int = 60) -> docker.DockerClient:
    """Connect to ``target`` (default: the engine the environment names, as the docker CLI
    reads it: ``DOCKER_HOST``, a Docker context, else the local socket).

    An address that refuses or does not answer, an SSH login that fails, or a TLS handshake
    that fails is one :class:`EngineUnavailable` line naming the address and the fix, in
    about 10 s at most.
    """
    if target is None:
        target = engine_target(None, os.environ, "--engine")
    check_reachable(target)
    try:
        tls: docker.tls.TLSConfig | bool = False
        if target.cert_path:
            folder = target.cert_path
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            has_client = os.path.isfile(cert) and os.path.isfile(key)
            tls = docker.tls.TLSConfig(
                client_cert=(cert, key) if has_client else None,
                ca_cert=os.path.join(folder, "ca.pem") if target.tls_verify else None,
                verify=target.tls_verify,
            )
        if tls:
            # requests would verify the engine against REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
            # when set (the system's CAs) instead of the engine's ca.pem: no environment, and
            # the API version asked for once that holds.
            client = docker.DockerClient(
                base_url=target.url,
                tls=tls,
                timeout=timeout,
                version=docker.constants.DEFAULT_DOCKER_API_VERSION,
            )
            client.api.trust_env = False
            client.api._version = client.api.version(api_version=False)["ApiVersion"]  # type: ignore[attr-defined]
        else:
            # ssh:// through paramiko: docker-py's other transport, the ssh client, loses
            # about one exec in five to a broken pipe (docker-py issue 3218).
            client = docker.DockerClient(base_url=target.url, timeout=timeout)
        client.ping()
    except requests.exceptions.SSLError as exc:
        raise EngineUnavailable(
            f"TLS with the Docker engine at {target} failed ({short_reason(exc)}): the CA in "
            f"{target.cert_path}/ca.pem must have signed the engine's certificate, for the "
            "address used, and the engine must accept cert.pem"
        ) from None
    except (docker.errors.DockerException, *ENGINE_ERRORS) as exc:
        raise EngineUnavailable(
            f"Docker engine unreachable at {target} ({short_reason(exc)}): {ENGINE_HINT}"
        ) from None
    return client


def short_reason(exc: BaseException) -> str:
    """The innermost useful words of a docker-py / requests exception."""
    text = str(exc)
    for pattern in (
        r"\[Errno -?\d+\] ([^'\")]+)",
        r"\w+Error\(-?\d+, '([^']+)'\)",
        r"Errno \d+\] ([^'\")]+)",
        r"\)\)?: (.+)$",
    ):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip().rstrip(".")
    return text.splitlines()[0][:200] if text else type(exc).__name__


def check_reference(ref: str) -> str:
    """Return ``ref`` if it is a well-formed image reference or ID, else raise a one-line error.

    >>> check_reference("autovoice:latest")
    'autovoice:latest'
    """
    if _IMAGE_ID.fullmatch(ref) or _REFERENCE.fullmatch(ref):  # $ allows a trailing \n
        return ref
    raise ImageCheckError(
        f"--image {ref!r} is not an image reference: use NAME[:TAG], NAME@sha256:DIGEST "
        "or an image ID (lowercase, no spaces)"
    )


def parse_gpus(value: str) -> DeviceRequest:
    """Turn a ``docker run --gpus`` value into the engine's device request.

    ``all`` asks for every GPU, ``N`` for N of them, ``device=0,1`` for those devices.

    >>> parse_gpus("all").count
    -1
    >>> parse_gpus("device=0,1").device_ids
    ['0', '1']
    """
    text = value.strip().strip('"')
    if text in ("all", "count=all"):
        return DeviceRequest(count=-1, capabilities=[["gpu"]])
    count = text.removeprefix("count=")
    if re.fullmatch(r"[0-9]+", count) and int(count) > 0:  # not isdigit(): "²"
        return DeviceRequest(count=int(count), capabilities=[["gpu"]])
    ids = [d for d in text.removeprefix("device=").split(",") if d.strip()]
    if text.startswith("device=") and ids and all(re.fullmatch(r"[\w:-]+", d) for d in ids):
        return DeviceRequest(device_ids=ids, capabilities=[["gpu"]])
    raise ImageCheckError(
        f"--gpus {value!r} is not understood: use all, a count like 2, or device=0,1 "
        "(as for docker run --gpus)"
    )


def _strings(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _string_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


#: Each run option's test, and what it takes, for :func:`check_run_options`.
_RUN_OPTIONS: dict[str, tuple[Callable[[object], bool], str]] = {
    "command": (lambda v: isinstance(v, str) or _strings(v), "a string or a list of strings"),
    "entrypoint": (lambda v: isinstance(v, str) or _strings(v), "a string or a list of strings"),
    "env": (_string_map, 'a mapping of names to strings, like {"MODE": "ro"}'),
    "user": (lambda v: isinstance(v, str), 'a user name or id as a string, like "1000"'),
    "ports": (
        lambda v: (
            isinstance(v, (list, tuple))
            and all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in v)
        ),
        'a list of ports, like [8080, "53/udp"]',
    ),
    "read_only": (lambda v: isinstance(v, bool), "true or false"),
    "tmpfs": (_string_map, 'a mapping of paths to mount options, like {"/tmp": ""}'),
    "cap_drop": (_strings, 'a list of capabilities, like ["ALL"]'),
    "security_opt": (_strings, 'a list of options, like ["no-new-privileges"]'),
    "gpus": (lambda v: isinstance(v, str), 'a --gpus value, like "all" or "device=0"'),
    "labels": (_string_map, 'a mapping of label names to strings, like {"team": "ml"}'),
}


def check_run_options(options: Mapping[str, object]) -> None:
    """Raise :class:`ImageCheckError` (one line) for a container run option (of
    ``run_container`` or ``container_fixture``) of the wrong type or value; None values are
    the defaults."""
    for name, value in options.items():
        if name not in _RUN_OPTIONS:
            raise ImageCheckError(
                f"run option {name}={value!r} is not one the plugin sets: use "
                f"{', '.join(_RUN_OPTIONS)} (it never runs privileged containers or mounts "
                "host paths)"
            )
        if value is None:
            continue
        test, takes = _RUN_OPTIONS[name]
        if not test(value):
            raise ImageCheckError(f"run option {name}={value!r}: expected {takes}")
        if name in ("command", "entrypoint") and isinstance(value, str):
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ImageCheckError(
                    f"run option {name}={value!r} cannot be split into words ({exc}): close "
                    "the quote, or pass a list of words"
                ) from None
        names = list(value) if name == "env" and isinstance(value, Mapping) else []
        bad = next((k for k in names if not k or "=" in k), None)
        if bad is not None:
            raise ImageCheckError(
                f"run option env has the name {bad!r}: a variable name cannot be empty or "
                'hold "=", like {"MODE": "ro"}'
            )
        if name == "gpus":
            try:
                parse_gpus(str(value))
            except ImageCheckError:
                raise ImageCheckError(
                    f"run option gpus={value!r} is not understood: use all, a count like 2, "
                    "or device=0,1 (as for docker run --gpus)"
                ) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while cleaning up, so a second Ctrl-C cannot leave leftovers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class Engine:
    """The Docker engine for one pytest session (or one xdist worker of it).

    It labels what it creates, remembers it, and removes it again.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        session_id: str,
        *,
        keep_containers: bool = False,
        target: EngineTarget | None = None,
        publishing: Publishing | None = None,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.keep_containers = keep_containers
        #: Where the engine is (``--engine``, ``DOCKER_HOST``, a context, the local socket).
        self.target = target or engine_target(None, os.environ, "--engine")
        #: Where its containers' ports bind and are reached (``--publish-host``).
        self.publishing = publishing or Publishing(LOOPBACK, LOOPBACK, "a local engine")
        self._tunnels = Tunnels(self.target) if self.publishing.tunnelled else None
        self.host = this_host()
        #: Bytes of image saves streamed from the engine so far (layer reads).
        self.bytes_streamed = 0
        #: Removals handed to the background (:meth:`remove_later`), oldest first.
        self._removals: list[Future[None]] = []
        self._remover: ThreadPoolExecutor | None = None

    @property
    def local(self) -> bool:
        """Whether the engine runs on the machine pytest runs on."""
        return self.target.local

    def reach(self, published: tuple[str, int]) -> tuple[str, int]:
        """Where pytest connects to a port published at ``published`` (``(bind address,
        port)`` on the engine's host): the publishing address, or this machine's end of an
        SSH tunnel to it."""
        if self._tunnels is not None:
            return (LOOPBACK, self._tunnels.local_port(published[1]))
        return (self.publishing.reach or LOOPBACK, published[1])

    @property
    def labels(self) -> dict[str, str]:
        """The labels every container of this session carries."""
        labels = {
            LABEL_SESSION: self.session_id,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: self.host,
        }
        if self.keep_containers:
            labels[LABEL_KEEP] = "1"
        return labels

    @property
    def version(self) -> str:
        """The engine's version string, e.g. ``20.10.24``."""
        return str(self._version.get("Version", "unknown"))

    @functools.cached_property
    def _version(self) -> dict[str, Any]:
        return dict(self.client.version())

    @property
    def platform(self) -> str | None:
        """The platform the engine runs containers on, ``OS/ARCH``: ``linux/amd64`` (normalised
        as BuildKit does; ``None`` if the engine does not say)."""
        return engine_platform(self._version)

    def platform_mismatch(self, image: ImageUnderTest) -> str:
        """Why ``exec format error``: the image's platform beside the engine's, and the fix.

        Or, where they agree, that a binary in the image is for another CPU.
        """
        variant = image.attrs.get("Variant")
        theirs = f"{image.os or 'linux'}/{image.architecture or 'unknown'}" + (
            f"/{variant}" if variant else ""
        )
        ours = self.platform or "an unknown platform"
        if theirs.split("/")[:2] != ours.split("/")[:2]:
            return (
                f"exec format error: image {image.ref} is built for {theirs} but the engine "
                f"runs {ours}; build it for {ours} (docker build --platform {ours}), or run it "
                f"on a {theirs} engine (or one with QEMU binfmt emulation for it)"
            )
        return (
            f"exec format error: image {image.ref} is for {theirs}, as the engine, but the "
            "program it starts is not a binary for this CPU (or a script without #!)"
        )

    def image(self, ref: str) -> ImageUnderTest:
        """The facts of image ``ref``, which must exist on the engine.

        Its layer reads share one ``docker save`` between the checks that read every layer
        (:func:`shared_keeps`).
        """
        from .image import ImageUnderTest

        check_reference(ref)
        try:
            attrs = self.client.api.inspect_image(ref)
            history = self.client.api.history(attrs["Id"])
        except docker.errors.ImageNotFound:
            raise ImageNotFound(
                f"image {ref!r} not found on the engine: build or load it first, "
                "or pass --build-context DIR to have pytest build it"
            ) from None
        except docker.errors.APIError as exc:
            raise ImageCheckError(f"cannot inspect image {ref!r}: {exc.explanation}") from None
        return ImageUnderTest(
            attrs=attrs, history=history, ref=ref, source=self, shared_keeps=shared_keeps()
        )

    def read_image_file(self, image_id: str, path: str, *, owner: str) -> bytes:
        """One file of an image, read through a container that is created, never started,
        and removed. ``owner`` names the image in errors.

        Raises :class:`FileNotFoundError` for a missing path and :class:`IsADirectoryError`
        for one that is not a regular file; symbolic links are followed.
        """
        from .container import read_archive_file

        container = self.create(image_id, command=["/"], entrypoint=[])
        try:
            return read_archive_file(container, path, owner=owner)
        finally:
            self.remove(container)

    def save(self, *image_ids: str) -> Iterator[bytes]:
        """Stream ``docker save`` of one image or several, chunk by chunk.

        A save of several images holds each layer they share once. The bytes streamed are
        added to :attr:`bytes_streamed`.
        """
        api = self.client.api
        try:
            if len(image_ids) == 1:
                chunks = api.get_image(image_ids[0])
            else:
                # docker-py saves one image per call; the engine's API takes several names.
                response = api.get(
                    f"{api.base_url}/v{api.api_version}/images/get",
                    params=[("names", image_id) for image_id in image_ids],
                    stream=True,
                )
                if response.status_code != 200:
                    raise docker.errors.APIError(
                        response.reason, response, explanation=response.text.strip()
                    )
                chunks = response.iter_content(chunk_size=2 * 1024 * 1024)
            for chunk in chunks:
                self.bytes_streamed += len(chunk)
                yield chunk
        except docker.errors.APIError as exc:
            names = ", ".join(image_ids)
            raise ImageCheckError(f"cannot export image {names}: {exc.explanation}") from None

    def create(self, image: str, **kwargs: Any) -> Any:
        """Create (not start) a labelled container of ``image``; docker-py's keyword arguments."""
        labels = {**self.labels, **kwargs.pop("labels", {})}
        name = kwargs.pop("name", None) or f"imagecheck-{self.session_id}-{secrets.token_hex(3)}"
        return self.client.containers.create(image, labels=labels, name=name, **kwargs)

    def run(
        self,
        image: ImageUnderTest,
        *,
        command: str | list[str] | None = None,
        entrypoint: str | list[str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        ports: Iterable[int | str] | None = None,
        read_only: bool = False,
        tmpfs: Mapping[str, str] | None = None,
        cap_drop: list[str] | None = None,
        security_opt: list[str] | None = None,
        gpus: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunningContainer:
        """Start a container of ``image`` with every port published at the publishing
        address (127.0.0.1 for a local engine; ``--publish-host``).

        ``ports`` (default: the image's exposed ports) each get a free host port chosen by
        the engine. A container whose start fails is removed before the error is raised.
        """
        from .container import RunningContainer

        check_run_options(
            {
                "command": command,
                "entrypoint": entrypoint,
                "env": env,
                "user": user,
                "ports": ports,
                "read_only": read_only,
                "tmpfs": tmpfs,
                "cap_drop": cap_drop,
                "security_opt": security_opt,
                "gpus": gpus,
            }
        )
        wanted = image.exposed_ports if ports is None else [port_key(p) for p in ports]
        kwargs: dict[str, Any] = {
            "command": command,
            "entrypoint": entrypoint,
            "environment": dict(env or {}),
            "ports": {port: (self.publishing.bind, None) for port in wanted},
            "read_only": read_only,
            "tmpfs": dict(tmpfs or {}),
            "cap_drop": cap_drop,
            "security_opt": security_opt,
            "labels": dict(labels or {}),
            "detach": True,
        }
        if user is not None:
            kwargs["user"] = user
        if gpus:
            kwargs["device_requests"] = [parse_gpus(gpus)]
        try:
            raw = self.create(image.id, **kwargs)
        except docker.errors.APIError as exc:
            raise ContainerFailed(
                f"cannot create a container of {image.ref}: {exc.explanation}"
            ) from None
        container = RunningContainer(raw, image=image, engine=self)
        container.gpus = gpus
        try:
            raw.start()
        except docker.errors.APIError as exc:
            self.remove(container)
            explanation = str(exc.explanation or exc)
            if "exec format error" in explanation:
                explanation += f"; {self.platform_mismatch(image)}"
            if _GPU_DRIVER_ERROR.search(explanation):
                raise GpuUnavailable(
                    f"the engine cannot give GPUs (--gpus {gpus}): {explanation}; install the "
                    "NVIDIA Container Toolkit on the Docker host, or run without --gpus"
                ) from None
            raise ContainerFailed(
                f"container of {image.ref} failed to start: {explanation}"
            ) from None
        except BaseException:
            self.remove(container)
            raise
        try:
            container.settle(START_SETTLE_SECONDS)
        except ContainerFailed:
            self.remove(container)
            raise
        return container

    def remove(self, container: RunningContainer | Any) -> None:
        """Force-remove one container (and its anonymous volumes); gone already is fine."""
        if self.keep_containers:
            return
        # An engine that is gone cannot remove anything; the next session sweeps it.
        with _signals_deferred(), contextlib.suppress(docker.errors.NotFound, *ENGINE_ERRORS):
            self.client.api.remove_container(container.id, force=True, v=True)

    def remove_later(self, container: RunningContainer | Any) -> None:
        """Force-remove one container without waiting for the engine to finish: the engine's
        work of stopping and deleting it is nobody's wait (the next tests run meanwhile).

        The request is sent, and its answer not read: the engine removes a container whose
        removal it was asked for even when the asking connection closes. Where the
        connection is not a local socket or plain TCP (TLS, ssh), a background thread asks
        and waits instead, and :meth:`cleanup` waits for it. A container with GPUs is
        removed at once: the next test may need their memory.
        """
        if self.keep_containers:
            return
        if getattr(container, "gpus", None):
            self.remove(container)
        elif not self._send_removal(container.id):
            if self._remover is None:
                self._remover = ThreadPoolExecutor(1, "imagecheck-remove")
            self._removals.append(self._remover.submit(self.remove, container))

    def _send_removal(self, container_id: str) -> bool:
        """Send the engine a force-removal of ``container_id``, not waiting for the answer;
        False when it cannot be sent that way (then remove it another way)."""
        api = self.client.api
        path = f"/v{api.api_version}/containers/{container_id}?force=1&v=1"
        request = f"DELETE {path} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
        socket_path = next((getattr(a, "socket_path", None) for a in api.adapters.values()), None)
        try:
            if api.base_url.startswith("http+docker://") and socket_path:
                connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                connection.settimeout(5)
                connection.connect(socket_path)
            elif api.base_url.startswith("http://"):
                host, _, port = api.base_url.removeprefix("http://").rstrip("/").rpartition(":")
                connection = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
            else:
                return False
            with connection:
                connection.sendall(request.encode())
        except (OSError, ValueError):
            return False
        return True

    def wait_removals(self) -> None:
        """Wait for the removals :meth:`remove_later` handed to a background thread."""
        removals, self._removals = self._removals, []
        futures_wait(removals)

    def remove_labelled(
        self, filters: Mapping[str, str], *, keep: bool = False, wait: bool = True
    ) -> int:
        """Remove every container, network and volume matching label ``filters``.

        Returns how many containers were removed. ``keep=True`` spares those labelled keep;
        ``wait=False`` asks for the containers' removal without waiting for it
        (:meth:`remove_later`).
        """
        label_filter = [f"{k}={v}" if v else k for k, v in filters.items()]
        removed = 0
        with _signals_deferred():
            for item in self.client.api.containers(all=True, filters={"label": label_filter}):
                if keep and LABEL_KEEP in (item.get("Labels") or {}):
                    continue
                if not wait and self._send_removal(item["Id"]):
                    removed += 1
                    continue
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    self.client.api.remove_container(item["Id"], force=True, v=True)
                    removed += 1
            for net in self.client.api.networks(filters={"label": label_filter}):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    self.client.api.remove_network(net["Id"])
            volumes = self.client.api.volumes(filters={"label": label_filter}) or {}
            for vol in volumes.get("Volumes") or []:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    self.client.api.remove_volume(vol["Name"], force=True)
        return removed

    def cleanup(self, *, whole_session: bool = False, wait: bool = True) -> int:
        """Remove what this process created, unless ``--keep-containers`` was given.

        ``whole_session=True`` removes what every process of the session created: the xdist
        controller does this once its workers are done, so a killed worker leaves nothing.
        ``wait=False`` asks the engine to remove them and does not wait for it to finish
        (:meth:`remove_later`): the engine finishes after this process has ended.
        """
        if self._tunnels is not None:
            self._tunnels.close()
        if self.keep_containers:
            return 0
        self.wait_removals()
        filters = {LABEL_SESSION: self.session_id}
        if not whole_session:
            filters[LABEL_PID] = str(os.getpid())
        return self.remove_labelled(filters, wait=wait)

    def sweep_stale(self) -> int:
        """Remove leftovers of crashed sessions: ours (this host), whose process is gone."""
        pids: dict[str, list[str]] = {}
        for item in self.client.api.containers(all=True, filters={"label": [LABEL_SESSION]}):
            labels = item.get("Labels") or {}
            if labels.get(LABEL_HOST) != self.host or LABEL_KEEP in labels:
                continue
            if labels.get(LABEL_SESSION) != self.session_id:
                pids.setdefault(labels[LABEL_SESSION], []).append(labels.get(LABEL_PID, ""))
        stale = [
            session
            for session, session_pids in pids.items()
            if not any(p.isdigit() and _pid_alive(int(p)) for p in session_pids)
        ]
        return sum(self.remove_labelled({LABEL_SESSION: s}, keep=True) for s in stale)
