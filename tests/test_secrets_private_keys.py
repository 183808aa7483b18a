"""Private keys are found by their content, whatever the file is called.

The keys are generated here (``cryptography``); the PuTTY and PGP files are fake bodies in
the real formats. Certificates and public keys under the same kind of names are not findings,
not even under an SSH key file's name (``id_rsa``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pytest_imagecheck.checks.secrets import Finding, find_secrets
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.evidence import as_text, collecting
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.layers import SNIFF_BYTES, Keep, LayerContents, SharedLayers, read_layer
from pytest_imagecheck.secret_rules import keep_file, mask_text
from tests.certs import self_signed

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


def _chain(key: rsa.RSAPrivateKey, count: int) -> bytes:
    """``count`` RSA certificates, about 1.1 KB each: a CA bundle or a long chain."""
    return b"".join(self_signed(key, f"ca-{i}.example.com") for i in range(count))


def _pkcs12_export(key: rsa.RSAPrivateKey, chain: bytes) -> bytes:
    """What ``openssl pkcs12 -nodes`` writes: attribute lines before each block."""
    head = b"Bag Attributes\n    localKeyID: 01 02 03\nsubject=CN = app\n\nissuer=CN = ca-0\n"
    key_head = b"Bag Attributes\n    localKeyID: 01 02 03\nKey Attributes: <No Attributes>\n"
    return head + chain + key_head + _private(key, "pkcs8")


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
    chain = _chain(rsa_key, 20)  # then the key: 22 KB (issue 12: 16 certificates, 19 KB)
    return {
        "/opt/app/signing": _private(rsa_key, "pkcs8"),
        # issue 12: certificates then their key past 16 KiB, under a neutral name
        "/opt/app/chain": chain + _private(rsa_key, "traditional"),
        "/etc/pki/tls/bundle": _pkcs12_export(rsa_key, chain),
        "/etc/ssl/private/server": _private(ec_key, "traditional"),
        "/srv/deploy/identity": _private(ed25519.Ed25519PrivateKey.generate(), "openssh"),
        "/app/config/service-account.json": json.dumps(service_account, indent=2).encode(),
        "/etc/haproxy/site": self_signed(ec_key) + _private(rsa_key, "traditional"),
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
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_public_signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "/etc/app/trust": self_signed(ec_key),
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
        # issue 12: public material under SSH private key file names
        "/opt/harmless/id_rsa": rsa_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "/opt/harmless/id_ed25519": ed_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b" deploy@ci\n",
        "/opt/y/id_rsa": self_signed(ec_key),
        "/opt/keys/id_ecdsa": b"# deploy keys\n"
        + b'from="10.0.0.0/8",no-pty '
        + ec_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b" ci\n",
        # a CA bundle past the sniffed 16 KiB: kept whole, and no finding
        "/usr/local/share/ca/bundle": _chain(rsa_public_signer, 20),
    }


@pytest.fixture(scope="module")
def by_name() -> dict[str, bytes]:
    """SSH key files whose content cannot clear them: unknown to the check, or not read."""
    der = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {"/opt/legacy/id_dsa": der, "/opt/big/id_ed25519": b"ssh-ed25519 AAAA\n" * 70_000}


@pytest.fixture(scope="module")
def image(
    client: docker.DockerClient,
    busybox: str,
    worker_id: str,
    keys: dict[str, bytes],
    public: dict[str, bytes],
    by_name: dict[str, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageUnderTest]:
    """Layer b: every key and every public file; b+1: a key; b+2 deletes that key."""
    context = tmp_path_factory.mktemp("secrets-keys")
    for path, content in {**keys, **public, **by_name}.items():
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
        client.images.remove(tag, noprune=True)


@pytest.fixture(scope="module")
def findings(image: ImageUnderTest) -> dict[str, Finding]:
    return {f.id: f for f in find_secrets(image)}


@pytest.mark.parametrize(
    "path",
    [
        "/opt/app/signing",
        "/etc/ssl/private/server",
        "/opt/app/chain",
        "/etc/pki/tls/bundle",
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
        "/opt/harmless/id_rsa",
        "/opt/harmless/id_ed25519",
        "/opt/y/id_rsa",
        "/opt/keys/id_ecdsa",
        "/usr/local/share/ca/bundle",
    ],
)
def test_certificates_public_keys_and_mentions_are_not_findings(
    image: ImageUnderTest, findings: dict[str, Finding], public: dict[str, bytes], path: str
) -> None:
    assert image.read_file(path) == public[path]
    assert f"file:{path}" not in findings


def test_only_the_keys_are_findings(
    findings: dict[str, Finding], keys: dict[str, bytes], by_name: dict[str, bytes]
) -> None:
    assert sorted(findings) == sorted(
        [f"file:{path}" for path in {**keys, **by_name}] + ["file:/opt/old/material"]
    )


@pytest.mark.parametrize("path", ["/opt/app/chain", "/etc/pki/tls/bundle"])
def test_key_after_16_kib_of_certificates_is_found(
    findings: dict[str, Finding], keys: dict[str, bytes], path: str
) -> None:
    assert keys[path].index(b"PRIVATE KEY-----") > SNIFF_BYTES
    assert findings[f"file:{path}"].rule == "private-key"


def test_ssh_key_file_whose_content_is_no_known_format_is_a_finding_by_its_name(
    image: ImageUnderTest, findings: dict[str, Finding], by_name: dict[str, bytes]
) -> None:
    assert image.read_file("/opt/legacy/id_dsa") == by_name["/opt/legacy/id_dsa"]
    found = findings["file:/opt/legacy/id_dsa"]
    assert found.rule == "private-key"
    assert found.where.endswith(
        ": named as an SSH private key, and its content is neither a private key this check "
        "reads nor a public key or certificate"
    )


def test_ssh_key_file_not_read_is_reported_as_not_measured(
    findings: dict[str, Finding], by_name: dict[str, bytes]
) -> None:
    assert len(by_name["/opt/big/id_ed25519"]) > 1 << 20
    found = findings["file:/opt/big/id_ed25519"]
    assert found.rule == "private-key"
    assert found.where.endswith(
        ": its content was not read (over 1 MiB, or a hard link to a file read by no name), "
        "so whether it holds a private key is not measured"
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
    trust = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    files = {
        "opt/app/signing": pem,
        "etc/app/trust": trust,  # a PEM file: kept, in case a key follows its certificates
        "usr/bin/tool": b"\x7fELF" + bytes(1000),
        "usr/share/doc/notes": b"see -----BEGIN CERTIFICATE----- in the guide\n",
        "var/big": pem + bytes(2 << 20),  # over max_keep: not sniffed at all
    }
    layer = read_layer(_tar(files), 0, keep=keep_file)
    assert layer.contents == {"/opt/app/signing": pem, "/etc/app/trust": trust}
    assert sorted(layer.entries) == [
        "/etc/app/trust",
        "/opt/app/signing",
        "/usr/bin/tool",
        "/usr/share/doc/notes",
        "/var/big",
    ]


def test_layer_read_keeps_a_pem_file_whole_but_no_other_file_past_the_sniffed_head(
    keys: dict[str, bytes],
) -> None:
    chain, bundle = keys["/opt/app/chain"], keys["/etc/pki/tls/bundle"]
    late = b"log line\n" * (SNIFF_BYTES // 9 + 1) + keys["/opt/app/signing"]
    files = {"opt/app/chain": chain, "etc/pki/tls/bundle": bundle, "var/log/app.log": late}
    layer = read_layer(_tar(files), 0, keep=keep_file)
    assert layer.contents == {"/opt/app/chain": chain, "/etc/pki/tls/bundle": bundle}


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


# What tests show of a key file: mask_text hides the key, whole or cut


def test_mask_text_hides_a_private_key_read_from_the_image_whole_or_cut(
    image: ImageUnderTest, keys: dict[str, bytes]
) -> None:
    signing = image.read_file("/opt/app/signing").decode()
    head = signing[:170]  # what issue 12 found in evidence: the first ~170 characters
    assert mask_text(head, {}) == "-----BEGIN PRIVATE KEY----- … (170 chars, masked)"
    block = signing.rstrip("\n")
    assert mask_text(f"$ cat /opt/app/signing\n{signing}$ ", {}) == (
        f"$ cat /opt/app/signing\n-----BEGIN PRIVATE KEY----- … ({len(block)} chars, masked)\n$ "
    )
    chain = image.read_file("/opt/app/chain").decode()
    key = chain[chain.index("-----BEGIN RSA PRIVATE KEY-----") :]
    shown = mask_text(chain, {})
    assert shown == chain.replace(
        key.rstrip("\n"),
        f"-----BEGIN RSA PRIVATE KEY----- … ({len(key.rstrip())} chars, masked)",
    )
    assert shown.startswith("-----BEGIN CERTIFICATE-----\n")  # certificates stay readable
    assert _body(key.encode()) not in shown
