"""YAML with line numbers: PyYAML's safe loader, whose mappings and sequences remember the
line each key and item is written on, and which refuses a key given twice.

PyYAML reads YAML 1.1: ``yes``, ``no``, ``on`` and ``off`` are booleans, and an unquoted
``0644`` is the octal number 420; the kinds of :mod:`~pytest_imagecheck.kinds` refuse numbers
where a mode or a version is meant, and say to quote them.

ruamel.yaml would give line numbers and refuse duplicate keys too, but it reads YAML 1.2 by
default: ``runtime: yes`` becomes the string "yes" (an error here) and ``mode: 0755`` the
decimal 755, so files that load today would fail or mean something else, and it would add a
dependency for what the loader below does in a few lines.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .kinds import Invalid, shown

__all__ = ["YamlMapping", "YamlSequence", "load_yaml", "read_text"]


def read_text(path: str | os.PathLike[str], error: type[Exception]) -> str:
    """The text of the YAML file at ``path``; ``error`` (one line naming the file and the
    fix) when it cannot be read or is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(
            f"{os.fspath(path)}: cannot be read ({exc.strerror or exc}): check the path"
        ) from None
    except UnicodeDecodeError:
        raise error(f"{os.fspath(path)}: is not UTF-8 text: save it as UTF-8") from None


class YamlMapping(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int
    key_lines: dict[Any, int]


class YamlSequence(list[Any]):
    """A YAML sequence that remembers its line and the line of each item (1-based)."""

    line: int
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with mappings and sequences that remember where they are written,
    and duplicate keys refused instead of silently keeping the last."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[YamlMapping]:
    mapping = YamlMapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    yield mapping
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # merge keys (<<: *anchor) first, so the mapping's own win
    merged = len(node.value) - own
    own_keys: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise Invalid("a key is a list or a mapping: keys must be plain names", line)
        if index >= merged:
            if key in own_keys:
                raise Invalid(
                    f"duplicate key {shown(key)} (first on line {mapping.key_lines[key]}): "
                    "give each key once",
                    line,
                )
            own_keys.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[YamlSequence]:
    sequence = YamlSequence()
    sequence.line = node.start_mark.line + 1
    sequence.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield sequence
    sequence.extend(loader.construct_object(item, deep=True) for item in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load_yaml(text: str) -> Any:
    """The YAML document in ``text``, its mappings a :class:`YamlMapping` and its sequences a
    :class:`YamlSequence`. Raise :class:`~pytest_imagecheck.kinds.Invalid` with the line of
    a syntax error or a duplicate key.

    >>> document = load_yaml("criteria:\\n  - check: non_root\\n")
    >>> document.key_lines, document["criteria"].item_lines
    ({'criteria': 1}, [2])
    """
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        raise Invalid(
            f"not valid YAML ({problem}): check the indentation, and quote values that contain "
            '": " or start with a special character',
            mark.line + 1 if mark else 1,
        ) from None
    except yaml.reader.ReaderError as exc:
        raise Invalid(
            f"not valid YAML ({str(exc).splitlines()[0]}): remove the control character",
            text.count("\n", 0, exc.position) + 1,
        ) from None
