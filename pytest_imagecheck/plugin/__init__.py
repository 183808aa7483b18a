"""pytest-imagecheck's pytest plugin: the entry point, and the list of its feature modules.

Each feature module carries its own options, hooks and fixtures, as pytest's own plugins do;
domain logic lives below, in the modules they import. Nothing here knows how an image is
inspected or a container started.

=================  =====================================================================
``options``        the ``imagecheck`` option group, ini keys, :class:`Settings`
``session``        session id, the engine connection, cleanup on every exit, xdist, signals
``collection``     ``imagecheck.yaml`` files, waivers, shared engine work of criteria runs
``cst``            container-structure-test files, natively: patterns, allow options
``outcomes``       evidence per test, one-line failures, container log tails, GPU verdicts
``family``         tests parametrized over a family's members, ``images`` marker, xdist
``evidence_report``  ``--imagecheck-report``
``ahead``          containers the selected tests need, started ahead of them
``fixtures``       ``image``, ``container``, ``run_container``, ``dockerfile``, ...
=================  =====================================================================
"""

pytest_plugins = [
    "pytest_imagecheck.plugin.options",
    "pytest_imagecheck.plugin.session",
    "pytest_imagecheck.plugin.collection",
    "pytest_imagecheck.plugin.cst",
    "pytest_imagecheck.plugin.outcomes",
    "pytest_imagecheck.plugin.family",
    "pytest_imagecheck.plugin.evidence_report",
    "pytest_imagecheck.plugin.ahead",
    "pytest_imagecheck.plugin.fixtures",
]
