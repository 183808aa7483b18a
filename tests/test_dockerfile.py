from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_imagecheck.dockerfile import Dockerfile, Heredoc
from pytest_imagecheck.errors import DockerfileError, ImageCheckError
from pytest_imagecheck.platforms import engine_platform, normalize_platform, parse_platforms


def parse(text: str, **kwargs: Any) -> Dockerfile:
    return Dockerfile.from_string(textwrap.dedent(text).lstrip("\n"), **kwargs)


def error(text: str, **kwargs: Any) -> str:
    with pytest.raises(DockerfileError) as excinfo:
        parse(text, **kwargs)
    return str(excinfo.value)


# Lines, continuations and comments


def test_instructions_have_upper_cased_keyword_value_and_lines() -> None:
    df = parse(
        """
        from alpine:3.19

        run echo hi
        """
    )
    assert [(i.keyword, i.value, i.line, i.end_line) for i in df.instructions] == [
        ("FROM", "alpine:3.19", 1, 1),
        ("RUN", "echo hi", 3, 3),
    ]


def test_continuation_lines_are_concatenated_as_buildkit_does() -> None:
    df = parse(
        """
        FROM alpine
        RUN apk add \\
            curl \\
            git
        """
    )
    run = df.instructions[1]
    assert run.value == "apk add     curl     git"
    assert (run.line, run.end_line) == (2, 4)


def test_comment_and_blank_lines_inside_a_continuation_are_skipped() -> None:
    df = parse(
        """
        FROM alpine
        RUN echo a \\
          # a comment, not part of the command \\

            && echo b
        CMD ["sh"]
        """
    )
    run, cmd = df.instructions[1:]
    assert run.value == "echo a     && echo b"
    assert (run.line, run.end_line) == (2, 5)
    assert cmd.line == 6


def test_original_is_the_source_text_of_all_the_lines() -> None:
    df = parse("FROM alpine\nRUN echo a \\\n  # note\n  b\nRUN <<EOF\nx\nEOF\n")
    assert [i.original for i in df.instructions[1:]] == [
        "RUN echo a \\\n  # note\n  b",
        "RUN <<EOF\nx\nEOF",
    ]


def test_escaped_escape_character_does_not_continue_the_line() -> None:
    df = parse("FROM alpine\nRUN echo a\\\\\nCMD b\n")
    assert [i.keyword for i in df.instructions] == ["FROM", "RUN", "CMD"]


def test_escape_directive_makes_backtick_the_continuation_character() -> None:
    df = parse(
        """
        # escape=`
        FROM mcr.microsoft.com/windows/servercore:ltsc2022
        RUN dir c:\\
        RUN echo a `
            b
        """
    )
    assert df.directives == {"escape": "`"}
    assert [(i.value, i.line, i.end_line) for i in df.instructions[1:]] == [
        ("dir c:\\", 3, 3),
        ("echo a     b", 4, 5),
    ]


def test_comments_are_not_instructions() -> None:
    df = parse(
        """
        # build the app
        FROM alpine
          # indented comment
        RUN echo hi # not a comment: part of the command
        """
    )
    assert [i.value for i in df.instructions] == [
        "alpine",
        "echo hi # not a comment: part of the command",
    ]


def test_crlf_line_ends_and_byte_order_mark_are_ignored() -> None:
    df = Dockerfile.from_string(
        "\ufeff# syntax=docker/dockerfile:1\r\nFROM alpine\r\nRUN a \\\r\n b\r\n"
    )
    assert df.directives == {"syntax": "docker/dockerfile:1"}
    assert df.instructions[1].value == "a  b"


# Parser directives


def test_parser_directives_at_the_top_are_read() -> None:
    df = parse(
        """
        # syntax=docker/dockerfile:1.7
        #check = skip=JSONArgsRecommended
        # ESCAPE=\\
        FROM alpine
        """
    )
    assert df.directives == {
        "syntax": "docker/dockerfile:1.7",
        "check": "skip=JSONArgsRecommended",
        "escape": "\\",
    }


@pytest.mark.parametrize(
    "before",
    ["# a comment\n", "\n", "FROM alpine\n", "# unknown=directive\n"],
    ids=["comment", "blank line", "instruction", "unknown directive"],
)
def test_directive_after_anything_else_is_a_comment(before: str) -> None:
    df = Dockerfile.from_string(before + "# escape=`\nFROM alpine\nRUN echo \\\n  continued\n")
    assert df.directives == {}
    assert df.instructions[-1].value == "echo   continued"


def test_repeated_directive_is_an_error() -> None:
    assert error("# syntax=a\n# syntax=b\nFROM alpine\n") == (
        "Dockerfile:2: repeated syntax directive (keep only the first)"
    )


def test_invalid_escape_directive_is_an_error() -> None:
    assert error("# escape=x\nFROM alpine\n") == (
        'Dockerfile:1: invalid escape directive "x" (use \\ or `)'
    )


# Heredocs


def test_heredoc_body_is_not_part_of_value() -> None:
    df = parse(
        """
        FROM alpine
        RUN <<EOF
        set -e
        FROM not-a-stage
        EOF
        CMD ["sh"]
        """
    )
    run = df.instructions[1]
    assert run.value == "<<EOF"
    assert run.heredocs == (Heredoc(name="EOF", body="set -e\nFROM not-a-stage\n", line=3),)
    assert (run.line, run.end_line) == (2, 5)
    assert len(df.stages) == 1
    assert df.instructions[2].line == 6


def test_dash_heredoc_strips_leading_tabs() -> None:
    df = parse("FROM alpine\nRUN <<-EOF\n\t\techo hi\n\t  kept\n\tEOF\n")
    assert df.instructions[1].heredocs[0].body == "echo hi\n  kept\n"


@pytest.mark.parametrize("word", ['<<"EOF"', "<<'EOF'", "<<E\\OF", '<<-"EOF"'])
def test_quoted_heredoc_name_is_unquoted(word: str) -> None:
    df = parse(f"FROM alpine\nRUN python3 {word}\nprint('$HOME')\nEOF\n")
    assert df.instructions[1].heredocs == (Heredoc(name="EOF", body="print('$HOME')\n", line=3),)


def test_several_heredocs_on_one_line_are_read_in_order() -> None:
    df = parse(
        """
        FROM alpine
        RUN <<FILE1 cat > /a && <<FILE2 cat > /b
        one
        FILE1
        two
        FILE2
        """
    )
    run = df.instructions[1]
    assert run.heredocs == (
        Heredoc(name="FILE1", body="one\n", line=3),
        Heredoc(name="FILE2", body="two\n", line=5),
    )
    assert run.end_line == 6


def test_copy_heredoc_keeps_destination_in_value() -> None:
    df = parse(
        """
        FROM alpine
        COPY --chmod=755 <<EOF /usr/local/bin/entry
        #!/bin/sh
        exec "$@"
        EOF
        """
    )
    copy = df.instructions[1]
    assert copy.value == "<<EOF /usr/local/bin/entry"
    assert copy.flags == (("chmod", "755"),)
    assert copy.heredocs[0].body == '#!/bin/sh\nexec "$@"\n'


def test_heredoc_follows_a_continued_line() -> None:
    df = parse("FROM alpine\nRUN --network=none \\\n  cat <<EOF\nbody\nEOF\n")
    assert df.instructions[1].heredocs == (Heredoc(name="EOF", body="body\n", line=4),)


@pytest.mark.parametrize(
    "line",
    ['RUN echo "<<EOF"', 'RUN ["cat", "<<EOF"]', "ENV A=<<EOF", "RUN cat<<EOF"],
    ids=["quoted", "exec form", "not RUN/COPY/ADD", "glued to a word"],
)
def test_heredoc_marker_that_buildkit_ignores_starts_no_heredoc(line: str) -> None:
    df = parse(f"FROM alpine\n{line}\nCMD x\n")
    assert df.instructions[1].heredocs == ()
    assert df.instructions[2].keyword == "CMD"


def test_unterminated_heredoc_is_an_error() -> None:
    assert error("FROM alpine\nRUN <<EOF\necho hi\n") == (
        'Dockerfile:2: unterminated heredoc <<EOF (add a line "EOF")'
    )


# Exec form and flags


@pytest.mark.parametrize(
    ("line", "json_args"),
    [
        ('RUN ["apt-get", "update"]', ("apt-get", "update")),
        ("RUN apt-get update", None),
        ('CMD ["python", "-m", "app"]', ("python", "-m", "app")),
        ("CMD python -m app", None),
        ('ENTRYPOINT ["/entry.sh"]', ("/entry.sh",)),
        ("ENTRYPOINT /entry.sh", None),
        ("CMD []", ()),
        ('CMD ["unclosed"', None),
        (
            'HEALTHCHECK --interval=5s CMD ["curl", "-f", "http://localhost/"]',
            ("curl", "-f", "http://localhost/"),
        ),
        ("HEALTHCHECK CMD curl -f http://localhost/", None),
        ("HEALTHCHECK NONE", None),
        ('ENV A=["x"]', None),
    ],
)
def test_json_args_is_set_for_exec_form_only(line: str, json_args: tuple[str, ...] | None) -> None:
    assert parse(f"FROM alpine\n{line}\n").instructions[1].json_args == json_args


def test_exec_form_with_non_strings_is_an_error() -> None:
    assert error('FROM alpine\nCMD ["sleep", 5]\n') == (
        'Dockerfile:2: CMD ["sleep", 5] has non-string elements (quote every element)'
    )


def test_flags_are_split_off_in_order_and_may_repeat() -> None:
    df = parse(
        """
        FROM python:3.12
        RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=token \\
            --network=none pip install -r requirements.txt
        """
    )
    run = df.instructions[1]
    assert run.value == "pip install -r requirements.txt"
    assert run.flags == (
        ("mount", "type=cache,target=/root/.cache/pip"),
        ("mount", "type=secret,id=token"),
        ("network", "none"),
    )
    assert run.flag("mount") == "type=secret,id=token"
    assert run.flag("security") is None


def test_copy_flags() -> None:
    copy = parse("FROM alpine\nCOPY --from=builder --chown=1000:1000 --link a b\n").instructions[1]
    assert copy.value == "a b"
    assert copy.flags == (("from", "builder"), ("chown", "1000:1000"), ("link", ""))


def test_healthcheck_flags_come_before_cmd() -> None:
    check = parse(
        "FROM alpine\nHEALTHCHECK --interval=30s --timeout=10s CMD wget -q -O- http://x/\n"
    ).instructions[1]
    assert check.flag("interval") == "30s"
    assert check.flag("timeout") == "10s"
    assert check.value == "CMD wget -q -O- http://x/"


def test_flag_values_lose_their_quotes() -> None:
    run = parse('FROM alpine\nRUN --mount="type=bind,source=a b" true\n').instructions[1]
    assert run.flags == (("mount", "type=bind,source=a b"),)
    assert run.value == "true"


def test_double_dash_ends_the_flags() -> None:
    run = parse("FROM alpine\nRUN --network=none -- --not-a-flag\n").instructions[1]
    assert run.flags == (("network", "none"),)
    assert run.value == "--not-a-flag"


# Stages and FROM


@pytest.mark.parametrize("as_", ["AS", "as", "As"])
def test_from_platform_and_stage_name(as_: str) -> None:
    df = parse(f"FROM --platform=$BUILDPLATFORM golang:1.22 {as_} Builder\n")
    stage = df.stages[0]
    assert (stage.index, stage.name, stage.base, stage.platform) == (
        0,
        "builder",
        "golang:1.22",
        "$BUILDPLATFORM",
    )
    assert stage.instruction is df.instructions[0]


def test_from_an_earlier_stage_by_name_ignores_case() -> None:
    df = parse(
        """
        FROM golang:1.22 AS Build
        FROM BUILD AS test
        FROM alpine
        """
    )
    build, test, final = df.stages
    assert (build.base_stage, test.base_stage, final.base_stage) == (None, 0, None)
    assert (build.is_external, test.is_external, final.is_external) == (True, False, True)
    assert df.final_stage is final


def test_from_a_stage_defined_later_is_an_image() -> None:
    df = parse("FROM app\nFROM alpine AS app\n")
    assert df.stages[0].base_stage is None
    assert df.stages[0].is_external


def test_from_scratch() -> None:
    stage = parse("FROM scratch\nCOPY app /\n").stages[0]
    assert stage.is_scratch
    assert not stage.is_external


def test_instructions_know_their_stage() -> None:
    df = parse(
        """
        ARG BASE=alpine
        FROM $BASE AS one
        RUN a
        FROM one
        RUN b
        """
    )
    assert [i.stage for i in df.instructions] == [None, 0, 0, 1, 1]
    assert [i.value for i in df.instructions_of("one")] == ["$BASE AS one", "a"]
    assert df.instructions_of(df.stages[1]) == df.instructions[3:]


def test_stage_is_found_by_name_or_index_as_copy_from_does() -> None:
    df = parse("FROM golang AS build\nFROM alpine\n")
    assert df.stage("build") is df.stages[0]
    assert df.stage("BUILD") is df.stages[0]
    assert df.stage(1) is df.stages[1]
    assert df.stage("1") is df.stages[1]


@pytest.mark.parametrize("missing", ["test", 2, "2", -1])
def test_unknown_stage_is_an_error_listing_the_stages(missing: str | int) -> None:
    df = parse("FROM golang AS build\nFROM alpine\n")
    with pytest.raises(DockerfileError) as excinfo:
        df.stage(missing)
    assert str(excinfo.value) == f'Dockerfile has no stage "{missing}"; its stages are: build, 1'


def test_check_target_returns_the_named_stage() -> None:
    df = parse("FROM golang AS builder\nFROM alpine AS runtime\n")
    assert df.check_target("Builder") is df.stages[0]


def test_check_target_names_the_stages_when_missing() -> None:
    df = parse("FROM golang AS builder\nFROM alpine AS runtime\n")
    with pytest.raises(DockerfileError) as excinfo:
        df.check_target("x")
    assert str(excinfo.value) == (
        '--target "x" is not a stage of Dockerfile; its stages are: builder, runtime'
    )


def test_check_target_without_named_stages() -> None:
    with pytest.raises(DockerfileError, match="none of its stages is named"):
        parse("FROM alpine\n").check_target("app")


# ARGs


def test_global_args_are_substituted_in_from() -> None:
    df = parse(
        """
        ARG REGISTRY=registry.example.com
        ARG TAG=12
        FROM ${REGISTRY}/debian:$TAG-slim
        """
    )
    assert df.args == {"REGISTRY": "registry.example.com", "TAG": "12"}
    assert df.stages[0].base == "${REGISTRY}/debian:$TAG-slim"
    assert df.stages[0].resolved_base == "registry.example.com/debian:12-slim"


def test_build_args_override_defaults() -> None:
    df = parse("ARG TAG=12\nFROM debian:${TAG}\n", build_args={"TAG": "13"})
    assert df.args == {"TAG": "13"}
    assert df.build_args == {"TAG": "13"}
    assert df.stages[0].resolved_base == "debian:13"


def test_build_args_no_global_arg_declares_are_not_args() -> None:
    df = parse("FROM debian:${TAG}\n", build_args={"TAG": "13"})
    assert df.args == {}
    assert df.stages[0].resolved_base is None


def test_arg_without_default_leaves_from_unresolved() -> None:
    df = parse("ARG TAG\nFROM debian:${TAG}\n")
    assert df.args == {"TAG": None}
    assert df.stages[0].resolved_base is None
    assert df.stages[0].is_external


def test_arg_default_may_use_earlier_args_and_quotes() -> None:
    df = parse('ARG V=3.12\nARG IMAGE="python:${V}-slim" OTHER\nFROM $IMAGE\n')
    assert df.args == {"V": "3.12", "IMAGE": "python:3.12-slim", "OTHER": None}
    assert df.stages[0].resolved_base == "python:3.12-slim"


def test_arg_with_no_name_is_an_error() -> None:
    assert error("ARG\nFROM alpine\n") == (
        "Dockerfile:1: ARG has no name (write ARG NAME[=DEFAULT])"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${SET}", "value"),
        ("$SET", "value"),
        ("$SET-x", "value-x"),
        ("${SET}x", "valuex"),
        ("$UNSET", None),
        ("${UNSET}", None),
        ("${UNDECLARED}", None),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${EMPTY-default}", ""),
        ("${SET:-default}", "value"),
        ("${UNSET:-$SET}", "value"),
        ("${SET:-$UNSET}", "value"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET:?needed}", None),
        ("${SET:?needed}", "value"),
        ("${PLATFORM#*/}", "arm64/v8"),
        ("${PLATFORM##*/}", "v8"),
        ("${PLATFORM%/*}", "linux/arm64"),
        ("${PLATFORM%%/*}", "linux"),
        ("${PLATFORM/\\//-}", "linux-arm64/v8"),
        ("${PLATFORM//\\//-}", "linux-arm64-v8"),
        ("\\$SET", "$SET"),
        ("'$SET'", "$SET"),
        ('"$SET and ${SET}"', "value and value"),
        ("$", "$"),
        ("a$-", None),
    ],
)
def test_substitute_follows_docker_variable_rules(text: str, expected: str | None) -> None:
    df = parse(
        """
        ARG SET=value EMPTY= UNSET PLATFORM=linux/arm64/v8
        FROM alpine
        """
    )
    assert df.substitute(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [("${SET", "missing '}'"), ("${}", "bad substitution"), ("${SET:=x}", "unsupported")],
)
def test_bad_substitution_is_an_error(text: str, problem: str) -> None:
    df = parse("ARG SET=value\nFROM alpine\n")
    with pytest.raises(DockerfileError, match=f'^Dockerfile: cannot substitute ".*": {problem}'):
        df.substitute(text)


def test_bad_substitution_in_from_names_the_line() -> None:
    assert error("ARG TAG=1\nFROM debian:${TAG\n") == (
        "Dockerfile:2: cannot substitute \"debian:${TAG\": missing '}'"
    )


def test_stage_sees_only_the_global_args_it_redeclares() -> None:
    df = parse(
        """
        ARG VERSION=1.0
        ARG OTHER=x
        FROM alpine
        ARG VERSION
        ARG LOCAL=local-$VERSION
        """
    )
    assert df.substitute("$VERSION $LOCAL", stage=0) == "1.0 local-1.0"
    assert df.substitute("$OTHER", stage=0) is None
    assert df.substitute("$OTHER") == "x"


def test_stage_arg_default_and_build_arg() -> None:
    text = "ARG VERSION=1.0\nFROM alpine\nARG VERSION=2.0\n"
    assert parse(text).substitute("$VERSION", stage=0) == "2.0"
    assert parse(text, build_args={"VERSION": "3.0"}).substitute("$VERSION", stage=0) == "3.0"


def test_from_resolving_to_a_stage_name_builds_on_that_stage() -> None:
    df = parse("ARG BASE=build\nFROM golang AS build\nFROM ${BASE}\n")
    assert df.stages[1].base_stage == 0


# Malformed input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "FROM alpine\nRUNN echo hi\n",
            'Dockerfile:2: unknown instruction "RUNN" (did you mean RUN?)',
        ),
        (
            "FROM alpine\nrun apt-get update &&\n    apt-get install -y curl\n",
            'Dockerfile:3: unknown instruction "apt-get" (if it continues the line before,'
            ' end that line with "\\")',
        ),
        ("", "Dockerfile: no FROM instruction (start a stage with FROM IMAGE)"),
        (
            "# only a comment\nARG A=1\n",
            "Dockerfile: no FROM instruction (start a stage with FROM IMAGE)",
        ),
        (
            "ARG A=1\nRUN echo hi\nFROM alpine\n",
            "Dockerfile:2: RUN before the first FROM (only ARG may come before FROM)",
        ),
        ("FROM\n", "Dockerfile:1: FROM has no image (write FROM IMAGE[:TAG] [AS NAME])"),
        (
            "FROM --platform=linux/amd64\n",
            "Dockerfile:1: FROM has no image (write FROM IMAGE[:TAG] [AS NAME])",
        ),
        (
            "FROM alpine builder\n",
            'Dockerfile:1: FROM takes an image and an optional "AS name", not "alpine builder"',
        ),
        (
            "FROM alpine AS 1st\n",
            'Dockerfile:1: invalid stage name "1st" (start with a letter; then use letters,'
            " digits, -, _ and .)",
        ),
        (
            "FROM alpine AS app\nFROM debian AS App\n",
            'Dockerfile:2: stage name "app" is already used on line 1 (rename one of them)',
        ),
    ],
)
def test_malformed_dockerfile_is_an_error_naming_the_line(text: str, message: str) -> None:
    assert error(text) == message


def test_error_names_the_path_given() -> None:
    message = error("FROM alpine\nRUNN x\n", path=Path("docker/app.Dockerfile"))
    assert message.startswith("docker/app.Dockerfile:2: ")


def test_dockerfile_error_is_an_imagecheck_error() -> None:
    assert issubclass(DockerfileError, ImageCheckError)


# Files and locations


def test_parse_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("ARG TAG=1\nFROM alpine:$TAG\nRUN true\n")
    df = Dockerfile.parse(path, build_args={"TAG": "2"})
    assert df.path == path
    assert df.stages[0].resolved_base == "alpine:2"
    assert df.location(df.instructions[2]) == f"{path}:3"


def test_parse_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "Dockerfile"
    with pytest.raises(DockerfileError) as excinfo:
        Dockerfile.parse(path)
    assert str(excinfo.value) == f"Dockerfile not found: {path} (pass --dockerfile PATH)"


def test_location_uses_the_path_as_given() -> None:
    df = Dockerfile.from_string("FROM alpine\nRUN true\n", path="build/Dockerfile")
    assert df.location(df.instructions[1]) == "build/Dockerfile:2"
    assert df.location(7) == "build/Dockerfile:7"
    assert parse("FROM alpine\n").location(1) == "Dockerfile:1"


# Platforms: BuildKit's automatic platform ARGs

ARCH_STAGES = """
    FROM scratch AS base-amd64
    FROM scratch AS base-arm64
    FROM base-${TARGETARCH} AS final
    """


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("LINUX/AMD64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("arm64", "linux/arm64"),
        ("windows/amd64", "windows/amd64"),
        ("macos/arm64", "darwin/arm64"),
    ],
)
def test_normalize_platform_follows_containerd(given: str, normalized: str) -> None:
    assert normalize_platform(given) == normalized


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("", "is not understood: use OS/ARCH[/VARIANT]"),
        ("linux/", "is not understood: use OS/ARCH[/VARIANT]"),
        ("linux/amd64/v2/x", "is not understood: use OS/ARCH[/VARIANT]"),
        ("linux/amd64,linux/arm64", "is not understood: use OS/ARCH[/VARIANT]"),
        ("linux", "names no architecture: use OS/ARCH, e.g. linux/amd64"),
        ("pdp11", "is not a known OS or architecture"),
    ],
)
def test_malformed_platform_is_an_error_with_the_form_to_use(given: str, problem: str) -> None:
    with pytest.raises(ImageCheckError) as excinfo:
        normalize_platform(given)
    assert str(excinfo.value).startswith(f"platform {given!r} {problem}")


def test_parse_platforms_takes_buildx_comma_list() -> None:
    assert parse_platforms("linux/amd64,linux/aarch64, linux/arm64,linux/arm") == (
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    )
    with pytest.raises(ImageCheckError, match=r"^--platform ' , ' names no platform"):
        parse_platforms(" , ")
    with pytest.raises(ImageCheckError) as excinfo:
        parse_platforms("linux/amd64,linux")
    assert str(excinfo.value) == (
        "--platform 'linux/amd64,linux': platform 'linux' names no architecture: "
        "use OS/ARCH, e.g. linux/amd64"
    )


def test_engine_platform_reads_the_engines_os_and_arch() -> None:
    assert engine_platform({"Os": "linux", "Arch": "arm64", "Version": "27.1"}) == "linux/arm64"
    assert engine_platform({"Os": "linux", "Arch": "arm"}) == "linux/arm/v7"
    assert engine_platform({"Os": "linux"}) is None
    assert engine_platform({"Os": "linux", "Arch": "??"}) is None


def test_engine_platform_of_the_real_engine_agrees_with_its_kernel(client) -> None:
    # Two sources on the engine: Go's GOARCH in the version, uname -m in the info.
    info = client.info()
    expected = normalize_platform(f"{info['OSType']}/{info['Architecture']}")
    assert engine_platform(client.version()) == expected


def test_from_sees_platform_args_without_declaring_them() -> None:
    df = parse(
        """
        FROM --platform=$BUILDPLATFORM golang AS build
        FROM base-${TARGETOS}-${TARGETARCH}${TARGETVARIANT}:${BUILDARCH}
        """,
        platforms=["linux/arm/v7"],
        build_platform="linux/amd64",
    )
    assert df.stages[1].resolved_base == "base-linux-armv7:amd64"
    assert df.args == {}
    assert df.platform_args == {
        "TARGETPLATFORM": "linux/arm/v7",
        "TARGETOS": "linux",
        "TARGETARCH": "arm",
        "TARGETVARIANT": "v7",
        "BUILDPLATFORM": "linux/amd64",
        "BUILDOS": "linux",
        "BUILDARCH": "amd64",
        "BUILDVARIANT": "",
    }


def test_targetvariant_is_empty_on_amd64_not_unknown() -> None:
    df = parse("FROM base-${TARGETARCH}${TARGETVARIANT}\n", build_platform="linux/amd64")
    assert df.stages[0].resolved_base == "base-amd64"
    assert df.substitute("${TARGETVARIANT:-none}") == "none"


def test_without_any_platform_the_platform_args_have_no_value() -> None:
    df = parse(ARCH_STAGES)
    assert df.target_platform is None
    assert df.judged_platforms == ()
    assert df.stages[2].resolved_base is None
    assert df.stages[2].is_external


def test_target_platform_is_the_first_given_else_the_engines() -> None:
    assert parse(ARCH_STAGES, build_platform="linux/amd64").target_platform == "linux/amd64"
    given = parse(ARCH_STAGES, platforms="linux/arm64,linux/amd64", build_platform="linux/amd64")
    assert given.target_platform == "linux/arm64"
    assert given.stages[2].base_stage == 1
    assert given.platform_args["BUILDPLATFORM"] == "linux/amd64"


def test_stage_sees_platform_args_only_after_a_bare_arg() -> None:
    df = parse(
        """
        FROM alpine
        RUN echo $TARGETARCH
        FROM alpine
        ARG TARGETARCH
        ARG BUILDPLATFORM
        """,
        build_platform="linux/arm64",
    )
    assert df.substitute("$TARGETARCH", stage=0) is None
    assert df.substitute("$TARGETARCH $BUILDPLATFORM", stage=1) == "arm64 linux/arm64"


def test_build_arg_overrides_platform_args_as_buildkit_does() -> None:
    # BuildKit's platformArgs lets build args override (engine 20.10 builds base-arm64 so).
    df = parse(
        ARCH_STAGES + "ARG TARGETARCH\n",
        build_platform="linux/amd64",
        build_args={"TARGETARCH": "arm64"},
    )
    assert df.stages[2].resolved_base == "base-arm64"
    assert df.substitute("$TARGETARCH", stage=2) == "arm64"
    assert df.platform_args["TARGETPLATFORM"] == "linux/amd64"


def test_global_arg_default_shadows_a_platform_arg() -> None:
    df = parse(
        "ARG TARGETARCH=arm64\n" + textwrap.dedent(ARCH_STAGES), build_platform="linux/amd64"
    )
    assert df.args == {"TARGETARCH": "arm64"}
    assert df.stages[2].resolved_base == "base-arm64"
    assert df.judged_platforms == ("linux/amd64",)


def test_bare_global_arg_keeps_the_value_it_has() -> None:
    df = parse(
        "ARG TARGETARCH\nARG TAG=1\nARG TAG\n" + textwrap.dedent(ARCH_STAGES),
        build_platform="linux/arm64",
    )
    assert df.args == {"TARGETARCH": "arm64", "TAG": "1"}
    assert df.stages[2].resolved_base == "base-arm64"


def test_global_arg_default_may_use_platform_args() -> None:
    df = parse("ARG IMAGE=tool-${TARGETARCH}\nFROM ${IMAGE}\n", platforms=["linux/arm64"])
    assert df.stages[0].resolved_base == "tool-arm64"


def test_on_resolves_the_same_file_for_another_platform() -> None:
    df = parse(ARCH_STAGES, build_platform="linux/amd64")
    arm = df.on("linux/aarch64")
    assert (df.stages[2].base_stage, arm.stages[2].base_stage) == (0, 1)
    assert arm.target_platform == "linux/arm64"
    assert arm.instructions is df.instructions
    assert df.on("linux/amd64") is df


def test_base_platform_follows_the_from_platform_flag() -> None:
    df = parse(
        """
        FROM --platform=$BUILDPLATFORM golang AS build
        FROM --platform=linux/aarch64 alpine AS tools
        FROM --platform=$NOPE alpine AS odd
        FROM alpine
        FROM build
        """,
        platforms=["linux/arm64"],
        build_platform="linux/amd64",
    )
    assert [s.base_platform for s in df.stages] == [
        "linux/amd64",
        "linux/arm64",
        None,
        "linux/arm64",
        "linux/amd64",
    ]


def test_judged_platforms_are_the_given_ones() -> None:
    df = parse(ARCH_STAGES, platforms=["linux/arm/v7"], build_platform="linux/amd64")
    assert df.judged_platforms == ("linux/arm/v7",)


def test_judged_platforms_add_those_the_dockerfile_selects_stages_for() -> None:
    df = parse(
        """
        FROM scratch AS base-amd64
        FROM scratch AS base-armv7
        FROM scratch AS base-linux
        FROM base-${TARGETARCH}${TARGETVARIANT}
        FROM base-${TARGETOS}
        """,
        build_platform="linux/amd64",
    )
    # TARGETOS picks the same stage on every Linux; arch-only selection implies no Windows.
    assert df.judged_platforms == ("linux/amd64", "linux/arm/v7")


def test_judged_platforms_of_a_dockerfile_without_platform_args_are_the_engines() -> None:
    df = parse(
        "ARG ARCH=amd64\nFROM scratch AS base-amd64\nFROM base-${ARCH}\n",
        build_platform="linux/arm64",
    )
    assert df.judged_platforms == ("linux/arm64",)
    assert df.stages[1].base_stage == 0


def test_sources_are_copy_from_and_mount_from_as_written() -> None:
    df = parse(
        """
        FROM alpine AS build
        COPY --from=tool-${TARGETARCH} --chown=1 /a /a
        RUN --mount=type=cache,target=/c --mount=type=bind,FROM=build,target=/b true
        RUN --mount=type=cache,target=/c true
        """
    )
    assert [i.sources for i in df.instructions] == [
        (),
        ("tool-${TARGETARCH}",),
        ("build",),
        (),
    ]
    assert df.source_stage("BUILD") is df.stages[0]
    assert df.source_stage("0") is df.stages[0]
    assert df.source_stage("tool-${TARGETARCH}") is None


def test_used_stages_follow_the_platform_and_the_target() -> None:
    text = """
        FROM scratch AS base-amd64
        FROM scratch AS base-arm64
        FROM scratch AS tools
        FROM base-${TARGETARCH} AS final
        RUN --mount=from=tools,target=/t true
        FROM scratch AS debug
        COPY --from=final / /
        """
    df = parse(text, build_platform="linux/amd64")
    assert df.used_stages == {0, 2, 3, 4}
    assert df.on("linux/arm64").used_stages == {1, 2, 3, 4}
    assert parse(text, build_platform="linux/amd64", target="final").used_stages == {0, 2, 3}


def test_target_must_name_a_stage() -> None:
    assert error("FROM alpine AS app\n", target="prod") == (
        '--target "prod" is not a stage of Dockerfile; its stages are: app'
    )
