"""A check's declaration for imagecheck.yaml: its keys, their kinds and defaults, and the
function it runs.

Each check module declares its own checks beside their functions (``NON_ROOT`` in
``checks/user.py``, ...), and :mod:`~pytest_imagecheck.spec` gathers them: one source, from
which the loader's validation, the default test names and the JSON Schema derive. A
declaration holds the function itself and is checked against its signature when it is
made, so a key the function does not take fails at import, not when a criterion runs::

    TypeError: check non_root: key 'runtim' is passed as runtim=, which assert_non_root(image,
    *, container=None, allow=()) does not take: name the parameter with Key(arg=...), or fix
    the key
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .kinds import Kind

__all__ = ["Check", "Key", "names_in", "pairs", "value_of"]

#: What a criterion's first argument can be: the session's facts, or a container started for
#: the criterion.
SUBJECTS = ("image", "container", "dockerfile", "run_container")


@dataclass(frozen=True)
class Key:
    """One key a check takes in imagecheck.yaml.

    A key becomes one of three things. Usually a keyword argument of the check function,
    named ``arg`` (default: the key's own name). A flag with ``needs`` adds those facts to the
    criterion's needs when true and is not passed (``runtime: true`` passes the session
    container). With ``container_option``, an option for the container the check starts.
    ``default`` is written as in YAML and goes through ``kind`` like a given value.
    """

    name: str
    kind: Kind
    doc: str
    required: bool = False
    default: Any = None
    example: Any = None
    arg: str | None = None
    needs: frozenset[str] = frozenset()
    container_option: bool = False

    @property
    def keyword(self) -> str | None:
        """The check function's keyword argument this key becomes, or None."""
        if self.needs or self.container_option:
            return None
        return self.arg or self.name

    def schema(self) -> dict[str, Any]:
        """This key's JSON Schema, with its documentation."""
        schema = {**self.kind.schema, "description": self.doc}
        if self.default is not None:
            schema["default"] = self.default
        if self.example is not None:
            schema["examples"] = [self.example]
        return schema


def _no_title(values: Mapping[str, Any]) -> str:
    return ""


@dataclass(frozen=True)
class Check:
    """One ``check:`` value: its keys, the function that runs it and what it is given.

    ``function`` is the check function. ``subject`` is the fact passed as its first argument
    (one of :data:`SUBJECTS`); ``run_container`` means a container started for this criterion
    with ``run_options`` and the ``container_option`` keys. When a criterion on ``image``
    needs ``container`` too, it is passed as ``container=``. ``title`` makes the readable part
    of the default test name from the converted values. ``at_least_one`` and ``together`` are
    rules across keys. ``reads_layers`` says which criteria read the image's layers (streamed
    once per session, and read ahead of them with a family).

    Raises TypeError when made if the declaration does not fit ``function``: a key passed as
    an argument the function does not take, a parameter without a default that no key always
    gives, or a rule that names no key.
    """

    name: str
    doc: str
    function: Callable[..., Any]
    subject: str
    keys: tuple[Key, ...] = ()
    title: Callable[[Mapping[str, Any]], str] = _no_title
    at_least_one: tuple[str, ...] = ()
    together: tuple[str, ...] = ()
    run_options: Mapping[str, Any] = field(default_factory=dict)
    #: Whether its criteria read the image's layers: all (True), or those that give this key.
    reads_layers: bool | str = False

    def __post_init__(self) -> None:
        _check_declaration(self)

    @property
    def needs(self) -> frozenset[str]:
        """What every criterion of this check needs; flags can add more."""
        # A container started for the criterion is a container of the image under test.
        return frozenset(
            {self.subject, "image"} if self.subject == "run_container" else {self.subject}
        )

    def key(self, name: str) -> Key:
        """The key called ``name``."""
        return next(key for key in self.keys if key.name == name)

    def schema(self, common: Mapping[str, Any]) -> dict[str, Any]:
        """JSON Schema of one criterion of this check; ``common`` are the schemas of the keys
        every criterion may have (``name``, ``waive``)."""
        schema: dict[str, Any] = {
            "description": self.doc,
            "type": "object",
            "properties": {
                "check": {"const": self.name},
                **common,
                **{key.name: key.schema() for key in self.keys},
            },
            "required": ["check", *(key.name for key in self.keys if key.required)],
            "additionalProperties": False,
        }
        if self.at_least_one:
            schema["anyOf"] = [{"required": [name]} for name in self.at_least_one]
        if self.together:
            schema["dependentRequired"] = {
                name: [other for other in self.together if other != name] for name in self.together
            }
        return schema


def _check_declaration(check: Check) -> None:
    """Raise TypeError where ``check`` does not fit its function's signature."""
    name = getattr(check.function, "__name__", repr(check.function))
    try:
        signature = inspect.signature(check.function)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"check {check.name}: {name} has no signature to check ({exc})") from None
    bare = signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty,
    )
    shown = f"{name}{bare}"
    if check.subject not in SUBJECTS:
        raise TypeError(
            f"check {check.name}: subject {check.subject!r} is not one of {', '.join(SUBJECTS)}"
        )
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    ):
        raise TypeError(
            f"check {check.name}: {shown} takes no positional first argument for the "
            f"{check.subject}"
        )
    rest = parameters[1:]
    any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in rest)
    keywords = {
        p.name
        for p in rest
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    names = [key.name for key in check.keys]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"check {check.name}: key {twice[0]!r} is declared twice")
    if isinstance(check.reads_layers, str) and check.reads_layers not in names:
        raise TypeError(f"check {check.name}: reads_layers names no key ({check.reads_layers!r})")
    passed = [(key.name, key.keyword) for key in check.keys if key.keyword]
    if check.subject == "image" and any("container" in key.needs for key in check.keys):
        passed.append(("needs container", "container"))
    for key_name, keyword in passed:
        if keyword not in keywords and not any_keyword:
            raise TypeError(
                f"check {check.name}: key {key_name!r} is passed as {keyword}=, which {shown} "
                "does not take: name the parameter with Key(arg=...), or fix the key"
            )
    always = {
        key.keyword
        for key in check.keys
        if key.keyword and (key.required or key.default is not None)
    }
    missing = [
        p.name
        for p in rest
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and p.name not in always
    ]
    if missing:
        raise TypeError(
            f"check {check.name}: {shown} needs {missing[0]}=, which no key always gives: "
            "declare the key required=True or give it a default"
        )
    for rule in ("at_least_one", "together"):
        unknown = [n for n in getattr(check, rule) if n not in names]
        if unknown:
            raise TypeError(f"check {check.name}: {rule} names {unknown[0]!r}, which is no key")
    # The loader's messages for a missing key quote its example ("add e.g. base: ...").
    quoted = [n for n in names if check.key(n).required] + list(check.together)
    if check.at_least_one and all(check.key(n).example is None for n in check.at_least_one):
        quoted.append(check.at_least_one[0])
    for key_name in quoted:
        if check.key(key_name).example is None:
            raise TypeError(
                f"check {check.name}: key {key_name!r} needs an example, which the message "
                "that asks for it quotes"
            )


def _show_value(value: Any) -> str:
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def pairs(*names: str) -> Callable[[Mapping[str, Any]], str]:
    """A title of ``name=value`` pairs for those of ``names`` given: ``total=2.5GB wasted=50MB``."""

    def title(values: Mapping[str, Any]) -> str:
        return " ".join(f"{name}={_show_value(values[name])}" for name in names if name in values)

    return title


def value_of(name: str) -> Callable[[Mapping[str, Any]], str]:
    """A title that is the value of key ``name``: ``/app/main.py``."""

    def title(values: Mapping[str, Any]) -> str:
        return str(values[name])

    return title


def names_in(name: str) -> Callable[[Mapping[str, Any]], str]:
    """A title that lists the names in mapping key ``name``: ``APP_ENV DEBUG``."""

    def title(values: Mapping[str, Any]) -> str:
        return " ".join(values[name])

    return title
