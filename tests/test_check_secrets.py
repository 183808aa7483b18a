"""assert_no_secrets: secrets in ENV, build args left in the history, credential files.

Every image here is built by the test session from ``FROM busybox`` with fake but realistic
secrets (AWS's documented example keys, freshly generated private keys).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import docker
import docker.errors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pytest_imagecheck.checks.secrets import (
    RULES,
    Finding,
    assert_no_secrets,
    find_secrets,
    mask,
)
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.evidence import Evidence, as_text, collecting
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.layers import final_filesystem
from pytest_imagecheck.secret_rules import mask_text
from tests.certs import self_signed

DOCKER_CLI = "/usr/bin/docker"
Findings = Callable[[ImageUnderTest], dict[str, Finding]]

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example credentials
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_Fake" + "0123456789" * 3 + "ab"
GITHUB_PAT = "github_pat_11FAKE0123_" + "abcdefghijKLMNOPQRST0123456789" * 2
SLACK_TOKEN = "xoxb-123456789012-1234567890123-FakeSlackBotToken42"
DB_PASSWORD = "Tr0ub4dor-and-3-horses"
URL_PASSWORD = "s3cr3t-Passw0rd"
OPENAI_KEY = "sk-proj-FAKE0123456789abcdefABCDEFghij"
ROOT_PASSWORD = "root-Pa55-for-mysql"
PEM_IN_ENV = "-----BEGIN OPENSSH PRIVATE KEY-----b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
BUILD_TOKEN = "tok_live_FAKE51Habc0123456789"
ARG_DEFAULT_PASSWORD = "hunter2-default-value"
CLONE_PASSWORD = "Sup3rS3cretClonePw"
ROTATED_TOKEN = "ghp_Rotated" + "9876543210" * 3 + "z"
NETRC_PASSWORD = "N3tRc-Passw0rd-xyz"
NPM_TOKEN = "npm_FakeNpmToken0123456789abcdefABCDEF"
PYPI_TOKEN = "pypi-AgEIcHlwaS5vcmcFAKEFAKEFAKE0123456789"
DOCKER_AUTH = base64.b64encode(b"deploy:D0cker-Passw0rd").decode()
# Issue 12: vendor formats under names that say nothing (fake, in each vendor's real shape)
STRIPE_KEY = "sk_live_51NzFAKEq8vLw3pXr7tKm2NqQa9Bc4De"
GOOGLE_KEY = "AIzaSyFAKE-q8vLw3pXr7tKm2NqQa9Bc4De5Fg6"
GITLAB_TOKEN = "glpat-FAKEq8vLw3pXr7tKm2Nq"
ANTHROPIC_KEY = (
    "sk-ant-api03-FAKEq8vLw3pXr7tKm2NqQa9Bc4De5Fg6Hi7Jk8Lm9No0Pq1Rs2Tu3Vw4Xy5Za6-AbCdEfAA"
)
HF_TOKEN = "hf_FAKEqvLwpXrtKmNqQaBcDeFgHiJkLmNoPq"
NPM_ACCESS_TOKEN = "npm_FAKEq8vLw3pXr7tKm2NqQa9Bc4De5Fg6Hi7J"
PYPI_API_TOKEN = "pypi-AgEIcHlwaS5vcmcCJFAKEq8vLw3pXr7tKm2NqQa9Bc4De5Fg6Hi7Jk8Lm9No0Pq1Rs"
SENDGRID_KEY = "SG.FAKEq8vLw3pXr7tKm2NqQa.9Bc4De5Fg6Hi7Jk8Lm9No0Pq1Rs2Tu3Vw4Xy5Za6Bc7"
DOCKER_HUB_TOKEN = "dckr_pat_FAKEq8vLw3pXr7tKm2NqQa9Bc4D"
GRAFANA_TOKEN = "glsa_FAKEq8vLw3pXr7tKm2NqQa9Bc4De5Fg6_0a1b2c3d"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtcmVwb3J0cyIsInNjb3BlIjoicmVwb3J0czp3"
    "cml0ZSIsImlhdCI6MTcwMDAwMDAwMH0.Fk2q8Zl0pV3xR9wTcY7bN1mJ4hD6sG5aE2uK8oL0iQw"
)
# Supabase's anon key: a JWT meant to be public ({"role": "anon"} in its payload)
ANON_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZSIsInJlZiI6ImFiY2RlZmdoaWprbG1u"
    "b3BxcnN0Iiwicm9sZSI6ImFub24iLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MjAwMDAwMDAwMH0"
    ".Fk2q8Zl0pV3xR9wTcY7bN1mJ4hD6sG5aE2uK8oL0iQw"
)
BASIC_AUTH = base64.b64encode(b"app:Zq8vLw3pXr7tKm").decode()
SLACK_WEBHOOK = "https://hooks.slack.com/services/T0FAKE123/B0FAKE456/q8vLw3pXr7tKm2NqQa9Bc4De"
DISCORD_WEBHOOK = (
    "https://discord.com/api/webhooks/1234567890123456789/"
    "FAKEq8vLw3pXr7tKm2NqQa9Bc4De5Fg6Hi7Jk8Lm9No0Pq1Rs2Tu3Vw4Xy5Za6Bc7De8"
)
SENTRY_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
FILE_NAMED_SECRET = "Zq8vLw3pXr7tKm2NqQ"
REDIS_PASSWORD = "S3cr3tRedisPw"

# name -> (value, the rule it breaks)
LEAKY_ENV = {
    "AWS_ACCESS_KEY_ID": (AWS_KEY_ID, "aws-access-key"),
    "AWS_SECRET_ACCESS_KEY": (AWS_SECRET, "secret-env-name"),
    "DB_PASSWORD": (DB_PASSWORD, "secret-env-name"),
    "OPENAI_API_KEY": (OPENAI_KEY, "openai-api-key"),
    "mysqlRootPassword": (ROOT_PASSWORD, "secret-env-name"),
    "REPO_AUTH": (GITHUB_TOKEN, "github-token"),
    "FINE_GRAINED": (GITHUB_PAT, "github-token"),
    "NOTIFY_HOOK": (SLACK_TOKEN, "slack-token"),
    "TLS_MATERIAL": (PEM_IN_ENV, "private-key"),
    "DATABASE_URL": (f"postgres://app:{URL_PASSWORD}@db:5432/app", "url-credentials"),
    # issue 12
    "PAYMENTS": (STRIPE_KEY, "stripe-key"),
    "STRIPE_KEY": (STRIPE_KEY.replace("sk_live_", "rk_live_"), "stripe-key"),
    "MAPS": (GOOGLE_KEY, "google-api-key"),
    "CI_CLONE": (GITLAB_TOKEN, "gitlab-token"),
    "ASSISTANT": (ANTHROPIC_KEY, "anthropic-api-key"),
    "HUB": (HF_TOKEN, "huggingface-token"),
    "PUBLISH_WITH": (NPM_ACCESS_TOKEN, "npm-token"),
    "UPLOAD_WITH": (PYPI_API_TOKEN, "pypi-token"),
    "MAILER": (SENDGRID_KEY, "sendgrid-api-key"),
    "REGISTRY_LOGIN": (DOCKER_HUB_TOKEN, "docker-hub-token"),
    "DASHBOARDS": (GRAFANA_TOKEN, "service-token"),
    "UPSTREAM_AUTHORIZATION": (f"Bearer {JWT}", "jwt"),
    "CURL_HEADERS": (f"Authorization: Basic {BASIC_AUTH}", "authorization-header"),
    "SLACK_WEBHOOK": (SLACK_WEBHOOK, "slack-webhook"),
    "DISCORD_HOOK": (DISCORD_WEBHOOK, "discord-webhook"),
    "SENTRY_DSN": (f"https://{SENTRY_KEY}@o123456.ingest.sentry.io/4505123", "sentry-dsn"),
    "SECRET_KEY_FILE": (FILE_NAMED_SECRET, "secret-env-name"),
    "PASSWORD_PATH": (FILE_NAMED_SECRET, "secret-env-name"),
    "CACHE_URL": (f"redis://:{REDIS_PASSWORD}@redis:6379/0", "url-credentials"),
    "APP_OPTS": (f"--db-password={FILE_NAMED_SECRET}", "secret-option"),
}

HARMLESS_ENV = {
    "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres-password",
    "GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/google/key.json",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "KEYBOARD": "us",
    "GPG_KEY": "A035C8C19219BA821ECEA86B64E628F8D684696D",  # python 3.11's release key
    "PYTHON_SHA256": "07a4356e912900e61a15cb0949a06c4a05012e213ecd6b4e84d0f67aabbee372",
    "EMPTY_PASSWORD": "",
    "ADMIN_PASSWORD": "changeme",
    "API_KEY": "<your-api-key>",
    "NODE_AUTH_TOKEN": "${NPM_TOKEN}",
    "SECRET_NAME": "db-credentials",
    "MAX_TOKENS": "512",
    "JWT_TOKEN_TTL": "3600",
    "DATABASE_URL": "postgres://app:${DB_PASSWORD}@db:5432/app",
    "REDIS_URL": "redis://cache:6379/0",
    # issue 12: settings about a secret, and look-alikes of the new formats
    "PASSWORD_CHARSET": "alphanumeric",
    "SECRET_ENGINE": "kv-v2",
    "AUTH_PASSWORD_VALIDATORS": ("django.contrib.auth.password_validation.MinimumLengthValidator"),
    "TOKEN_STORAGE": "redis",
    "GITHUB_TOKEN_PERMISSIONS": "contents-read",
    "SECRET_REF": "projects/123/secrets/db/versions/latest",
    "SECRET_KEY_FILE": "/run/secrets/django",
    "CACHE_URL": "redis://:${REDIS_PASSWORD}@redis:6379/0",
    "STRIPE_PK": "pk_live_51NzFAKEq8vLw3pXr7tKm2NqQa9Bc4De",
    "NEXT_PUBLIC_SUPABASE_ANON_KEY": ANON_JWT,
    "SKLEARN_VERSION": "sk-1.4.2",
    "UPSTREAM_AUTHORIZATION": "Bearer ${API_TOKEN}",
    "CATALINA_OPTS": "-Djavax.net.ssl.keyStorePassword=changeit",
    "APP_ARGS": "--password-file=/run/secrets/db",
}


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, form: str) -> bytes:
    formats = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
        "openssh": serialization.PrivateFormat.OpenSSH,
    }
    return key.private_bytes(
        serialization.Encoding.PEM, formats[form], serialization.NoEncryption()
    )


def _write_tree(root: Path, files: dict[str, bytes | str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def _env_lines(env: dict[str, str]) -> str:
    return "".join(
        f'ENV {name}="{value.replace("$", chr(92) + "$")}"\n' for name, value in env.items()
    )


def _key_body(pem: bytes) -> str:
    """A stretch of a PEM key's base64 body: what must never appear in a message."""
    return pem.decode().splitlines()[2]


@pytest.fixture(scope="module")
def engine(client: docker.DockerClient) -> Engine:
    return Engine(client, "tests-secrets")


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    """Freshly generated key material: private keys in each PEM flavour and a public cert."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "id_rsa": _pem(_rsa_key(), "openssh"),
        "server.key": _pem(_rsa_key(), "pkcs8"),
        "tls.pem": _pem(ec_key, "traditional") + self_signed(ec_key),
        "public.pem": self_signed(ec.generate_private_key(ec.SECP256R1())),
        "id_ed25519": ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        "id_ed25519.pub": ed_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "package-test.key": _pem(_rsa_key(), "traditional"),
    }


@pytest.fixture(scope="module")
def build(
    client: docker.DockerClient,
    engine: Engine,
    worker_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ImageUnderTest]]:
    """``build(name, dockerfile, files={...}, buildkit=False, args={...})``; removed at the end."""
    tags: list[str] = []

    def make(
        name: str,
        dockerfile: str,
        files: dict[str, bytes | str] | None = None,
        *,
        buildkit: bool = False,
        args: dict[str, str] | None = None,
    ) -> ImageUnderTest:
        # One tag per xdist worker: a worker's teardown must not untag another's image.
        tag = f"imagecheck-test/secrets-{name}:1-{worker_id}"
        context = tmp_path_factory.mktemp(f"secrets-{name}")
        _write_tree(context, {"Dockerfile": dockerfile, **(files or {})})
        if buildkit:
            argv = [DOCKER_CLI, "build", "-q", "-t", tag]
            for key, value in (args or {}).items():
                argv += ["--build-arg", f"{key}={value}"]
            env = {**os.environ, "DOCKER_BUILDKIT": "1"}
            subprocess.run(
                [*argv, str(context)], env=env, check=True, capture_output=True, timeout=300
            )
        else:
            client.images.build(
                path=str(context), tag=tag, buildargs=args or {}, rm=True, forcerm=True
            )
        tags.append(tag)
        return engine.image(tag)

    yield make
    for tag in tags:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=True)


@pytest.fixture(scope="module")
def leaky_env(build: Callable[..., ImageUnderTest], busybox: str) -> ImageUnderTest:
    env = {name: value for name, (value, _) in LEAKY_ENV.items()}
    return build("env", f"FROM {busybox}\n{_env_lines(env)}")


@pytest.fixture(scope="module")
def leaky_files(
    build: Callable[..., ImageUnderTest], busybox: str, keys: dict[str, bytes]
) -> ImageUnderTest:
    """Layer b: id_rsa; b+1: deletes it; b+2: every credential file; b+3: rewrites .npmrc."""
    dockerfile = f"""FROM {busybox}
COPY id_rsa /root/.ssh/id_rsa
RUN rm /root/.ssh/id_rsa
COPY root/ /
RUN echo "registry=https://registry.npmjs.org/" > /app/.npmrc
"""
    docker_config = {"auths": {"registry.example.com": {"auth": DOCKER_AUTH}}}
    files: dict[str, bytes | str] = {
        "id_rsa": keys["id_rsa"],
        "root/etc/ssl/private/server.key": keys["server.key"],
        "root/srv/tls.pem": keys["tls.pem"],
        "root/root/.ssh/id_ed25519": keys["id_ed25519"],
        "root/app/.env": f"DB_PASSWORD={DB_PASSWORD}\nDEBUG=0\n",
        "root/app/.env.production": f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n",
        "root/root/.git-credentials": f"https://deploy:{GITHUB_TOKEN}@github.com\n",
        "root/root/.netrc": f"machine api.example.com login deploy password {NETRC_PASSWORD}\n",
        "root/root/.npmrc": f"//registry.npmjs.org/:_authToken={NPM_TOKEN}\n",
        "root/app/.npmrc": f"//registry.npmjs.org/:_authToken={NPM_TOKEN}\n",
        "root/root/.pypirc": f"[pypi]\nusername = __token__\npassword = {PYPI_TOKEN}\n",
        "root/root/.docker/config.json": json.dumps(docker_config),
        "root/root/.aws/credentials": (
            f"[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    }
    return build("files", dockerfile, files)


HISTORY_DOCKERFILE = """FROM {busybox}
ARG API_TOKEN
ARG DB_PASSWORD={default}
ARG BUILD_VERSION=1.2.3
ARG NPM_TOKEN
ENV DEPLOY_HINT={rotated}
ENV DEPLOY_HINT=rotated
RUN echo "build $BUILD_VERSION" > /version
RUN echo https://deploy:{clone}@git.example.com/app.git > /dev/null
"""


@pytest.fixture(scope="module", params=["buildkit", "legacy"])
def build_args(
    request: pytest.FixtureRequest, build: Callable[..., ImageUnderTest], busybox: str
) -> ImageUnderTest:
    """Build args in the history, from the BuildKit CLI and from docker-py's legacy builder."""
    dockerfile = HISTORY_DOCKERFILE.format(
        busybox=busybox, default=ARG_DEFAULT_PASSWORD, rotated=ROTATED_TOKEN, clone=CLONE_PASSWORD
    )
    image = build(
        f"history-{request.param}",
        dockerfile,
        buildkit=request.param == "buildkit",
        args={"API_TOKEN": BUILD_TOKEN, "BUILD_VERSION": "2.0.0"},
    )
    made_by_buildkit = any(step.comment == "buildkit.dockerfile.v0" for step in image.layers)
    assert made_by_buildkit == (request.param == "buildkit")
    return image


@pytest.fixture(scope="module")
def harmless(
    build: Callable[..., ImageUnderTest], busybox: str, keys: dict[str, bytes]
) -> ImageUnderTest:
    """Every near miss: secret-sounding names with no secret, templates, public material."""
    dockerfile = f"""FROM {busybox}
ARG NPM_TOKEN
ARG BUILD_VERSION=1.2.3
{_env_lines(HARMLESS_ENV)}COPY root/ /
RUN echo "built $BUILD_VERSION" > /version
"""
    files: dict[str, bytes | str] = {
        "root/app/.env.example": "API_KEY=\nDB_PASSWORD=\n",
        "root/app/.env/pyvenv.cfg": "home = /usr/bin\n",  # a virtualenv named .env
        "root/etc/ssl/certs/server.pem": keys["public.pem"],
        "root/root/.ssh/id_ed25519.pub": keys["id_ed25519.pub"],
        "root/app/.npmrc": "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n",
        "root/root/.docker/config.json": json.dumps(
            {"auths": {"registry.example.com": {}}, "credsStore": "pass"}
        ),
        "root/root/.netrc": "machine example.com login deploy\n",
        "root/root/.pypirc": "[distutils]\nindex-servers = pypi\n[pypi]\nusername = __token__\n",
        "root/root/.git-credentials": "",
        "root/usr/lib/python3/site-packages/tornado/test/test.key": keys["package-test.key"],
    }
    return build("harmless", dockerfile, files)


@pytest.fixture(scope="module")
def findings() -> Findings:
    """``findings(image)``: its findings by id, read once per image."""
    cache: dict[str, dict[str, Finding]] = {}

    def by_id(image: ImageUnderTest) -> dict[str, Finding]:
        if image.id not in cache:
            cache[image.id] = {f.id: f for f in find_secrets(image)}
        return cache[image.id]

    return by_id


def _failure(
    image: ImageUnderTest, accept: Mapping[str, str] | None = None
) -> tuple[str, dict[str, object]]:
    """The AssertionError message of assert_no_secrets, and the facts it recorded."""
    with collecting() as evidence, pytest.raises(AssertionError) as failure:
        assert_no_secrets(image, accept=accept)
    return str(failure.value), _facts(evidence)


def _facts(evidence: list[Evidence]) -> dict[str, object]:
    (secrets,) = [e for e in evidence if e.check == "secrets"]
    return secrets.facts


# ENV


@pytest.mark.parametrize(("name", "rule"), [(n, rule) for n, (_, rule) in LEAKY_ENV.items()])
def test_secret_env_fires_with_its_rule(
    leaky_env: ImageUnderTest, findings: Findings, name: str, rule: str
) -> None:
    found = findings(leaky_env)[f"env:{name}"]
    value = LEAKY_ENV[name][0]
    assert (found.rule, found.where) == (rule, f"ENV value {mask(value)}")


def test_env_secrets_are_reported_once_as_env_not_again_from_the_history(
    leaky_env: ImageUnderTest, findings: Findings
) -> None:
    assert sorted(findings(leaky_env)) == sorted(f"env:{name}" for name in LEAKY_ENV)


@pytest.mark.parametrize("name", [*HARMLESS_ENV, "PATH"])
def test_env_that_only_sounds_secret_does_not_fire(
    harmless: ImageUnderTest, findings: Findings, name: str
) -> None:
    assert name in harmless.env
    assert f"env:{name}" not in findings(harmless)


# Build args and the history


def test_build_arg_value_left_in_history_fires(
    build_args: ImageUnderTest, findings: Findings
) -> None:
    found = findings(build_args)["history:API_TOKEN"]
    assert found.rule == "secret-build-arg"
    assert found.where.startswith(f"build arg {mask(BUILD_TOKEN)} in history step ")
    assert found.where.endswith('(RUN echo "build $BUILD_VERSION" > /version)')


def test_secret_arg_default_fires_at_its_arg_step(
    build_args: ImageUnderTest, findings: Findings
) -> None:
    found = findings(build_args)["history:DB_PASSWORD"]
    assert found.rule == "secret-build-arg"
    assert found.where.startswith(f"ARG default {mask(ARG_DEFAULT_PASSWORD)} in history step ")
    assert found.where.endswith("(ARG DB_PASSWORD=***)")


def test_password_in_a_run_command_url_fires_for_that_step(
    build_args: ImageUnderTest, findings: Findings
) -> None:
    (step,) = [s for s in build_args.layers if "git.example.com" in s.created_by]
    found = findings(build_args)[f"history:step-{step.index}"]
    assert found.rule == "url-credentials"
    assert "(RUN echo https://deploy:***@git.example.com/app.git" in found.where


def test_credential_in_an_env_overwritten_later_is_still_found_in_the_history(
    build_args: ImageUnderTest, findings: Findings
) -> None:
    assert build_args.env["DEPLOY_HINT"] == "rotated"
    (step,) = [s for s in build_args.layers if ROTATED_TOKEN in s.created_by]
    found = findings(build_args)[f"history:step-{step.index}"]
    assert found.rule == "github-token"
    assert found.where.startswith(f"{mask(ROTATED_TOKEN)} in history step {step.index} (ENV")


def test_harmless_build_args_do_not_fire(build_args: ImageUnderTest, findings: Findings) -> None:
    assert any("BUILD_VERSION=2.0.0" in step.created_by for step in build_args.layers)
    assert sorted(findings(build_args)) == sorted(
        ["history:API_TOKEN", "history:DB_PASSWORD"]
        + [
            f"history:step-{s.index}"
            for s in build_args.layers
            if ROTATED_TOKEN in s.created_by or "git.example.com" in s.created_by
        ]
    )


# Files


FILE_CASES = {
    "/root/.ssh/id_rsa": "private-key",
    "/etc/ssl/private/server.key": "private-key",
    "/srv/tls.pem": "private-key",
    "/root/.ssh/id_ed25519": "private-key",
    "/app/.env": "env-file",
    "/app/.env.production": "env-file",
    "/root/.git-credentials": "git-credentials",
    "/root/.netrc": "netrc-password",
    "/root/.npmrc": "npmrc-token",
    "/app/.npmrc": "npmrc-token",
    "/root/.pypirc": "pypirc-password",
    "/root/.docker/config.json": "docker-config-auth",
    "/root/.aws/credentials": "aws-credentials-file",
}


@pytest.mark.parametrize(("path", "rule"), FILE_CASES.items())
def test_credential_file_fires_with_its_rule(
    leaky_files: ImageUnderTest, findings: Findings, path: str, rule: str
) -> None:
    assert findings(leaky_files)[f"file:{path}"].rule == rule


def test_only_the_planted_files_fire(leaky_files: ImageUnderTest, findings: Findings) -> None:
    assert sorted(findings(leaky_files)) == sorted(f"file:{path}" for path in FILE_CASES)


def test_private_key_deleted_in_a_later_layer_is_still_reported(
    leaky_files: ImageUnderTest, findings: Findings, engine: Engine, busybox: str
) -> None:
    base = len(engine.image(busybox).diff_ids)
    live = {entry.path for entry, _ in final_filesystem(leaky_files.layer_contents())}
    assert "/root/.ssh/id_rsa" not in live
    where = findings(leaky_files)["file:/root/.ssh/id_rsa"].where
    assert where.startswith(f"in layer {base} (COPY file:")
    assert where.endswith(f"in /root/.ssh/id_rsa), deleted in layer {base + 1}, still in the image")


def test_file_overwritten_by_a_later_layer_is_still_reported(
    leaky_files: ImageUnderTest, findings: Findings, engine: Engine, busybox: str
) -> None:
    base = len(engine.image(busybox).diff_ids)
    assert leaky_files.read_file("/app/.npmrc") == b"registry=https://registry.npmjs.org/\n"
    where = findings(leaky_files)["file:/app/.npmrc"].where
    assert where.startswith(f"in layer {base + 2} (COPY dir:")
    assert where.endswith(f", replaced in layer {base + 3}, still in the image")
    live_copy = findings(leaky_files)["file:/root/.npmrc"].where
    assert re.fullmatch(rf"in layer {base + 2} \(COPY dir:[0-9a-f]{{12}} in /\)", live_copy)


@pytest.mark.parametrize(
    "path",
    [
        "/app/.env.example",
        "/app/.env/pyvenv.cfg",
        "/etc/ssl/certs/server.pem",
        "/root/.ssh/id_ed25519.pub",
        "/app/.npmrc",
        "/root/.docker/config.json",
        "/root/.netrc",
        "/root/.pypirc",
        "/root/.git-credentials",
        "/usr/lib/python3/site-packages/tornado/test/test.key",
    ],
)
def test_files_that_only_look_like_credentials_do_not_fire(
    harmless: ImageUnderTest, findings: Findings, path: str
) -> None:
    live = {entry.path for entry, _ in final_filesystem(harmless.layer_contents())}
    assert path in live
    assert f"file:{path}" not in findings(harmless)


# The assertion, masking and evidence


def test_harmless_image_passes_and_records_what_was_checked(harmless: ImageUnderTest) -> None:
    with collecting() as evidence:
        assert_no_secrets(harmless)
    facts = _facts(evidence)
    assert facts["findings"] == facts["accepted"] == facts["stale_accepts"] == "none"
    assert facts["rules_checked"] == [rule.name for rule in RULES]


def test_clean_base_image_passes(engine: Engine, busybox: str) -> None:
    assert_no_secrets(engine.image(busybox))


def test_failure_lists_every_finding_on_its_own_line_and_how_to_accept(
    leaky_files: ImageUnderTest,
) -> None:
    message, facts = _failure(leaky_files)
    lines = message.splitlines()
    assert lines[0] == f"image {leaky_files.ref} carries {len(FILE_CASES)} secrets:"
    assert lines[1].startswith("  file:/app/.env (rule env-file) in layer ")
    assert len(lines) == len(FILE_CASES) + 2
    assert lines[-1] == 'accept one with accept={"file:/app/.env": "why"}'
    assert facts["findings"] == [line.strip() for line in lines[1:-1]]


def test_secret_values_never_appear_in_messages_or_evidence(
    leaky_env: ImageUnderTest,
    leaky_files: ImageUnderTest,
    build_args: ImageUnderTest,
    keys: dict[str, bytes],
) -> None:
    secrets = [
        *(value for value, _ in LEAKY_ENV.values()),
        *(_key_body(keys[name]) for name in ("id_rsa", "server.key", "tls.pem", "id_ed25519")),
        *(BUILD_TOKEN, ARG_DEFAULT_PASSWORD, CLONE_PASSWORD, ROTATED_TOKEN, URL_PASSWORD),
        *(NETRC_PASSWORD, NPM_TOKEN, PYPI_TOKEN, DOCKER_AUTH),
    ]
    for image in (leaky_env, leaky_files, build_args):
        message, facts = _failure(image)
        shown = message + "\n".join(as_text(value) for value in facts.values())
        assert [s for s in secrets if s in shown] == []
    assert mask(AWS_KEY_ID) in _failure(leaky_env)[0]


def test_mask_shows_a_prefix_of_long_values_only() -> None:
    assert mask(AWS_KEY_ID) == "AKIA… (20 chars)"
    assert mask(AWS_SECRET) == "wJal… (40 chars)"
    assert mask("hunter2") == "*** (7 chars)"
    assert mask("") == "*** (0 chars)"


# accept


def test_accepted_findings_pass_and_are_listed_with_their_reason(
    leaky_env: ImageUnderTest,
) -> None:
    accept = {f"env:{name}": "demo image, no real service" for name in LEAKY_ENV}
    with collecting() as evidence:
        assert_no_secrets(leaky_env, accept=accept)
    facts = _facts(evidence)
    assert facts["findings"] == "none"
    accepted = facts["accepted"]
    assert isinstance(accepted, list) and len(accepted) == len(LEAKY_ENV)
    assert (
        f"env:AWS_ACCESS_KEY_ID (rule aws-access-key) ENV value {mask(AWS_KEY_ID)}, "
        "accepted: demo image, no real service"
    ) in accepted


def test_findings_not_accepted_still_fail(leaky_env: ImageUnderTest) -> None:
    accept = {f"env:{name}": "demo" for name in LEAKY_ENV if name != "DB_PASSWORD"}
    message, facts = _failure(leaky_env, accept=accept)
    assert message == (
        f"image {leaky_env.ref} carries 1 secret:\n"
        f"  env:DB_PASSWORD (rule secret-env-name) ENV value {mask(DB_PASSWORD)}\n"
        'accept one with accept={"env:DB_PASSWORD": "why"}'
    )
    assert isinstance(facts["accepted"], list) and len(facts["accepted"]) == len(accept)


def test_stale_accept_fails_and_names_the_waiver(harmless: ImageUnderTest) -> None:
    message, facts = _failure(harmless, accept={"env:DEMO_PASSWORD": "demo image"})
    assert message == (
        f"accept names secrets that image {harmless.ref} does not carry "
        '(stale waivers, remove them):\n  env:DEMO_PASSWORD: "demo image"'
    )
    assert facts["stale_accepts"] == ["env:DEMO_PASSWORD"]


def test_stale_accept_is_reported_with_the_findings(leaky_env: ImageUnderTest) -> None:
    message, _ = _failure(leaky_env, accept={"file:/app/.env": "was removed"})
    assert message.startswith(f"image {leaky_env.ref} carries {len(LEAKY_ENV)} secrets:\n")
    assert message.endswith('(stale waivers, remove them):\n  file:/app/.env: "was removed"')


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_accept_without_a_reason_is_an_input_error(
    leaky_env: ImageUnderTest, reason: object
) -> None:
    with pytest.raises(ImageCheckError, match=r'accept\["env:DB_PASSWORD"\] needs a reason'):
        assert_no_secrets(leaky_env, accept={"env:DB_PASSWORD": reason})  # type: ignore[dict-item]


def test_accept_key_that_is_no_finding_id_is_an_input_error(leaky_env: ImageUnderTest) -> None:
    with pytest.raises(ImageCheckError, match="accept key 'DB_PASSWORD' is not a finding id"):
        assert_no_secrets(leaky_env, accept={"DB_PASSWORD": "demo"})


def test_every_rule_has_a_case_that_fires() -> None:
    fired = {rule for _, rule in LEAKY_ENV.values()} | set(FILE_CASES.values())
    fired |= {"secret-build-arg", "url-credentials", "github-token"}  # the history tests
    assert fired == {rule.name for rule in RULES}


# Credential formats in a RUN command (issue 12's formats are looked for in the history too)


@pytest.fixture(scope="module")
def history_formats(build: Callable[..., ImageUnderTest], busybox: str) -> ImageUnderTest:
    return build(
        "history-formats",
        f"FROM {busybox}\n"
        f"RUN echo {STRIPE_KEY} > /dev/null\n"
        f'RUN wget -q --header "Authorization: Bearer {JWT}" -O /dev/null http://127.0.0.1:1/'
        " || true\n"
        'RUN wget -q --header "Authorization: Bearer ${API_TOKEN}" -O /dev/null'
        " http://127.0.0.1:1/ || true\n",
    )


def test_new_credential_formats_in_run_commands_fire_masked(
    history_formats: ImageUnderTest, findings: Findings
) -> None:
    found = findings(history_formats)
    steps = {
        rule: next(s for s in history_formats.layers if needle in s.created_by)
        for rule, needle in (("stripe-key", STRIPE_KEY), ("jwt", JWT))
    }
    assert sorted(found) == sorted(f"history:step-{step.index}" for step in steps.values())
    for rule, step in steps.items():
        finding = found[f"history:step-{step.index}"]
        assert finding.rule == rule
        assert STRIPE_KEY not in finding.where and JWT not in finding.where
    stripe = found[f"history:step-{steps['stripe-key'].index}"].where
    assert stripe.startswith(f"{mask(STRIPE_KEY)} in history step ")
    assert stripe.endswith(f"(RUN echo {mask(STRIPE_KEY)} > /dev/null)")


# mask_text: what evidence and log tails may show


def test_mask_text_masks_every_credential_format_of_the_rules() -> None:
    formats = {rule.name for rule in RULES if rule.pattern is not None}
    values = [value for value, rule in LEAKY_ENV.values() if rule in formats]
    assert len(values) >= len(formats)
    # A key with no END line is masked to the end of the text: it goes last.
    values.sort(key=lambda value: value.startswith("-----BEGIN"))
    text = "\n".join(f"log: using {value} now" for value in values)
    shown = mask_text(text, {})
    assert shown.count("log: using ") == len(values)
    # Nothing of a secret shows past its first 4 characters; a URL shows all but its password.
    urls = ("url-credentials", "sentry-dsn")
    tails = [value[-8:] for value, rule in LEAKY_ENV.values() if rule in formats - set(urls)]
    assert [tail for tail in tails if tail in shown] == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"Bearer {JWT}", f"Bearer {mask(JWT)}"),
        (f"Authorization: Basic {BASIC_AUTH}", f"Authorization: Basic {mask(BASIC_AUTH)}"),
        (
            f"https://{SENTRY_KEY}:{SENTRY_KEY}@sentry.example.com/7",
            f"https://{mask(SENTRY_KEY + ':' + SENTRY_KEY)}@sentry.example.com/7",
        ),
        (f"hook {SLACK_WEBHOOK}", f"hook {mask(SLACK_WEBHOOK)}"),
    ],
)
def test_mask_text_shows_of_a_credential_only_what_is_not_secret(text: str, shown: str) -> None:
    assert mask_text(text, {}) == shown


def test_mask_text_masks_the_images_secret_env_values_and_no_other() -> None:
    env = {"DB_PASSWORD": DB_PASSWORD, "KEYBOARD": "us", "PASSWORD_MIN_LENGTH": "12"}
    text = f"connect db as app/{DB_PASSWORD} (keyboard us, min length 12)"
    assert mask_text(text, env) == (
        f"connect db as app/{mask(DB_PASSWORD)} (keyboard us, min length 12)"
    )


def test_mask_text_shows_a_urls_user_and_host_and_masks_its_password() -> None:
    text = f"retrying redis://:{REDIS_PASSWORD}@redis:6379/0 and postgres://app:{URL_PASSWORD}@db"
    assert mask_text(text, {}) == (
        f"retrying redis://:{mask(REDIS_PASSWORD)}@redis:6379/0"
        f" and postgres://app:{mask(URL_PASSWORD)}@db"
    )


def test_mask_text_masks_a_key_block_whole_or_to_the_end_of_a_cut_text(
    keys: dict[str, bytes],
) -> None:
    pem = keys["server.key"].decode()
    block = pem.rstrip("\n")
    assert mask_text(f"a\n{pem}b", {}) == (
        f"a\n-----BEGIN PRIVATE KEY----- … ({len(block)} chars, masked)\nb"
    )
    cut = pem[:170]
    assert (
        mask_text(f"head: {cut}", {}) == "head: -----BEGIN PRIVATE KEY----- … (170 chars, masked)"
    )
    openssh = keys["id_rsa"].decode()
    assert _key_body(keys["id_rsa"]) not in mask_text(openssh, {})


def test_mask_text_masks_overlapping_secrets_as_one() -> None:
    # The ENV value is a part of a token: the whole token goes, not just that part.
    env = {"API_TOKEN": STRIPE_KEY[8:24]}
    assert mask_text(f"key {STRIPE_KEY}.", env) == f"key {mask(STRIPE_KEY)}."


def test_mask_text_leaves_public_look_alikes_and_certificates_alone(
    keys: dict[str, bytes],
) -> None:
    text = (
        "pk_live_51NzFAKEq8vLw3pXr7tKm2NqQa9Bc4De sk-1.4.2 TOKEN_TYPE=Bearer "
        f"{ANON_JWT} Authorization: Bearer ${{API_TOKEN}} hf_hub_download\n"
        + keys["public.pem"].decode()
    )
    assert mask_text(text, {"TOKEN_TYPE": "Bearer"}) == text
