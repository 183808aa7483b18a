"""container-structure-test's tests against the engine, with the verdicts CST 1.19 gives.

What CST does, and so what a verdict here follows (read from CST's source and checked test by
test against the real binary by ``tests/test_cst_differential.py``):

- **command tests**: each runs in a fresh container of the image, its command as PID 1 with
  the image's entrypoint cleared; stdout and stderr are read from the container's logs. The
  command and args are first expanded against the image's environment (``os.Expand``; unset
  names and ``$$`` become nothing). A test's ``envVars`` go to the container as written;
  ``globalEnvVars`` are expanded against the image's environment and committed into it.
  ``setup`` commands run one by one, each in its own container that is committed to a new
  image, with the test's env vars expanded (exit codes ignored; a command that cannot start
  fails the test); the command then runs in a container of the last commit, and its args are
  expanded against that image's environment, setup's env vars included. ``teardown`` never
  runs (CST's docker driver skips it). ``containerRunOptions`` set the user, a TTY and
  capabilities (the whole set, replacing the engine's default one), and give the variables of
  ``envFile`` and, by name, of the host's environment; once they set anything, the test's own
  ``envVars`` are dropped (a setup still gets them), and a name the host does not set makes
  the engine refuse the container (``invalid environment variable``), which fails the test.
  With a TTY, CST cannot read the logs (it reads them as a multiplexed stream): a command
  that printed anything fails.
- **file tests** read the archive of a container that is created, never started: ``/dev``,
  ``/proc`` and the files the engine mounts at start are not there. An existence test's path
  is expanded against the image's environment and ``globalEnvVars``; a content test's is not.
  The entry found is the first whose cleaned name is the path's base name; a symbolic link is
  not followed for an existence test, and is followed for a content test as CST follows it (a
  relative target is taken from ``/``, not from the link's folder). ``permissions`` is compared
  as Go writes a mode (``urwxr-xr-x`` for setuid).
- **metadataTest** compares the image's config; exposed ports by number only (``53`` matches
  ``53/udp``; ``53/udp`` matches nothing).
- **licenseTests** read Debian copyright files under ``/usr/share/doc`` and named files, and
  fail on AGPL or WTFPL.

Where this is faster than CST, no verdict can tell. Command tests that share their container's
options run as execs in one container started for them (its PID 1 a ``sleep``), which gives
an exec the environment (in the same order), user, directory and standard streams the command
would get as the PID 1 of its own container. After each exec the container must be as it was
started before the next exec runs in it: no file changed, no process left, the mounted
``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` unchanged. Where this process runs
on the engine's host and may read it, that is read there (the overlay upper directory, the
container's ``/dev`` tmpfs through its PID 1's root, its ``pids`` cgroup, the mounted files:
microseconds); elsewhere the engine is asked (its diff walks the whole image on engine 20.10,
and has no ``/dev``). A container found changed is replaced, and
from then on a spare is kept started in the background. What an exec cannot give exactly
gets a fresh container: a command that could see it is not PID 1 or that another process is
there (``ps``, ``kill``, ``/proc``, ``&``, an init), one that names what the checks cannot
see where the engine is asked (``/dev`` beyond its device files: ``/dev/null``,
``/dev/zero``...), SysV IPC, the mounted network files), an image with volumes, a TTY,
privileges, capabilities or bind mounts, a setup, and any exec the runtime could not start
(exit 126 or 127). Those are told by the words of the command line: a program that acts on
being PID 1, or writes SysV shared memory (or, on a remote engine, ``/dev``), without its
command line saying so is the difference that stays. File tests share one created
container; reads change nothing. The selected command tests run ahead of their items
(:meth:`Runner.start_ahead`), each exactly as it would at its turn.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import docker.errors

from ..engine import ENGINE_ERRORS
from ..errors import ContainerFailed
from ..layers import stream_of
from . import golang
from .schema import (
    CommandTest,
    CstFile,
    EnvVar,
    FileContentTest,
    FileExistenceTest,
    LicenseTest,
    MetadataTest,
    validation_errors,
)

if TYPE_CHECKING:
    from ..engine import Engine
    from ..image import ImageUnderTest

__all__ = ["Outcome", "Runner", "sharing_refused"]

#: The program CST puts in containers it creates only to read files from.
NOOP_COMMAND = "NOOP_COMMAND_DO_NOT_RUN"
#: PID 1 of a shared container: waits, and does nothing else.
SLEEPER = ("sleep", "2147483647")
#: Where CST looks for Debian packages' copyright files, and the packages it skips.
DEBIAN_ROOT = "/usr/share/doc"
LICENSE_ALLOWED = ("libgnutls30",)
LICENSE_REFUSED = ("AGPL", "WTFPL")
#: Files the engine mounts into a running container: changes to them are not in its diff.
MOUNTED_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
#: How deep CST's content test follows symbolic links here (CST itself recurses forever).
MAX_LINKS = 40
#: How often a shared container's processes are read again before a difference counts.
PROCESS_SETTLE_READS = 5
#: How often a shared container is read after an exec ended by a signal, to tell whether
#: the container stopped with it.
STOP_SETTLE_READS = 4
#: How much of a command's output messages show, from its start.
OUTPUT_SHOWN = 300

#: Words in a command line after which it runs in its own container: what it does could tell
#: an exec from PID 1 or see another process, or change what the post-exec checks cannot see
#: where they ask the engine (its diff has no ``/dev``, a tmpfs: only the device files every
#: container has are left to share).
_OWN_CONTAINER = re.compile(
    r"/proc|\bps\b|\btop\b|htop|pgrep|pkill|pidof|pstree|kill|signal|\btrap\b|getpid|getppid"
    r"|PPID|\$\$|lsof|fuser|\bwait\b|\bjobs\b|disown|nohup|setsid|daemon|--fork"
    r"|init|tini|supervisor|s6-|runsv|systemd|catatonit"
    r"|/dev(?!/(?:null|zero|full|u?random|stdin|stdout|stderr|tty|fd)\b)"
    r"|\bipc|shm_open|mq_open|/etc/hosts|/etc/hostname|/etc/resolv"
    r"|\bhostname\b|(?<![&|<>0-9])&(?![&>])"
)


@dataclass
class Outcome:
    """One test's verdict as CST gives it: ``passed``, and CST's reasons when it did not pass
    (in this plugin's words); ``evidence`` is what was measured, for the junit properties."""

    passed: bool
    errors: list[str] = field(default_factory=list)
    evidence: dict[str, object] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        """Add a reason and fail."""
        self.passed = False
        self.errors.append(message)


def _begun(shown: str, test: object, refused_as: str | None = None) -> tuple[Outcome, bool]:
    """A test's outcome, its evidence naming it as CST's results do (``shown``), and whether
    CST refuses to run it: each of its validation errors is then a failure, and the test is
    named ``refused_as`` (its bare name), as CST names a test it did not run."""
    outcome = Outcome(True, evidence={"test": shown})
    errors = validation_errors(test)
    if errors and refused_as is not None:
        outcome.evidence["test"] = refused_as
    for error in errors:
        outcome.fail(f"container-structure-test refuses this test: {error}")
    return outcome, bool(errors)


@dataclass(frozen=True)
class _Run:
    """What a command's container was, and what came of it."""

    exit_code: int
    stdout: str
    stderr: str
    how: str


class _LogsUnreadable(Exception):
    """CST could not read the logs of a TTY container that printed 8 bytes or more:
    ``(Go's error, what it printed)``."""


class _EngineRefused(Exception):
    """The engine would not create or start a container (CST's "Error creating container")."""


def sharing_refused(cst: CstFile, image_config: dict[str, Any]) -> str | None:
    """Why no command test of ``cst`` may share a container on this image, or ``None``."""
    options = cst.run_options
    if image_config.get("Volumes"):
        return "the image has volumes, and a write to one is not in a container's diff"
    if options.allocate_tty:
        return "containerRunOptions.allocateTty"
    if options.privileged:
        return "containerRunOptions.privileged"
    if options.capabilities:
        return "containerRunOptions.capabilities"
    if options.bind_mounts:
        return "containerRunOptions.bindMounts"
    return None


#: Docker's health check timings when the image leaves them out (seconds).
HEALTH_INTERVAL = 30.0
HEALTH_START_INTERVAL = 5.0


def _health_window(image_config: dict[str, Any]) -> float | None:
    """How long an exec may run before the image's health check could have run in CST's
    fresh container during the same command (half the time to its first check, for the
    time the container takes to start), or ``None`` when the image has no health check.

    A shared container has its health check turned off: one started long before an exec
    would have run it already (and its spare too), which CST's container has not.
    """
    health = image_config.get("Healthcheck") or {}
    test = list(health.get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    first = (health.get("Interval") or 0) / 1e9 or HEALTH_INTERVAL
    if health.get("StartPeriod"):
        first = min(first, (health.get("StartInterval") or 0) / 1e9 or HEALTH_START_INTERVAL)
    return first / 2


def _own_container(argv: Sequence[str]) -> str | None:
    found = _OWN_CONTAINER.search(" ".join(argv))
    return None if found is None else f"its command mentions {found.group(0)!r}"


def _shown(text: str) -> str:
    cut = text if len(text) <= OUTPUT_SHOWN else text[:OUTPUT_SHOWN] + "…"
    return json.dumps(cut, ensure_ascii=False)


def _explanation(exc: BaseException) -> str:
    said = getattr(exc, "explanation", None) or str(exc)
    return str(said).strip().splitlines()[0] if str(said).strip() else type(exc).__name__


def _lost(what: str, exc: BaseException) -> ContainerFailed:
    """The one-line error of a container of this run the engine lost while a test used it
    (removed by hand, or the engine restarted): no verdict, CST's or another, can be given."""
    return ContainerFailed(
        f"{what} was lost while the test ran ({_explanation(exc)}): was it removed, or did "
        "the engine restart? This test has no verdict; run it again"
    )


#: Where a container's inspect document names the files the engine mounts into it.
_MOUNTED_KEYS = ("HostsPath", "HostnamePath", "ResolvConfPath")


class _HostView:
    """A running container as its engine's host sees it, where this process runs on that host
    and may read it: the overlay2 upper directory (every file the container changed), its
    ``/dev``, its processes (its ``pids`` cgroup), and the files the engine mounts into it."""

    def __init__(self, upper: str, procs: str, mounted: list[str], dev: str = "") -> None:
        self.upper = upper
        self.procs = procs
        self.mounted = mounted
        #: The container's ``/dev`` (a tmpfs, with ``/dev/shm`` and ``/dev/mqueue`` in it),
        #: seen through its PID 1's root: a file made there is in no upper directory.
        self.dev = dev

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> _HostView | None:
        """The view of the container inspected as ``attrs``, or ``None`` when this process
        cannot see it (another host, another PID namespace, no permission, not overlay2)."""
        driver = attrs.get("GraphDriver") or {}
        upper = str((driver.get("Data") or {}).get("UpperDir") or "")
        pid = (attrs.get("State") or {}).get("Pid")
        mounted = [
            str(attrs.get(key) or "") for key in ("HostsPath", "HostnamePath", "ResolvConfPath")
        ]
        if driver.get("Name") != "overlay2" or not upper or not pid or not all(mounted):
            return None
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8") as cgroup:
                groups = cgroup.read().splitlines()
            procs = ""
            for line in groups:
                _, controllers, path = line.split(":", 2)
                if attrs["Id"] not in path:
                    return None  # another PID namespace: not this container's PID 1
                if controllers == "pids":
                    procs = f"/sys/fs/cgroup/pids{path}/cgroup.procs"
                elif controllers == "" and not procs:
                    procs = f"/sys/fs/cgroup{path}/cgroup.procs"
            view = cls(upper, procs, mounted, f"/proc/{pid}/root/dev")
            try:
                _entries(view.dev, "dev")
            except OSError:  # its root is not ours to read: /dev is told by the words alone
                view.dev = ""
            view.state()
        except (OSError, ValueError, KeyError):
            return None
        return view

    def state(self) -> tuple[object, ...]:
        """The entries (name, mode, size, mtime, owner, device) of the upper directory and of
        the container's ``/dev``, the PIDs of the container, and the mounted files' size and
        mtime."""
        entries = _entries(self.upper, "")
        if self.dev:
            entries += _entries(self.dev, "dev")
        with open(self.procs, encoding="utf-8") as procs:
            pids = sorted(pid for pid in procs.read().split() if _alive(pid))
        mounted = [(os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in self.mounted]
        return tuple(entries), tuple(pids), tuple(mounted)


def _entries(top: str, under: str) -> list[tuple[object, ...]]:
    """Each entry below ``top`` (symbolic links not followed), named as if ``top`` were
    ``under`` (``dev/shm/x``): name, mode, size, mtime, owner, group, device; ``OSError`` when
    ``top`` is gone (its container stopped)."""
    if not os.path.isdir(top):
        raise FileNotFoundError(top)
    entries: list[tuple[object, ...]] = []
    for folder, dirs, files in os.walk(top):
        for name in sorted(dirs + files):
            found = os.lstat(os.path.join(folder, name))
            entries.append(
                (
                    os.path.join(under, os.path.relpath(os.path.join(folder, name), top)),
                    found.st_mode,
                    found.st_size,
                    found.st_mtime_ns,
                    found.st_uid,
                    found.st_gid,
                    found.st_rdev,
                )
            )
    return entries


def _changed_names(part: object) -> set[str]:
    """The entries of a state's files part, each told by its name and what was read of it:
    the upper directory's entries, or the engine's diff."""
    found: set[str] = set()
    for entry in part if isinstance(part, (list, tuple)) else ():
        if isinstance(entry, tuple):
            found.add("/" + str(entry[0]) + "\0" + repr(entry[1:]))
        elif isinstance(entry, dict):
            found.add(str(entry.get("Path")) + "\0" + str(entry.get("Kind")))
    return found


def _difference(before: tuple[object, ...] | None, after: tuple[object, ...]) -> str:
    """What differs between two states of a shared container, in a few words."""
    if before is None:
        return "it was never read"
    if before[0] != after[0]:
        changed = _changed_names(before[0]) ^ _changed_names(after[0])
        names = sorted({name.split("\0", 1)[0] for name in changed})
        more = " ..." if len(names) > 3 else ""
        return f"files changed: {', '.join(names[:3])}{more}"
    if before[1] != after[1]:
        return f"processes left running (PIDs {after[1]}, started with {before[1]})"
    return "a file the engine mounts (/etc/hosts, /etc/hostname, /etc/resolv.conf) changed"


def _alive(pid: str) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an exited exec the runtime has
    not reaped yet, or an orphan PID 1 will never reap: neither can do anything)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class _Shared:
    """A container started for command tests that share its options, with what it looked
    like once started (its diff, processes and mounted files), to tell when an exec left it
    changed."""

    def __init__(self, runner: Runner, options: _Options) -> None:
        self.runner = runner
        self.options = options
        self.id: str | None = None
        self.name = ""
        self.failed: str | None = None
        self._baseline: tuple[object, ...] | None = None
        self.ready = threading.Event()
        #: Whether it is still as started after the last exec, being found out meanwhile.
        self.pending: Future[bool] | None = None
        #: What the last exec changed, when it did.
        self.change = ""
        #: Why it was started instead of the one before, if it was.
        self.replaces = ""
        self.host: _HostView | None = None

    def start(self) -> None:
        """Create and start it (in the caller's thread); :attr:`failed` says why it cannot."""
        try:
            self.id, self.name = self.runner._create(self.options, list(SLEEPER), purpose="shared")
            self.runner._api.start(self.id)
            self.host = _HostView.of(self.runner._api.inspect_container(self.id))
            self._baseline = self.state()
        except (*ENGINE_ERRORS, _EngineRefused, OSError) as exc:
            self.failed = f"a shared container could not start ({_explanation(exc)})"
        finally:
            self.ready.set()

    def running(self) -> bool:
        """Whether the container still runs (an exec killed with it exits 137). The engine
        may learn of the exec's end before its PID 1's: read a few times."""
        for _ in range(STOP_SETTLE_READS):
            try:
                state = self.runner._api.inspect_container(str(self.id)).get("State") or {}
            except ENGINE_ERRORS:
                return False
            if not state.get("Running") or state.get("Status") != "running":
                return False
            time.sleep(0.05)
        return True

    def state(self) -> tuple[object, ...]:
        """What must not change between execs: the files it changed, its processes and the
        mounted files' size and time; read on the engine's host where this process can (a
        few file reads), else asked of the engine (its diff walks the whole image)."""
        if self.host is not None:
            return self.host.state()
        api = self.runner._api
        container = str(self.id)
        archive = f"{api.base_url}/v{api.api_version}/containers/{container}/archive"

        def stat(path: str) -> object:
            answer = api.head(archive, params={"path": path})
            return answer.status_code, answer.headers.get("X-Docker-Container-Path-Stat")

        calls: list[Callable[[], object]] = [
            lambda: api.diff(container),
            lambda: len(api.top(container).get("Processes") or []),
            *(lambda path=path: stat(path) for path in MOUNTED_FILES),
        ]
        futures = [self.runner._checks.submit(call) for call in calls]
        return tuple(future.result() for future in futures)

    def unchanged(self) -> bool:
        """Whether the container is as it was started (a stopped one is not); if not,
        :attr:`change` says what changed.

        An exec's process can still be listed for a moment after the engine reported its
        exit (the runtime reaps it): a difference in the processes alone is read again.
        """
        try:
            for _ in range(PROCESS_SETTLE_READS):
                state = self.state()
                if state == self._baseline:
                    return True
                self.change = _difference(self._baseline, state)
                if self._baseline is None or state[0] != self._baseline[0]:
                    return False
                if state[2:] != self._baseline[2:]:
                    return False
                time.sleep(0.02)
            return False
        except (*ENGINE_ERRORS, OSError) as exc:
            self.change = f"it could not be read ({_explanation(exc)})"
            return False

    def exec(self, argv: list[str]) -> _Run | str:
        """Run ``argv`` as an exec; or why only a container of its own can say what CST
        would get (the runtime could not start it, the container is gone, or it ran for so
        long that the image's health check would have run in CST's container)."""
        api = self.runner._api
        began = time.monotonic()
        try:
            created = api.exec_create(self.id, argv)
            out, err = api.exec_start(created["Id"], demux=True)
            code = api.exec_inspect(created["Id"]).get("ExitCode")
        except ENGINE_ERRORS:
            return "the runtime could not start it in the shared container"
        if code is None or code in (126, 127):
            return "the runtime could not start it in the shared container"
        took = time.monotonic() - began
        window = self.runner._health_window
        if window is not None and took >= window:
            # CST's container runs the image's health check, which the shared one does not
            return (
                f"it ran {took:.1f} s in the shared container: long enough for the image's "
                "health check to run during it in CST's own container"
            )
        if code > 128 and not self.running():
            return "the shared container stopped while it ran"
        how = f"exec in shared container {self.name}"
        if self.replaces:
            how += f" (in place of {self.replaces})"
        return _Run(int(code), golang.decode(out or b""), golang.decode(err or b""), how)


@dataclass(frozen=True)
class _Options:
    """How CST creates a command's container: its environment (in order), user, TTY and
    host config."""

    env: tuple[str, ...]
    user: str = ""
    tty: bool = False
    host: tuple[tuple[str, Any], ...] = ()


class Runner:
    """The tests of one CST file against one image; made on the first test that runs, closed
    by :meth:`close` (containers and committed images removed).

    ``engine`` creates and removes containers, each with the session's labels; ``image`` is the
    image under test. ``environ`` is the host environment ``containerRunOptions.envVars`` reads.
    Without ``ahead`` (or with ``--keep-containers``), nothing starts or runs before it is
    asked for, and no spare container is kept.
    """

    def __init__(
        self,
        cst: CstFile,
        image: ImageUnderTest,
        engine: Engine,
        *,
        environ: dict[str, str] | None = None,
        ahead: bool = True,
    ) -> None:
        self.cst = cst
        #: Whether containers start, and tests run, ahead of when they are asked for.
        self.ahead = ahead and not engine.keep_containers
        self.image = image
        self.engine = engine
        self.environ = dict(os.environ if environ is None else environ)
        self._api = engine.client.api
        self._config: dict[str, Any] = dict(image.attrs.get("Config") or {})
        self._image_env = golang.env_map(self._config.get("Env") or [])
        self._global = [
            f"{var.key}={golang.expand_env(var.value, self._image_env)}"
            for var in cst.global_env_vars
        ]
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imagecheck-cst")
        # The check after an exec, never queued behind starts and removals.
        self._verify = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagecheck-verify")
        # The state checks of a shared container, apart: a start waits on them.
        self._checks = ThreadPoolExecutor(max_workers=5, thread_name_prefix="imagecheck-cst-check")
        self._lock = threading.RLock()
        self._made_containers: list[str] = []
        self._made_images: list[str] = []
        self._reader: Future[str] | None = None
        self._shared: dict[_Options, _Shared] = {}
        self._spares: dict[_Options, _Shared] = {}
        self._removals: list[Future[None]] = []
        #: Command tests run ahead, by ``id`` of the test; and their runners.
        self._ahead: dict[int, Future[Outcome]] = {}
        self._ahead_pool = ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="imagecheck-cst-ahead"
        )
        self._closing = False
        #: One exec at a time in each shared container.
        self._key_locks: dict[_Options, threading.Lock] = {}
        self._refused = sharing_refused(cst, self._config)
        self._health_window = _health_window(self._config)
        self._plan = self._share_plan()

    @property
    def image_env(self) -> dict[str, str]:
        """The image's ``Config.Env`` as CST maps it (to mask its secrets in what is shown)."""
        return dict(self._image_env)

    # --- life ----------------------------------------------------------------------------

    def start_ahead(self, selected: Sequence[object] | None = None) -> None:
        """Start in the background what the tests will need: the created container that file
        tests read, and the shared container of the first command tests (``selected``: None
        when which tests this process runs is not known).

        The selected command tests run ahead too, so that their engine work overlaps pytest's
        own and the file tests: those that share a container one after another in file order
        (each exec still waits until the last left the container as it was started), the
        others side by side in containers of their own. Each test's verdict is what it would
        be run alone at its turn; a test not run ahead (not selected, or run again) runs when
        asked.
        """
        if not self.ahead:
            return
        reads = (FileExistenceTest, FileContentTest, LicenseTest)
        wanted: list[object] = list(selected or ())
        if selected is None:  # not known: what the file has
            cst = self.cst
            wanted = [*cst.file_existence_tests, *cst.file_content_tests, *cst.license_tests]
            for options, count in self._plan.items():
                if count > 1:
                    self._shared_for(options)
                    break
        if any(isinstance(test, reads) for test in wanted):
            self._pool.submit(self._reader_container)
        commands = [test for test in wanted if isinstance(test, CommandTest)]
        if not commands:
            return
        queues: dict[_Options, list[CommandTest]] = {}
        alone: list[CommandTest] = []
        for test in commands:
            key = self._shared_key(test)
            if key is None:
                alone.append(test)
            else:
                queues.setdefault(key, []).append(test)
        for key, tests in queues.items():
            futures = [self._promise(test) for test in tests]
            self._shared_for(key)
            self._ahead_pool.submit(self._run_queue, tests, futures)
        for test in alone:
            self._ahead_pool.submit(self._run_queue, [test], [self._promise(test)])

    def _promise(self, test: CommandTest) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        self._ahead[id(test)] = future
        return future

    def _run_queue(self, tests: list[CommandTest], futures: list[Future[Outcome]]) -> None:
        for test, future in zip(tests, futures, strict=True):
            if self._closing:
                future.cancel()
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._run_command(test))
            except BaseException as exc:  # handed to the test's own item
                future.set_exception(exc)

    def _shared_key(self, test: CommandTest) -> _Options | None:
        """The options of the shared container ``test`` would run in, or ``None``."""
        if self._refused is not None or test.setup or validation_errors(test):
            return None
        options = self._options(test)
        if _own_container(self._argv(test, self._subst_env())) or "" in options.env:
            return None
        return options if self._plan.get(options, 0) > 1 else None

    def close(self) -> None:
        """Remove every container and image this runner made (waiting for them)."""
        # Tests still running ahead end when their containers go (nothing new is created).
        self._closing = True
        self._ahead_pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            shared = [*self._shared.values(), *self._spares.values()]
            self._shared.clear()
            self._spares.clear()
        for each in shared:
            each.ready.wait()
            if each.id:
                self._remove(each.id)
        for future in self._removals:
            with contextlib.suppress(Exception):
                future.result()
        with self._lock:
            made, self._made_containers = self._made_containers, []
            images, self._made_images = self._made_images, []
        for container in made:
            self._remove(container)
        for image in reversed(images):
            if self.engine.keep_containers:
                break  # the kept setup containers are of these images
            with contextlib.suppress(*ENGINE_ERRORS):
                self._api.remove_image(image, force=True, noprune=True)
        self._pool.shutdown(wait=False)
        self._verify.shutdown(wait=False)
        self._checks.shutdown(wait=False)

    # --- the engine ----------------------------------------------------------------------

    def _create(
        self, options: _Options, command: list[str], *, purpose: str, image: str | None = None
    ) -> tuple[str, str]:
        """Create a labelled container as CST creates its own; raise :class:`_EngineRefused`
        with the engine's words."""
        if self._closing:
            raise _EngineRefused("the session is ending")
        name = f"imagecheck-{self.engine.session_id}-cst-{secrets.token_hex(3)}"
        host_config = None
        if options.host:
            host_config = self._api.create_host_config()
            for key, value in options.host:
                host_config[key] = list(value) if isinstance(value, tuple) else value
        try:
            created = self._api.create_container(
                image or self.image.id,
                command=command,
                entrypoint=[],
                environment=list(options.env) or None,
                user=options.user or None,
                tty=options.tty,
                host_config=host_config,
                labels={**self.engine.labels, "pytest-imagecheck.cst": purpose},
                name=name,
                # A shared container lives longer than CST's: its checks would have run.
                healthcheck={"test": ["NONE"]} if purpose == "shared" else None,
            )
        except docker.errors.APIError as exc:
            raise _EngineRefused(_explanation(exc)) from None
        container = str(created["Id"])
        if purpose != "shared":
            with self._lock:
                self._made_containers.append(container)
        return container, name

    def _remove(self, container: str) -> None:
        if self.engine.keep_containers:
            return
        with contextlib.suppress(*ENGINE_ERRORS):
            self._api.remove_container(container, force=True, v=True)
        with self._lock, contextlib.suppress(ValueError):
            self._made_containers.remove(container)

    def _discard(self, shared: _Shared) -> None:
        shared.ready.wait()
        if shared.id:
            self._remove(shared.id)

    def _remove_later(self, container: str) -> None:
        self._removals.append(self._pool.submit(self._remove, container))

    def _run_in_own(self, options: _Options, argv: list[str], image: str | None = None) -> _Run:
        """CST's ``exec``: create, start, wait, read the logs, remove."""
        container, name = self._create(options, argv, purpose="command", image=image)
        try:
            try:
                self._api.start(container)
            except docker.errors.APIError as exc:
                raise _EngineRefused(_explanation(exc)) from None
            try:
                code = int(self._api.wait(container).get("StatusCode", -1))
                out = self._api.logs(container, stdout=True, stderr=False)
                err = self._api.logs(container, stdout=False, stderr=True)
            except ENGINE_ERRORS as exc:
                raise _lost(f"the command's container {name}", exc) from None
        finally:
            self._remove_later(container)
        if options.tty:
            # CST reads the logs as a multiplexed stream, which a TTY's are not.
            try:
                out, err = golang.stdcopy(out + err)
            except golang.StdCopyError as exc:
                raise _LogsUnreadable(str(exc), golang.decode(out + err)) from None
        return _Run(code, golang.decode(out), golang.decode(err), f"own container {name}")

    # --- command tests -------------------------------------------------------------------

    def _options(self, test: CommandTest, *, global_env: bool = True) -> _Options:
        """The container options CST gives ``test``'s command. Its environment: the test's
        env vars as written, or, once ``containerRunOptions`` sets anything, the env file's
        and the host's variables instead (CST 1.19 drops the test's then); followed by
        ``globalEnvVars`` not set by those, which CST commits into the image first (not
        added with ``global_env=False``: after a setup, the committed image has them)."""
        run = self.cst.run_options
        env = [] if run.is_set else [f"{var.key}={var.value}" for var in test.env_vars]
        env += self._env_file_vars()
        for name in run.env_vars:
            value = self.environ.get(name, "")
            env.append(f"{name}={value}" if value else "")
        if global_env:
            given = {entry.partition("=")[0] for entry in env}
            env += [entry for entry in self._global if entry.partition("=")[0] not in given]
        host: tuple[tuple[str, Any], ...] = ()
        if run.is_set and (run.capabilities or run.bind_mounts or run.privileged):
            host = (
                ("Capabilities", run.capabilities or None),
                ("Binds", run.bind_mounts or None),
                ("Privileged", run.privileged),
            )
        return _Options(
            env=tuple(env),
            user=run.user if run.is_set else "",
            tty=run.allocate_tty if run.is_set else False,
            host=host,
        )

    def _env_file_vars(self) -> list[str]:
        path = self.cst.run_options.env_file
        if not path:
            return []
        try:
            found = golang.read_env_file(path)
        except (OSError, golang.EnvFileError):
            return []  # CST warns and goes on without them
        return [f"{key}={value}" for key, value in found.items() if key and value]

    def _share_plan(self) -> dict[_Options, int]:
        plan: dict[_Options, int] = {}
        if self._refused is not None:
            return plan
        for test in self.cst.command_tests:
            if not validation_errors(test) and not test.setup:
                argv = self._argv(test, self._subst_env())
                options = self._options(test)
                if _own_container(argv) is None and "" not in options.env:
                    plan[options] = plan.get(options, 0) + 1
        return plan

    def _subst_env(self, extra: Sequence[str] = ()) -> dict[str, str]:
        env = dict(self._image_env)
        env.update(golang.env_map(self._global))
        env.update(golang.env_map(extra))
        return env

    @staticmethod
    def _argv(test: CommandTest, env: dict[str, str]) -> list[str]:
        return [golang.expand_env(word, env) for word in (test.command, *test.args)]

    def _shared_for(self, options: _Options) -> _Shared:
        """The shared container for ``options``, started in the background when there is none
        yet."""
        with self._lock:
            shared = self._shared.get(options)
            if shared is None:
                shared = self._shared[options] = _Shared(self, options)
                self._pool.submit(self._start, shared)
        return shared

    def _start(self, shared: _Shared) -> None:
        shared.start()

    def _spare_for(self, options: _Options, *, at_least: int) -> None:
        """Start a spare for ``options`` (in this thread) when ``at_least`` tests are left,
        once an exec changed its container: the next such exec then costs the test after it
        no wait."""
        with self._lock:
            if options in self._spares or self._plan.get(options, 0) < at_least:
                return
            spare = self._spares[options] = _Shared(self, options)
        spare.start()

    def _usable_shared(self, options: _Options) -> _Shared:
        """The shared container for ``options``, ready, and as it was started: one that the
        last exec changed is removed, and the spare (or a new one) takes its place."""
        shared = self._shared_for(options)
        shared.ready.wait()
        if shared.pending is not None and not shared.pending.result():
            self._retire(shared)
            with self._lock:
                spare = self._spares.pop(options, None)
                if spare is not None:
                    self._shared[options] = spare
            replaced, shared = shared, self._shared_for(options)
            shared.replaces = f"{replaced.name}, which the last exec changed: {replaced.change}"
            if self.ahead:
                # An exec that changed its container is rarely the last: keep one in reserve.
                self._pool.submit(self._spare_for, options, at_least=2)
            shared.ready.wait()
        return shared

    def _retire(self, shared: _Shared) -> None:
        with self._lock:
            if self._shared.get(shared.options) is shared:
                del self._shared[shared.options]
        if shared.id:
            self._remove_later(shared.id)

    def run_command(self, test: CommandTest) -> Outcome:
        """Run a command test as CST runs it (see the module's documentation), or take its
        outcome from its run ahead (:meth:`start_ahead`)."""
        ahead = self._ahead.pop(id(test), None)
        if ahead is not None and not ahead.cancelled():
            return ahead.result()
        return self._run_command(test)

    def _run_command(self, test: CommandTest) -> Outcome:
        outcome, refused = _begun(f"Command Test: {test.name}", test, test.name)
        if refused:
            return outcome
        options = self._options(test, global_env=not test.setup)
        image: str | None = None
        extra: list[str] = []
        if test.setup:
            try:
                image, extra = self._setup(test, options)
            except _EngineRefused as exc:
                outcome.evidence["test"] = test.name
                outcome.fail(f"a setup command could not run: {exc}")
                return outcome
        argv = self._argv(test, self._subst_env(extra))
        outcome.evidence["command"] = json.dumps(argv, ensure_ascii=False)
        try:
            run = self._command(test, options, argv, image)
        except _LogsUnreadable as exc:
            outcome.evidence["ran_in"] = "own container (allocateTty)"
            said, printed = exc.args
            outcome.fail(
                "container-structure-test 1.19 cannot read the logs of a container with a TTY "
                f"(allocateTty) once the command printed 8 bytes or more ({said}), so the test "
                f"fails; it printed {_shown(printed)}: drop allocateTty"
            )
            return outcome
        except _EngineRefused as exc:
            outcome.fail(f"the command could not run in a container of {self.image.ref}: {exc}")
            outcome.evidence["ran_in"] = "own container (refused by the engine)"
            return outcome
        outcome.evidence.update(
            ran_in=run.how,
            exit_code=run.exit_code,
            stdout=run.stdout,
            stderr=run.stderr,
        )
        self._judge_output(test, run, outcome)
        return outcome

    def _setup(self, test: CommandTest, options: _Options) -> tuple[str, list[str]]:
        """Run the setup commands, each committed to a new image; return the last image and
        the env vars the commits now carry (expanded)."""
        current_env = self._subst_env()
        env = [f"{var.key}={golang.expand_env(var.value, current_env)}" for var in test.env_vars]
        given = {entry.partition("=")[0] for entry in env}
        env += [entry for entry in self._global if entry.partition("=")[0] not in given]
        setup_options = _Options(tuple(env), options.user, options.tty, options.host)
        image = self.image.id
        for command in test.setup:
            container, name = self._create(
                setup_options, list(command), purpose="setup", image=image
            )
            try:
                try:
                    self._api.start(container)
                except docker.errors.APIError as exc:
                    raise _EngineRefused(_explanation(exc)) from None
                try:
                    self._api.wait(container)
                    committed = self._api.commit(container)
                except ENGINE_ERRORS as exc:
                    raise _lost(f"the setup container {name}", exc) from None
            finally:
                self._remove_later(container)
            image = str(committed["Id"])
            with self._lock:
                self._made_images.append(image)
        return image, env

    def _command(
        self, test: CommandTest, options: _Options, argv: list[str], image: str | None
    ) -> _Run:
        reason = self._refused or _own_container(argv)
        if image is not None:
            reason = "its setup is committed to an image first, as CST does"
        elif "" in options.env:
            reason = "the host does not set a variable of containerRunOptions.envVars"
        elif reason is None and self._plan.get(options, 0) < 2 and options not in self._shared:
            reason = "no other test has its options"
        if reason is None:
            with self._lock:
                key_lock = self._key_locks.setdefault(options, threading.Lock())
            with key_lock:
                run = self._in_shared(options, argv)
            if isinstance(run, _Run):
                return run
            reason = run
        run = self._run_in_own(options, argv, image)
        return _Run(run.exit_code, run.stdout, run.stderr, f"{run.how} ({reason})")

    def _in_shared(self, options: _Options, argv: list[str]) -> _Run | str:
        """``argv`` as an exec in the shared container of ``options``, or why it must run in
        a container of its own."""
        shared = self._usable_shared(options)
        if shared.failed is not None:
            return shared.failed
        run = shared.exec(argv)
        self._plan[options] -= 1
        if self._plan[options] > 0:
            # Checked while pytest reports this test; the next exec waits for it.
            shared.pending = self._verify.submit(shared.unchanged)
        else:
            self._retire(shared)
            with self._lock:
                spare = self._spares.pop(options, None)
            if spare is not None:
                self._pool.submit(self._discard, spare)
        return run

    def _judge_output(self, test: CommandTest, run: _Run, outcome: Outcome) -> None:
        for stream, text, expected, excluded in (
            ("stderr", run.stderr, test.expected_error, test.excluded_error),
            ("stdout", run.stdout, test.expected_output, test.excluded_output),
        ):
            for pattern in expected:
                _expect(outcome, pattern, text, stream, should=True)
            for pattern in excluded:
                _expect(outcome, pattern, text, stream, should=False)
        if run.exit_code != test.exit_code:
            outcome.fail(f"exit code {run.exit_code}, expected {test.exit_code}")

    # --- file tests ----------------------------------------------------------------------

    def _reader_container(self) -> str:
        """The created container file tests read, made once (its creation is not under the
        runner's lock: the other work goes on meanwhile)."""
        with self._lock:
            if self._reader is None:
                self._reader = Future()
                creating = True
            else:
                creating = False
        if creating:
            try:
                container, _ = self._create(_Options(env=()), [NOOP_COMMAND], purpose="files")
                self._reader.set_result(container)
            except BaseException as exc:
                self._reader.set_exception(exc)
        return self._reader.result()

    @contextlib.contextmanager
    def _archive(self, path: str) -> Iterator[tarfile.TarFile]:
        """The archive of ``path`` in the created container, streamed; raise
        :class:`FileNotFoundError` with the engine's words when it refuses. Closed on leaving
        (an archive left open holds the container).

        When that container could not be made, or is gone, no file can be told missing (a
        ``shouldExist: false`` test would pass on nothing): :class:`ContainerFailed`.
        """
        try:
            reader = self._reader_container()
        except (*ENGINE_ERRORS, _EngineRefused) as exc:
            raise ContainerFailed(
                f"the container file tests read could not be created ({_explanation(exc)})"
            ) from None
        try:
            chunks, _ = self._api.get_archive(reader, path)
        except ENGINE_ERRORS as exc:
            if isinstance(exc, docker.errors.APIError) and self._still_there(reader):
                raise FileNotFoundError(_explanation(exc)) from None
            raise _lost("the container file tests read", exc) from None
        try:
            with tarfile.open(fileobj=stream_of(chunks), mode="r|") as tar:
                yield tar
        finally:
            chunks.close()

    def _still_there(self, container: str) -> bool:
        """Whether ``container`` exists and is not being removed."""
        try:
            state = self._api.inspect_container(container).get("State") or {}
        except ENGINE_ERRORS:
            return False
        return not state.get("Dead") and state.get("Status") not in ("removing", "dead")

    def _stat(self, target: str) -> tarfile.TarInfo:
        """CST's ``StatFile``: the first entry (dir, file, link or symlink) whose cleaned
        name is ``target``'s base name."""
        want = golang.base(target)
        unseen = ""
        with self._archive(target) as tar:
            for info in tar:
                if _entry_name(info) != want:
                    continue
                if info.type in _STAT_TYPES:
                    return info
                unseen = unseen or _UNSEEN_TYPES.get(info.type, "special file")
        if unseen:
            raise FileNotFoundError(
                f"{target} is a {unseen}, which container-structure-test does not see: it "
                "counts as missing"
            )
        raise FileNotFoundError(f"File {target} not found in image")

    def _read(self, target: str, depth: int = 0) -> bytes:
        """CST's ``ReadFile``: the content of the entry named ``target``'s base name; the
        first symbolic link in the archive is followed (its target as written, from ``/``)."""
        if depth > MAX_LINKS:
            raise FileNotFoundError(f"{target}: more than {MAX_LINKS} symbolic links followed")
        want = golang.base(target)
        with self._archive(target) as tar:
            for info in tar:
                if info.type == tarfile.DIRTYPE and _entry_name(info) == want:
                    raise IsADirectoryError(
                        f"Cannot read specified path: {target} is a directory, not a file"
                    )
                if info.type == tarfile.SYMTYPE:
                    link = info.linkname
                    break
                if info.type in _FILE_TYPES and _entry_name(info) == want:
                    extracted = tar.extractfile(info)
                    return extracted.read() if extracted is not None else b""
            else:
                raise FileNotFoundError(f"File {target} not found in image")
        return self._read(link, depth + 1)

    def run_file_existence(self, test: FileExistenceTest) -> Outcome:
        """Run a file existence test as CST runs it."""
        outcome, refused = _begun(f"File Existence Test: {test.name}", test, test.name)
        if refused:
            return outcome
        path = golang.expand_env(test.path, self._subst_env())
        outcome.evidence["path"] = path
        info: tarfile.TarInfo | None = None
        missing = ""
        try:
            info = self._stat(path)
        except (FileNotFoundError, IsADirectoryError) as exc:
            missing = str(exc)
        if info is None:
            if test.should_exist:
                outcome.fail(f"{path} does not exist in the image ({missing})")
                return outcome
            outcome.evidence["exists"] = False
            if test.permissions or test.is_executable_by or test.uid != -1 or test.gid != -1:
                outcome.fail(
                    f"{path} does not exist, and container-structure-test 1.19 crashes when it "
                    "checks the mode or owner of a missing path (a nil pointer): drop "
                    "permissions, isExecutableBy, uid and gid from a shouldExist: false test"
                )
            return outcome
        mode = golang.file_mode(info)
        outcome.evidence.update(exists=True, mode=mode, uid=info.uid, gid=info.gid)
        if not test.should_exist:
            outcome.fail(f"{path} exists ({mode}), expected it not to (shouldExist: false)")
        if test.permissions and mode != test.permissions:
            outcome.fail(
                f"{path} has permissions {mode}, expected {test.permissions} (as Go writes a "
                "mode: setuid is u, setgid g, sticky t before rwx, e.g. urwxr-xr-x)"
            )
        if test.is_executable_by:
            bits = {"any": 0o111, "owner": 0o100, "group": 0o010, "other": 0o001}
            wanted = bits.get(test.is_executable_by)
            if wanted is None:
                outcome.fail(
                    f"isExecutableBy {test.is_executable_by!r} is not one of any, owner, group, "
                    "other"
                )
            elif not golang.go_mode(info) & wanted:
                outcome.fail(f"{path} ({mode}) is not executable by {test.is_executable_by}")
        if test.uid != -1 and info.uid != test.uid:
            outcome.fail(f"{path} is owned by uid {info.uid}, expected {test.uid}")
        if test.gid != -1 and info.gid != test.gid:
            outcome.fail(f"{path} has gid {info.gid}, expected {test.gid}")
        return outcome

    def run_file_content(self, test: FileContentTest) -> Outcome:
        """Run a file content test as CST runs it."""
        outcome, refused = _begun(f"File Content Test: {test.name}", test, test.name)
        if refused:
            return outcome
        outcome.evidence["path"] = test.path
        try:
            contents = golang.decode(self._read(test.path))
        except (FileNotFoundError, IsADirectoryError) as exc:
            outcome.fail(f"cannot read {test.path} in the image: {exc}")
            return outcome
        outcome.evidence["size"] = len(contents)
        for pattern in test.expected_contents:
            _expect(outcome, pattern, contents, f"the content of {test.path}", should=True)
        for pattern in test.excluded_contents:
            _expect(outcome, pattern, contents, f"the content of {test.path}", should=False)
        return outcome

    def run_license(self, test: LicenseTest) -> Outcome:
        """Run a license test as CST runs it."""
        outcome = Outcome(True, evidence={"test": "License Test"})
        checked = 0
        if test.debian:
            try:
                with self._archive(DEBIAN_ROOT) as tar:
                    packages = [
                        info
                        for info in tar
                        if info.type == tarfile.DIRTYPE
                        and len(info.name.rstrip("/").split("/")) == 2
                    ]
            except FileNotFoundError as exc:
                outcome.fail(f"cannot read {DEBIAN_ROOT}: {exc}")
                return outcome
            for package in packages:
                name = golang.base(_entry_name(package))
                if name in LICENSE_ALLOWED:
                    continue
                copyright_file = f"{DEBIAN_ROOT}/{name}/copyright"
                try:
                    self._stat(copyright_file)
                except FileNotFoundError as exc:
                    outcome.fail(f"package {name} has no copyright file ({exc})")
                self._check_license(copyright_file, outcome)
                checked += 1
        for path in test.files:
            self._check_license(path, outcome)
            checked += 1
        outcome.evidence["license_files"] = checked
        return outcome

    def _check_license(self, path: str, outcome: Outcome) -> None:
        try:
            text = golang.upper(golang.decode(self._read(path)))
        except (FileNotFoundError, IsADirectoryError) as exc:
            outcome.fail(f"cannot read license file {path}: {exc}")
            return
        for word in LICENSE_REFUSED:
            if word in text:
                outcome.fail(f"{path} names the {word} license, which the test refuses")
                return

    # --- metadata ------------------------------------------------------------------------

    def run_metadata(self, test: MetadataTest) -> Outcome:
        """Run the metadata test as CST runs it: one verdict, every difference listed."""
        outcome, refused = _begun("Metadata Test", test)
        if refused:
            return outcome
        config = self._config
        env, labels = self._image_env, dict(config.get("Labels") or {})
        ports = [port.split("/", 1)[0] for port in config.get("ExposedPorts") or {}]
        volumes = list(config.get("Volumes") or {})
        _compare_pairs(outcome, "ENV", test.env_vars, env)
        for var in test.unbound_env_vars:
            if var.key in env:
                outcome.fail(f"ENV {var.key} is set, expected unset (unboundEnvVars)")
        _compare_pairs(outcome, "label", test.labels, labels)
        for name, wanted, found in (
            ("Cmd", test.cmd, list(config.get("Cmd") or [])),
            ("Entrypoint", test.entrypoint, list(config.get("Entrypoint") or [])),
        ):
            if wanted is not None and list(wanted) != found:
                outcome.fail(f"{name} is {json.dumps(found)}, expected {json.dumps(list(wanted))}")
        for name, text, found_text in (
            ("WorkingDir", test.workdir, str(config.get("WorkingDir") or "")),
            ("User", test.user, str(config.get("User") or "")),
        ):
            if text and text != found_text:
                outcome.fail(f"{name} is {json.dumps(found_text)}, expected {json.dumps(text)}")
        for port in test.exposed_ports:
            if port not in ports:
                outcome.fail(
                    f"port {port} is not exposed (exposed: {', '.join(ports) or 'none'}; CST "
                    "compares port numbers without /tcp or /udp)"
                )
        for port in test.unexposed_ports:
            if port in ports:
                outcome.fail(f"port {port} is exposed, expected not (unexposedPorts)")
        for volume in test.volumes:
            if volume not in volumes:
                declared = ", ".join(volumes) or "none"
                outcome.fail(f"volume {volume} is not declared (volumes: {declared})")
        for volume in test.unmounted_volumes:
            if volume in volumes:
                outcome.fail(f"volume {volume} is declared, expected not (unmountedVolumes)")
        outcome.evidence.update(
            exposed_ports=ports or "none",
            volumes=volumes or "none",
            workdir=str(config.get("WorkingDir") or "") or "unset",
            user=str(config.get("User") or "") or "unset",
        )
        return outcome


#: The entries CST's ``StatFile`` considers; ``ReadFile`` reads the regular ones.
_STAT_TYPES = (tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE)
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE)
#: The entries ``StatFile`` passes over, in words.
_UNSEEN_TYPES = {
    tarfile.FIFOTYPE: "named pipe",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
}


def _entry_name(info: tarfile.TarInfo) -> str:
    """The header's name as Go's ``filepath.Clean`` leaves it (Python drops a directory's
    trailing slash, so the archive's root ``/`` arrives empty)."""
    if info.name == "" and info.type == tarfile.DIRTYPE:
        return "/"
    return golang.clean(info.name)


def _compare_pairs(
    outcome: Outcome, what: str, wanted: Sequence[EnvVar], found: dict[str, str]
) -> None:
    for var in wanted:
        if var.key not in found:
            outcome.fail(f"{what} {var.key} is not set, expected {json.dumps(var.value)}")
            continue
        value = found[var.key]
        if var.is_regex:
            matched = golang.regexp_matches(var.value, value)
            if matched is None:
                outcome.fail(_bad_pattern(var.value))
            elif not matched:
                outcome.fail(
                    f"{what} {var.key} is {json.dumps(value)}, which {var.value!r} does not match"
                )
        elif value != var.value:
            outcome.fail(
                f"{what} {var.key} is {json.dumps(value)}, expected {json.dumps(var.value)}"
            )


def _bad_pattern(pattern: str) -> str:
    return (
        f"{pattern!r} is not a Go regular expression ({golang.compile_error(pattern)}): "
        "container-structure-test counts that as a failure (RE2 has no lookarounds or "
        "backreferences)"
    )


def _expect(outcome: Outcome, pattern: str, text: str, where: str, *, should: bool) -> None:
    """CST's ``CompileAndRunRegex``: a pattern that does not compile fails either way."""
    matched = golang.regexp_matches(pattern, text)
    if matched is None:
        outcome.fail(_bad_pattern(pattern))
    elif should and not matched:
        hint = ""
        with contextlib.suppress(re.error):
            if re.search(pattern, text, re.MULTILINE):
                hint = (
                    " (in Go ^ and $ match only at the ends of the whole text: write (?m) "
                    "before the pattern to match at line ends)"
                )
        outcome.fail(f"{where} has no match for {pattern!r}: {_shown(text)}{hint}")
    elif not should and matched:
        outcome.fail(f"{where} matches excluded {pattern!r}: {_shown(text)}")
