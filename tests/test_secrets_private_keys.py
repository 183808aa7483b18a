"""Private keys are found by their content, whatever the file is called.

The keys are generated here (``cryptography``); the PuTTY and PGP files are fake bodies in
the real formats. Certificates and public keys under the same kind of names are not findings.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from pytest_imagecheck.checks.secrets import Finding, find_secrets, keep_file
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.evidence import as_text, collecting
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.layers import SNIFF_BYTES, Keep, LayerContents, SharedLayers, read_layer

Private = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _private(key: Private, form: str, password: bytes | None = None) -> bytes:
    formats = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
        "openssh": serialization.PrivateFormat.OpenSSH,
    }
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, formats[form], encryption)


def _certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _armored(kind: str, body: bytes) -> bytes:
    lines = base64.b64encode(body).decode()
    wrapped = "\n".join(lines[i : i + 64] for i in range(0, len(lines), 64))
    armor = f"-----BEGIN {kind}-----\nVersion: GnuPG v2\n\n{wrapped}\n=AbCd\n-----END {kind}-----\n"
    return armor.encode()


def _body(pem: bytes) -> str:
    """A line of a key's base64 body: what must never appear in a message or evidence."""
    return next(
        line for line in pem.decode().splitlines()[1:] if len(line) >= 40 and ":" not in line
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    """Private key material under names that say nothing about it, by path in the image."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    service_account = {
        "type": "service_account",
        "private_key_id": "0123456789abcdef",
        "private_key": _private(rsa_key, "pkcs8").decode(),
        "client_email": "app@project.iam.gserviceaccount.com",
    }
    putty = (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: ed25519-key\n"
        "Public-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFake\n"
        "Private-Lines: 1\nAAAAIFakePrivateFakePrivateFakePrivateFakePrivateFake\n"
        "Private-MAC: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
    )
    return {
        "/opt/app/signing": _private(rsa_key, "pkcs8"),
        "/etc/ssl/private/server": _private(ec_key, "traditional"),
        "/srv/deploy/identity": _private(ed25519.Ed25519PrivateKey.generate(), "openssh"),
        "/app/config/service-account.json": json.dumps(service_account, indent=2).encode(),
        "/etc/haproxy/site": _certificate(ec_key) + _private(rsa_key, "traditional"),
        "/etc/app/legacy": _private(rsa_key, "traditional", b"passphrase"),
        "/etc/app/unseal": _private(ec_key, "pkcs8", b"passphrase"),
        "/home/app/putty": putty.encode(),
        "/root/secring": _armored("PGP PRIVATE KEY BLOCK", os.urandom(300)),
    }


@pytest.fixture(scope="module")
def public() -> dict[str, bytes]:
    """Public material and look-alikes under the same kind of names: none is a finding."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "/etc/app/trust": _certificate(ec_key),
        "/etc/app/verify": ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "/etc/app/authorized": ed_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "/app/pubring": _armored("PGP PUBLIC KEY BLOCK", os.urandom(300)),
        "/usr/share/doc/app/README": (
            b"Put your key in /etc/app/key; it starts with\n"
            b"-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n"
        ),
        "/usr/lib/python3/site-packages/pkg/tests/keyfile": _private(
            ec.generate_private_key(ec.SECP256R1()), "pkcs8"
        ),
    }


@pytest.fixture(scope="module")
def image(
    client: docker.DockerClient,
    busybox: str,
    worker_id: str,
    keys: dict[str, bytes],
    public: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageUnderTest]:
    """Layer b: every key and every public file; b+1: a key; b+2 deletes that key."""
    context = tmp_path_factory.mktemp("secrets-keys")
    for path, content in {**keys, **public}.items():
        target = context / "root" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (context / "material").write_bytes(keys["/opt/app/signing"])
    (context / "Dockerfile").write_text(
        f"FROM {busybox}\nCOPY root/ /\nCOPY material /opt/old/material\nRUN rm /opt/old/material\n"
    )
    tag = f"imagecheck-test/secrets-keys:1-{worker_id}"
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
    yield Engine(client, "tests-secrets-keys").image(tag)
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(tag)


@pytest.fixture(scope="module")
def findings(image: ImageUnderTest) -> dict[str, Finding]:
    return {f.id: f for f in find_secrets(image)}


@pytest.mark.parametrize(
    "path",
    [
        "/opt/app/signing",
        "/etc/ssl/private/server",
        "/srv/deploy/identity",
        "/app/config/service-account.json",
        "/etc/haproxy/site",
        "/etc/app/legacy",
        "/etc/app/unseal",
        "/home/app/putty",
        "/root/secring",
    ],
)
def test_private_key_under_any_name_is_found_by_content(
    findings: dict[str, Finding], path: str
) -> None:
    assert findings[f"file:{path}"].rule == "private-key"


@pytest.mark.parametrize(
    "path",
    [
        "/etc/app/trust",
        "/etc/app/verify",
        "/etc/app/authorized",
        "/app/pubring",
        "/usr/share/doc/app/README",
        "/usr/lib/python3/site-packages/pkg/tests/keyfile",
    ],
)
def test_certificates_public_keys_and_mentions_are_not_findings(
    image: ImageUnderTest, findings: dict[str, Finding], public: dict[str, bytes], path: str
) -> None:
    assert image.read_file(path) == public[path]
    assert f"file:{path}" not in findings


def test_only_the_keys_are_findings(findings: dict[str, Finding], keys: dict[str, bytes]) -> None:
    assert sorted(findings) == sorted(
        [f"file:{path}" for path in keys] + ["file:/opt/old/material"]
    )


def test_key_under_an_odd_name_deleted_later_is_still_reported(
    image: ImageUnderTest, findings: dict[str, Finding]
) -> None:
    layer = len(image.diff_ids) - 2
    where = findings["file:/opt/old/material"].where
    assert where.startswith(f"in layer {layer} (COPY file:")
    assert where.endswith(f", deleted in layer {layer + 1}, still in the image")


def test_key_material_never_appears_in_the_message_or_evidence(
    image: ImageUnderTest, keys: dict[str, bytes]
) -> None:
    from pytest_imagecheck.checks.secrets import assert_no_secrets

    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_no_secrets(image)
    shown = str(failure.value) + "".join(as_text(v) for e in evidence for v in e.facts.values())
    pem_keys = [path for path in keys if keys[path].startswith(b"-----BEGIN")]
    assert [path for path in pem_keys if _body(keys[path]) in shown] == []
    assert "AAAAIFakePrivate" not in shown


# The layer read: a bounded sniff of small files, bytes kept only for hits


def _tar(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_layer_read_keeps_only_the_files_the_sniffer_picks(keys: dict[str, bytes]) -> None:
    pem = keys["/opt/app/signing"]
    files = {
        "opt/app/signing": pem,
        "etc/app/trust": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "usr/bin/tool": b"\x7fELF" + bytes(1000),
        "var/big": pem + bytes(2 << 20),  # over max_keep: not sniffed at all
    }
    layer = read_layer(_tar(files), 0, keep=keep_file)
    assert layer.contents == {"/opt/app/signing": pem}
    assert sorted(layer.entries) == [
        "/etc/app/trust",
        "/opt/app/signing",
        "/usr/bin/tool",
        "/var/big",
    ]


def test_sniffer_sees_a_bounded_prefix_of_each_small_file() -> None:
    seen: list[int] = []

    def sniff(head: bytes) -> bool:
        seen.append(len(head))
        return False

    files = {"a": b"x" * 10, "b": b"y" * (SNIFF_BYTES * 3), "c": b"", "d": b"z" * (2 << 20)}
    layer = read_layer(_tar(files), 0, keep=Keep(lambda path, size: False, sniff))
    assert seen == [10, SNIFF_BYTES]
    assert layer.contents == {}


def test_a_call_with_a_plain_keep_gets_no_bytes_another_keep_sniffed(
    keys: dict[str, bytes],
) -> None:
    pem = keys["/opt/app/signing"]
    reads: list[object] = []

    def read(union: Callable[[str, int], bool]) -> list[LayerContents]:
        reads.append(union)
        return [read_layer(_tar({"opt/app/signing": pem, "etc/version": b"1.0"}), 0, keep=union)]

    shared = SharedLayers()
    assert shared.get(keep_file, read)[0].contents == {"/opt/app/signing": pem}
    plain = shared.get(None, read)[0].contents
    by_name = shared.get(lambda path, size: path == "/etc/version", read)[0].contents
    assert (plain, by_name, len(reads)) == ({}, {"/etc/version": b"1.0"}, 2)
