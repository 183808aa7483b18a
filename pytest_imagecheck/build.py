"""Building the image under test, once per session, with progress as it happens.

Why two builders: docker-py's build API speaks only to the engine's legacy builder, which
cannot build BuildKit-only Dockerfiles (``RUN --mount=type=cache``, heredocs). BuildKit's
session protocol is not in docker-py, so when a ``docker`` CLI that can drive BuildKit is
installed (``docker buildx build --load``, or a CLI older than 23 with ``DOCKER_BUILDKIT=1``)
the plugin runs it, with its plain progress output streamed line by line. Without one it falls
back to docker-py, and says so up front when the Dockerfile needs BuildKit.

Under pytest-xdist every worker asks for the same build; a file lock in the run's shared
temporary directory lets the first one build while the others wait and reuse its result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
from filelock import FileLock

from .errors import BuildFailed, ImageCheckError

if TYPE_CHECKING:
    from .dockerfile import Dockerfile

Progress = Callable[[str], None]

#: Lines of a failing step's output kept for the failure message.
STEP_OUTPUT_LINES = 2000


@dataclass(frozen=True)
class BuildSpec:
    """What to build: a context directory, a Dockerfile, build args, a target, a tag and
    the target platform."""

    context: Path
    dockerfile: Path | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    tag: str | None = None
    #: The platform to build for (``docker build --platform``), e.g. ``linux/arm64``; None
    #: for the engine's own. One only: the build loads one image into the engine (see
    #: :func:`single_platform`).
    platform: str | None = None

    @property
    def dockerfile_path(self) -> Path:
        """The Dockerfile: ``--dockerfile`` as given, else ``context/Dockerfile``.

        As with ``docker build -f``, a relative ``--dockerfile`` is relative to where pytest
        was started, not to the context.
        """
        return self.dockerfile or self.context / "Dockerfile"

    @property
    def image_tag(self) -> str:
        """The tag the result gets: ``--image`` if given, else one named after the context."""
        if self.tag:
            return self.tag
        slug = re.sub(r"[^a-z0-9._-]+", "-", self.context.resolve().name.lower()).strip("-._")
        return f"imagecheck/{slug or 'image'}:{self.target or 'latest'}"

    def key(self) -> str:
        """A digest of the build inputs, the same in every xdist worker."""
        data = {
            "context": str(self.context.resolve()),
            "dockerfile": str(self.dockerfile_path.resolve()),
            "args": sorted(self.build_args.items()),
            "target": self.target,
            "tag": self.image_tag,
            "platform": self.platform,
        }
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]

    def validate(self, engine_platform: str | None = None) -> Dockerfile:
        """Check the inputs before any build starts; return the parsed Dockerfile.

        ``engine_platform`` is the engine's platform (:func:`~.platforms.engine_platform`):
        BUILDPLATFORM, and the target platform when the spec names none. The Dockerfile is
        resolved for the build's platform and knows its ``--target``.
        """
        if not self.context.is_dir():
            raise ImageCheckError(
                f"--build-context {self.context} is not a directory: pass the folder that holds "
                "the files the Dockerfile copies"
            )
        from .dockerfile import Dockerfile

        return Dockerfile.parse(
            self.dockerfile_path,
            build_args=self.build_args,
            platforms=[self.platform] if self.platform else (),
            build_platform=engine_platform,
            target=self.target,
        )


def single_platform(platforms: Sequence[str], option: str = "--platform") -> str | None:
    """The one platform a build targets, from the platforms given (None when none is).

    The engine's builder takes one platform and refuses a list (``docker build --platform
    linux/amd64,linux/arm64``: "... is an invalid component"), and ``buildx --load`` loads one
    image, so several are an error naming ``option``.

    >>> single_platform(["linux/arm64"])
    'linux/arm64'
    """
    if len(platforms) > 1:
        raise ImageCheckError(
            f"{option} {','.join(platforms)} names {len(platforms)} platforms, but a build "
            "loads one image into the engine: pass one to build (e.g. "
            f"{option} {platforms[0]}), or test a built image with --image and --dockerfile "
            "to judge the Dockerfile on several"
        )
    return platforms[0] if platforms else None


def parse_build_arg(text: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` from ``--build-arg``; the value is passed on literally.

    >>> parse_build_arg("APP_ENV=prod")
    ('APP_ENV', 'prod')
    """
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise ImageCheckError(
            f"--build-arg {text!r} must be KEY=VALUE with KEY a variable name, "
            "e.g. --build-arg APP_ENV=prod"
        )
    return key, value


def _cli_version(cli: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [cli, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except OSError:
        return None
    match = re.search(r"version (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_buildkit_cli() -> tuple[list[str], dict[str, str]] | None:
    """The command that builds with BuildKit here, and the environment it needs, if any.

    Tries the ``docker`` on PATH, then the usual install places.
    """
    candidates = [shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"]
    for cli in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
        buildx = subprocess.run(
            [cli, "buildx", "version"], capture_output=True, timeout=20, check=False
        )
        if buildx.returncode == 0:
            return [cli, "buildx", "build", "--load"], {}
        version = _cli_version(cli)
        if version is not None and version < (23,):
            return [cli, "build"], {"DOCKER_BUILDKIT": "1"}
    return None


def _buildkit_only(dockerfile: Dockerfile) -> str | None:
    """The first instruction that needs BuildKit, as ``Dockerfile:LINE KEYWORD ...``."""
    for instruction in dockerfile.instructions:
        if instruction.heredocs or any(
            name in ("mount", "network", "security") for name, _ in instruction.flags
        ):
            return f"{dockerfile.location(instruction)} {instruction.original.splitlines()[0]}"
    return None


@dataclass
class _Step:
    title: str
    output: deque[str] = field(default_factory=lambda: deque(maxlen=STEP_OUTPUT_LINES))


class _StepLog:
    """Follows BuildKit's ``--progress=plain`` output: ``#N title``, ``#N 0.3 out``, ``#N DONE``."""

    _line = re.compile(r"^#(\d+) (.*)$")
    _timed = re.compile(r"^\d+\.\d+ (.*)$")

    def __init__(self, progress: Progress, verbose: bool) -> None:
        self.steps: dict[str, _Step] = {}
        self.failed: str | None = None
        self.error = ""
        self.progress = progress
        self.verbose = verbose

    def feed(self, line: str) -> None:
        match = self._line.match(line)
        if not match:
            if line.strip() and (line.startswith(("error:", "ERROR:", "failed to solve"))):
                self.error = line.strip()
            if self.verbose:
                self.progress(line)
            return
        number, text = match.groups()
        step = self.steps.get(number)
        if step is None:
            self.steps[number] = _Step(title=text)
            self.progress(text)
            return
        timed = self._timed.match(text)
        if timed:
            step.output.append(timed.group(1))
            if self.verbose:
                self.progress("    " + timed.group(1))
        elif text.startswith("ERROR"):
            self.failed = number
            self.error = text.removeprefix("ERROR:").strip() or self.error

    def failure(self) -> tuple[str, list[str]]:
        step = self.steps.get(self.failed or "")
        if step is None:
            return self.error or "the build failed", []
        return step.title, list(step.output)


def _failure_message(
    spec: BuildSpec, dockerfile: Dockerfile, title: str, error: str, output: Iterable[str]
) -> str:
    where = _locate(dockerfile, title)
    lines = "\n".join("  " + line for line in output) or "  (the step printed nothing)"
    return (
        f"building {spec.image_tag} failed at {where}{title}: {error}\n"
        f"output of that step:\n{lines}"
    )


def _locate(dockerfile: Dockerfile, title: str) -> str:
    """``Dockerfile:12 `` for the instruction a step title shows, or ``""``."""
    shown = re.sub(r"^\[[^\]]*\]\s*", "", title)
    shown = re.sub(r"^Step \d+/\d+ : ", "", shown)
    wanted = " ".join(shown.split()).lower()
    for instruction in dockerfile.instructions:
        text = " ".join(f"{instruction.keyword} {instruction.value}".split()).lower()
        if wanted and text == wanted:
            return f"{dockerfile.location(instruction)} "
    return ""


def _build_with_cli(
    spec: BuildSpec,
    dockerfile: Dockerfile,
    command: list[str],
    extra_env: Mapping[str, str],
    progress: Progress,
    verbose: bool,
) -> str:
    with tempfile.TemporaryDirectory(prefix="imagecheck-build-") as tmp:
        iidfile = Path(tmp) / "iid"
        argv = [*command, "--progress=plain", "--iidfile", str(iidfile), "-t", spec.image_tag]
        argv += ["-f", str(spec.dockerfile_path)]
        for key, value in spec.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        if spec.target:
            argv += ["--target", spec.target]
        if spec.platform:
            argv += ["--platform", spec.platform]
        argv.append(str(spec.context))
        log = _StepLog(progress, verbose)
        with _process(argv, {**os.environ, **extra_env}) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                log.feed(raw.rstrip("\n"))
            code = proc.wait()
        if code != 0 or not iidfile.exists():
            title, output = log.failure()
            raise BuildFailed(_failure_message(spec, dockerfile, title, log.error, output))
        return iidfile.read_text().strip()


#: The build processes running now, in any thread: :func:`stop_builds` stops them.
_RUNNING: set[subprocess.Popen[str]] = set()


def stop_builds() -> None:
    """Stop every build this process runs now (in other threads too): a build runs in a
    thread of its own when several build side by side, and an interrupt reaches only the
    main thread."""
    for proc in list(_RUNNING):
        with contextlib.suppress(OSError):
            proc.terminate()


@contextlib.contextmanager
def _process(argv: list[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Run ``argv`` (never through a shell); stop it if we are interrupted."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=dict(env),
    )
    _RUNNING.add(proc)
    try:
        yield proc
    finally:
        _RUNNING.discard(proc)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _build_with_docker_py(
    spec: BuildSpec,
    dockerfile: Dockerfile,
    client: docker.DockerClient,
    progress: Progress,
    verbose: bool,
) -> str:
    needs = _buildkit_only(dockerfile)
    if needs:
        raise BuildFailed(
            f"{needs} needs BuildKit, and no docker CLI that drives it is installed: install "
            "docker-buildx (or Debian's docker.io), or remove the BuildKit-only syntax"
        )
    step = _Step(title="")
    image_id = ""
    stream = client.api.build(
        path=str(spec.context),
        dockerfile=str(spec.dockerfile_path.resolve()),  # docker-py joins a relative one to path
        buildargs=dict(spec.build_args),
        target=spec.target,
        tag=spec.image_tag,
        platform=spec.platform,
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            raise BuildFailed(
                _failure_message(spec, dockerfile, step.title, chunk["error"].strip(), step.output)
            )
        for line in str(chunk.get("stream", "")).splitlines():
            if line.startswith("Step "):
                step = _Step(title=line)
                progress(line)
            elif line.strip():
                step.output.append(line)
                if verbose:
                    progress("    " + line)
        image_id = (chunk.get("aux") or {}).get("ID", image_id)
    return image_id


def build_image(
    spec: BuildSpec,
    client: docker.DockerClient,
    *,
    progress: Progress = lambda line: None,
    verbose: bool = False,
) -> str:
    """Build ``spec`` and return the image ID, streaming step titles to ``progress``."""
    dockerfile = spec.validate()
    started = time.monotonic()
    buildkit = find_buildkit_cli()
    name = f"{spec.image_tag} for {spec.platform}" if spec.platform else spec.image_tag
    if buildkit is not None:
        progress(f"building {name} with BuildKit ({' '.join(buildkit[0][:2])})")
        image_id = _build_with_cli(spec, dockerfile, *buildkit, progress, verbose)
    else:
        progress(f"building {name} with the engine's legacy builder (docker-py)")
        try:
            image_id = _build_with_docker_py(spec, dockerfile, client, progress, verbose)
        except docker.errors.APIError as exc:
            raise BuildFailed(f"building {spec.image_tag} failed: {exc.explanation}") from None
    progress(f"built {spec.image_tag} ({image_id[7:19]}) in {time.monotonic() - started:.1f}s")
    return image_id


def build_once(spec: BuildSpec, shared_dir: Path, build: Callable[[], str]) -> str:
    """Run ``build`` once for all processes that share ``shared_dir`` (xdist workers).

    The first caller builds under an exclusive file lock and records the image ID (or the
    failure); the others wait for the lock and reuse the record.
    """
    shared_dir.mkdir(parents=True, exist_ok=True)
    record = shared_dir / f"imagecheck-build-{spec.key()}.json"
    with FileLock(shared_dir / f"imagecheck-build-{spec.key()}.lock"):
        if record.exists():
            data: dict[str, Any] = json.loads(record.read_text())
            if "error" in data:
                raise BuildFailed(data["error"])
            return str(data["id"])
        try:
            image_id = build()
        except BuildFailed as exc:
            record.write_text(json.dumps({"error": str(exc)}))
            raise
        record.write_text(json.dumps({"id": image_id, "pid": os.getpid()}))
        return image_id
