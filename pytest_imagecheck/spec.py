"""imagecheck.yaml: acceptance criteria written as data, run by the same checks as Python tests.

:func:`load_spec` reads a file into a :class:`Spec`, a list of :class:`Criterion`. Each item
under ``criteria:`` names a ``check`` from :data:`CHECKS` and gives that check's keys; every
value is validated when the file is read, with the parsers the checks themselves use, so a
typo is one line naming the file, the line and the fix, before any image is built::

    imagecheck.yaml:7: unknown key "intervall" for check healthcheck (did you mean interval?): ...

:meth:`Criterion.run` calls the check function a Python test would call (``assert_non_root``,
``assert_healthcheck``, ...): there is one implementation of each rule. Each check module
declares its checks beside their functions (:class:`~pytest_imagecheck.declaration.Check`);
:data:`CHECKS` gathers them, and validation, default test names, what each criterion needs
and :func:`json_schema` (shipped as ``imagecheck.schema.json`` for editors) all read it. The
file is read by :mod:`~pytest_imagecheck.yamlfile`, and values are checked by the kinds of
:mod:`~pytest_imagecheck.kinds`.

Regenerate the shipped schema with ``python -m pytest_imagecheck.spec > imagecheck.schema.json``
(in the package folder); a test fails while the two differ.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import (
    cuda,
    endpoint,
    health,
    healthcheck,
    packages,
    pinning,
    secrets,
    size,
    structure,
    user,
)
from .declaration import Check, Key
from .errors import ImageCheckError
from .kinds import REASON, SPEC_FILE, TEXT, Invalid, Kind, WrongType, shown
from .yamlfile import YamlMapping, YamlSequence, load_yaml, read_text

__all__ = [
    "CHECKS",
    "COMMON_KEYS",
    "Check",
    "Criterion",
    "Key",
    "Kind",
    "Spec",
    "SpecError",
    "json_schema",
    "load_spec",
    "parse_spec",
]

#: Keys every criterion may have besides its check's own.
COMMON_KEYS = ("check", "name", "waive", "images", "per_image")


class SpecError(ImageCheckError):
    """imagecheck.yaml is not valid; the message is one line: ``file:line: what is wrong: fix``."""


# --- the checks ------------------------------------------------------------------------------

#: Each check's declaration, from beside its function, in the order the schema and the
#: messages list them.
_CHECKS = (
    user.NON_ROOT,
    healthcheck.HEALTHCHECK,
    pinning.BASE_IMAGES_PINNED,
    pinning.BUILT_FROM,
    size.SIZE,
    secrets.NO_SECRETS,
    endpoint.ENDPOINT,
    health.HEALTHY,
    endpoint.HARDENED,
    structure.ENV,
    structure.LABELS,
    structure.EXPOSED_PORTS,
    structure.CONFIG,
    structure.FILE,
    structure.COMMAND,
    cuda.CUDA_TORCH,
    packages.VERSIONS,
    packages.PIP_CONSISTENT,
    packages.INSTALLED_ONCE,
    packages.ABSENT,
    packages.NO_STRAY_FILES,
)

#: Every check imagecheck.yaml knows, by name.
CHECKS: dict[str, Check] = {check.name: check for check in _CHECKS}

_COMMON_SCHEMA = {
    "name": {
        "type": "string",
        "minLength": 1,
        "description": "The test id; default: the check and its main values.",
    },
    "waive": {
        "type": "string",
        "pattern": r"\S",
        "description": "Why this criterion may fail for now; it runs and is reported as waived.",
    },
    "images": {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "description": "The family members this criterion judges; default: every member.",
    },
    "per_image": {
        "type": "object",
        "additionalProperties": {"type": "object"},
        "description": "Keys that differ per family member, by member id (e.g. a size "
        "budget per variant): {cpu: {total: 8GB}}.",
    },
}


# --- reading a spec --------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One item of ``criteria:``, validated and ready to run.

    ``args`` are the check function's keyword arguments, converted where YAML and Python
    differ (the durations of endpoint, healthy and hardened, such as ``timeout``, become timedelta;
    a relative ``baseline`` is resolved against the spec file's folder); bounds, sizes and
    modes stay as written, so the check's messages quote them as written. ``line`` is the
    item's line in the file. ``waive`` is the reason given for tolerating a failure (the
    criterion still runs). ``needs`` says which of ``image``, ``container``, ``dockerfile``,
    ``run_container`` and ``gpu`` it needs. ``run_options`` are the options of the container
    a ``run_container`` criterion starts.
    """

    check: str
    name: str
    args: dict[str, Any]
    line: int
    waive: str | None = None
    needs: frozenset[str] = frozenset()
    run_options: dict[str, Any] = field(default_factory=dict)
    #: The family member whose image it judges; None when the session tests one image.
    member: str | None = None

    @property
    def reads_layers(self) -> bool:
        """Whether it reads the image's layers (see :class:`~.declaration.Check`)."""
        reads = CHECKS[self.check].reads_layers
        return reads if isinstance(reads, bool) else self.args.get(reads) is not None

    def run(self, get: Callable[[str], Any]) -> None:
        """Run the criterion: fetch the facts it needs with ``get`` and call its check.

        ``get("image")``, ``get("container")`` and ``get("dockerfile")`` return the fixtures of
        those names; ``get("run_container")`` returns the factory that starts a container.
        Raises what the check raises: AssertionError on failure.
        """
        check = CHECKS[self.check]
        function = check.function
        if check.subject == "run_container":
            subject = get("run_container")(**self.run_options)
        else:
            subject = get(check.subject)
        args = dict(self.args)
        if check.subject == "image" and "container" in self.needs:
            args["container"] = get("container")
        function(subject, **args)


@dataclass(frozen=True)
class Spec:
    """An imagecheck.yaml file: where it is and its criteria, in file order (in a family
    session, each criterion once per member it judges, member by member within it).
    ``declares_images`` says whether it has a top-level ``images:`` (a family's
    declaration, read by :mod:`~pytest_imagecheck.family`)."""

    path: Path
    criteria: list[Criterion]
    declares_images: bool = False


def load_spec(path: str | os.PathLike[str], members: Sequence[str] | None = None) -> Spec:
    """Read and validate an imagecheck.yaml file; raise :class:`SpecError` if it is not valid.

    ``members`` are the ids of the session's image family (None: one image under test).
    """
    return parse_spec(read_text(path, SpecError), path, members)


def parse_spec(
    text: str,
    path: str | os.PathLike[str] = "imagecheck.yaml",
    members: Sequence[str] | None = None,
) -> Spec:
    """Validate imagecheck.yaml ``text``; ``path`` names it in messages and anchors relative
    paths (``baseline``); ``members`` are the family's member ids, if the session has a
    family. Raise :class:`SpecError`, one line ``path:line: what: fix``."""
    try:
        document = load_yaml(text)
        criteria = _criteria(document, Path(path).parent, members)
    except Invalid as exc:
        raise SpecError(f"{os.fspath(path)}:{exc.line or 1}: {exc.message}") from None
    return Spec(Path(path), criteria, isinstance(document, YamlMapping) and "images" in document)


_TOP_LEVEL = ("criteria", "version", "images")


def _did_you_mean(word: object, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _criteria(document: Any, here: Path, members: Sequence[str] | None) -> list[Criterion]:
    example = "criteria:\n  - check: non_root"
    if document is None:
        raise Invalid(f"the file is empty: list the checks, e.g. {json.dumps(example)}", 1)
    if not isinstance(document, YamlMapping):
        raise Invalid(
            f"the top level is {'a list' if isinstance(document, list) else shown(document)}, "
            "not a mapping: start with criteria: and a list of checks",
            getattr(document, "line", 1),
        )
    for key, line in document.key_lines.items():
        if key == "schemaVersion":
            raise Invalid(
                "schemaVersion makes this a container-structure-test file, which the "
                "imagecheck_yaml patterns (imagecheck.yaml) do not collect as one: rename it "
                "to match imagecheck_cst (e.g. structure-test.yaml or app_cst.yaml)",
                line,
            )
        if key not in _TOP_LEVEL:
            raise Invalid(
                f"unknown top-level key {shown(key)}{_did_you_mean(key, _TOP_LEVEL)}: "
                "the top level takes criteria, version and images",
                line,
            )
    version = document.get("version")
    if "version" in document and not (type(version) is int and version == 1):
        raise Invalid(
            f"unsupported version {shown(document['version'])}: this pytest-imagecheck reads "
            "version 1",
            document.key_lines["version"],
        )
    if "criteria" not in document:
        if "images" in document:
            return []  # a family's declaration only
        raise Invalid("no criteria: add criteria: with a list of checks", document.line)
    items = document["criteria"]
    where = document.key_lines["criteria"]
    if not isinstance(items, YamlSequence):
        raise Invalid(
            f"criteria: expected a list of checks, got {shown(items)}: write each as an item, "
            "- check: non_root",
            where,
        )
    if not items:
        raise Invalid("criteria is empty: list at least one check, e.g. - check: non_root", where)
    criteria: list[Criterion] = []
    names: set[tuple[str, str | None]] = set()
    for item, line in zip(items, items.item_lines, strict=True):
        for criterion in _per_member(item, line, here, members):
            name, count = criterion.name, 1
            while (name, criterion.member) in names:
                count += 1
                name = f"{criterion.name} #{count}"
            names.add((name, criterion.member))
            criteria.append(dataclasses.replace(criterion, name=name))
    return criteria


def _per_member(item: Any, line: int, here: Path, members: Sequence[str] | None) -> list[Criterion]:
    """The criterion ``item`` for each family member it judges (its ``images:``, else all),
    with that member's ``per_image:`` keys; the one criterion when there is no family."""
    if not isinstance(item, YamlMapping):
        return [_criterion(item, line, here)]
    if members is None:
        for key in ("images", "per_image"):
            if key in item:
                raise Invalid(
                    f"{key}: names members of an image family, but this session tests one "
                    "image: declare the family under a top-level images: (or give --image "
                    f"several times), or remove {key}",
                    item.key_lines[key],
                )
        return [_criterion(item, line, here)]
    selected = list(members)
    if "images" in item:
        selected = _member_ids(item["images"], item.key_lines["images"], members, "images")
    overrides: dict[str, YamlMapping] = {}
    if "per_image" in item:
        per_image, where = item["per_image"], item.key_lines["per_image"]
        if not isinstance(per_image, YamlMapping) or not per_image:
            raise Invalid(
                f"per_image: expected a mapping of member ids to keys, got {shown(per_image)}: "
                "write per_image: {cpu: {total: 8GB}}",
                where,
            )
        _member_ids(list(per_image), where, members, "per_image")
        for member, keys in per_image.items():
            if not isinstance(keys, YamlMapping):
                raise Invalid(
                    f"per_image.{member}: expected a mapping of the check's keys, got "
                    f"{shown(keys)}: write per_image: {{{member}: {{total: 8GB}}}}",
                    per_image.key_lines[member],
                )
            for key in ("check", "images", "per_image"):
                if key in keys:
                    raise Invalid(
                        f"per_image.{member}.{key}: {key} is the criterion's own: give it "
                        "beside per_image, not in it",
                        keys.key_lines[key],
                    )
            overrides[member] = keys
    unused = [member for member in overrides if member not in selected]
    if unused:
        raise Invalid(
            f"per_image: member {unused[0]} is not one of this criterion's images "
            f"({', '.join(selected)}): add it to images, or remove its keys",
            item.key_lines["per_image"],
        )
    found = []
    for member in selected:
        merged = YamlMapping({k: v for k, v in item.items() if k not in ("images", "per_image")})
        merged.line = item.line
        merged.key_lines = {
            k: v for k, v in item.key_lines.items() if k not in ("images", "per_image")
        }
        if member in overrides:
            merged.update(overrides[member])
            merged.key_lines.update(overrides[member].key_lines)
        try:
            criterion = _criterion(merged, line, here)
        except Invalid as exc:
            raise Invalid(f"for member {member}: {exc.message}", exc.line) from None
        found.append(dataclasses.replace(criterion, member=member))
    return found


def _member_ids(value: Any, line: int, members: Sequence[str], key: str) -> list[str]:
    if isinstance(value, list) and any(isinstance(v, (bool, int, float)) for v in value):
        raise Invalid(
            f"{key}: {shown(value)} has ids that YAML reads as numbers or booleans: quote them, "
            f'e.g. ["1", "on"]',
            line,
        )
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise Invalid(
            f"{key}: expected a list of member ids like [{members[0]}], got {shown(value)}", line
        )
    for member in value:
        if member not in members:
            raise Invalid(
                f"{key}: unknown member {shown(member)}{_did_you_mean(member, list(members))}: "
                f"the family's members are {', '.join(members)}",
                line,
            )
    return [member for member in members if member in value]


def _criterion(item: Any, line: int, here: Path) -> Criterion:
    if not isinstance(item, YamlMapping):
        raise Invalid(f"a criterion is {shown(item)}, not a mapping: write - check: non_root", line)
    check = _check_of(item)
    allowed = [key.name for key in check.keys]
    for key, key_line in item.key_lines.items():
        if key not in allowed and key not in COMMON_KEYS:
            takes = ", ".join(allowed) if allowed else "no keys of its own"
            raise Invalid(
                f"unknown key {shown(key)} for check {check.name}"
                f"{_did_you_mean(key, [*allowed, *COMMON_KEYS])}: {check.name} takes {takes} "
                "(and name, waive)",
                key_line,
            )
    for key in check.keys:
        if key.required and key.name not in item:
            raise Invalid(
                f"check {check.name} needs {key.name}: add e.g. {key.name}: "
                f"{json.dumps(key.example, ensure_ascii=False)}",
                item.line,
            )
    values = {
        key.name: _value(key, item, here)
        for key in check.keys
        if key.name in item or key.default is not None
    }
    _cross_key_rules(check, item)
    present = [key for key in check.keys if key.name in values]
    default_name = f"{check.name} {check.title(values)}".rstrip()
    return Criterion(
        check=check.name,
        name=_common(item, "name", TEXT) or default_name,
        args={key.keyword: values[key.name] for key in present if key.keyword},
        line=item.line,
        waive=_common(item, "waive", REASON),
        needs=check.needs.union(*(key.needs for key in present if values[key.name] is True)),
        run_options={
            **check.run_options,
            **{key.name: values[key.name] for key in present if key.container_option},
        },
    )


def _check_of(item: YamlMapping) -> Check:
    if "check" not in item:
        raise Invalid(
            f"a criterion has no check: add check: with one of {', '.join(CHECKS)}", item.line
        )
    name, line = item["check"], item.key_lines["check"]
    if not isinstance(name, str):
        raise Invalid(f"check: expected a check name like non_root, got {shown(name)}", line)
    if name not in CHECKS:
        raise Invalid(
            f"unknown check {shown(name)}{_did_you_mean(name, list(CHECKS))}: "
            f"the checks are {', '.join(CHECKS)}",
            line,
        )
    return CHECKS[name]


def _value(key: Key, item: YamlMapping, here: Path) -> Any:
    given = key.name in item
    value = item[key.name] if given else key.default
    line = item.key_lines[key.name] if given else item.line
    try:
        converted = key.kind.convert(value)
    except WrongType:
        raise Invalid(
            f"{key.name}: expected {key.kind.expected}, got {shown(value)}", line
        ) from None
    except Invalid as exc:
        where = f"{key.name}.{exc.subkey}" if exc.subkey else key.name
        raise Invalid(f"{where}: {exc.message}", exc.line or line) from None
    return here / converted if key.kind is SPEC_FILE else converted


def _cross_key_rules(check: Check, item: YamlMapping) -> None:
    if check.at_least_one and not any(name in item for name in check.at_least_one):
        first = next(k for k in map(check.key, check.at_least_one) if k.example is not None)
        raise Invalid(
            f"check {check.name} checks nothing: give at least one of "
            f"{', '.join(check.at_least_one)}, e.g. {first.name}: {json.dumps(first.example)}",
            item.line,
        )
    given = [name for name in check.together if name in item]
    if given and len(given) < len(check.together):
        missing = check.key(next(name for name in check.together if name not in item))
        raise Invalid(
            f"{given[0]} needs {missing.name} too: add e.g. {missing.name}: "
            f"{json.dumps(missing.example)}",
            item.key_lines[given[0]],
        )


def _common(item: YamlMapping, name: str, kind: Kind) -> Any:
    if name not in item:
        return None
    try:
        return kind.convert(item[name])
    except WrongType:
        raise Invalid(
            f"{name}: expected {kind.expected}, got {shown(item[name])}", item.key_lines[name]
        ) from None


# --- JSON Schema -----------------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of imagecheck.yaml, made from :data:`CHECKS`.

    Editors that read it (the YAML language server, JetBrains IDEs) complete each check's own
    keys and flag wrong types. The package ships it as ``imagecheck.schema.json``.
    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "imagecheck.yaml",
        "description": "Acceptance criteria for a container image, run by pytest-imagecheck.",
        "type": "object",
        "properties": {
            "version": {"const": 1, "description": "The format version; only 1 exists."},
            "criteria": {
                "type": "array",
                "minItems": 1,
                "description": "The criteria; each becomes one test (one per member of a family).",
                "items": {"$ref": "#/$defs/criterion"},
            },
            "images": {
                "type": "object",
                "minProperties": 1,
                "description": "The family of images under test, by member id: a reference "
                "to test, or image (its tag) and build.",
                "propertyNames": {"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
                "additionalProperties": {"$ref": "#/$defs/member"},
            },
        },
        "anyOf": [{"required": ["criteria"]}, {"required": ["images"]}],
        "additionalProperties": False,
        "$defs": {
            "criterion": {
                "type": "object",
                "required": ["check"],
                "properties": {
                    "check": {
                        "enum": list(CHECKS),
                        "description": "Which check; each takes its own keys.",
                    }
                },
                "allOf": [
                    {
                        "if": {"properties": {"check": {"const": name}}, "required": ["check"]},
                        "then": {"$ref": f"#/$defs/{name}"},
                    }
                    for name in CHECKS
                ],
            },
            "member": {
                "oneOf": [
                    {"type": "string", "description": "A reference to test, e.g. app:ci."},
                    {
                        "type": "object",
                        "properties": {
                            "image": {
                                "type": "string",
                                "description": "The reference to test, or the tag the build gets.",
                            },
                            "build": {
                                "oneOf": [
                                    {"type": "string", "description": "The context folder."},
                                    {
                                        "type": "object",
                                        "properties": {
                                            "context": {"type": "string"},
                                            "dockerfile": {"type": "string"},
                                            "target": {"type": "string"},
                                            "args": {
                                                "type": "object",
                                                "additionalProperties": {
                                                    "type": ["string", "number"]
                                                },
                                            },
                                        },
                                        "additionalProperties": False,
                                    },
                                ]
                            },
                        },
                        "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
                        "additionalProperties": False,
                    },
                ]
            },
            **{name: check.schema(_COMMON_SCHEMA) for name, check in CHECKS.items()},
        },
    }


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
