"""Secret-sounding names: a variable is judged by its value as well as its name.

``secrets_corpus.txt`` holds ENV lines in the style of real Dockerfiles, each labelled
``secret`` or ``clean``. Every line's verdict is asserted, by the rule itself and on an image
built with all of them; the counts of false positives and false negatives over the corpus are
stated in the docstring of :mod:`pytest_imagecheck.checks.secrets`.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from pytest_imagecheck.checks.secrets import assert_no_secrets, find_secrets, mask
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.image import ImageUnderTest
from pytest_imagecheck.secret_rules import (
    credential_formats,
    is_secret_name,
    is_setting_value,
    rule_for,
)

CORPUS = Path(__file__).with_name("secrets_corpus.txt")
_LINE = re.compile(r"(secret|clean)\s+ENV ([A-Za-z_][A-Za-z0-9_]*)(?:=| )(.*)")


@dataclass(frozen=True)
class Line:
    """One labelled ENV line: ``secret`` is the truth, ``number`` the line in the file."""

    number: int
    secret: bool
    name: str
    value: str


def read_corpus() -> list[Line]:
    lines = []
    for number, text in enumerate(CORPUS.read_text().splitlines(), start=1):
        if not text.strip() or text.startswith("#"):
            continue
        match = _LINE.fullmatch(text.strip())
        assert match, f"{CORPUS.name}:{number} is not `secret|clean ENV NAME=value`: {text}"
        value = match[3]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        lines.append(Line(number, match[1] == "secret", match[2], value))
    return lines


LINES = read_corpus()


def _flagged(line: Line) -> bool:
    return rule_for(line.name, line.value, "secret-env-name") is not None


def _dockerfile_env(lines: list[Line]) -> str:
    """ENV instructions that put each value in Config.Env as written (``$`` escaped)."""
    out = []
    for line in lines:
        value = line.value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        out.append(f'ENV {line.name}="{value}"\n')
    return "".join(out)


def test_corpus_is_large_holds_both_kinds_and_names_each_variable_once() -> None:
    names = [line.name for line in LINES]
    assert len(LINES) >= 80
    assert sum(line.secret for line in LINES) >= 40
    assert sum(not line.secret for line in LINES) >= 40
    assert len(set(names)) == len(names), [n for n in names if names.count(n) > 1]


@pytest.mark.parametrize("line", LINES, ids=[line.name for line in LINES])
def test_corpus_line_gets_its_label(line: Line) -> None:
    verdict = "secret" if _flagged(line) else "clean"
    expected = "secret" if line.secret else "clean"
    assert verdict == expected, f"{CORPUS.name}:{line.number} {line.name}={line.value}"


def test_corpus_counts_match_the_module_docstring() -> None:
    import pytest_imagecheck.checks.secrets as module

    false_positives = sum(_flagged(line) and not line.secret for line in LINES)
    false_negatives = sum(line.secret and not _flagged(line) for line in LINES)
    assert (
        f"{len(LINES)} ENV lines ({sum(line.secret for line in LINES)} secrets): "
        f"{false_positives} false positives, {false_negatives} false negatives"
    ) in " ".join((module.__doc__ or "").split())


# The rule's two halves


@pytest.mark.parametrize(
    "name",
    [
        "PASSWORD_HASHERS",
        "SECRET_ROTATION_DAYS",
        "TOKEN_LIFETIME_MINUTES",
        "PASSWORD_MIN_LENGTH",
        "JWT_PUBLIC_KEY_PATH",
        "JWT_SECRET_ALGORITHM",
        "ENCRYPTION_KEY_ROTATION_DAYS",
        "AUTH_TOKEN_MAX_AGE",
        "STRIPE_PUBLISHABLE_KEY",
        "PASS_MAX_DAYS",
        # issue 12
        "PASSWORD_CHARSET",
        "SECRET_ENGINE",
        "AUTH_PASSWORD_VALIDATORS",
        "TOKEN_STORAGE",
        "GITHUB_TOKEN_PERMISSIONS",
        "SECRET_REF",
        "SECRET_MANAGER",
        "SESSION_SECRET_ROTATE",
        "PASSWORD_REQUIREMENTS",
    ],
)
def test_a_setting_about_a_secret_is_not_named_as_one(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "POSTGRES_PASSWORD",
        "PGPASSWORD",
        "HTPASSWD",
        "RABBITMQ_DEFAULT_PASS",
        "SECRET_KEY_BASE",
        "TOKEN_SECRET",
        "PASSWORD_RESET_SECRET",
        "mysqlRootPassword",
        "AIRFLOW__CORE__FERNET_KEY",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "DJANGO_SECRET_KEY_FALLBACKS",
    ],
)
def test_a_name_that_holds_a_secret_is_named_as_one(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "value",
    [
        *("argon2", "bcrypt", "HS256", "RS256,ES256", "aes-256-gcm", "strict", "lax", "30s"),
        *("1h30m", "15 minutes", "PT15M", "12", "0.5", "512MiB", "scram-sha-256", "base64"),
        "disabled",
    ],
)
def test_algorithm_mode_and_quantity_values_are_settings(value: str) -> None:
    assert is_setting_value(value)


@pytest.mark.parametrize(
    "value",
    ["postgres", "hunter2", "s3cr3t", "admin", "secret", "123456", "dev", "P", "keyboard cat"],
)
def test_word_like_and_numeric_passwords_are_not_settings(value: str) -> None:
    assert not is_setting_value(value)


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("SECRET_KEY_FILE", "Zq8vLw3pXr7tKm2NqQ", True),
        ("PASSWORD_PATH", "Zq8vLw3pXr7tKm2NqQ", True),
        ("API_KEY_FILE", "8f14e45fceea167a5a36dedd4bea2543", True),
        ("AUTH_TOKEN_URL", "Zq8vLw3pXr7tKm2NqQx", True),
        ("SECRET_KEY_FILE", "/run/secrets/django", False),
        ("SECRET_KEY_FILE", "secrets/django.key", False),
        ("PASSWORD_FILE", "db_password", False),
        ("GITHUB_TOKEN_FILE", ".github_token", False),
        ("TOKEN_URL", "https://auth.example.com/oauth/token", False),
        ("TOKEN_AUTH_URL", "auth.example.com/oauth2/token", False),
        ("VAULT_TOKEN_PATH", "${HOME}/.vault-token", False),
        ("PASSWORD_FILE", "", False),
    ],
)
def test_a_name_that_says_where_a_secret_is_is_exempt_only_while_its_value_is_a_place(
    name: str, value: str, secret: bool
) -> None:
    assert (rule_for(name, value, "secret-env-name") == "secret-env-name") is secret


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("--db-password=Zq8vLw3pXr7tKm2NqQ", True),
        ("-Xmx1g -Dspring.datasource.password=Zk3Lw9pQ2mXv", True),
        ("--user=app --password=Zk3Lw9pQ2mXv", True),
        ("https://api.example.com/hook?access_token=Zq8vLw3pXr7tKm2NqQ", True),
        ("X-Api-Key: 8f14e45fceea167a5a36dedd4bea2543", True),
        ('{"db_password": "Zk3Lw9pQ2mXv"}', True),
        ("Server=db;Database=app;User Id=sa;Password=Zk3Lw9pQ2mXv;", True),
        ("AccountName=app;AccountKey=Zm9vYmFyYmF6cXV4Zm9vYmFy==", True),
        ("-Djavax.net.ssl.keyStorePassword=changeit", False),
        ("--password-file=/run/secrets/db", False),
        ("--db-password=${DB_PASSWORD}", False),
        ("--token-ttl=30m --max-old-space-size=4096", False),
        ("https://maps.googleapis.com/maps/api/js?key=", False),
        ("/login?next=/dashboard", False),
    ],
)
def test_a_secret_setting_inside_a_value_is_judged_by_its_own_name(
    value: str, secret: bool
) -> None:
    assert (rule_for("APP_OPTS", value, "secret-env-name") == "secret-option") is secret


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("sk_live_51NzFAKEq8vLw3pXr7tKm2NqQa9Bc4De", "stripe-key"),
        ("rk_test_51NzFAKEq8vLw3pXr7tKm2NqQa9Bc4De", "stripe-key"),
        ("AIzaSyFAKE-q8vLw3pXr7tKm2NqQa9Bc4De5Fg6", "google-api-key"),
        ("glpat-FAKEq8vLw3pXr7tKm2Nq", "gitlab-token"),
        ("sk-proj-FAKEq8vLw3pXr7tKm2NqQa9Bc4De5Fg6Hi7", "openai-api-key"),
        ("sk-FAKEq8vLw3pXr7tKm2NqT3BlbkFJa9Bc4De5Fg6Hi7Jk8Lm9", "openai-api-key"),
        ("hf_FAKEqvLwpXrtKmNqQaBcDeFgHiJkLmNoPq", "huggingface-token"),
        ("npm_FAKEq8vLw3pXr7tKm2NqQa9Bc4De5Fg6Hi7J", "npm-token"),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.Fk2q8Zl0pV3xR9wTcY7bN1mJ4hD6sG5a", "jwt"),
        ("https://hooks.slack.com/services/T0FAKE123/B0FAKE456/q8vLw3pXr7tKm2Nq", "slack-webhook"),
        ("https://0f1e2d3c4b5a69788796a5b4c3d2e1f0@o1.ingest.sentry.io/42", "sentry-dsn"),
        ("redis://:S3cr3tRedisPw@redis:6379/0", "url-credentials"),
        ("dop_v1_" + "0f1e2d3c4b5a6978" * 4, "service-token"),
    ],
)
def test_a_credential_format_is_found_under_any_name(text: str, rule: str) -> None:
    assert rule in [found for found, _ in credential_formats(f"x {text} y")]
    assert rule_for("NOTHING_SECRET_HERE", text, "secret-env-name") == rule


@pytest.mark.parametrize(
    "text",
    [
        "pk_live_51NzFAKEq8vLw3pXr7tKm2NqQa9Bc4De",  # Stripe's publishable key
        "sk-1.4.2",  # a bare sk- is no OpenAI key
        "sk-FAKEq8vLw3pXr7tKm2NqQa9Bc4De",
        "hf_hub_download",
        "npm_config_cache",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",  # unsigned: no credential
        "Authorization: Bearer ${API_TOKEN}",
        "Basic aGVsbG8gd29ybGQ=",  # base64 of no user:password
        "redis://:${REDIS_PASSWORD}@redis:6379/0",
        "https://o1.ingest.sentry.io/42",
    ],
)
def test_public_look_alikes_of_credential_formats_are_not_found(text: str) -> None:
    assert list(credential_formats(text)) == []


def test_supabase_anon_key_is_public_and_its_service_role_key_is_not() -> None:
    anon, service = (
        line.value
        for line in LINES
        if line.name in ("NEXT_PUBLIC_SUPABASE_ANON_KEY", "SERVICE_ROLE")
    )
    assert rule_for("NEXT_PUBLIC_SUPABASE_ANON_KEY", anon, "secret-env-name") is None
    assert rule_for("SUPABASE_ANON_HEADER", f"Bearer {anon}", "secret-env-name") is None
    assert rule_for("SERVICE_ROLE", service, "secret-env-name") == "jwt"


def test_a_weak_password_under_a_secret_name_is_still_a_secret() -> None:
    assert rule_for("POSTGRES_PASSWORD", "postgres", "secret-env-name") == "secret-env-name"
    assert rule_for("ROOT_PASSWORD", "123456", "secret-env-name") == "secret-env-name"
    assert rule_for("TOKEN_ROTATION_DAYS", "ghp_" + "a1" * 18, "x") == "github-token"


# On the engine


@pytest.fixture(scope="module")
def build(
    client: docker.DockerClient, busybox: str, worker_id: str
) -> Iterator[Callable[[str, str], ImageUnderTest]]:
    """``build(name, instructions)``: an image ``FROM busybox``; removed at the end."""
    engine = Engine(client, "tests-secrets-corpus")
    tags: list[str] = []

    def make(name: str, instructions: str) -> ImageUnderTest:
        tag = f"imagecheck-test/secrets-corpus-{name}:1-{worker_id}"
        dockerfile = f"FROM {busybox}\n{instructions}".encode()
        client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True)
        tags.append(tag)
        return engine.image(tag)

    yield make
    for tag in tags:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, noprune=True)


def test_an_image_with_the_whole_corpus_reports_exactly_its_secrets(
    build: Callable[[str, str], ImageUnderTest],
) -> None:
    image = build("all", _dockerfile_env(LINES))
    for line in LINES:
        assert image.env[line.name] == line.value
    found = {f.id for f in find_secrets(image) if f.id.startswith("env:")}
    assert sorted(found) == sorted(f"env:{line.name}" for line in LINES if line.secret)


ISSUE_SETTINGS = {
    "PASSWORD_HASHERS": "argon2",
    "SECRET_ROTATION_DAYS": "30",
    "TOKEN_LIFETIME_MINUTES": "15",
    "PASSWORD_MIN_LENGTH": "12",
    "JWT_PUBLIC_KEY_PATH": "/etc/jwt/public.pem",
}


def test_settings_named_after_secrets_pass_and_a_weak_password_beside_them_fails(
    build: Callable[[str, str], ImageUnderTest],
) -> None:
    settings = "".join(f"ENV {name}={value}\n" for name, value in ISSUE_SETTINGS.items())
    assert_no_secrets(build("settings", settings))
    image = build("settings-and-password", settings + "ENV POSTGRES_PASSWORD=postgres\n")
    with pytest.raises(AssertionError) as failure:
        assert_no_secrets(image)
    assert str(failure.value) == (
        f"image {image.ref} carries 1 secret:\n"
        f"  env:POSTGRES_PASSWORD (rule secret-env-name) ENV value {mask('postgres')}\n"
        'accept one with accept={"env:POSTGRES_PASSWORD": "why"}'
    )


def test_build_arg_defaults_are_judged_by_value_too(
    build: Callable[[str, str], ImageUnderTest],
) -> None:
    image = build(
        "args",
        "ARG PASSWORD_MIN_LENGTH=12\nARG TOKEN_EXPIRY=1h\nARG JWT_ALGORITHM=HS256\n"
        "ARG DB_PASS=app\nRUN echo $PASSWORD_MIN_LENGTH $TOKEN_EXPIRY $DB_PASS > /args\n",
    )
    assert sorted(f.id for f in find_secrets(image)) == ["history:DB_PASS"]
