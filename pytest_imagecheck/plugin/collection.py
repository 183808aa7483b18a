"""Collection: ``imagecheck.yaml`` files as criteria, waivers, and the shared engine work of
runs of neighbouring criteria."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from ..items import CriteriaFile, share_work, waive
from .options import SETTINGS
from .session import is_worker, worker_input

#: xdist modes that send all criteria of a file to one worker (or all of them to each); a
#: family's "member" mode sends all of a member's.
_WHOLE_FILES = ("loadfile", "loadscope", "each", "member")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``waive`` marker."""
    config.addinivalue_line(
        "markers",
        "waive(reason): run the criterion but accept its failure on purpose; reported as "
        "waived with the reason, never as passed",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CriteriaFile | None:
    """Collect ``imagecheck.yaml`` (and the ``imagecheck_yaml`` patterns) as criteria."""
    patterns = parent.config.getini("imagecheck_yaml")
    if any(fnmatch.fnmatch(file_path.name, pattern) for pattern in patterns):
        found: CriteriaFile = CriteriaFile.from_parent(parent, path=file_path)
        family = parent.config.stash[SETTINGS].family
        if family is not None:
            found.members = family.ids
            found.family_file = family.source
        return found
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Turn ``@pytest.mark.waive(reason)`` into a visible, reasoned waiver."""
    for item in items:
        marker = item.get_closest_marker("waive")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            if not isinstance(reason, str) or not reason.strip():
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.waive needs a reason, "
                    'e.g. @pytest.mark.waive("base pinned upstream, tracked in OPS-12")'
                )
            waive(item, reason)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Let runs of consecutive command (or file) criteria share one exec (or read per path).

    Not in an xdist worker that may get only part of a run (``--dist load``, ``worksteal``):
    the work of the members sent elsewhere would be done in its container too.
    """
    config = session.config
    if not is_worker(config) or worker_input(config).get("imagecheck_dist") in _WHOLE_FILES:
        share_work(session.items)
