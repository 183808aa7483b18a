"""Which engine a session uses and where its ports are published (pytest_imagecheck.enginehost):
the docker CLI's own context store, made here by the real docker CLI, and the choices a remote
engine needs. No engine is contacted, except where a test says so."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pytest_imagecheck.enginehost import (
    TUNNEL_OWNER,
    EngineTarget,
    check_reachable,
    engine_target,
    parse_engine_url,
    publishing,
    sweep_orphan_tunnels,
)
from pytest_imagecheck.errors import EngineUnavailable, ImageCheckError
from tests.certs import self_signed

DOCKER = shutil.which("docker")


def _cli(config: Path, *args: str) -> None:
    assert DOCKER, "the docker CLI is missing: scripts/ensure-docker installs it"
    subprocess.run(
        [DOCKER, *args],
        env={**os.environ, "DOCKER_CONFIG": str(config)},
        check=True,
        capture_output=True,
    )


def _pem_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a client certificate and key it signed: real PEM files for the CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "test ca")
    ca, crt, pem = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca.write_bytes(cert)
    crt.write_bytes(cert)
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca, crt, pem


def test_the_environment_as_the_docker_cli_reads_it(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert engine_target(None, home, "--engine").url == "unix:///var/run/docker.sock"
    found = engine_target(None, {**home, "DOCKER_HOST": "tcp://10.0.0.5:2375"}, "--engine")
    assert (found.url, found.source, found.cert_path) == (
        "tcp://10.0.0.5:2375",
        "DOCKER_HOST",
        None,
    )
    tls = engine_target(
        None,
        {**home, "DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/c"},
        "--engine",
    )
    assert (tls.cert_path, tls.tls_verify) == ("/c", True)
    # --engine wins over DOCKER_HOST
    given = engine_target("ssh://ci@gpu", {**home, "DOCKER_HOST": "tcp://h:2375"}, "--engine")
    assert (given.url, given.source) == ("ssh://ci@gpu", "--engine")


def test_contexts_made_by_the_docker_cli(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    ca, cert, key = _pem_files(tmp_path / "pem")
    _cli(config, "context", "create", "plain", "--docker", "host=tcp://10.9.8.7:2375")
    _cli(
        config,
        "context",
        "create",
        "gpu",
        "--docker",
        f"host=tcp://10.9.8.8:2376,ca={ca},cert={cert},key={key}",
    )
    env = {"DOCKER_CONFIG": str(config), "HOME": str(tmp_path)}
    assert engine_target(None, env, "--engine").url == "unix:///var/run/docker.sock"

    by_name = engine_target("gpu", env, "--engine")
    assert by_name.url == "tcp://10.9.8.8:2376"
    assert by_name.source == "Docker context gpu"
    assert str(by_name) == "tcp://10.9.8.8:2376 of Docker context gpu"
    assert by_name.tls_verify
    assert by_name.cert_path is not None
    assert (Path(by_name.cert_path) / "ca.pem").read_bytes() == ca.read_bytes()

    assert engine_target(None, {**env, "DOCKER_CONTEXT": "plain"}, "--engine").url == (
        "tcp://10.9.8.7:2375"
    )
    _cli(config, "context", "use", "gpu")
    assert engine_target(None, env, "--engine").url == "tcp://10.9.8.8:2376"
    # DOCKER_CONTEXT wins over the current context, and DOCKER_HOST over both (as the CLI)
    assert engine_target(None, {**env, "DOCKER_CONTEXT": "plain"}, "-").url.endswith(":2375")
    with_host = {**env, "DOCKER_CONTEXT": "plain", "DOCKER_HOST": "unix:///run/x.sock"}
    assert engine_target(None, with_host, "-").url == "unix:///run/x.sock"

    with pytest.raises(ImageCheckError, match=r"^--engine nope: Docker context 'nope' does not"):
        engine_target("nope", env, "--engine")


def test_environment_of_a_bound_process_names_the_engine_alone() -> None:
    target = EngineTarget("tcp://10.0.0.5:2376", "--engine", "/certs", tls_verify=True)
    assert target.environ() == {
        "DOCKER_HOST": "tcp://10.0.0.5:2376",
        "DOCKER_CONTEXT": None,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": "/certs",
        "DOCKER_TLS": None,
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.5:2375", "is not an engine URL"),
        ("http://10.0.0.5", "is not an engine URL"),
        ("tcp://", "names no host"),
        ("tcp://10.0.0.5:http", "has a bad port"),
        ("tcp://10.0.0.5:2375/x", "names no host"),
        ("unix://relative.sock", "absolute path"),
    ],
)
def test_a_bad_engine_url_is_one_line(value: str, message: str) -> None:
    with pytest.raises(ImageCheckError, match=message) as raised:
        parse_engine_url(value, "--engine")
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith(f"--engine {value!r}")


def test_where_ports_are_published() -> None:
    local = EngineTarget("unix:///var/run/docker.sock", "the local socket")
    assert (publishing(local, None, "--publish-host").bind, local.local) == ("127.0.0.1", True)
    loop = EngineTarget("tcp://127.0.0.1:2375", "DOCKER_HOST")
    assert publishing(loop, None, "--publish-host").reach == "127.0.0.1"

    remote = EngineTarget("tcp://10.0.0.5:2375", "DOCKER_HOST")
    with pytest.raises(ImageCheckError) as raised:
        publishing(remote, None, "--publish-host")
    message = str(raised.value)
    assert message.startswith("the engine tcp://10.0.0.5:2375 is on another machine")
    assert "--publish-host engine" in message
    assert "\n" not in message

    chosen = publishing(remote, "engine", "--publish-host")
    assert (chosen.bind, chosen.reach, chosen.tunnelled) == ("10.0.0.5", "10.0.0.5", False)
    wide = publishing(remote, "0.0.0.0", "--publish-host")
    assert (wide.bind, wide.reach) == ("0.0.0.0", "10.0.0.5")
    assert publishing(remote, "192.168.1.4", "--publish-host").reach == "192.168.1.4"
    with pytest.raises(ImageCheckError, match=r"'gpu-host' is not an IP address"):
        publishing(remote, "gpu-host", "--publish-host")
    with pytest.raises(ImageCheckError, match=r"tunnel needs an ssh:// engine"):
        publishing(remote, "tunnel", "--publish-host")

    ssh = EngineTarget("ssh://ci@10.0.0.6", "--engine")
    by_default = publishing(ssh, None, "--publish-host")
    assert (by_default.bind, by_default.tunnelled) == ("127.0.0.1", True)
    assert publishing(ssh, "engine", "--publish-host").reach == "10.0.0.6"


def test_an_address_that_refuses_fails_at_once_in_one_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens once closed
    started = time.monotonic()
    with pytest.raises(EngineUnavailable) as raised:
        check_reachable(EngineTarget(f"tcp://127.0.0.1:{port}", "--engine"))
    assert time.monotonic() - started < 5
    assert str(raised.value).startswith(
        f"Docker engine unreachable at tcp://127.0.0.1:{port} (Connection refused)"
    )


def test_an_ssh_login_that_would_prompt_fails_instead(tmp_path: Path) -> None:
    """BatchMode: no password prompt, no host-key question; one line, no hang (sshd is not
    running on this port of the loopback, so this is ssh's own refusal)."""
    if shutil.which("ssh") is None:
        pytest.fail("the ssh client is missing: apt-get install openssh-client")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EngineUnavailable) as raised:
        check_reachable(EngineTarget(f"ssh://nobody@127.0.0.1:{port}", "--engine"))
    message = str(raised.value)
    assert "Connection refused" in message
    assert "ssh must log in without a prompt" in message


def test_the_default_context_is_the_clis_own(tmp_path: Path) -> None:
    """DOCKER_CONTEXT=default and --engine default name DOCKER_HOST or the local socket, as
    `docker --context default` does, whatever the current context is (it took the current
    context: another engine than the CLI's)."""
    config = tmp_path / "docker"
    _cli(config, "context", "create", "other", "--docker", "host=unix:///tmp/no-such.sock")
    _cli(config, "context", "use", "other")
    env = {"DOCKER_CONFIG": str(config), "HOME": str(tmp_path)}
    assert engine_target(None, env, "-").url == "unix:///tmp/no-such.sock"
    local = "unix:///var/run/docker.sock"
    assert engine_target(None, {**env, "DOCKER_CONTEXT": "default"}, "-").url == local
    assert engine_target("default", env, "--engine").url == local


def test_a_context_that_skips_verification_or_has_only_a_ca_is_tls(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    ca, _, _ = _pem_files(tmp_path / "pem")
    _cli(
        config,
        "context",
        "create",
        "skip",
        "--docker",
        "host=tcp://10.9.8.7:2376,skip-tls-verify=true",
    )
    _cli(config, "context", "create", "caonly", "--docker", f"host=tcp://10.9.8.7:2376,ca={ca}")
    env = {"DOCKER_CONFIG": str(config), "HOME": str(tmp_path)}
    skip = engine_target("skip", env, "--engine")
    assert skip.cert_path is not None and not skip.tls_verify
    assert skip.environ()["DOCKER_TLS"] == "1"
    only_ca = engine_target("caonly", env, "--engine")
    assert only_ca.cert_path is not None and only_ca.tls_verify


def test_engine_urls_are_normalised_as_the_cli_reads_them() -> None:
    assert parse_engine_url("tcp://10.0.0.5", "--engine") == "tcp://10.0.0.5:2375"
    assert parse_engine_url("tcp://10.0.0.5:2376/", "--engine") == "tcp://10.0.0.5:2376"


def test_a_remote_engines_loopback_is_not_reachable_from_here() -> None:
    """--publish-host 127.0.0.1 with a remote engine binds the remote's loopback and would
    connect to this machine's: a wrong pass against any local server on that port."""
    for url in ("tcp://10.0.0.5:2375", "ssh://ci@10.0.0.6"):
        with pytest.raises(ImageCheckError, match=r"is the loopback of the engine's host"):
            publishing(EngineTarget(url, "--engine"), "127.0.0.1", "--publish-host")
    local = EngineTarget("unix:///var/run/docker.sock", "the local socket")
    assert publishing(local, "127.0.0.1", "--publish-host").reach == "127.0.0.1"
    assert publishing(local, "::", "--publish-host").reach == "::1"


def test_a_tunnel_whose_owner_died_is_ended_by_the_next_session() -> None:
    """A pytest killed with SIGKILL cannot close its ssh tunnels; the next one ends them.
    Stand-ins for the tunnels are real processes with the owner's mark in their environment:
    one whose owner is gone, one whose owner (this process) lives."""
    gone = subprocess.Popen([sys.executable, "-c", "print(0)"])
    gone.wait()
    orphan = subprocess.Popen(["sleep", "60"], env={**os.environ, TUNNEL_OWNER: str(gone.pid)})
    owned = subprocess.Popen(["sleep", "60"], env={**os.environ, TUNNEL_OWNER: str(os.getpid())})
    try:
        assert sweep_orphan_tunnels() >= 1
        assert orphan.wait(timeout=5) == -15
        assert owned.poll() is None
    finally:
        for proc in (orphan, owned):
            proc.kill()
            proc.wait()
