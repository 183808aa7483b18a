"""No secrets in the image: ENV values, build args left in the history, credential files.

Everything anyone who pulls the image can read counts: ``Config.Env``, every history step
(``docker history --no-trunc``) and every filesystem layer, including files that a later
layer deletes or overwrites, since their bytes stay in the layer that added them.

:data:`RULES` (from :mod:`pytest_imagecheck.secret_rules`) lists what is looked for. Values
are never shown in full: messages and evidence show them through :func:`mask`, and files by
path and layer, never their content. Layers are numbered as ``image.diff_ids``
(``LayerContents.index``: base first, from 0), history steps as ``image.layers``.

A name that mentions a secret is not enough: ``PASSWORD_HASHERS=argon2``,
``TOKEN_LIFETIME_MINUTES=15`` and ``JWT_PUBLIC_KEY_PATH=/etc/jwt/public.pem`` hold none. A
variable is a secret when its name holds one (a setting word after the secret's word, such as
HASHERS, ALGORITHM, LIFETIME, ROTATION, MIN_LENGTH, DAYS, CHARSET, STORAGE or REF, or PUBLIC
anywhere, says it does not) and its value can be one: not empty, a flag, a reference (``${X}``,
an ARN, ``op://``), a path, a number of up to 3 digits, a quantity with a unit, or the name of
an algorithm, encoding or mode. Any other value counts, weak ones too
(``POSTGRES_PASSWORD=postgres``). A name that says where the secret is (``*_FILE``, ``*_PATH``,
``*_URL``, ...) is exempt only while its value is a place: ``SECRET_KEY_FILE=Zq8vLw3p...`` is
a secret. Credential formats (``ghp_``, ``sk_live_``, ``AIza``, a JWT, a URL's password, ...)
count under any name, and so does a secret setting inside a value (``--db-password=...``).

Measured on ``tests/secrets_corpus.txt``, ENV lines in the style of real Dockerfiles: 274 ENV
lines (131 secrets): 0 false positives, 0 false negatives. The rules were tuned on those
lines, so 0/0 flatters them; the held-out figures say more. The first 178 lines (83 secrets)
were 0/0 for the rules before issue 12, and the name-only rule before those had 28 false
positives and 6 false negatives there; 36 of those lines were held out (written after the
rules, measured before any rule changed for them) and had 1 false positive and 2 false
negatives (the name-only rule: 7 and 2), since fixed. Issue 12's new-user test reported 21
lines, and 39 more of the same kinds were written beside them before any rule changed: the
rules before issue 12 had 18 false positives and 32 false negatives on those 60 lines (32
secrets); the rules were then written for them (0 and 0, a tuned figure). Then 36 lines (16
secrets) were held out, written after those rules and measured before any rule changed for
them: 3 false positives and 8 false negatives (the rules before issue 12: 2 and 14), since
fixed.

Private keys are found by content, whatever the file is called: the one layer read shows the
first 16 KiB of every regular file of up to 1 MiB to a substring test and keeps only the
files that pass, whole; a file that starts with a PEM block is kept whole too and searched
to its end, so a certificate chain followed by its key is found past 16 KiB. A file named as
an SSH key (``id_rsa``, ...) is judged by its content: a public key or certificate under that
name is no finding. A file's hard links (names of the same stored bytes) make one finding,
under the first name that breaks a rule.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import kinds
from ..declaration import Check, Key
from ..errors import ImageCheckError
from ..evidence import record
from ..secret_rules import (
    CREDENTIAL_FILES,
    RULES,
    SSH_KEY_FILES,
    URL_CREDENTIALS,
    credential_file,
    credential_formats,
    is_candidate_file,
    is_inert,
    keep_file,
    mask,
    rule_for,
)
from ..text import shorten

if TYPE_CHECKING:
    from ..image import ImageUnderTest, Layer
    from ..layers import LayerContents


# Private key material in a file, by content: a PEM header (PKCS#1, PKCS#8, SEC1, OpenSSH,
# PGP), then any RFC 1421 headers (Proc-Type, DEK-Info, Version), then a real base64 body, so
# a document that only names the header is not a key. In JSON (a service account key file)
# the line breaks are written \n. Also PuTTY (.ppk) and ssh.com (SSH2) private key files.
# secret_rules.may_hold_private_key is the layer read's cheap test for the same: every match holds
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


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_ARG_DEFAULT = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
_ARG_NAME = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)")
_SECRET_SETTING = re.compile(
    r"(?i)\b(password|passwd|secret|token|_auth\w*)(\s*[=:]\s*)([^\s\"']+)"
)
_HASHED_SOURCE = re.compile(r"\b(file|multi|dir):([0-9a-f]{12})[0-9a-f]{52}\b")

# Public material: certificates, public keys (PEM, PGP, SSH2) and OpenSSH public key lines
# (authorized_keys style, options first allowed), with blank and # comment lines around them.
_PUBLIC_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*(?:CERTIFICATE|PUBLIC KEY|PUBLIC KEY BLOCK|X509 CRL|"
    r"CERTIFICATE REQUEST))-----.*?-----END \1-----"
    r"|---- BEGIN SSH2 PUBLIC KEY ----.*?---- END SSH2 PUBLIC KEY ----",
    re.S,
)
_PUBLIC_LINE = re.compile(
    r"(?m)^[^\S\n]*(?:#[^\n]*|[^\n]*?\b(?:ssh-(?:rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp\d+|"
    r"sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(?:-cert-v01@openssh\.com)?"
    r" AAAA[A-Za-z0-9+/]+=*(?:[^\S\n][^\n]*)?)$"
)

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
_NOT_READ = ": its content was not read (over 1 MiB, or a hard link to a file read by no name)"
_BY_NAME = (
    ": named as an SSH private key, and its content is neither a private key this check reads "
    "nor a public key or certificate"
)


@dataclass(frozen=True)
class Finding:
    """One secret found. ``id`` is what ``accept`` names; ``where`` is already masked."""

    id: str
    rule: str
    where: str

    def __str__(self) -> str:
        return f"{self.id} (rule {self.rule}) {self.where}"


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
        if not isinstance(key, str) or not kinds.FINDING_ID.match(key):
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


def _env_findings(image: ImageUnderTest) -> Iterator[Finding]:
    for name, value in sorted(image.env.items()):
        rule = rule_for(name, value, "secret-env-name")
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
    if step.run_args is not None:
        return "RUN"
    if "#(nop)" in text:
        return text.split("#(nop)", 1)[1].split()[0]
    word = text.split(" ", 1)[0]
    return word if word.isupper() else "RUN"  # the legacy builder writes RUN steps bare


def _redact(text: str) -> str:
    """``text`` with credential formats masked and ``password=...``-like settings starred."""
    text = URL_CREDENTIALS.sub(lambda m: m[0].replace(m[1], "***"), text)
    for rule, found in set(credential_formats(text)):
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
    return shorten(text, 60)


def _history_findings(image: ImageUnderTest) -> Iterator[Finding]:
    env_values = list(image.env.values())
    declared = _declared_args(image)
    seen: set[str] = set()
    for step in image.layers:
        args = step.run_args
        if args is not None:
            count, text = args
            pairs, command = _split_assignments(text, count, declared)
            source = "build arg"
        elif _verb(step) == "ARG":
            pairs, command = _ARG_DEFAULT.findall(step.instruction), ""
            source = "ARG default"
        else:
            pairs, command = [], step.created_by
        where = f"in history step {step.index} ({_describe(step)})"
        for name, value in pairs:
            rule = rule_for(name, value, "secret-build-arg")
            if rule and f"history:{name}" not in seen:
                seen.add(f"history:{name}")
                yield Finding(f"history:{name}", rule, f"{source} {mask(value)} {where}")
        for rule, found in credential_formats(command):
            # An ENV step's value that is still in Config.Env is reported as env:NAME.
            if not any(found in value for value in env_values):
                yield Finding(f"history:step-{step.index}", rule, f"{mask(found)} {where}")
                break


def _is_public_material(text: str) -> bool:
    """Whether ``text`` is certificates and public keys only (and comments), nothing else."""
    rest = _PUBLIC_LINE.sub("", _PUBLIC_PEM.sub("", text))
    return bool(text.strip()) and not rest.strip()


def _file_rule(path: str, content: bytes | None) -> tuple[str, str] | None:
    """``(rule, note)`` for the rule a file breaks, from its name and (when kept) its content.

    An SSH key file (``id_rsa``, ...) is judged by its content when it was kept: a public key
    or a certificate under that name is no finding; content that is neither a private key nor
    public material still is, by its name. With its content not read, that is not measured.
    """
    base = posixpath.basename(path)
    text = None if content is None else content.decode("utf-8", "replace")
    private = text is not None and _PRIVATE_KEY_MATERIAL.search(text) is not None
    if base in SSH_KEY_FILES:
        if text is None:
            return "private-key", f"{_NOT_READ}, so whether it holds a private key is not measured"
        if private:
            return "private-key", ""
        if not _is_public_material(text):
            return "private-key", _BY_NAME
        return None
    if private and not any(tree in path for tree in _PACKAGE_TREES):
        return "private-key", ""
    if base == ".env" or (base.startswith(".env.") and not base.endswith(_ENV_TEMPLATES)):
        return "env-file", ""
    key = credential_file(path)
    if key is None:
        return None
    rule, setting = CREDENTIAL_FILES[key]
    if setting is None or any(not is_inert(value) for value in setting.findall(text or "")):
        return rule, ""
    return None


def _stored_file_rule(names: list[str], content: bytes | None) -> tuple[str, str, str] | None:
    """``(name, rule, note)`` for the first of a stored file's names that breaks a rule.

    ``names`` are one stored file's names in its layer (hard links share the bytes). A
    credential file whose setting decides, or an SSH key file, with bytes the layer read did
    not keep (a hard link to a file kept by no name, or a file over 1 MiB), is reported as not
    measured.
    """
    for name in names:
        hit = _file_rule(name, content)
        if hit is not None:
            return name, *hit
    if content is None:
        for name in names:
            key = credential_file(name)
            if key is not None:
                rule = CREDENTIAL_FILES[key][0]
                return name, rule, f"{_NOT_READ}, so whether it holds a credential is not measured"
    return None


def _superseded(
    layers: list[LayerContents], layer: LayerContents, path: str
) -> tuple[int, str] | None:
    """``(layer index, "replaced" or "deleted")``: the first later layer that hides ``path``."""
    for later in layers[layer.index + 1 :]:
        if path in later.entries:
            return later.index, "replaced"
        how = later.hides(path)
        if how is not None:
            return later.index, "replaced" if how == "replaced" else "deleted"
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
            if content is None and not any(is_candidate_file(name) for name in names):
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


# --- imagecheck.yaml -----------------------------------------------------------------------

NO_SECRETS = Check(
    "no_secrets",
    "The image carries no secrets, save those accepted (assert_no_secrets).",
    assert_no_secrets,
    "image",
    (Key("accept", kinds.ACCEPT, "Finding ids accepted on purpose, each with its reason."),),
    reads_layers=True,
)
