"""The floor: the benchmark suite's 20 criteria with the fewest raw engine calls.

What bench/suite/imagecheck.yaml checks through the plugin, done here by hand with docker-py:
one image inspect and one history call (metadata, size), one container create and start,
one exec per command check, one archive read for both file checks, one container inspect for
the published port, three HTTP requests, one remove. No pytest, no retries beyond waiting
for the service to listen. Exits 1 and names the criterion when one fails.

``--batched`` runs the 10 commands in one exec (a shell script that marks each command's
exit code in the output): what the suite would cost if command checks did not pay one exec
each. It is a reference point, not the floor: it needs a shell in the image.

    python3 bench/floor.py imagecheck-bench/suite:1
    python3 bench/floor.py --batched imagecheck-bench/suite:1
"""

from __future__ import annotations

import io
import re
import shlex
import sys
import tarfile
import time

import docker
import requests

#: (argv, stdout regex): the 10 command checks of bench/suite/imagecheck.yaml.
COMMANDS = [
    (["python3", "--version"], r"^Python 3\.11"),
    (["id", "-u"], r"^1000$"),
    (["id", "-un"], r"svc"),
    (["pwd"], r"^/srv$"),
    (["sh", "-c", "echo $APP_ENV"], r"^prod$"),
    (["uname", "-s"], r"Linux"),
    (["python3", "-c", "import json, http.server, sqlite3"], None),
    (["ls", "/srv"], r"app\.py"),
    (["getent", "passwd", "svc"], r"/home/svc"),
    (["test", "-w", "/tmp"], None),
]
#: (path, expected JSON subset or None): the three endpoint checks.
ENDPOINTS = [
    ("/health", None),
    ("/health/live", {"status": "alive"}),
    ("/health/ready", {"status": "ready"}),
]


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)


def run_commands(api, cid: str, batched: bool) -> None:
    """The command checks: one exec each, or all in one shell script."""
    if not batched:
        for argv, pattern in COMMANDS:
            exec_id = api.exec_create(cid, argv)["Id"]
            out = api.exec_start(exec_id, demux=True)[0] or b""
            code = api.exec_inspect(exec_id)["ExitCode"]
            check(code == 0 and (pattern is None or re.search(pattern, out.decode(), re.M)), argv)
        return
    script = "".join(f'{shlex.join(argv)}; printf "\\n@@ %s\\n" $?\n' for argv, _ in COMMANDS)
    exec_id = api.exec_create(cid, ["sh", "-c", script])["Id"]
    out = (api.exec_start(exec_id, demux=True)[0] or b"").decode()
    parts = re.split(r"\n?@@ (\d+)\n", out)
    outputs, codes = parts[0:-1:2], parts[1::2]
    check(len(codes) == len(COMMANDS), "batched commands")
    for (argv, pattern), text, code in zip(COMMANDS, outputs, codes, strict=True):
        check(code == "0" and (pattern is None or re.search(pattern, text, re.M)), argv)


def main(ref: str, batched: bool = False) -> None:
    api = docker.from_env().api
    # Metadata and size: one inspect, one history.
    attrs = api.inspect_image(ref)
    config = attrs["Config"]
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    check(env.get("APP_ENV") == "prod" and "DEBUG" not in env, "env")
    labels = config.get("Labels") or {}
    check(
        labels.get("org.opencontainers.image.title") == "bench-suite"
        and labels.get("org.opencontainers.image.version") == "1.0.0",
        "labels",
    )
    check(list(config.get("ExposedPorts") or {}) == ["8000/tcp"], "exposed_ports")
    check(
        config.get("Entrypoint") == ["python3", "-u", "/srv/app.py"]
        and config.get("WorkingDir") == "/srv"
        and config.get("User") == "svc",
        "config",
    )
    history = api.history(attrs["Id"])
    check(attrs["Size"] <= 500e6 and max(h["Size"] for h in history) <= 300e6, "size")

    # One container, ports on 127.0.0.1.
    created = api.create_container(
        attrs["Id"],
        ports=[8000],
        host_config=api.create_host_config(port_bindings={8000: ("127.0.0.1", None)}),
    )
    cid = created["Id"]
    try:
        api.start(cid)
        run_commands(api, cid, batched)

        # Both file checks from one archive read.
        chunks, _ = api.get_archive(cid, "/srv/app.py")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            entry = tar.next()
            check(entry.isfile() and entry.mode & 0o7777 == 0o644 and entry.uid == 0, "file")
            check(b"ThreadingHTTPServer" in tar.extractfile(entry).read(), "file contains")

        # The published port, then the endpoints (waiting only for the server to listen).
        binding = api.inspect_container(cid)["NetworkSettings"]["Ports"]["8000/tcp"][0]
        base = f"http://127.0.0.1:{binding['HostPort']}"
        session = requests.Session()
        for path, subset in ENDPOINTS:
            deadline = time.monotonic() + 30
            while True:
                try:
                    response = session.get(base + path, timeout=5)
                    break
                except requests.ConnectionError:
                    check(time.monotonic() < deadline, f"{path} never answered")
                    time.sleep(0.01)
            check(response.status_code == 200, path)
            if subset:
                body = response.json()
                check(all(body.get(k) == v for k, v in subset.items()), path)
    finally:
        api.remove_container(cid, force=True, v=True)


if __name__ == "__main__":
    batched = "--batched" in sys.argv[1:]
    refs = [arg for arg in sys.argv[1:] if arg != "--batched"]
    main(refs[0] if refs else "imagecheck-bench/suite:1", batched)
