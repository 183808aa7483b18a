"""No secrets in the image: ENV values, build args left in the history, credential files.

Everything anyone who pulls the image can read counts: ``Config.Env``, every history step
(``docker history --no-trunc``) and every filesystem layer, including files that a later
layer deletes or overwrites, since their bytes stay in the layer that added them.

:data:`RULES` lists what is looked for. Values are never shown in full: messages and evidence
show them through :func:`mask`, and files by path and layer, never their content. Layers are
numbered as ``image.diff_ids`` (``LayerContents.index``: base first, from 0), history steps as
``image.layers``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ImageCheckError
from ..evidence import record

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

#: Every rule, in the order findings are explained; README renders this table.
RULES: tuple[Rule, ...] = (
    Rule(
        "secret-env-name",
        "ENV variable whose name marks a secret (PASSWORD, PASSWD, PASSPHRASE, SECRET, TOKEN, "
        "CREDENTIALS, API_KEY, PRIVATE_KEY, ACCESS_KEY, ...) with a real value",
        ("env",),
    ),
    Rule(
        "secret-build-arg",
        "build arg whose name marks a secret, with its value in the history "
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
        "PEM private key (`-----BEGIN ... PRIVATE KEY-----`) in a value, an SSH key file "
        "(id_rsa, id_dsa, id_ecdsa, id_ed25519) or a *.pem / *.key file with that header",
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
# A name is a secret's when one of its words is in _SECRET_WORDS, or when it has KEY after one
# of _KEY_QUALIFIERS (API_KEY, yes; GPG_KEY, the public fingerprint in python images, no).
# fmt: off
_SECRET_WORDS = frozenset({
    "PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIALS", "CREDENTIAL",
    "APIKEY", "ACCESSKEY", "PRIVATEKEY",
})
_KEY_QUALIFIERS = frozenset({
    "API", "PRIVATE", "ACCESS", "SECRET", "AUTH", "SIGNING", "ENCRYPTION", "MASTER", "LICENSE",
    "HMAC", "JWT", "SESSION",
})
# A last word that says the variable describes a secret rather than holds it:
# POSTGRES_PASSWORD_FILE, TOKEN_URL, SECRET_NAME, AWS_ACCESS_KEY_ID, TOKEN_TTL.
_DESCRIBING_SUFFIXES = frozenset({
    "FILE", "PATH", "DIR", "URL", "URI", "ENDPOINT", "HOST", "PORT", "NAME", "ID", "USER",
    "USERNAME", "TYPE", "HEADER", "FORMAT", "MODE", "POLICY", "VERSION", "ALGORITHM", "TTL",
    "EXPIRY", "EXPIRES", "TIMEOUT", "LENGTH", "SIZE", "COUNT", "LIMIT",
})
_FLAGS = frozenset({"0", "1", "true", "false", "yes", "no", "on", "off"})
_PLACEHOLDERS = frozenset({
    "changeme", "change-me", "change_me", "changeit", "replaceme", "replace-me", "replace_me",
    "placeholder", "none", "null", "nil", "unset", "undefined", "todo", "tbd", "redacted",
})
# fmt: on
# ${VAR}, $VAR, ${VAR:-x}, {{ template }}, <your-token>, xxxx / ****, an absolute path.
_REFERENCE = re.compile(r"\$\{?\w+(?::?-[^}]*)?\}?|\{\{.*\}\}|<[^<>]+>|(.)\1*|/[\w.@/-]*")

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
# Published packages ship test keys (tornado, twisted, node's https-proxy-agent, ...): public
# knowledge, not this image's secrets. SSH key files count wherever they are.
_PACKAGE_TREES = ("/site-packages/", "/dist-packages/", "/node_modules/")
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


def _is_secret_name(name: str) -> bool:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()
    words = [word for word in re.split(r"[^A-Z0-9]+", spaced) if word]
    if not words or words[-1] in _DESCRIBING_SUFFIXES:
        return False
    if _SECRET_WORDS.intersection(words) or ("PWD" in words and len(words) > 1):
        return True
    return any(
        word == "KEY" and i > 0 and words[i - 1] in _KEY_QUALIFIERS for i, word in enumerate(words)
    )


def _is_inert(value: str) -> bool:
    """True for values that hold no secret: empty, a flag, a placeholder, a reference, a path."""
    text = value.strip().strip("\"'")
    return (
        not text
        or text.lower() in _FLAGS
        or text.lower() in _PLACEHOLDERS
        or _REFERENCE.fullmatch(text) is not None
    )


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
    return name_rule if _is_secret_name(name) and not _is_inert(value) else None


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


def keep_file(path: str, size: int) -> bool:
    """Whether a layer read keeps this file's bytes: a file whose name makes it a candidate."""
    return _is_candidate(path)


def _file_rule(path: str, content: bytes | None) -> str | None:
    """The rule a candidate file breaks, from its name and (when kept) its content."""
    base = posixpath.basename(path)
    text = (content or b"").decode("utf-8", "replace")
    if base in _SSH_KEY_FILES:
        return "private-key"
    if base.endswith((".pem", ".key")):
        in_package = any(tree in path for tree in _PACKAGE_TREES)
        return "private-key" if _PRIVATE_KEY.search(text) and not in_package else None
    if base == ".env" or (base.startswith(".env.") and not base.endswith(_ENV_TEMPLATES)):
        return "env-file"
    key = _credential_file(path)
    if key is None:
        return None
    rule, setting = _CREDENTIAL_FILES[key]
    if setting is None or any(not _is_inert(value) for value in setting.findall(text)):
        return rule
    return None


def _later_fate(layers: list[LayerContents], layer: LayerContents, path: str) -> str:
    """``, deleted in layer M, still in the image`` when a later layer hides the file."""
    for later in layers[layer.index + 1 :]:
        if path in later.entries:
            return f", replaced in layer {later.index}, still in the image"
        deleted = any(path == gone or path.startswith(gone + "/") for gone in later.whiteouts)
        hidden = any(path.startswith(d.rstrip("/") + "/") for d in later.opaque_dirs)
        if deleted or hidden:
            return f", deleted in layer {later.index}, still in the image"
    return ""


def _file_findings(image: ImageUnderTest) -> Iterator[Finding]:
    layers = image.layer_contents(keep=keep_file)
    steps = image.layers
    found: dict[str, tuple[str, list[str]]] = {}
    for layer in layers:
        for path, entry in layer.entries.items():
            if entry.kind != "file" or entry.size == 0 or not _is_candidate(path):
                continue
            rule = _file_rule(path, layer.contents.get(path))
            if rule is None:
                continue
            step = steps[layer.step] if layer.step is not None else None
            made_by = f" ({_describe(step)})" if step else ""
            where = f"in layer {layer.index}{made_by}{_later_fate(layers, layer, path)}"
            found.setdefault(f"file:{path}", (rule, []))[1].append(where)
    for key, (rule, places) in sorted(found.items()):
        yield Finding(key, rule, "; ".join(places))
