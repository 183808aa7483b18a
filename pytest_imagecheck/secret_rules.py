"""What a secret looks like: the rules the secrets check applies, and how a secret is shown.

Pure functions over names and strings, used by the check (``checks.secrets``) and by every
place that shows text from an image or a container (log tails, evidence), which mask it with
:func:`mask_text` (or, for the image's secret ENV values alone, :func:`mask_secrets`).
:data:`RULES` lists every rule.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from .layers import Keep


@dataclass(frozen=True)
class Rule:
    """One kind of secret the check looks for.

    ``looks_at`` names where: ``env`` (``Config.Env``), ``history`` (build args, ARG defaults
    and commands in the history) or ``file`` (files in any layer). ``pattern``, when set, is
    a credential format matched in any value, whatever its name; where it has a group named
    ``secret`` (or ``secret1``, ``secret2``, ... in alternatives), the group that matched is
    the secret (a URL's password) and the rest may be shown; otherwise the whole match is.
    ``spares``, when set, says that a match is no secret after all (a ``${VAR}`` in place of
    a URL's password, a JWT whose payload says it is a public key).
    """

    name: str
    description: str
    looks_at: tuple[str, ...]
    pattern: re.Pattern[str] | None = None
    spares: Callable[[re.Match[str]], bool] | None = None


URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:(?P<secret>[^\s/@]+)@")


_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")


# Vendor formats, each from the vendor's documented token shape: a fixed prefix, then a
# length that random text of that alphabet rarely reaches. Public counterparts are not
# matched: Stripe's pk_live_/pk_test_, a bare `sk-` (scikit-learn versions, SKUs).
_STRIPE = re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}|\bwhsec_[0-9A-Za-z+/=]{24,}")
_GOOGLE_API_KEY = re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")
_GITLAB = re.compile(r"\bgl(?:pat|dt|ptt|rt|cbt|soat|ffct|oas)-[0-9A-Za-z_-]{20,}(?:\.[0-9a-z.]+)?")
_OPENAI = re.compile(
    r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]{8,}"
)
_ANTHROPIC = re.compile(r"\bsk-ant-(?:api|admin|oat|ort)\d\d-[A-Za-z0-9_-]{20,}")
_HUGGING_FACE = re.compile(r"\bhf_[A-Za-z0-9]{30,}")
_NPM = re.compile(r"\bnpm_[A-Za-z0-9]{36}(?![A-Za-z0-9])")
_PYPI = re.compile(r"\bpypi-AgE[A-Za-z0-9_-]{40,}")
_SENDGRID = re.compile(r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_DOCKER_HUB = re.compile(r"\bdckr_(?:pat|oat)_[A-Za-z0-9_-]{24,}")
# Other services' tokens with a documented prefix: Grafana (glsa_, glc_), DigitalOcean
# (dop_v1_, doo_v1_, dor_v1_), Shopify (shpat_, shpca_, shppa_, shpss_), Linear (lin_api_),
# Telegram bots (<bot id>:AA...), Atlassian (ATATT3), Postman (PMAK-), New Relic (NRAK-),
# HashiCorp Vault (hvs., hvb.), Doppler (dp.st. ...), Databricks (dapi), age
# (AGE-SECRET-KEY-1), Supabase (sbp_, sb_secret_), Pulumi (pul-).
_SERVICE_TOKENS = re.compile(
    r"\bglsa_[A-Za-z0-9]{32}_[0-9a-f]{8}\b|\bglc_[A-Za-z0-9+/]{32,}={0,2}"
    r"|\bdo[opr]_v1_[0-9a-f]{64}\b|\bshp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}\b"
    r"|\blin_api_[A-Za-z0-9]{40,}|\b\d{8,10}:AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])"
    r"|\bATATT3[A-Za-z0-9_=-]{100,}|\bPMAK-[0-9a-f]{24}-[0-9a-f]{34}\b|\bNRAK-[A-Z0-9]{27}\b"
    r"|\bhv[sb]\.[A-Za-z0-9_-]{24,}|\bdp\.(?:st|pt|ct|sa|scim|audit)\.[A-Za-z0-9_.-]{40,}"
    r"|\bdapi[0-9a-f]{32}(?:-\d+)?\b|\bAGE-SECRET-KEY-1[0-9A-Z]{58}\b"
    r"|\bsbp_[0-9a-f]{40}\b|\bsb_secret_[A-Za-z0-9_-]{20,}|\bpul-[0-9a-f]{40}\b"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.(?P<payload>eyJ[A-Za-z0-9_-]*)\.[A-Za-z0-9_-]{16,}")
_SLACK_WEBHOOK = re.compile(
    r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,}"
)
_DISCORD_WEBHOOK = re.compile(
    r"https://(?:canary\.|ptb\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{40,}"
)
# A DSN's public key (32 hex digits) as the URL's user, a numeric project id last: any host,
# since Sentry is also self-hosted.
_SENTRY_DSN = re.compile(
    r"\bhttps?://(?P<secret>[0-9a-f]{32}(?::[0-9a-f]{32})?)@[\w.-]+(?::\d+)?/(?:[\w.-]+/)*\d+"
    r"(?![\w/])"
)
# A header's credentials: after Authorization (any scheme), after `Bearer`, or after `Basic`
# (base64 of user:password).
_AUTHORIZATION = re.compile(
    r"(?i:\b(?:proxy-)?authorization)[ \t]*[:=][ \t]*[\"']?[A-Za-z]+[ \t]+"
    r"(?P<secret1>[^\s\"',;]{8,})"
    r"|\bBearer[ \t]+(?P<secret2>[A-Za-z0-9._~+/-]{20,}=*)"
    r"|\bBasic[ \t]+(?P<secret3>[A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])"
)


def _public_jwt(match: re.Match[str]) -> bool:
    """A JWT whose payload says it is meant to be public: Supabase's ``anon`` key."""
    payload = match[1] + "=" * (-len(match[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return False
    return isinstance(claims, dict) and claims.get("role") == "anon"


def _no_header_secret(match: re.Match[str]) -> bool:
    """An Authorization header that holds a reference or a public JWT, or a Basic value that
    is no user:pass."""
    token = match[1] or match[2]
    if token is not None:
        jwt = _JWT.fullmatch(token)
        return is_inert(token) or (jwt is not None and _public_jwt(jwt))
    if match[3] is not None:
        try:
            return b":" not in base64.b64decode(match[3] + "=" * (-len(match[3]) % 4))
        except (binascii.Error, ValueError):
            return True
    return False


def _url_password_is_inert(match: re.Match[str]) -> bool:
    return is_inert(match[1])


#: Every rule, in the order findings are explained; README renders this table.
RULES: tuple[Rule, ...] = (
    Rule(
        "secret-env-name",
        "ENV variable whose name holds a secret (PASSWORD, PASS, PASSPHRASE, SECRET, TOKEN, "
        "CREDENTIALS, API_KEY, PRIVATE_KEY, ACCESS_KEY, ...; not a setting about one such as "
        "PASSWORD_MIN_LENGTH or TOKEN_LIFETIME_MINUTES) with a value that can be a secret "
        "(not a number, duration, flag, algorithm or mode name, path or reference); a name "
        "that says where a secret is (*_FILE, *_PATH, *_DIR, *_URL, *_URI, *_ENDPOINT) only "
        "when its value is no path, file name, URL or host",
        ("env",),
    ),
    Rule(
        "secret-build-arg",
        "build arg whose name holds a secret, judged as for ENV, with its value in the history "
        "(`|N NAME=value` before a RUN, or an `ARG NAME=default`)",
        ("history",),
    ),
    Rule(
        "aws-access-key",
        "AWS access key ID (AKIA/ASIA and 16 more characters)",
        ("env", "history"),
        re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ),
    Rule(
        "github-token",
        "GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
        ("env", "history"),
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    Rule(
        "slack-token",
        "Slack token (xoxb-, xoxa-, xoxp-, xoxr-, xoxs-)",
        ("env", "history"),
        re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
    ),
    Rule(
        "stripe-key",
        "Stripe secret or restricted key (sk_live_, sk_test_, rk_live_, rk_test_) or webhook "
        "secret (whsec_); not the publishable pk_ keys",
        ("env", "history"),
        _STRIPE,
    ),
    Rule(
        "google-api-key",
        "Google API key (AIza and 35 more characters)",
        ("env", "history"),
        _GOOGLE_API_KEY,
    ),
    Rule(
        "gitlab-token",
        "GitLab token (glpat-, gldt-, glptt-, glrt-, glcbt-, glsoat-, glffct-, gloas-)",
        ("env", "history"),
        _GITLAB,
    ),
    Rule(
        "openai-api-key",
        "OpenAI API key (sk-proj-, sk-svcacct-, sk-admin-, or sk-... with T3BlbkFJ in it; a "
        "bare `sk-` is not enough)",
        ("env", "history"),
        _OPENAI,
    ),
    Rule(
        "anthropic-api-key", "Anthropic API key (sk-ant-api03-...)", ("env", "history"), _ANTHROPIC
    ),
    Rule(
        "huggingface-token",
        "Hugging Face token (hf_ and 30 or more letters and digits)",
        ("env", "history"),
        _HUGGING_FACE,
    ),
    Rule(
        "npm-token", "npm access token (npm_ and 36 letters and digits)", ("env", "history"), _NPM
    ),
    Rule("pypi-token", "PyPI API token (pypi-AgE...)", ("env", "history"), _PYPI),
    Rule("sendgrid-api-key", "SendGrid API key (SG.<22>.<43>)", ("env", "history"), _SENDGRID),
    Rule(
        "docker-hub-token",
        "Docker Hub access token (dckr_pat_, dckr_oat_)",
        ("env", "history"),
        _DOCKER_HUB,
    ),
    Rule(
        "service-token",
        "another service's token with a documented prefix: Grafana (glsa_, glc_), DigitalOcean "
        "(dop_v1_), Shopify (shpat_, shpss_, ...), Linear (lin_api_), Telegram bot "
        "(<id>:AA...), Atlassian (ATATT3), Postman (PMAK-), New Relic (NRAK-), HashiCorp Vault "
        "(hvs., hvb.), Doppler (dp.st., ...), Databricks (dapi), age (AGE-SECRET-KEY-1), "
        "Supabase (sbp_, sb_secret_), Pulumi (pul-)",
        ("env", "history"),
        _SERVICE_TOKENS,
    ),
    Rule(
        "jwt",
        "signed JSON Web Token (`eyJ<header>.eyJ<payload>.<signature>`), e.g. after `Bearer`; "
        "not one whose "
        'payload says `"role": "anon"` (Supabase\'s public anon key)',
        ("env", "history"),
        _JWT,
        _public_jwt,
    ),
    Rule(
        "authorization-header",
        "credentials of an HTTP Authorization header (`Authorization: <scheme> <credentials>`, "
        "`Bearer <token>`, `Basic <base64 of user:password>`); not a `${VAR}` reference",
        ("env", "history"),
        _AUTHORIZATION,
        _no_header_secret,
    ),
    Rule(
        "slack-webhook",
        "Slack incoming webhook URL (https://hooks.slack.com/services/...)",
        ("env", "history"),
        _SLACK_WEBHOOK,
    ),
    Rule(
        "discord-webhook",
        "Discord webhook URL (https://discord.com/api/webhooks/<id>/<token>)",
        ("env", "history"),
        _DISCORD_WEBHOOK,
    ),
    Rule(
        "sentry-dsn",
        "Sentry DSN with its key (`https://<32 hex digits>@<host>/<project id>`), any host",
        ("env", "history"),
        _SENTRY_DSN,
    ),
    Rule(
        "private-key",
        "PEM private key (`-----BEGIN ... PRIVATE KEY-----`) in a value; in a file of up to "
        "1 MiB whatever its name, by content (a PEM, OpenSSH, PGP, PuTTY or SSH2 private key "
        "within its first 16 KiB, or anywhere in a file that starts with a PEM block, such as "
        "a certificate chain followed by its key, or in a *.pem / *.key file); an SSH key file "
        "(id_rsa, id_dsa, id_ecdsa, id_ed25519) unless its content is a public key or "
        "certificate (not measured when its content was not read). Certificates and public "
        "keys are not findings, nor keys inside published packages (site-packages, "
        "node_modules, ...)",
        ("env", "history", "file"),
        _PRIVATE_KEY,
    ),
    Rule(
        "url-credentials",
        "URL with a password in it (`scheme://user:password@host`, `redis://:password@host`)",
        ("env", "history"),
        URL_CREDENTIALS,
        _url_password_is_inert,
    ),
    Rule(
        "secret-option",
        "a setting whose name holds a secret, written inside another value and judged as for "
        "ENV: an option (`--db-password=...`, `-Dspring.datasource.password=...`), a "
        "`NAME=value` pair, or a URL query parameter (`?access_token=...`)",
        ("env", "history"),
    ),
    Rule(
        "env-file",
        ".env or .env.* file (templates .env.example, .sample, .template, .dist are skipped)",
        ("file",),
    ),
    Rule("git-credentials", ".git-credentials file", ("file",)),
    Rule("netrc-password", ".netrc or _netrc with a password", ("file",)),
    Rule(
        "npmrc-token",
        ".npmrc with _authToken, _auth or _password set literally (not `${NPM_TOKEN}`)",
        ("file",),
    ),
    Rule("pypirc-password", ".pypirc with a password", ("file",)),
    Rule(
        "docker-config-auth",
        ".docker/config.json with credentials under auths (auth, password, identitytoken)",
        ("file",),
    ),
    Rule("aws-credentials-file", ".aws/credentials with aws_secret_access_key", ("file",)),
)


# A name mentions a secret when one of its words is in _SECRET_WORDS or ends in one of
# _SECRET_ENDINGS (PGPASSWORD, HTPASSWD), or when it has KEY after one of _KEY_QUALIFIERS
# (API_KEY, yes; AccountKey in an Azure connection string, yes; GPG_KEY, the public
# fingerprint in python images, no).
# fmt: off
_SECRET_WORDS = frozenset({
    "PASSWORD", "PASSWD", "PASSPHRASE", "PASS", "SECRET", "TOKEN", "CREDENTIALS", "CREDENTIAL",
    "APIKEY", "ACCESSKEY", "PRIVATEKEY",
})


_SECRET_ENDINGS = ("PASSWORD", "PASSWD")


_KEY_QUALIFIERS = frozenset({
    "API", "PRIVATE", "ACCESS", "SECRET", "AUTH", "SIGNING", "ENCRYPTION", "MASTER", "LICENSE",
    "HMAC", "JWT", "SESSION", "FERNET", "APP", "ACCOUNT", "SHARED", "STORAGE", "SERVICE",
    "ADMIN", "ROOT", "DEPLOY", "WEBHOOK",
})


# Words after the last one that mentions the secret that say where the secret is
# (POSTGRES_PASSWORD_FILE, TOKEN_URL): the variable holds a place, so it is a setting only
# while its value is one (a path, a file name, a URL); SECRET_KEY_FILE=Zq8vLw3p... is a secret.
_WHERE_WORDS = frozenset({
    "FILE", "FILES", "PATH", "DIR", "DIRECTORY", "URL", "URI", "ENDPOINT",
})


# A word after the last one that mentions the secret, saying that the variable is a setting
# about the secret rather than the secret: where it is (_WHERE_WORDS, SECRET_MOUNT_PATH's
# MOUNT), what it is called (SECRET_NAME, AWS_ACCESS_KEY_ID, SECRET_REF), how it is made,
# checked, stored or allowed (PASSWORD_HASHERS, JWT_SECRET_ALGORITHM, PASSWORD_POLICY,
# SECRET_BACKEND, PASSWORD_CHARSET, AUTH_PASSWORD_VALIDATORS, SECRET_ENGINE, TOKEN_STORAGE,
# GITHUB_TOKEN_PERMISSIONS) and how long it lives (TOKEN_LIFETIME_MINUTES, PASSWORD_MIN_LENGTH).
_SETTING_WORDS = _WHERE_WORDS | frozenset({
    # where, and what it is called
    "LOCATION", "MOUNT", "HOST", "PORT", "REGION", "NAMESPACE", "NAME", "ID", "USER",
    "USERNAME", "HEADER", "PREFIX", "FIELD", "PARAM", "ISSUER", "AUDIENCE", "SCOPE", "SCOPES",
    "REF", "REFS", "REFERENCE", "ARN", "SOURCE", "ENV", "VAR",
    # how it is made, checked, stored or allowed
    "TYPE", "KIND", "FORMAT", "ENCODING", "ENCODER", "MODE", "POLICY", "COMPLEXITY",
    "STRENGTH", "VERSION", "ALGORITHM", "ALGORITHMS", "ALGO", "ALG", "HASHER", "HASHERS",
    "HASHING", "ROUNDS", "ITERATIONS", "ENCRYPTION", "PROVIDER", "BACKEND", "STORE",
    "STORAGE", "CACHE", "ENGINE", "MANAGER", "CLASS", "STRATEGY", "METHOD", "METHODS",
    "GENERATOR", "TEMPLATE", "CHARSET", "CHARS", "CHARACTERS", "ALPHABET", "PATTERN", "REGEX",
    "VALIDATOR", "VALIDATORS", "VALIDATION", "PERMISSION", "PERMISSIONS", "ROLE", "ROLES",
    "CLAIM", "CLAIMS", "HISTORY", "REUSE", "LOCKOUT", "REQUIREMENT", "REQUIREMENTS", "RULE",
    "RULES", "CONSTRAINTS",
    "ENABLED", "DISABLED", "REQUIRED", "CMD", "COMMAND",
    # how long it lives, how big it is
    "TTL", "EXPIRY", "EXPIRE", "EXPIRES", "EXPIRATION", "LIFETIME", "TIMEOUT", "AGE",
    "ROTATION", "ROTATE", "INTERVAL", "PERIOD", "SCHEDULE", "FREQUENCY", "DURATION", "MS",
    "SECONDS", "SECS", "MINUTES", "MINS", "HOURS", "DAYS", "WEEKS", "MIN", "MAX", "LENGTH",
    "LEN", "SIZE", "BITS", "COUNT", "LIMIT", "RETRIES", "ATTEMPTS",
})


# Anywhere in a name: a key meant to be seen (JWT_PUBLIC_KEY, STRIPE_PUBLISHABLE_KEY).
_PUBLIC_WORDS = frozenset({"PUBLIC", "PUBLISHABLE"})


_FLAGS = frozenset({"0", "1", "true", "false", "yes", "no", "on", "off"})


_PLACEHOLDERS = frozenset({
    "changeme", "change-me", "change_me", "changeit", "replaceme", "replace-me", "replace_me",
    "placeholder", "none", "null", "nil", "unset", "undefined", "todo", "tbd", "redacted",
})


# fmt: on
# ${VAR}, $VAR, ${VAR:-x}, {{ template }}, <your-token>, xxxx / ****, a path (/a, ./a, ~/a,
# ${HOME}/a, C:\a), a file name with a key or config file's extension (key.json,
# secrets/jwt.key), and a secret manager's name for a secret: an AWS ARN, a GCP secret's
# resource name, 1Password's op://, bank-vaults' vault:path#key, vals' ref+vault://, berglas'
# sm:// and berglas://.
_REFERENCE = re.compile(
    r"\$\{?\w+(?::?-[^}]*)?\}?|\{\{.*\}\}|<[^<>]+>|(.)\1*"
    r"|(?:\.{1,2}|~|file:/|\$\{?\w+\}?)?/[\w.@/-]*"
    r"|[A-Za-z]:\\[\w.@ \\-]*"
    r"|(?:[\w.@+-]+/)*[\w@+-][\w.@+-]*\.(?i:json|pem|key|crt|cer|der|p8|p12|pfx|jks|keystore|"
    r"txt|ya?ml|toml|ini|conf|cfg|env|properties|asc|gpg|ppk|pub)"
    r"|arn:aws[\w-]*:[\w-]+:\S*|projects/[\w-]+/secrets/[\w.-]+(?:/versions/\w+)?"
    r"|(?:op|ref\+\w+|sm|berglas|vault|awssm|gcpsm|azkv)://\S+|vault:[\w/.-]+(?:#\w+)?"
)


# A place, for a name that says where a secret is: a URL (scheme://...), a relative path, a
# host (db.internal, localhost:8200), or a bare lowercase file name (db_password,
# .github_token), besides
# what _REFERENCE accepts.
_PLACE = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://\S*|[\w.@+-]*(?:/[\w.@+-]*)+"
    r"|(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?::\d+)?|localhost(?::\d+)?|\.?[a-z][a-z_.-]*"
)


# Values of a setting, which no one picks as a password: a number of up to 3 digits (a
# 4-digit or longer one may be a PIN: `ROOT_PASSWORD=123456` is a secret), a decimal, a
# quantity with its unit (30s, 1h30m, 15 minutes, 512MiB, ISO 8601 PT15M), and the names of
# algorithms, encodings and modes (argon2, bcrypt, HS256, aes-256-gcm, base64, strict, lax)
# and how often (daily, weekly), alone or in a comma-separated list. Arbitrary words are not
# on the list: postgres,
# hunter2 and s3cr3t are passwords, weak ones.
_UNIT = (
    r"(?:ns|us|ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?|y|years?"
    r"|[kmgt]i?b|bytes?)"
)


_SETTING_ITEM = (
    r"[+-]?\d{1,3}|[+-]?\d*\.\d+"
    rf"|(?:\d+(?:\.\d+)?\s*{_UNIT})+"
    r"|P(?=\d|T\d)(?:\d+[YMWD])*(?:T(?:\d+(?:\.\d+)?[HMS])+)?"
    r"|argon2(?:i|d|id)?|bcrypt(?:[-_]sha256)?|s?crypt|yescrypt|pbkdf2(?:[-_]sha(?:1|256|512))?"
    r"|scram-sha-?(?:1|256)|sha-?(?:1|224|256|384|512)|sha3-?(?:224|256|384|512)|md5"
    r"|(?:hs|rs|es|ps)(?:256|384|512)|es256k|eddsa|ed(?:25519|448)|x25519|ecdsa|ecdh-es"
    r"|rsa(?:-oaep(?:-256)?)?|hmac(?:[-_]?sha-?(?:1|256|384|512))?"
    r"|aes(?:-?(?:128|192|256))?(?:-(?:gcm|cbc|ctr|cfb|ofb|ecb|siv))?"
    r"|a(?:128|192|256)(?:gcm|kw|gcmkw|cbc-hs(?:256|384|512))|x?chacha20(?:-poly1305)?"
    r"|fernet|blowfish|3des|base64(?:url)?|base32|hex|utf-?8|pem|der|pkcs#?(?:1|8|12)"
    r"|jwt|jwe|jws|opaque|strict|lax|required|optional|preferred|prefer|auto|always|never"
    r"|enabled|disabled|enable|disable|bearer|basic|digest|plain|headers?|cookies?|query"
    r"|hourly|daily|weekly|monthly|quarterly|yearly|annually"
)


_SETTING_VALUE = re.compile(rf"(?i)(?:{_SETTING_ITEM})(?:\s*,\s*(?:{_SETTING_ITEM}))*")


_MASK_PREFIX_FROM = 16  # shorter values show no characters at all


def mask(value: str) -> str:
    """A secret value as it may be shown: its first 4 characters, if it is long, and its length.

    >>> mask("AKIAIOSFODNN7EXAMPLE")
    'AKIA… (20 chars)'
    >>> mask("hunter2")
    '*** (7 chars)'
    """
    if len(value) < _MASK_PREFIX_FROM:
        return f"*** ({len(value)} chars)"
    return f"{value[:4]}… ({len(value)} chars)"


def name_words(name: str) -> list[str]:
    """``mysqlRootPassword`` -> ``["MYSQL", "ROOT", "PASSWORD"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()
    return [word for word in re.split(r"[^A-Z0-9]+", spaced) if word]


def _after_the_secret(name: str) -> list[str] | None:
    """The words of ``name`` after the last one that mentions a secret; None when none does
    (or when a word says the value is meant to be seen, such as PUBLIC)."""
    words = name_words(name)
    if _PUBLIC_WORDS.intersection(words):
        return None
    marks = [
        i
        for i, word in enumerate(words)
        if word in _SECRET_WORDS
        or word.endswith(_SECRET_ENDINGS)
        or (word == "PWD" and len(words) > 1)
        or (word == "KEY" and i > 0 and words[i - 1] in _KEY_QUALIFIERS)
    ]
    return words[marks[-1] + 1 :] if marks else None


def is_secret_name(name: str) -> bool:
    """Whether a variable called ``name`` holds a secret, by its name alone.

    >>> [is_secret_name(n) for n in ("DB_PASSWORD", "PASSWORD_MIN_LENGTH", "JWT_PUBLIC_KEY")]
    [True, False, False]
    """
    after = _after_the_secret(name)
    return after is not None and not _SETTING_WORDS.intersection(after)


def names_a_place(name: str) -> bool:
    """Whether ``name`` says where a secret is (``*_FILE``, ``*_PATH``, ``*_DIR``, ``*_URL``,
    ``*_URI``, ``*_ENDPOINT`` after the secret's word, and no other setting word).

    Such a variable holds no secret only while its value is a place (:func:`is_place`).

    >>> [names_a_place(n) for n in ("SECRET_KEY_FILE", "TOKEN_URL", "PASSWORD_FILE_MODE")]
    [True, True, False]
    """
    after = _after_the_secret(name)
    settings = _SETTING_WORDS.intersection(after or ())
    return bool(settings) and settings <= _WHERE_WORDS


def is_place(value: str) -> bool:
    """Whether ``value`` is a place a secret can be kept at: a path, a file name, a URL or a
    host, a reference, or empty.

    >>> [is_place(v) for v in ("/run/secrets/db", "secrets/jwt.key", "db_password",
    ...                        "https://vault:8200/v1", "Zq8vLw3pXr7tKm2NqQ")]
    [True, True, True, True, False]
    """
    return is_inert(value) or _PLACE.fullmatch(value.strip().strip("\"'")) is not None


def is_inert(value: str) -> bool:
    """True for values that hold no secret: empty, a flag, a placeholder, a reference (``${X}``,
    a secret manager's name for a secret such as ``arn:aws:...`` or ``op://...``), a path, or
    the name of a key or config file (``key.json``).

    >>> [is_inert(v) for v in ("${DB_PASSWORD}", "op://prod/db/password", "key.json", "hunter2")]
    [True, True, True, False]
    """
    text = value.strip().strip("\"'")
    return (
        not text
        or text.lower() in _FLAGS
        or text.lower() in _PLACEHOLDERS
        or _REFERENCE.fullmatch(text) is not None
    )


def is_setting_value(value: str) -> bool:
    """True for a value no one picks as a password: a small number, a duration or size, or the
    name of an algorithm, encoding or mode (see ``_SETTING_ITEM``).

    >>> [is_setting_value(v) for v in ("argon2", "30s", "HS256", "strict", "postgres", "123456")]
    [True, True, True, True, False, False]
    """
    return _SETTING_VALUE.fullmatch(value.strip().strip("\"'")) is not None


def _format_matches(text: str) -> Iterator[tuple[Rule, re.Match[str]]]:
    """Each credential format's matches in ``text``, less those its rule spares."""
    for rule in RULES:
        for match in rule.pattern.finditer(text) if rule.pattern else ():
            if rule.spares is None or not rule.spares(match):
                yield rule, match


def credential_formats(text: str) -> Iterator[tuple[str, str]]:
    """``(rule name, matched text)`` for each known credential format in ``text``.

    >>> list(credential_formats("pay with sk_live_51NzFAKEq8vLw3pXr7tKm, show pk_live_51NzFAKE"))
    [('stripe-key', 'sk_live_51NzFAKEq8vLw3pXr7tKm')]
    """
    for rule, match in _format_matches(text):
        yield rule.name, match[0]


# A setting written inside a value: `--db-password=x`, `-Dspring.datasource.password=x` or
# `NAME=x` (at the start, or after a space, quote, comma, semicolon or brace), a URL's query
# parameter (`?access_token=x`), a header (`X-Api-Key: x`) or a JSON member (`"password":
# "x"`). Groups: name and value, in the pair of groups of the form that matched.
_INNER_SETTING = re.compile(
    r"(?:^|(?<=[\s\"',;{]))(?:-D|--?)?([A-Za-z_][\w.-]*)=(\"[^\"]*\"|'[^']*'|[^\s\"',;&]*)"
    r"|[?&]([A-Za-z_][\w.-]*)=([^&#\s\"']*)"
    r"|(?:^|(?<=[\s,;{]))([A-Za-z][\w.-]*):[ \t]+([^\s\"',;&]+)"
    r"|\"([\w.-]+)\"\s*:\s*\"((?:[^\"\\]|\\.)*)\""
)


def _secret_by_name(name: str, value: str) -> bool:
    """Whether ``NAME=value`` holds a secret by its name: the name holds one (or says where one
    is, and the value is no place) and the value can be one."""
    if is_inert(value) or is_setting_value(value):
        return False
    return is_secret_name(name) or (names_a_place(name) and not is_place(value))


def secret_settings(text: str) -> Iterator[tuple[str, int, int]]:
    """``(name, start, end)`` of each secret setting written inside ``text``: ``end - start``
    is its value's span, judged as for ENV by its name.

    >>> [name for name, *_ in secret_settings("-Xmx1g --db-password=Zq8vLw3p --user=app")]
    ['db-password']
    """
    for match in _INNER_SETTING.finditer(text):
        group = next(g for g in (1, 3, 5, 7) if match[g] is not None)
        if _secret_by_name(match[group], match[group + 1]):
            yield match[group], match.start(group + 1), match.end(group + 1)


def rule_for(name: str, value: str, name_rule: str) -> str | None:
    """The rule ``NAME=value`` breaks: a credential format first, then a secret's name, then a
    secret setting written inside the value (``APP_OPTS=--db-password=...``).

    >>> [rule_for("STRIPE_KEY", "sk_live_51NzFAKEq8vLw3pXr7tKm", "secret-env-name"),
    ...  rule_for("SECRET_KEY_FILE", "Zq8vLw3pXr7tKm2NqQ", "secret-env-name"),
    ...  rule_for("SECRET_KEY_FILE", "/run/secrets/key", "secret-env-name"),
    ...  rule_for("APP_OPTS", "--db-password=Zq8vLw3pXr7tKm2NqQ", "secret-env-name")]
    ['stripe-key', 'secret-env-name', None, 'secret-option']
    """
    known = next(credential_formats(value), None)
    if known:
        return known[0]
    if _secret_by_name(name, value):
        return name_rule
    return "secret-option" if next(secret_settings(value), None) else None


def mask_secrets(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every secret ENV value of ``env`` masked (for log tails and messages).

    >>> mask_secrets("token is ghp_0123456789abcdefghij", {"GH_TOKEN": "ghp_0123456789abcdefghij"})
    'token is ghp_… (24 chars)'
    """
    secrets = [v for name, v in env.items() if rule_for(name, v, "secret-env-name")]
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, mask(value))
    return text


# A private key block, from its BEGIN line to its END line, or to the end of a cut text: PEM
# (the END line names the same label), ssh.com's SSH2, and PuTTY's file up to its MAC.
_KEY_BLOCK = re.compile(
    r"(-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----).*?(?:-----END \2-----|\Z)"
    r"|(---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----).*?"
    r"(?:---- END SSH2 ENCRYPTED PRIVATE KEY ----|\Z)"
    r"|(PuTTY-User-Key-File-\d+:[^\r\n]*).*?(?:Private-MAC:[^\S\r\n]*[0-9a-fA-F]*|\Z)",
    re.S,
)


def mask_text(text: str, env: Mapping[str, str]) -> str:
    r"""``text`` as it may be shown (evidence, log tails): every secret in it masked.

    Masked are the image's secret ENV values (``env``, as :func:`mask_secrets` masks them),
    every match of a credential format of :data:`RULES` (only the secret part where the format
    has one: a URL's password, a header's credentials), and whole private key blocks, from the
    BEGIN line to the END line or to the end of a cut text, shown by their BEGIN line and
    length. Overlapping secrets are masked as one. Settings such as ``password=x`` in free
    text are not masked: in logs and tracebacks they are mostly code (``password=password``).

    >>> mask_text("GET https://app:hunter2@api/ with ghp_" + "a1" * 18, {"PW": "x"})
    'GET https://app:*** (7 chars)@api/ with ghp_… (40 chars)'
    >>> mask_text("db: s3cr3t-and-more", {"DB_PASSWORD": "s3cr3t-and-more"})
    'db: *** (15 chars)'
    >>> key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA" + "x" * 1600
    >>> mask_text("$ cat /opt/app/signing\n" + key + "\n-----END RSA PRIVATE KEY-----\nok", {})
    '$ cat /opt/app/signing\n-----BEGIN RSA PRIVATE KEY----- … (1678 chars, masked)\nok'
    >>> mask_text("head: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAA", {})
    'head: -----BEGIN PRIVATE KEY----- … (58 chars, masked)'
    """
    spans: list[tuple[int, int, str | None]] = []  # (start, end, BEGIN line of a key block)
    for match in _KEY_BLOCK.finditer(text):
        spans.append((match.start(), match.end(), match[1] or match[3] or match[4]))
    secrets = {v for name, v in env.items() if v and rule_for(name, v, "secret-env-name")}
    for value in secrets:
        start = text.find(value)
        while start != -1:
            spans.append((start, start + len(value), None))
            start = text.find(value, start + len(value))
    for rule, match in _format_matches(text):
        if rule.pattern is _PRIVATE_KEY:
            continue  # whole blocks are masked above
        groups = [name for name in match.groupdict() if name.startswith("secret")]
        group = next((name for name in groups if match[name] is not None), 0)
        spans.append((match.start(group), match.end(group), None))
    merged: list[tuple[int, int, str | None]] = []
    for start, end, begin in sorted(spans, key=lambda span: (span[0], span[2] is None)):
        if merged and start < merged[-1][1]:
            first, last, shown = merged[-1]
            merged[-1] = (first, max(last, end), shown)
        else:
            merged.append((start, end, begin))
    out, at = [], 0
    for start, end, begin in merged:
        hidden = text[start:end]
        out.append(text[at:start])
        out.append(f"{begin} … ({len(hidden)} chars, masked)" if begin else mask(hidden))
        at = end
    return "".join(out) + text[at:]


# --- which files may hold a secret ------------------------------------------------------

#: SSH private key files by name; judged by content when it was read.
SSH_KEY_FILES = frozenset(["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"])
_NETRC_PASSWORD = re.compile(r"\bpassword\s+(\S+)")
# Credential files by name (or the last two parts of their path): the rule, and the setting
# that must hold a literal value (None: the file alone is the finding).
CREDENTIAL_FILES: dict[str, tuple[str, re.Pattern[str] | None]] = {
    ".git-credentials": ("git-credentials", None),
    ".netrc": ("netrc-password", _NETRC_PASSWORD),
    "_netrc": ("netrc-password", _NETRC_PASSWORD),
    ".npmrc": ("npmrc-token", re.compile(r"(?m)^\s*\S*_(?:authToken|auth|password)\s*=\s*(\S+)")),
    ".pypirc": ("pypirc-password", re.compile(r"(?m)^\s*password\s*[=:]\s*(\S+)")),
    ".docker/config.json": (
        "docker-config-auth",
        re.compile(r'"(?:auth|password|identitytoken|registrytoken)"\s*:\s*"([^"]+)"'),
    ),
    ".aws/credentials": (
        "aws-credentials-file",
        re.compile(r"(?mi)^\s*aws_secret_access_key\s*=\s*(\S+)"),
    ),
}


def credential_file(path: str) -> str | None:
    """The key of ``CREDENTIAL_FILES`` that ``path`` is, if any."""
    base = posixpath.basename(path)
    last_two = posixpath.join(posixpath.basename(posixpath.dirname(path)), base)
    return next((key for key in (base, last_two) if key in CREDENTIAL_FILES), None)


def is_candidate_file(path: str) -> bool:
    """Whether a file's name makes it worth reading for secrets."""
    base = posixpath.basename(path)
    return (
        base in SSH_KEY_FILES
        or base.endswith((".pem", ".key"))
        or base == ".env"
        or base.startswith(".env.")
        or credential_file(path) is not None
    )


# A PEM file: a line that starts a PEM block within its first KiB (after a byte order mark,
# comments, or the `Bag Attributes` and `subject=` lines openssl writes before a block).
_PEM_HEAD = re.compile(rb"(?:\A|[\r\n])(?:\xef\xbb\xbf)?[ \t]*-----BEGIN [A-Z0-9 ]+-----")
_PEM_HEAD_BYTES = 1024


def may_hold_private_key(head: bytes) -> bool:
    """Whether a file whose first bytes are ``head`` may hold private key material.

    A substring test, or a file that starts like a PEM file: that one is kept whole, since a
    certificate chain followed by its key (nginx's and HAProxy's bundles) can put the key past
    the first 16 KiB. Only PEM-looking heads are kept, so the cost stays that of the PEM
    files in the image.
    """
    return (
        b"PRIVATE KEY" in head
        or head.startswith(b"PuTTY-User-Key-File-")
        or _PEM_HEAD.search(head, 0, _PEM_HEAD_BYTES) is not None
    )


#: What a layer read keeps for the secrets check: files whose name makes them candidates, and any
#: small file whose first 16 KiB may hold a private key, whatever it is called (all of a file
#: that starts with a PEM block).
keep_file = Keep(lambda path, size: is_candidate_file(path), may_hold_private_key)
