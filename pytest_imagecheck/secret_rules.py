"""What a secret looks like: the rules the secrets check applies, and how a secret is shown.

Pure functions over names and strings, used by the check (``checks.secrets``) and by every
place that shows text from an image or a container (log tails, evidence), which mask the
image's secret ENV values with :func:`mask_secrets`. :data:`RULES` lists every rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One kind of secret the check looks for.

    ``looks_at`` names where: ``env`` (``Config.Env``), ``history`` (build args, ARG defaults
    and commands in the history) or ``file`` (files in any layer). ``pattern``, when set, is
    a credential format matched in any value, whatever its name.
    """

    name: str
    description: str
    looks_at: tuple[str, ...]
    pattern: re.Pattern[str] | None = None


URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:([^\s/@]+)@")


_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")


#: Every rule, in the order findings are explained; README renders this table.
RULES: tuple[Rule, ...] = (
    Rule(
        "secret-env-name",
        "ENV variable whose name holds a secret (PASSWORD, PASS, PASSPHRASE, SECRET, TOKEN, "
        "CREDENTIALS, API_KEY, PRIVATE_KEY, ACCESS_KEY, ...; not a setting about one such as "
        "PASSWORD_MIN_LENGTH or TOKEN_LIFETIME_MINUTES) with a value that can be a secret "
        "(not a number, duration, flag, algorithm or mode name, path or reference)",
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
        "private-key",
        "PEM private key (`-----BEGIN ... PRIVATE KEY-----`) in a value; in a file of up to "
        "1 MiB whatever its name, by content (a PEM, OpenSSH, PGP, PuTTY or SSH2 private key "
        "within its first 16 KiB, or anywhere in a *.pem / *.key file); an SSH key file "
        "(id_rsa, id_dsa, id_ecdsa, id_ed25519) by name. Certificates and public keys are not "
        "findings, nor keys inside published packages (site-packages, node_modules, ...)",
        ("env", "history", "file"),
        _PRIVATE_KEY,
    ),
    Rule(
        "url-credentials",
        "URL with a password in it (`scheme://user:password@host`)",
        ("env", "history"),
        URL_CREDENTIALS,
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
# (API_KEY, yes; GPG_KEY, the public fingerprint in python images, no).
# fmt: off
_SECRET_WORDS = frozenset({
    "PASSWORD", "PASSWD", "PASSPHRASE", "PASS", "SECRET", "TOKEN", "CREDENTIALS", "CREDENTIAL",
    "APIKEY", "ACCESSKEY", "PRIVATEKEY",
})


_SECRET_ENDINGS = ("PASSWORD", "PASSWD")


_KEY_QUALIFIERS = frozenset({
    "API", "PRIVATE", "ACCESS", "SECRET", "AUTH", "SIGNING", "ENCRYPTION", "MASTER", "LICENSE",
    "HMAC", "JWT", "SESSION", "FERNET", "APP",
})


# A word after the last one that mentions the secret, saying that the variable is a setting
# about the secret rather than the secret: where it is (POSTGRES_PASSWORD_FILE, TOKEN_URL,
# JWT_PUBLIC_KEY_PATH), what it is called (SECRET_NAME, AWS_ACCESS_KEY_ID), how it is made,
# checked or stored (PASSWORD_HASHERS, JWT_SECRET_ALGORITHM, PASSWORD_POLICY, SECRET_BACKEND)
# and how long it lives (TOKEN_LIFETIME_MINUTES, SECRET_ROTATION_DAYS, PASSWORD_MIN_LENGTH).
_SETTING_WORDS = frozenset({
    # where, and what it is called
    "FILE", "FILES", "PATH", "DIR", "DIRECTORY", "LOCATION", "MOUNT", "URL", "URI",
    "ENDPOINT", "HOST", "PORT", "NAME", "ID", "USER", "USERNAME", "HEADER", "PREFIX", "FIELD",
    "PARAM", "ISSUER", "AUDIENCE", "SCOPE", "SCOPES",
    # how it is made, checked or stored
    "TYPE", "KIND", "FORMAT", "ENCODING", "ENCODER", "MODE", "POLICY", "COMPLEXITY",
    "STRENGTH", "VERSION", "ALGORITHM", "ALGORITHMS", "ALGO", "ALG", "HASHER", "HASHERS",
    "HASHING", "ROUNDS", "ITERATIONS", "ENCRYPTION", "PROVIDER", "BACKEND", "STORE",
    "ENABLED", "DISABLED", "REQUIRED", "CMD", "COMMAND",
    # how long it lives, how big it is
    "TTL", "EXPIRY", "EXPIRE", "EXPIRES", "EXPIRATION", "LIFETIME", "TIMEOUT", "AGE",
    "ROTATION", "INTERVAL", "PERIOD", "DURATION", "MS", "SECONDS", "SECS", "MINUTES", "MINS",
    "HOURS", "DAYS", "WEEKS", "MIN", "MAX", "LENGTH", "LEN", "SIZE", "BITS", "COUNT", "LIMIT",
    "RETRIES", "ATTEMPTS",
})


# Anywhere in a name: a key meant to be seen (JWT_PUBLIC_KEY, STRIPE_PUBLISHABLE_KEY).
_PUBLIC_WORDS = frozenset({"PUBLIC", "PUBLISHABLE"})


_FLAGS = frozenset({"0", "1", "true", "false", "yes", "no", "on", "off"})


_PLACEHOLDERS = frozenset({
    "changeme", "change-me", "change_me", "changeit", "replaceme", "replace-me", "replace_me",
    "placeholder", "none", "null", "nil", "unset", "undefined", "todo", "tbd", "redacted",
})


# fmt: on
# ${VAR}, $VAR, ${VAR:-x}, {{ template }}, <your-token>, xxxx / ****, a path (/a, ./a, ~/a).
_REFERENCE = re.compile(
    r"\$\{?\w+(?::?-[^}]*)?\}?|\{\{.*\}\}|<[^<>]+>|(.)\1*|(?:\.{1,2}|~|file:/)?/[\w.@/-]*"
)


# Values of a setting, which no one picks as a password: a number of up to 3 digits (a
# 4-digit or longer one may be a PIN: `ROOT_PASSWORD=123456` is a secret), a decimal, a
# quantity with its unit (30s, 1h30m, 15 minutes, 512MiB, ISO 8601 PT15M), and the names of
# algorithms, encodings and modes (argon2, bcrypt, HS256, aes-256-gcm, base64, strict, lax),
# alone or in a comma-separated list. Arbitrary words are not on the list: postgres,
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


def is_secret_name(name: str) -> bool:
    """Whether a variable called ``name`` holds a secret, by its name alone.

    >>> [is_secret_name(n) for n in ("DB_PASSWORD", "PASSWORD_MIN_LENGTH", "JWT_PUBLIC_KEY")]
    [True, False, False]
    """
    words = name_words(name)
    if _PUBLIC_WORDS.intersection(words):
        return False
    marks = [
        i
        for i, word in enumerate(words)
        if word in _SECRET_WORDS
        or word.endswith(_SECRET_ENDINGS)
        or (word == "PWD" and len(words) > 1)
        or (word == "KEY" and i > 0 and words[i - 1] in _KEY_QUALIFIERS)
    ]
    return bool(marks) and not _SETTING_WORDS.intersection(words[marks[-1] + 1 :])


def is_inert(value: str) -> bool:
    """True for values that hold no secret: empty, a flag, a placeholder, a reference, a path."""
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


def credential_formats(text: str) -> Iterator[tuple[str, str]]:
    """``(rule name, matched text)`` for each known credential format in ``text``."""
    for rule in RULES:
        for match in rule.pattern.finditer(text) if rule.pattern else ():
            if rule.pattern is URL_CREDENTIALS and is_inert(match[1]):
                continue
            yield rule.name, match[0]


def rule_for(name: str, value: str, name_rule: str) -> str | None:
    """The rule ``NAME=value`` breaks: a credential format first, then a secret's name."""
    known = next(credential_formats(value), None)
    if known:
        return known[0]
    holds_secret = not is_inert(value) and not is_setting_value(value)
    return name_rule if holds_secret and is_secret_name(name) else None


def mask_secrets(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every secret ENV value of ``env`` masked (for log tails and messages).

    >>> mask_secrets("token is ghp_0123456789abcdefghij", {"GH_TOKEN": "ghp_0123456789abcdefghij"})
    'token is ghp_… (24 chars)'
    """
    secrets = [v for name, v in env.items() if rule_for(name, v, "secret-env-name")]
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, mask(value))
    return text
