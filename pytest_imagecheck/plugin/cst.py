"""container-structure-test files as tests: which YAML files are CST files, the options that
allow what this plugin otherwise refuses, and the end of their runs.

A YAML file whose top level has ``schemaVersion`` is a CST file when it is given on the
command line (``pytest --image=app:1 structure-test.yaml``) or, in folders pytest collects,
when its name matches the ``imagecheck_cst`` ini patterns. Files that ``imagecheck_yaml``
names are imagecheck.yaml files, never CST files.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .options import SETTINGS

if TYPE_CHECKING:
    from ..cst.items import CstYamlFile

#: The default ``imagecheck_cst`` patterns: the names CST files are usually given.
DEFAULT_PATTERNS = [
    "*structure-test*.yaml",
    "*structure-test*.yml",
    "*structure_test*.yaml",
    "*structure_test*.yml",
    "*_cst.yaml",
    "*_cst.yml",
]

#: (option, ini key, what it allows).
_ALLOW = [
    (
        "--cst-allow-privileged",
        "imagecheck_cst_allow_privileged",
        "privileged",
        "run container-structure-test files whose containerRunOptions ask for privileged "
        "containers (refused otherwise)",
    ),
    (
        "--cst-allow-bind-mounts",
        "imagecheck_cst_allow_bind_mounts",
        "bindMounts",
        "run container-structure-test files whose containerRunOptions mount host paths "
        "(refused otherwise)",
    ),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """The CST file patterns, and the two options that allow what CST files may ask for."""
    group = parser.getgroup("imagecheck", "container image acceptance checks (pytest-imagecheck)")
    for option, ini, _, help_text in _ALLOW:
        group.addoption(option, action="store_true", default=None, dest=ini, help=help_text)
        parser.addini(ini, help_text, type="bool")
    parser.addini(
        "imagecheck_cst",
        "file name patterns collected as container-structure-test files (YAML whose top level "
        "has schemaVersion)",
        type="args",
        default=DEFAULT_PATTERNS,
    )


def _allowed(config: pytest.Config) -> frozenset[str]:
    allowed = set()
    for _, ini, key, _ in _ALLOW:
        given = config.getoption(ini, None)
        if given is None:
            given = config.getini(ini)
        if given:
            allowed.add(key)
    return frozenset(allowed)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CstYamlFile | None:
    """Collect a CST file given on the command line or matching ``imagecheck_cst``."""
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    config = parent.config
    name = file_path.name
    if any(fnmatch.fnmatch(name, pattern) for pattern in config.getini("imagecheck_yaml")):
        return None
    named = any(fnmatch.fnmatch(name, pattern) for pattern in config.getini("imagecheck_cst"))
    if not named and not parent.session.isinitpath(file_path):
        return None
    # Imported on first use: most sessions have no CST file.
    from ..cst.items import CstYamlFile
    from ..cst.schema import is_cst_document

    if not named:
        # Given by path only: a CST file when it says so (schemaVersion at the top level).
        try:
            text = file_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if not is_cst_document(text):
            return None
    # A file the imagecheck_cst patterns name is a CST file whatever it holds: an empty,
    # undecodable or malformed one gets the CST reader's one-line error, not "not found".
    found: CstYamlFile = CstYamlFile.from_parent(parent, path=file_path)
    family = config.stash[SETTINGS].family
    if family is not None:
        found.members = family.ids
    found.allowed = _allowed(config)
    found.start_ahead = getattr(config.stash[SETTINGS], "start_ahead", True)
    return found


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the containers and images the CST runs made, before the session's cleanup."""
    if "pytest_imagecheck.cst.items" in sys.modules:
        from ..cst.items import close_runners

        close_runners(session.config)
