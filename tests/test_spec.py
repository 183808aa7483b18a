"""imagecheck.yaml: criteria parsed with lines and readable names, one-line errors that name the
file and line, the shipped JSON Schema, and criteria that run the same check functions."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_imagecheck import spec
from pytest_imagecheck.checks import structure
from pytest_imagecheck.declaration import Check, Key
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.kinds import BOOL, TEXT, TEXTS
from pytest_imagecheck.spec import CHECKS, Criterion, SpecError, json_schema, load_spec, parse_spec
from pytest_imagecheck.units import parse_mode, port_key

EXAMPLE = r"""# imagecheck.yaml: acceptance criteria for the image under test
criteria:
  - check: non_root
    runtime: true            # also check the running container's uid (passes container=)
  - check: healthcheck
    interval: "<=30s"
    timeout: 10s
    retries: 3
    test: /health/ready
  - check: base_images_pinned
  - check: built_from
    base: 127.0.0.1:5000/autovoice-base@sha256:...
  - check: size
    total: 2.5GB
    wasted: 50MB
  - check: no_secrets
    accept: {"env:DEMO_PASSWORD": "demo image"}
  - check: endpoint
    path: /health/ready
    status: 200
    json: {status: ready}
    timeout: 60s
  - check: healthy
  - check: hardened          # a separate container with read-only root, tmpfs, cap_drop ALL
    path: /health/ready
    tmpfs: [/tmp]
  - check: env
    expect: {APP_ENV: prod}
  - check: labels
    expect: {org.opencontainers.image.title: autovoice}
  - check: exposed_ports
    expect: [5000]
    exactly: true
  - check: config
    workdir: /app
    user: autovoice
  - check: file
    path: /app/main.py
    mode: "0644"
    owner: autovoice
    contains: "def main"
  - check: command
    run: [python3, --version]
    stdout_matches: "3\\.11"
  - check: cuda_torch
    cuda: "12.1"
    torch: "2.5"
    strict_minor: true
    gpu: true                # needs GPUs: the item is marked gpu
"""

SCHEMA_FILE = Path(spec.__file__).with_name("imagecheck.schema.json")


def criteria(text: str) -> dict[str, Criterion]:
    return {criterion.name: criterion for criterion in parse_spec(text).criteria}


def one(body: str) -> Criterion:
    """The single criterion of a spec whose only item is ``body`` (indented YAML lines)."""
    (criterion,) = parse_spec("criteria:\n" + body).criteria
    return criterion


def test_full_example_gets_readable_default_names_in_file_order() -> None:
    assert [c.name for c in parse_spec(EXAMPLE).criteria] == [
        "non_root",
        "healthcheck interval<=30s timeout=10s retries=3",
        "base_images_pinned",
        "built_from 127.0.0.1:5000/autovoice-base@sha256:...",
        "size total=2.5GB wasted=50MB",
        "no_secrets",
        "endpoint /health/ready -> 200",
        "healthy",
        "hardened /health/ready -> 200",
        "env APP_ENV",
        "labels org.opencontainers.image.title",
        "exposed_ports 5000 exactly",
        "config workdir=/app user=autovoice",
        "file /app/main.py",
        "command python3 --version",
        "cuda_torch cuda=12.1 torch=2.5",
    ]


def test_full_example_args_are_the_check_functions_keyword_arguments() -> None:
    assert {name: c.args for name, c in criteria(EXAMPLE).items()} == {
        "non_root": {},
        "healthcheck interval<=30s timeout=10s retries=3": {
            "interval": "<=30s",
            "timeout": "10s",
            "retries": 3,
            "test": "/health/ready",
        },
        "base_images_pinned": {},
        "built_from 127.0.0.1:5000/autovoice-base@sha256:...": {
            "base": "127.0.0.1:5000/autovoice-base@sha256:..."
        },
        "size total=2.5GB wasted=50MB": {"total": "2.5GB", "wasted": "50MB"},
        "no_secrets": {"accept": {"env:DEMO_PASSWORD": "demo image"}},
        "endpoint /health/ready -> 200": {
            "path": "/health/ready",
            "status": 200,
            "json": {"status": "ready"},
            "timeout": timedelta(seconds=60),
        },
        "healthy": {},
        "hardened /health/ready -> 200": {"path": "/health/ready", "status": 200},
        "env APP_ENV": {"expected": {"APP_ENV": "prod"}},
        "labels org.opencontainers.image.title": {
            "expected": {"org.opencontainers.image.title": "autovoice"}
        },
        "exposed_ports 5000 exactly": {"expected": [5000], "exactly": True},
        "config workdir=/app user=autovoice": {"workdir": "/app", "user": "autovoice"},
        "file /app/main.py": {
            "path": "/app/main.py",
            "mode": "0644",
            "owner": "autovoice",
            "contains": "def main",
        },
        "command python3 --version": {"run": ["python3", "--version"], "stdout_matches": r"3\.11"},
        "cuda_torch cuda=12.1 torch=2.5": {"cuda": "12.1", "torch": "2.5", "strict_minor": True},
    }


def test_args_are_plain_dicts_and_lists_not_the_loaders_own_types() -> None:
    args = criteria(EXAMPLE)["endpoint /health/ready -> 200"].args
    assert type(args["json"]) is dict
    assert type(criteria(EXAMPLE)["command python3 --version"].args["run"]) is list


def test_each_criterion_knows_the_line_of_its_item() -> None:
    lines = [c.line for c in parse_spec(EXAMPLE).criteria]
    assert lines == [3, 5, 10, 11, 13, 16, 18, 23, 24, 27, 29, 31, 34, 37, 42, 45]
    example_lines = EXAMPLE.splitlines()
    assert all(example_lines[line - 1].lstrip().startswith("- check:") for line in lines)


def test_needs_follow_the_check_and_its_flags() -> None:
    needs = {c.check: c.needs for c in parse_spec(EXAMPLE).criteria}
    assert needs["non_root"] == {"image", "container"}
    assert needs["healthcheck"] == {"image"}
    assert needs["base_images_pinned"] == {"dockerfile"}
    assert needs["endpoint"] == needs["healthy"] == needs["file"] == {"container"}
    assert needs["command"] == {"container"}
    assert needs["hardened"] == {"image", "run_container"}
    assert needs["cuda_torch"] == {"image", "container", "gpu"}
    assert one("  - check: non_root\n").needs == {"image"}
    assert one("  - check: cuda_torch\n    gpu: false\n").needs == {"image"}


def test_hardened_criterion_carries_the_options_of_its_container() -> None:
    hardened = criteria(EXAMPLE)["hardened /health/ready -> 200"]
    assert hardened.run_options == {
        "read_only": True,
        "tmpfs": {"/tmp": ""},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
    assert criteria(EXAMPLE)["endpoint /health/ready -> 200"].run_options == {}


def test_waived_criterion_is_kept_with_its_reason() -> None:
    waived = one('  - check: non_root\n    waive: "runs as root until #42 lands"\n')
    assert waived.waive == "runs as root until #42 lands"
    assert all(c.waive is None for c in parse_spec(EXAMPLE).criteria)


def test_name_replaces_the_default_name() -> None:
    assert one("  - check: healthy\n    name: service turns healthy\n").name == (
        "service turns healthy"
    )


def test_clashing_names_are_numbered_from_the_second() -> None:
    names = [
        c.name
        for c in parse_spec(
            "criteria:\n"
            "  - check: healthy\n"
            "  - check: healthy\n"
            "    timeout: 2m\n"
            "  - check: non_root\n"
            '    name: "healthy #2"\n'
        ).criteria
    ]
    assert names == ["healthy", "healthy #2", "healthy #2 #2"]


def test_endpoint_path_and_status_default_as_in_the_python_api() -> None:
    endpoint = one("  - check: endpoint\n")
    assert (endpoint.name, endpoint.args) == (
        "endpoint /health -> 200",
        {"path": "/health", "status": 200},
    )
    assert (
        one("  - check: endpoint\n    status: [200, 204]\n").name == "endpoint /health -> 200/204"
    )


@pytest.mark.parametrize("check", ["endpoint", "hardened"])
def test_request_timeout_is_a_duration_key_of_endpoint_and_hardened(check: str) -> None:
    criterion = one(f"  - check: {check}\n    timeout: 30s\n    request_timeout: 10s\n")
    assert criterion.args["request_timeout"] == timedelta(seconds=10)
    assert "request_timeout" in inspect.signature(CHECKS[check].function).parameters
    with pytest.raises(SpecError, match=r"request_timeout: bad duration \"soon\""):
        one(f"  - check: {check}\n    request_timeout: soon\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "endpoint\n    timeout: 0s\n",
            "imagecheck.yaml:3: timeout: 0s leaves no time to wait: give a duration above 0, "
            'e.g. "60s"',
        ),
        (
            "endpoint\n    timeout: 30s\n    request_timeout: 0s\n",
            "imagecheck.yaml:4: request_timeout: 0s leaves no time for a request: give a "
            'duration above 0, e.g. "10s"',
        ),
        (
            "hardened\n    request_timeout: 0\n",
            "imagecheck.yaml:3: request_timeout: 0s leaves no time for a request: give a "
            'duration above 0, e.g. "10s"',
        ),
        (
            "hardened\n    timeout: 0.0ms\n",
            "imagecheck.yaml:3: timeout: 0s leaves no time to wait: give a duration above 0, "
            'e.g. "60s"',
        ),
        (
            "healthy\n    timeout: 0\n",
            "imagecheck.yaml:3: timeout: 0s leaves no time to wait: give a duration above 0, "
            'e.g. "60s"',
        ),
    ],
)
def test_zero_timeouts_are_refused_when_the_file_is_read(body: str, message: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(ITEM + body)
    assert str(refused.value) == message


def test_default_names_show_bounds_as_written_and_durations_in_dockers_form() -> None:
    check = one('  - check: healthcheck\n    start_period: 90\n    retries: ">= 3"\n')
    assert check.name == "healthcheck start_period=1m30s retries>=3"


def test_command_given_as_one_string_keeps_it() -> None:
    command = one('  - check: command\n    run: "id -u"\n    exit_code: 0\n')
    assert (command.name, command.args) == ("command id -u", {"run": "id -u", "exit_code": 0})


def test_relative_baseline_is_resolved_against_the_spec_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "acceptance" / "imagecheck.yaml"
    path.parent.mkdir()
    path.write_text(
        "version: 1\ncriteria:\n"
        "  - check: size\n    baseline: size-baseline.json\n    growth: 10%\n",
        encoding="utf-8",
    )
    loaded = load_spec(path)
    assert loaded.path == path
    assert loaded.criteria[0].args == {
        "baseline": tmp_path / "acceptance" / "size-baseline.json",
        "growth": "10%",
    }


def test_anchors_and_merge_keys_share_settings_between_criteria() -> None:
    both = parse_spec(
        "criteria:\n"
        "  - &ready {check: endpoint, path: /health/ready, timeout: 2m}\n"
        "  - <<: *ready\n"
        "    path: /health/live\n"
    ).criteria
    assert [(c.args["path"], c.args["timeout"]) for c in both] == [
        ("/health/ready", timedelta(minutes=2)),
        ("/health/live", timedelta(minutes=2)),
    ]


def test_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^.*nowhere\.yaml: cannot be read \(No such file"):
        load_spec(tmp_path / "nowhere.yaml")


ITEM = "criteria:\n  - check: "


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "criteria:\n  - check: non_root\n    runtime: [true\n",
            "imagecheck.yaml:4: not valid YAML (expected ',' or ']', but got '<stream end>'): "
            'check the indentation, and quote values that contain ": " or start with a special '
            "character",
            id="malformed YAML",
        ),
        pytest.param(
            "criteria:\n  - check: healthy\n    name: bell\x07\n",
            "imagecheck.yaml:3: not valid YAML (unacceptable character #x0007: special "
            "characters are not allowed): remove the control character",
            id="control character",
        ),
        pytest.param(
            "# nothing yet\n",
            'imagecheck.yaml:1: the file is empty: list the checks, e.g. "criteria:\\n  - check: '
            'non_root"',
            id="empty file",
        ),
        pytest.param(
            "- check: non_root\n",
            "imagecheck.yaml:1: the top level is a list, not a mapping: start with criteria: and "
            "a list of checks",
            id="top level is a list",
        ),
        pytest.param(
            "criterias:\n  - check: non_root\n",
            'imagecheck.yaml:1: unknown top-level key "criterias" (did you mean criteria?): the '
            "top level takes criteria, version and images",
            id="unknown top-level key",
        ),
        pytest.param(
            "version: 2\ncriteria:\n  - check: non_root\n",
            "imagecheck.yaml:1: unsupported version 2: this pytest-imagecheck reads version 1",
            id="unsupported version",
        ),
        pytest.param(
            "version: 1\n",
            "imagecheck.yaml:1: no criteria: add criteria: with a list of checks",
            id="no criteria",
        ),
        pytest.param(
            "criteria:\n  check: non_root\n",
            'imagecheck.yaml:1: criteria: expected a list of checks, got {"check": "non_root"}: '
            "write each as an item, - check: non_root",
            id="criteria not a list",
        ),
        pytest.param(
            "criteria: []\n",
            "imagecheck.yaml:1: criteria is empty: list at least one check, e.g. - check: non_root",
            id="no checks",
        ),
        pytest.param(
            "criteria:\n  - non_root\n",
            'imagecheck.yaml:2: a criterion is "non_root", not a mapping: write - check: non_root',
            id="item not a mapping",
        ),
        pytest.param(
            "criteria:\n  - check: healthy\n  - timeout: 30s\n",
            "imagecheck.yaml:3: a criterion has no check: add check: with one of non_root, "
            "healthcheck, base_images_pinned, built_from, size, no_secrets, endpoint, healthy, "
            "hardened, env, labels, exposed_ports, config, file, command, cuda_torch, versions, "
            "pip_consistent, installed_once, absent, no_stray_files",
            id="no check",
        ),
        pytest.param(
            ITEM + "non-root\n",
            'imagecheck.yaml:2: unknown check "non-root" (did you mean non_root?): the checks '
            "are non_root, healthcheck, base_images_pinned, built_from, size, no_secrets, "
            "endpoint, healthy, hardened, env, labels, exposed_ports, config, file, command, "
            "cuda_torch, versions, pip_consistent, installed_once, absent, no_stray_files",
            id="unknown check, close to a known one",
        ),
        pytest.param(
            ITEM + "5\n",
            "imagecheck.yaml:2: check: expected a check name like non_root, got 5",
            id="check not a string",
        ),
        pytest.param(
            ITEM + "healthcheck\n    intervall: 30s\n",
            'imagecheck.yaml:3: unknown key "intervall" for check healthcheck (did you mean '
            "interval?): healthcheck takes interval, timeout, start_period, retries, test "
            "(and name, waive)",
            id="unknown key, close to a known one",
        ),
        pytest.param(
            ITEM + "healthy\n    retries: 3\n",
            'imagecheck.yaml:3: unknown key "retries" for check healthy: healthy takes timeout, '
            "wait_for_engine (and name, waive)",
            id="unknown key",
        ),
        pytest.param(
            ITEM + "file\n    mode: '0644'\n",
            'imagecheck.yaml:2: check file needs path: add e.g. path: "/app/main.py"',
            id="file without path",
        ),
        pytest.param(
            ITEM + "command\n    stdout_contains: ok\n",
            'imagecheck.yaml:2: check command needs run: add e.g. run: ["python3", "--version"]',
            id="command without run",
        ),
        pytest.param(
            ITEM + "built_from\n",
            "imagecheck.yaml:2: check built_from needs base: add e.g. base: "
            '"registry.example/base@sha256:4f0d..."',
            id="built_from without base",
        ),
        pytest.param(
            ITEM + "healthcheck\n    interval: [30s]\n",
            'imagecheck.yaml:3: interval: expected a duration like "30s" or a bound like '
            '"<=30s", got ["30s"]',
            id="wrong type",
        ),
        pytest.param(
            ITEM + "healthcheck\n    interval: 30 seconds\n",
            'imagecheck.yaml:3: interval: bad duration "30 seconds": use Docker\'s form, e.g. '
            '"30s", "1m30s", "500ms"',
            id="bad duration in a bound",
        ),
        pytest.param(
            ITEM + "healthcheck\n    timeout: =<30s\n",
            'imagecheck.yaml:3: timeout: bad bound "=<30s": start with one of <=, <, >=, >, ==, '
            "!= or give just the value",
            id="bad bound",
        ),
        pytest.param(
            ITEM + "healthcheck\n    retries: three\n",
            'imagecheck.yaml:3: retries: bad number "three": use a whole number, e.g. "3"',
            id="bad count",
        ),
        pytest.param(
            ITEM + "healthy\n    timeout: 1 minute\n",
            'imagecheck.yaml:3: timeout: bad duration "1 minute": use Docker\'s form, e.g. '
            '"30s", "1m30s", "500ms"',
            id="bad duration",
        ),
        pytest.param(
            ITEM + "size\n    total: 2.5XB\n",
            'imagecheck.yaml:3: total: bad size "2.5XB": use bytes or a number with B, kB, MB, '
            'GB, TB, KiB, MiB, GiB, TiB (e.g. "2.5GB")',
            id="bad size",
        ),
        pytest.param(
            ITEM + "size\n    growth_floor: 10MB\n",
            "imagecheck.yaml:2: check size checks nothing: give at least one of total, layer, "
            'wasted, baseline, e.g. total: "2.5GB"',
            id="size checks nothing",
        ),
        pytest.param(
            ITEM + "size\n    baseline: size-baseline.json\n",
            'imagecheck.yaml:3: baseline needs growth too: add e.g. growth: "10%"',
            id="baseline without growth",
        ),
        pytest.param(
            ITEM + "size\n    baseline: b.json\n    growth: 10\n",
            'imagecheck.yaml:4: growth: expected a percentage like "10%", got 10',
            id="growth not a percentage",
        ),
        pytest.param(
            ITEM + "endpoint\n    status: 700\n",
            "imagecheck.yaml:3: status: bad status 700: use an HTTP status code from 100 to "
            "599, e.g. 200",
            id="bad status",
        ),
        pytest.param(
            ITEM + 'endpoint\n    status: "200"\n',
            "imagecheck.yaml:3: status: expected an HTTP status code like 200, or a list of "
            'them, got "200"',
            id="status as a string",
        ),
        pytest.param(
            ITEM + "hardened\n    port: 70000\n",
            "imagecheck.yaml:3: port: bad port 70000: use a port number from 1 to 65535",
            id="bad port",
        ),
        pytest.param(
            ITEM + "endpoint\n    path: health\n",
            'imagecheck.yaml:3: path: expected an absolute path like "/app", got "health"',
            id="relative endpoint path",
        ),
        pytest.param(
            ITEM + "hardened\n    tmpfs: /tmp\n",
            'imagecheck.yaml:3: tmpfs: expected a list of absolute paths like ["/tmp"], got "/tmp"',
            id="tmpfs not a list",
        ),
        pytest.param(
            ITEM + "command\n    run: [python3, --version]\n    stdout_matches: '3\\.1('\n",
            "imagecheck.yaml:4: stdout_matches: bad regular expression '3\\.1(' (missing ), "
            "unterminated subpattern at position 4): fix the pattern; in YAML, single quotes "
            "keep backslashes as written ('3\\.11')",
            id="bad regular expression",
        ),
        pytest.param(
            ITEM + "file\n    path: /app/main.py\n    mode: 644\n",
            'imagecheck.yaml:4: mode: expected an octal mode in quotes like "0644", got the '
            "number 644: quote the mode (unquoted, YAML reads 0644 as 420 and 644 as the "
            "decimal number 644)",
            id="mode not quoted",
        ),
        pytest.param(
            ITEM + "file\n    path: /app/main.py\n    mode: '0999'\n",
            'imagecheck.yaml:4: mode: expected an octal mode in quotes like "0644", got "0999"',
            id="mode not octal",
        ),
        pytest.param(
            ITEM + "file\n    path: /app/main.py\n    mode: '17777'\n",
            'imagecheck.yaml:4: mode: bad mode "17777": above 7777, the largest file mode '
            '(setuid, setgid, sticky and rwx for all); use 3 or 4 octal digits like "0644"',
            id="mode above 7777",
        ),
        pytest.param(
            ITEM + "file\n    path: /app\n    kind: directory\n",
            'imagecheck.yaml:4: kind: expected one of file, dir, symlink, got "directory"',
            id="unknown file kind",
        ),
        pytest.param(
            ITEM + "env\n    expect:\n      APP_ENV: prod\n      APP_PORT: 5000\n",
            "imagecheck.yaml:5: expect.APP_PORT: expected a string or null (must be unset), "
            "got 5000: quote the value",
            id="env value not a string",
        ),
        pytest.param(
            ITEM + 'no_secrets\n    accept: {DEMO_PASSWORD: "demo image"}\n',
            'imagecheck.yaml:3: accept: "DEMO_PASSWORD" is not a finding id: use env:NAME, '
            "history:NAME, history:step-N or file:/path, as the failure message names them",
            id="accept key not a finding id",
        ),
        pytest.param(
            ITEM + 'no_secrets\n    accept:\n      "env:DEMO_PASSWORD": ""\n',
            "imagecheck.yaml:4: accept.env:DEMO_PASSWORD: expected a reason, a non-empty string "
            'saying why this secret is in the image on purpose, got ""',
            id="accept without a reason",
        ),
        pytest.param(
            ITEM + "cuda_torch\n    cuda: 12.10\n",
            'imagecheck.yaml:3: cuda: expected a version in quotes like "12.1", got the number '
            "12.1: quote it (YAML reads 12.10 as the number 12.1)",
            id="cuda version not quoted",
        ),
        pytest.param(
            ITEM + "cuda_torch\n    torch: two\n",
            'imagecheck.yaml:3: torch: bad version "two": use a version or a prefix like "12.1"',
            id="bad torch version",
        ),
        pytest.param(
            ITEM + "non_root\n    runtime: yes please\n",
            'imagecheck.yaml:3: runtime: expected true or false, got "yes please"',
            id="flag not a boolean",
        ),
        pytest.param(
            ITEM + "non_root\n    waive: true\n",
            "imagecheck.yaml:3: waive: expected a reason, a non-empty string saying why this "
            "criterion may fail for now, got true",
            id="waive not a string",
        ),
        pytest.param(
            ITEM + "non_root\n    waive: '  '\n",
            "imagecheck.yaml:3: waive: expected a reason, a non-empty string saying why this "
            'criterion may fail for now, got "  "',
            id="waive blank",
        ),
        pytest.param(
            ITEM + "non_root\n    name:\n",
            "imagecheck.yaml:3: name: expected a non-empty string, got null (an empty value)",
            id="name empty",
        ),
        pytest.param(
            ITEM + "endpoint\n    path: /a\n    status: 200\n    path: /b\n",
            'imagecheck.yaml:5: duplicate key "path" (first on line 3): give each key once',
            id="duplicate key",
        ),
        pytest.param(
            ITEM + "config\n",
            "imagecheck.yaml:2: check config checks nothing: give at least one of entrypoint, "
            'cmd, workdir, user, e.g. workdir: "/app"',
            id="config checks nothing",
        ),
        pytest.param(
            ITEM + 'command\n    run: "echo \'unclosed"\n',
            'imagecheck.yaml:3: run: bad command "echo \'unclosed": no closing quotation; close '
            "the quote, or write the command as a list of words",
            id="command with an unclosed quote",
        ),
        pytest.param(
            ITEM + "command\n    run: '  '\n",
            'imagecheck.yaml:3: run: bad command "  ": it has no words; write a command to run',
            id="command of blanks",
        ),
    ],
)
def test_invalid_spec_is_one_line_naming_file_line_and_fix(text: str, message: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        parse_spec(text)
    assert str(excinfo.value) == message
    assert "\n" not in str(excinfo.value)


def test_errors_name_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "imagecheck.yaml"
    path.write_text("criteria:\n  - check: non-root\n", encoding="utf-8")
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}:2: unknown check"):
        load_spec(path)


# --- the README's table of checks ------------------------------------------------------------

README = Path(spec.__file__).parents[1] / "README.md"


def _readme_rows() -> list[list[str]]:
    """The rows of the README's table of imagecheck.yaml checks, as lists of cells."""
    section = README.read_text(encoding="utf-8").split("## imagecheck.yaml: criteria as data")[1]
    table = section.split("| check | runs | on | keys (**required**) |")[1].split("\n\n")[0]
    rows = [line.strip().strip("|").split(" | ") for line in table.strip().splitlines()]
    return rows[1:]  # after the | --- | line


def test_readme_table_names_each_check_its_function_and_its_keys() -> None:
    described: set[str] = set()
    for names, runs, _, keys in _readme_rows():
        for name in re.findall(r"`(\w+)`", names):
            check = CHECKS[name]  # a row for a check that does not exist fails here
            described.add(name)
            assert f"`{check.function.__name__}`" in runs, name
            like = re.match(r"as `(\w+)`", keys)
            listed = set(re.findall(r"`(\w+)`", keys)) - ({like[1]} if like else set())
            inherited = {key.name for key in CHECKS[like[1]].keys} if like else set()
            own = {key.name for key in check.keys}
            assert listed <= own, name
            assert own <= listed | inherited, name
            required = {key.name for key in check.keys if key.required}
            assert set(re.findall(r"\*\*`(\w+)`\*\*", keys)) == required, name
    assert described == set(CHECKS)


# --- JSON Schema -----------------------------------------------------------------------------


def test_shipped_schema_file_is_json_schema_output() -> None:
    shipped = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert shipped == json_schema(), (
        "imagecheck.schema.json is stale: run "
        "python -m pytest_imagecheck.spec > pytest_imagecheck/imagecheck.schema.json"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_full_example_validates_against_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    assert list(validator.iter_errors(yaml.safe_load(EXAMPLE))) == []


def test_schema_offers_each_check_only_its_own_keys(
    validator: jsonschema.Draft202012Validator,
) -> None:
    document = {"criteria": [{"check": "healthy", "retries": 3}]}
    assert [error.message for error in validator.iter_errors(document)] == [
        "Additional properties are not allowed ('retries' was unexpected)"
    ]


@pytest.mark.parametrize(
    ("item", "valid"),
    [
        ({"check": "healthcheck", "interval": "<=30s"}, True),
        ({"check": "healthcheck", "interval": "1m30s"}, True),
        ({"check": "healthcheck", "interval": 30}, True),
        ({"check": "healthcheck", "interval": "30 seconds"}, False),
        ({"check": "healthcheck", "interval": "=<30s"}, False),
        ({"check": "healthcheck", "retries": ">=3"}, True),
        ({"check": "healthcheck", "retries": -1}, False),
        ({"check": "healthcheck", "retries": "three"}, False),
        ({"check": "size", "total": "512 MiB"}, True),
        ({"check": "size", "total": "2.5XB"}, False),
        ({"check": "size", "total": "1g"}, False),
        ({"check": "size", "wasted": 0}, True),
        ({"check": "size", "growth_floor": "10MB"}, False),
        ({"check": "size", "baseline": "b.json", "growth": "+10 %"}, True),
        ({"check": "size", "baseline": "b.json", "growth": "10"}, False),
        ({"check": "size", "baseline": "b.json"}, False),
        ({"check": "endpoint", "status": [200, 204]}, True),
        ({"check": "endpoint", "status": 700}, False),
        ({"check": "endpoint", "port": "5000/udp"}, True),
        ({"check": "endpoint", "port": "5000/http"}, False),
        ({"check": "endpoint", "port": "08080"}, True),
        ({"check": "endpoint", "request_timeout": "10s"}, True),
        ({"check": "hardened", "request_timeout": 2.5}, True),
        ({"check": "hardened", "request_timeout": "10 seconds"}, False),
        ({"check": "endpoint", "timeout": "0s"}, False),
        ({"check": "endpoint", "timeout": "0.5s"}, True),
        ({"check": "endpoint", "timeout": "1m0s"}, True),
        ({"check": "endpoint", "request_timeout": 0}, False),
        ({"check": "endpoint", "request_timeout": 0.25}, True),
        ({"check": "hardened", "timeout": "0.0ms"}, False),
        ({"check": "healthy", "timeout": 0}, False),
        ({"check": "healthy", "timeout": "90"}, True),
        ({"check": "endpoint", "interval": "0s"}, True),
        ({"check": "file", "path": "/f", "mode": "0644"}, True),
        ({"check": "file", "path": "/f", "mode": 644}, False),
        ({"check": "file", "path": "/f", "mode": "0999"}, False),
        ({"check": "file", "path": "/f", "mode": "17777"}, False),
        ({"check": "file", "path": "/f", "mode": "07777"}, True),
        ({"check": "file", "path": "/f", "mode": "00644"}, True),
        ({"check": "file", "path": "/f", "kind": "dir"}, True),
        ({"check": "file", "path": "/f", "kind": "directory"}, False),
        ({"check": "file", "path": "f"}, False),
        ({"check": "no_secrets", "accept": {"file:/app/.env": "fixture"}}, True),
        ({"check": "no_secrets", "accept": {"DEMO": "why"}}, False),
        ({"check": "no_secrets", "accept": {"env:DEMO": " "}}, False),
        ({"check": "env", "expect": {"DEBUG": None}}, True),
        ({"check": "env", "expect": {"PORT": 5000}}, False),
        ({"check": "config", "cmd": []}, True),
        ({"check": "config", "entrypoint": "python3 app.py"}, True),
        ({"check": "command", "run": []}, False),
        ({"check": "cuda_torch", "cuda": "12.1"}, True),
        ({"check": "cuda_torch", "cuda": 12.1}, False),
        ({"check": "non_root", "waive": "tracked in #42"}, True),
        ({"check": "non_root", "waive": ""}, False),
    ],
)
def test_schema_and_loader_agree_on_values(
    validator: jsonschema.Draft202012Validator, item: dict[str, Any], valid: bool
) -> None:
    document = {"criteria": [item]}
    assert validator.is_valid(document) is valid
    try:
        parse_spec(yaml.safe_dump(document))
    except SpecError:
        loaded = False
    else:
        loaded = True
    assert loaded is valid


def _loads(item: dict[str, Any]) -> bool:
    try:
        parse_spec(yaml.safe_dump({"criteria": [item]}))
    except SpecError:
        return False
    return True


def _parses(parse: Callable[[Any], Any], value: Any) -> bool:
    try:
        parse(value)
    except ImageCheckError:
        return False
    return True


@pytest.mark.parametrize(
    "port", ["5000", "53/udp", "000005000", "5000/http", "0", "65536", 70000, "\u0665\u0660", True]
)
def test_the_loader_takes_the_ports_the_checks_take(port: object) -> None:
    assert _loads({"check": "exposed_ports", "expect": [port]}) is _parses(port_key, port)


@pytest.mark.parametrize("mode", ["0644", "644", "4755", "07777", "17777", "0999", "rwx", "64"])
def test_the_loader_takes_the_modes_the_checks_take(mode: str) -> None:
    assert _loads({"check": "file", "path": "/f", "mode": mode}) is _parses(parse_mode, mode)


def _agree(validator: jsonschema.Draft202012Validator, item: dict[str, Any]) -> None:
    document = {"criteria": [item]}
    try:
        parse_spec(yaml.safe_dump(document))
    except SpecError:
        loaded = False
    else:
        loaded = True
    assert validator.is_valid(document) is loaded


@settings(max_examples=150, deadline=None)
@given(total=st.text(alphabet="0123456789. kKmMgGtTiIbBx\t", max_size=8))
def test_schema_and_loader_agree_on_any_size(
    validator: jsonschema.Draft202012Validator, total: str
) -> None:
    _agree(validator, {"check": "size", "total": total})


@settings(max_examples=150, deadline=None)
@given(interval=st.text(alphabet="0123456789. <=>!hmsunµμ", max_size=8))
def test_schema_and_loader_agree_on_any_duration_bound(
    validator: jsonschema.Draft202012Validator, interval: str
) -> None:
    _agree(validator, {"check": "healthcheck", "interval": interval})


# --- running criteria ------------------------------------------------------------------------


def _check_user(image: object, *, allow: tuple[str, ...] = (), container: object = None) -> None:
    """A check function with the signature of assert_non_root."""


def _check_base(image: object, base: str) -> None:
    """A check function with the signature of assert_built_from."""


def test_a_key_its_check_function_does_not_take_fails_when_declared() -> None:
    with pytest.raises(TypeError) as refused:
        Check("demo", "A demo.", _check_user, "image", (Key("alow", TEXTS, "Misspelt."),))
    assert str(refused.value) == (
        "check demo: key 'alow' is passed as alow=, which _check_user(image, *, allow=(), "
        "container=None) does not take: name the parameter with Key(arg=...), or fix the key"
    )


def test_a_key_passed_under_another_name_is_checked_under_that_name() -> None:
    Check("demo", "A demo.", _check_user, "image", (Key("users", TEXTS, "Ok.", arg="allow"),))
    with pytest.raises(TypeError, match=r"key 'users' is passed as users_allowed="):
        Check(
            "demo",
            "A demo.",
            _check_user,
            "image",
            (Key("users", TEXTS, "Wrong.", arg="users_allowed"),),
        )


def test_a_flag_that_passes_the_container_needs_a_container_parameter() -> None:
    runtime = Key("runtime", BOOL, "Passes container=.", needs=frozenset({"container"}))
    Check("demo", "A demo.", _check_user, "image", (runtime,))
    base = Key("base", TEXT, "The base.", required=True, example="base:1")
    with pytest.raises(TypeError, match=r"key 'needs container' is passed as container=, which "):
        Check("demo", "A demo.", _check_base, "image", (base, runtime))


def test_a_parameter_no_key_always_gives_fails_when_declared() -> None:
    optional_base = Key("base", TEXT, "Not required, no default.")
    with pytest.raises(TypeError) as refused:
        Check("demo", "A demo.", _check_base, "image", (optional_base,))
    assert str(refused.value) == (
        "check demo: _check_base(image, base) needs base=, which no key always gives: declare "
        "the key required=True or give it a default"
    )


def test_a_cross_key_rule_names_declared_keys() -> None:
    allow = Key("allow", TEXTS, "Users.", example=["app"])
    with pytest.raises(TypeError, match=r"check demo: at_least_one names 'allw', which is no key"):
        Check("demo", "A demo.", _check_user, "image", (allow,), at_least_one=("allw",))


def test_a_key_a_message_asks_for_has_an_example() -> None:
    base = Key("base", TEXT, "The base.", required=True)
    with pytest.raises(TypeError, match=r"check demo: key 'base' needs an example"):
        Check("demo", "A demo.", _check_base, "image", (base,))


def test_file_kinds_are_those_assert_file_takes() -> None:
    assert CHECKS["file"].key("kind").kind.schema["enum"] == list(structure.KINDS)


Call = tuple[str, tuple[Any, ...], dict[str, Any]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Replace every check function with one that records its calls, after checking that each
    call fits the real function's signature."""
    recorded: list[Call] = []
    for name, check in CHECKS.items():
        recorder = _recorder(check.function, recorded)
        monkeypatch.setitem(CHECKS, name, dataclasses.replace(check, function=recorder))
    return recorded


def _recorder(real: Callable[..., Any], recorded: list[Call]) -> Callable[..., None]:
    signature = inspect.signature(real)
    name = real.__name__

    @functools.wraps(real)  # the declaration checks the real function's signature
    def record(*args: Any, **kwargs: Any) -> None:
        signature.bind(*args, **kwargs)
        recorded.append((name, args, kwargs))

    return record


class Facts:
    """What the plugin's fixtures would give, with a log of what was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.started: list[dict[str, Any]] = []

    def get(self, name: str) -> Any:
        self.asked.append(name)
        if name == "run_container":
            return self.start
        return name.upper()

    def start(self, **options: Any) -> str:
        self.started.append(options)
        return "HARDENED CONTAINER"


def test_each_example_criterion_calls_its_check_function(calls: list[Call]) -> None:
    for criterion in parse_spec(EXAMPLE).criteria:
        criterion.run(Facts().get)
    assert calls == [
        ("assert_non_root", ("IMAGE",), {"container": "CONTAINER"}),
        (
            "assert_healthcheck",
            ("IMAGE",),
            {"interval": "<=30s", "timeout": "10s", "retries": 3, "test": "/health/ready"},
        ),
        ("assert_base_images_pinned", ("DOCKERFILE",), {}),
        ("assert_built_from", ("IMAGE",), {"base": "127.0.0.1:5000/autovoice-base@sha256:..."}),
        ("assert_size_within", ("IMAGE",), {"total": "2.5GB", "wasted": "50MB"}),
        ("assert_no_secrets", ("IMAGE",), {"accept": {"env:DEMO_PASSWORD": "demo image"}}),
        (
            "assert_endpoint_ready",
            ("CONTAINER",),
            {
                "path": "/health/ready",
                "status": 200,
                "json": {"status": "ready"},
                "timeout": timedelta(seconds=60),
            },
        ),
        ("assert_healthy", ("CONTAINER",), {}),
        (
            "assert_endpoint_ready",
            ("HARDENED CONTAINER",),
            {"path": "/health/ready", "status": 200},
        ),
        ("assert_env", ("IMAGE",), {"expected": {"APP_ENV": "prod"}}),
        (
            "assert_labels",
            ("IMAGE",),
            {"expected": {"org.opencontainers.image.title": "autovoice"}},
        ),
        ("assert_exposed_ports", ("IMAGE",), {"expected": [5000], "exactly": True}),
        ("assert_config", ("IMAGE",), {"workdir": "/app", "user": "autovoice"}),
        (
            "assert_file",
            ("CONTAINER",),
            {"path": "/app/main.py", "mode": "0644", "owner": "autovoice", "contains": "def main"},
        ),
        (
            "assert_command",
            ("CONTAINER",),
            {"run": ["python3", "--version"], "stdout_matches": r"3\.11"},
        ),
        (
            "assert_cuda_torch_match",
            ("IMAGE",),
            {"cuda": "12.1", "torch": "2.5", "strict_minor": True, "container": "CONTAINER"},
        ),
    ]


def test_run_asks_only_for_what_the_criterion_needs(calls: list[Call]) -> None:
    for criterion in parse_spec(EXAMPLE).criteria:
        facts = Facts()
        criterion.run(facts.get)
        assert set(facts.asked) <= criterion.needs, criterion.name


def test_hardened_starts_a_locked_down_container_and_polls_it(calls: list[Call]) -> None:
    facts = Facts()
    criteria(EXAMPLE)["hardened /health/ready -> 200"].run(facts.get)
    assert facts.asked == ["run_container"]
    assert facts.started == [
        {
            "read_only": True,
            "tmpfs": {"/tmp": ""},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
        }
    ]
    assert calls == [
        ("assert_endpoint_ready", ("HARDENED CONTAINER",), {"path": "/health/ready", "status": 200})
    ]


def test_non_root_without_runtime_checks_the_image_only(calls: list[Call]) -> None:
    facts = Facts()
    one("  - check: non_root\n    allow: [app]\n").run(facts.get)
    assert facts.asked == ["image"]
    assert calls == [("assert_non_root", ("IMAGE",), {"allow": ["app"]})]


def test_run_raises_what_the_check_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(image: object, *, allow: object = (), container: object = None) -> None:
        raise AssertionError("image app:1 runs as root")

    non_root = dataclasses.replace(CHECKS["non_root"], function=fail)
    monkeypatch.setitem(CHECKS, "non_root", non_root)
    with pytest.raises(AssertionError, match="runs as root"):
        one("  - check: non_root\n").run(Facts().get)
