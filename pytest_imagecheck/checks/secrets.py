"""No secrets in the image: ENV values, build args left in the history, credential files.

Everything anyone who pulls the image can read counts: ``Config.Env``, every history step
(``docker history --no-trunc``) and every filesystem layer, including files that a later
layer deletes or overwrites, since their bytes stay in the layer that added them.

:data:`RULES` lists what is looked for. Values are never shown in full: messages and evidence
show them through :func:`mask`, and files by path and layer, never their content. Layers are
numbered as ``image.diff_ids`` (``LayerContents.index``: base first, from 0), history steps as
``image.layers``.

A name that mentions a secret is not enough: ``PASSWORD_HASHERS=argon2``,
``TOKEN_LIFETIME_MINUTES=15`` and ``JWT_PUBLIC_KEY_PATH=/etc/jwt/public.pem`` hold none. A
variable is a secret when its name holds one (a setting word after the secret's word, such as
HASHERS, ALGORITHM, LIFETIME, ROTATION, MIN_LENGTH, DAYS or PATH, or PUBLIC anywhere, says it
does not) and its value can be one: not empty, a flag, a reference, a path, a number of up to
3 digits, a quantity with a unit, or the name of an algorithm, encoding or mode. Any other
value counts, weak ones too (``POSTGRES_PASSWORD=postgres``). Measured on
``tests/secrets_corpus.txt``, ENV lines in the style of real Dockerfiles: 178 ENV lines
(83 secrets): 0 false positives, 0 false negatives; the name-only rule before it had 28 false
positives and 6 false negatives there. The rules were tuned on those lines, so 0/0 flatters
them: 36 of the lines were held out, written after the rules and measured before any rule
changed for them, and had 1 false positive and 2 false negatives (the name-only rule: 7
and 2), since fixed.

Private keys are found by content, whatever the file is called: the one layer read shows the
first 16 KiB of every regular file of up to 1 MiB to a substring test and keeps only the
files that pass. A file's hard links (names of the same stored bytes) make one finding, under
the first name that breaks a rule.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ImageCheckError
from ..evidence import record
from ..layers import Keep

if TYPE_CHECKING:
    from ..image import ImageUnderTest, Layer
    from ..layers import LayerContents


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


_URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:([^\s/@]+)@")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
# Private key material in a file, by content: a PEM header (PKCS#1, PKCS#8, SEC1, OpenSSH,
# PGP), then any RFC 1421 headers (Proc-Type, DEK-Info, Version), then a real base64 body, so
# a document that only names the header is not a key. In JSON (a service account key file)
# the line breaks are written \n. Also PuTTY (.ppk) and ssh.com (SSH2) private key files.
# _may_hold_private_key is the layer read's cheap test for the same: every match holds
# "PRIVATE KEY" or "PuTTY-User-Key-File-".
_BREAK = r"(?:\s|\\[rn])+"
_PRIVATE_KEY_MATERIAL = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    + _BREAK
    + r"(?:[A-Za-z][\w-]*: ?[^\n\\]*"
    + _BREAK
    + r")*[A-Za-z0-9+/=]{40}"
    r"|^PuTTY-User-Key-File-\d+: \S+\r?\nEncryption: "
    r"|^---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----",
    re.M,
)

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
        _URL_CREDENTIALS,
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

_RUN_ARGS = re.compile(r"^(?:RUN )?\|(\d+) (.*)$", re.S)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_ARG_DEFAULT = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
_ARG_NAME = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)")
_SECRET_SETTING = re.compile(
    r"(?i)\b(password|passwd|secret|token|_auth\w*)(\s*[=:]\s*)([^\s\"']+)"
)
_HASHED_SOURCE = re.compile(r"\b(file|multi|dir):([0-9a-f]{12})[0-9a-f]{52}\b")

_SSH_KEY_FILES = frozenset(["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"])
_ENV_TEMPLATES = (".example", ".sample", ".template", ".dist")
# Published packages and toolchains ship test keys (tornado, twisted, node's
# https-proxy-agent, Go's crypto/tls testdata, gems, crates): public knowledge, not this
# image's secrets. SSH key files count wherever they are.
_PACKAGE_TREES = (
    "/site-packages/",
    "/dist-packages/",
    "/node_modules/",
    "/pkg/mod/",
    "/gems/",
    "/.cargo/registry/",
    "/usr/local/go/src/",
)
_NETRC_PASSWORD = re.compile(r"\bpassword\s+(\S+)")
# Credential files by name (or the last two parts of their path): the rule, and the setting
# that must hold a literal value (None: the file alone is the finding).
_CREDENTIAL_FILES: dict[str, tuple[str, re.Pattern[str] | None]] = {
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

_NOT_READ = ": its content was not read (over 1 MiB, or a hard link to a file read by no name)"
_MASK_PREFIX_FROM = 16  # shorter values show no characters at all


@dataclass(frozen=True)
class Finding:
    """One secret found. ``id`` is what ``accept`` names; ``where`` is already masked."""

    id: str
    rule: str
    where: str

    def __str__(self) -> str:
        return f"{self.id} (rule {self.rule}) {self.where}"


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


def find_secrets(image: ImageUnderTest) -> list[Finding]:
    """Every secret in ``image``: ENV first, then history steps, then files, one per id.

    Ids are ``env:NAME``, ``history:NAME`` (a build arg), ``history:step-N`` (a credential in
    the command of history step N) and ``file:/path``. Reads every layer once.
    """
    return [*_env_findings(image), *_history_findings(image), *_file_findings(image)]


def assert_no_secrets(image: ImageUnderTest, *, accept: Mapping[str, str] | None = None) -> None:
    """Assert that ``image`` carries no secret (see :data:`RULES`), save those accepted.

    ``accept`` maps a finding id to the reason it is there on purpose, e.g.
    ``{"env:DEMO_PASSWORD": "demo image, no real service"}``. Accepted findings pass and
    are listed in the evidence with their reason; an accept entry that matches no finding is a
    stale waiver and fails too. Evidence: ``findings``, ``accepted``, ``stale_accepts``,
    ``rules_checked``, all masked.
    """
    __tracebackhide__ = True
    waivers = _waivers(accept)
    findings = find_secrets(image)
    failing = [f for f in findings if f.id not in waivers]
    accepted = [f for f in findings if f.id in waivers]
    stale = sorted(set(waivers) - {f.id for f in findings})
    record(
        "secrets",
        findings=[str(f) for f in failing] or "none",
        accepted=[f"{f}, accepted: {waivers[f.id]}" for f in accepted] or "none",
        stale_accepts=stale or "none",
        rules_checked=[rule.name for rule in RULES],
    )
    name = image.ref or image.short_id
    sections = []
    if failing:
        count = f"{len(failing)} secret{'s' if len(failing) > 1 else ''}"
        lines = "".join(f"\n  {f}" for f in failing)
        sections.append(
            f"image {name} carries {count}:{lines}\n"
            f'accept one with accept={{"{failing[0].id}": "why"}}'
        )
    if stale:
        lines = "".join(f'\n  {key}: "{waivers[key]}"' for key in stale)
        sections.append(
            f"accept names secrets that image {name} does not carry (stale waivers, "
            f"remove them):{lines}"
        )
    if sections:
        raise AssertionError("\n".join(sections))


def _waivers(accept: Mapping[str, str] | None) -> dict[str, str]:
    if accept is None:
        return {}
    if not isinstance(accept, Mapping):
        raise ImageCheckError(
            f'accept must map finding ids to reasons, e.g. {{"env:NAME": "why"}}, '
            f"not {type(accept).__name__}"
        )
    for key, reason in accept.items():
        if not isinstance(key, str) or not re.fullmatch(r"(?:env|history|file):\S.*", key):
            raise ImageCheckError(
                f"accept key {key!r} is not a finding id: use env:NAME, history:NAME, "
                "history:step-N or file:/path, as the failure message names them"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise ImageCheckError(
                f'accept["{key}"] needs a reason: a non-empty string saying why this secret '
                "is in the image on purpose"
            )
    return dict(accept)


def _name_words(name: str) -> list[str]:
    """``mysqlRootPassword`` -> ``["MYSQL", "ROOT", "PASSWORD"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()
    return [word for word in re.split(r"[^A-Z0-9]+", spaced) if word]


def _is_secret_name(name: str) -> bool:
    """Whether a variable called ``name`` holds a secret, by its name alone.

    >>> [_is_secret_name(n) for n in ("DB_PASSWORD", "PASSWORD_MIN_LENGTH", "JWT_PUBLIC_KEY")]
    [True, False, False]
    """
    words = _name_words(name)
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


def _is_inert(value: str) -> bool:
    """True for values that hold no secret: empty, a flag, a placeholder, a reference, a path."""
    text = value.strip().strip("\"'")
    return (
        not text
        or text.lower() in _FLAGS
        or text.lower() in _PLACEHOLDERS
        or _REFERENCE.fullmatch(text) is not None
    )


def _is_setting_value(value: str) -> bool:
    """True for a value no one picks as a password: a small number, a duration or size, or the
    name of an algorithm, encoding or mode (see ``_SETTING_ITEM``).

    >>> [_is_setting_value(v) for v in ("argon2", "30s", "HS256", "strict", "postgres", "123456")]
    [True, True, True, True, False, False]
    """
    return _SETTING_VALUE.fullmatch(value.strip().strip("\"'")) is not None


def _credential_formats(text: str) -> Iterator[tuple[str, str]]:
    """``(rule name, matched text)`` for each known credential format in ``text``."""
    for rule in RULES:
        for match in rule.pattern.finditer(text) if rule.pattern else ():
            if rule.pattern is _URL_CREDENTIALS and _is_inert(match[1]):
                continue
            yield rule.name, match[0]


def _rule_for(name: str, value: str, name_rule: str) -> str | None:
    """The rule ``NAME=value`` breaks: a credential format first, then a secret's name."""
    known = next(_credential_formats(value), None)
    if known:
        return known[0]
    holds_secret = not _is_inert(value) and not _is_setting_value(value)
    return name_rule if holds_secret and _is_secret_name(name) else None


def mask_secrets(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every secret ENV value of ``env`` masked (for log tails and messages).

    >>> mask_secrets("token is ghp_0123456789abcdefghij", {"GH_TOKEN": "ghp_0123456789abcdefghij"})
    'token is ghp_… (24 chars)'
    """
    secrets = [v for name, v in env.items() if _rule_for(name, v, "secret-env-name")]
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, mask(value))
    return text


def _env_findings(image: ImageUnderTest) -> Iterator[Finding]:
    for name, value in sorted(image.env.items()):
        rule = _rule_for(name, value, "secret-env-name")
        if rule:
            yield Finding(f"env:{name}", rule, f"ENV value {mask(value)}")


def _declared_args(image: ImageUnderTest) -> frozenset[str]:
    """The names of every ARG in the history (the base image's too)."""
    return frozenset(
        name
        for step in image.layers
        if _verb(step) == "ARG"
        for name in _ARG_NAME.findall(step.instruction.removeprefix("ARG "))
    )


def _split_assignments(
    text: str, count: int, declared: frozenset[str]
) -> tuple[list[tuple[str, str]], str]:
    """The ``count`` ``NAME=value`` pairs that start ``text``, and the command after them.

    The history joins them with spaces, unquoted, so a pair starts only at a declared ARG's
    name (any name when the history declares none); a value with spaces in the last pair is
    cut at its first space.
    """
    pairs: list[tuple[str, str]] = []
    tokens = text.split(" ")
    taken = 0
    for token in tokens:
        name = token.partition("=")[0]
        starts_pair = bool(_ASSIGNMENT.match(token)) and (not declared or name in declared)
        if len(pairs) < count and starts_pair:
            name, _, value = token.partition("=")
            pairs.append((name, value))
        elif pairs and len(pairs) < count:
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {token}")
        else:
            break
        taken += 1
    return pairs, " ".join(tokens[taken:])


def _verb(step: Layer) -> str:
    """The instruction keyword of a history step, for both builders' ways of writing it."""
    text = step.created_by
    if _RUN_ARGS.match(text):
        return "RUN"
    if "#(nop)" in text:
        return text.split("#(nop)", 1)[1].split()[0]
    word = text.split(" ", 1)[0]
    return word if word.isupper() else "RUN"  # the legacy builder writes RUN steps bare


def _redact(text: str) -> str:
    """``text`` with credential formats masked and ``password=...``-like settings starred."""
    text = _URL_CREDENTIALS.sub(lambda m: m[0].replace(m[1], "***"), text)
    for rule, found in set(_credential_formats(text)):
        if rule != "url-credentials":
            text = text.replace(found, mask(found))
    return _SECRET_SETTING.sub(r"\1\2***", text)


def _describe(step: Layer) -> str:
    """A history step as a short instruction that shows no secret: ``RUN echo hi > /a``."""
    text = step.instruction
    if _verb(step) == "RUN" and not text.startswith("RUN "):
        text = "RUN " + text
    if _verb(step) in ("ARG", "ENV", "LABEL"):
        text = re.sub(r"=\S*", "=***", text)
    text = _HASHED_SOURCE.sub(r"\1:\2", _redact(text))
    return text if len(text) <= 60 else text[:59] + "…"


def _history_findings(image: ImageUnderTest) -> Iterator[Finding]:
    env_values = list(image.env.values())
    declared = _declared_args(image)
    seen: set[str] = set()
    for step in image.layers:
        args = _RUN_ARGS.match(step.created_by)
        if args:
            pairs, command = _split_assignments(args[2], int(args[1]), declared)
            source = "build arg"
        elif _verb(step) == "ARG":
            pairs, command = _ARG_DEFAULT.findall(step.instruction), ""
            source = "ARG default"
        else:
            pairs, command = [], step.created_by
        where = f"in history step {step.index} ({_describe(step)})"
        for name, value in pairs:
            rule = _rule_for(name, value, "secret-build-arg")
            if rule and f"history:{name}" not in seen:
                seen.add(f"history:{name}")
                yield Finding(f"history:{name}", rule, f"{source} {mask(value)} {where}")
        for rule, found in _credential_formats(command):
            # An ENV step's value that is still in Config.Env is reported as env:NAME.
            if not any(found in value for value in env_values):
                yield Finding(f"history:step-{step.index}", rule, f"{mask(found)} {where}")
                break


def _credential_file(path: str) -> str | None:
    """The key of ``_CREDENTIAL_FILES`` that ``path`` is, if any."""
    base = posixpath.basename(path)
    last_two = posixpath.join(posixpath.basename(posixpath.dirname(path)), base)
    return next((key for key in (base, last_two) if key in _CREDENTIAL_FILES), None)


def _is_candidate(path: str) -> bool:
    """Whether a file's name makes it worth reading."""
    base = posixpath.basename(path)
    return (
        base in _SSH_KEY_FILES
        or base.endswith((".pem", ".key"))
        or base == ".env"
        or base.startswith(".env.")
        or _credential_file(path) is not None
    )


def _may_hold_private_key(head: bytes) -> bool:
    """Whether a file's first bytes may hold private key material (a substring test)."""
    return b"PRIVATE KEY" in head or head.startswith(b"PuTTY-User-Key-File-")


#: What a layer read keeps for this check: files whose name makes them candidates, and any
#: small file whose first 16 KiB may hold a private key, whatever it is called.
keep_file = Keep(lambda path, size: _is_candidate(path), _may_hold_private_key)


def _holds_private_key(path: str, text: str) -> bool:
    """Whether ``text``, read from ``path``, holds private key material outside a package."""
    return _PRIVATE_KEY_MATERIAL.search(text) is not None and not any(
        tree in path for tree in _PACKAGE_TREES
    )


def _file_rule(path: str, content: bytes | None) -> str | None:
    """The rule a file breaks, from its name and (when kept) its content."""
    base = posixpath.basename(path)
    text = (content or b"").decode("utf-8", "replace")
    if base in _SSH_KEY_FILES or _holds_private_key(path, text):
        return "private-key"
    if base == ".env" or (base.startswith(".env.") and not base.endswith(_ENV_TEMPLATES)):
        return "env-file"
    key = _credential_file(path)
    if key is None:
        return None
    rule, setting = _CREDENTIAL_FILES[key]
    if setting is None or any(not _is_inert(value) for value in setting.findall(text)):
        return rule
    return None


def _stored_file_rule(names: list[str], content: bytes | None) -> tuple[str, str, str] | None:
    """``(name, rule, note)`` for the first of a stored file's names that breaks a rule.

    ``names`` are one stored file's names in its layer (hard links share the bytes). A
    credential file whose setting decides, with bytes the layer read did not keep (a hard
    link to a file kept by no name, or a file over 1 MiB), is reported as not measured.
    """
    for name in names:
        rule = _file_rule(name, content)
        if rule is not None:
            return name, rule, ""
    if content is None:
        for name in names:
            key = _credential_file(name)
            if key is not None:
                rule = _CREDENTIAL_FILES[key][0]
                return name, rule, f"{_NOT_READ}, so whether it holds a credential is not measured"
    return None


def _superseded(
    layers: list[LayerContents], layer: LayerContents, path: str
) -> tuple[int, str] | None:
    """``(layer index, "replaced" or "deleted")``: the first later layer that hides ``path``."""
    for later in layers[layer.index + 1 :]:
        if path in later.entries:
            return later.index, "replaced"
        deleted = any(path == gone or path.startswith(gone + "/") for gone in later.whiteouts)
        hidden = any(path.startswith(d.rstrip("/") + "/") for d in later.opaque_dirs)
        if deleted or hidden:
            return later.index, "deleted"
    return None


def _later_fate(
    layers: list[LayerContents], layer: LayerContents, path: str, names: list[str]
) -> str:
    """``, deleted in layer M, still in the image`` when later layers hide every name of the
    stored file ``path`` is one of; which names still show it, when ``path`` is hidden alone.
    """
    fates = {name: _superseded(layers, layer, name) for name in names}
    gone = [fate for fate in fates.values() if fate is not None]
    if len(gone) == len(names):
        index, verb = max(gone)  # the last name to go hides the bytes
        return f", {verb} in layer {index}, still in the image"
    own = fates[path]
    if own is None:
        return ""
    live = ", ".join(name for name, fate in fates.items() if fate is None)
    return f", {own[1]} in layer {own[0]}, still in the image as {live}"


def _file_findings(image: ImageUnderTest) -> Iterator[Finding]:
    layers = image.layer_contents(keep=keep_file)
    steps = image.layers
    found: dict[str, tuple[str, list[str]]] = {}
    for layer in layers:
        # One finding per stored file, whichever of its names (hard links) breaks the rule.
        for first, names in layer.stored_files().items():
            content = layer.contents.get(first)
            if layer.entries[first].kind == "file" and layer.entries[first].size == 0:
                continue
            if content is None and not any(_is_candidate(name) for name in names):
                continue  # neither its names nor its first bytes made it worth reading
            hit = _stored_file_rule(names, content)
            if hit is None:
                continue
            path, rule, note = hit
            step = steps[layer.step] if layer.step is not None else None
            made_by = f" ({_describe(step)})" if step else ""
            others = [name for name in names if name != path]
            links = f", hard-linked as {', '.join(others)}" if others else ""
            fate = _later_fate(layers, layer, path, names)
            where = f"in layer {layer.index}{made_by}{links}{fate}{note}"
            found.setdefault(f"file:{path}", (rule, []))[1].append(where)
    for key, (rule, places) in sorted(found.items()):
        yield Finding(key, rule, "; ".join(places))
