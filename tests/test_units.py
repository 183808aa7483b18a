from __future__ import annotations

import doctest
import math
from datetime import timedelta
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_imagecheck import units
from pytest_imagecheck.errors import ImageCheckError
from pytest_imagecheck.units import (
    Bound,
    format_duration,
    format_size,
    nanoseconds_to_timedelta,
    parse_bound,
    parse_duration,
    parse_size,
)

SIZE_FIX = 'use bytes or a number with B, kB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. "2.5GB")'
DURATION_FIX = 'use Docker\'s form, e.g. "30s", "1m30s", "500ms"'


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(units).failed == 0


def test_gb_is_decimal_and_gib_is_binary() -> None:
    assert parse_size("1GB") == 1_000_000_000
    assert parse_size("1GiB") == 1_073_741_824


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123", 123),
        ("123B", 123),
        ("0", 0),
        ("100kB", 100_000),
        ("100KB", 100_000),
        ("2.5GB", 2_500_000_000),
        ("2.5 GB", 2_500_000_000),
        ("  2.5GB  ", 2_500_000_000),
        ("3MB", 3_000_000),
        ("1TB", 10**12),
        ("512MiB", 512 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("4KiB", 4096),
        ("2TiB", 2 * 2**40),
        (".5kB", 500),
        ("1.kB", 1000),
        ("2.3GB", 2_300_000_000),  # exact, where floats would give 2299999999.9999995
    ],
)
def test_parse_size_reads_bytes_and_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["2gb", "2Gb", "2gB", "2GB"])
def test_size_units_are_case_insensitive(text: str) -> None:
    assert parse_size(text) == 2_000_000_000


def test_lowercase_b_means_bytes_not_bits() -> None:
    assert parse_size("8b") == parse_size("8B") == 8
    assert parse_size("1mib") == 2**20


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (123, 123), (2.0, 2), (2.6, 3)])
def test_numbers_are_bytes(value: float, expected: int) -> None:
    assert parse_size(value) == expected


def test_fractional_sizes_round_to_the_nearest_byte() -> None:
    assert parse_size("1.1KiB") == 1126  # 1126.4
    assert parse_size("0.0006kB") == 1


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2.5XB", '"2.5XB"'),
        ("", '""'),
        ("GB", '"GB"'),
        ("-1GB", '"-1GB"'),
        ("1e3", '"1e3"'),
        ("1,000", '"1,000"'),
        ("nan", '"nan"'),
        ("2 G B", '"2 G B"'),
        ("2\nGB", '"2\\nGB"'),
        ("1g", '"1g"'),  # docker run -m means GiB by this; refused, not guessed
        ("512m", '"512m"'),
        ("100k", '"100k"'),
        (-1, "-1"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (True, "True"),
        (None, "None"),
    ],
)
def test_bad_sizes_name_the_input_and_the_fix(value: object, shown: str) -> None:
    with pytest.raises(ImageCheckError) as excinfo:
        parse_size(value)  # type: ignore[arg-type]
    assert str(excinfo.value) == f"bad size {shown}: {SIZE_FIX}"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (17, "17 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (1200, "1.2 kB"),
        (12_345, "12.3 kB"),
        (512_000_000, "512 MB"),
        (2_345_678_901, "2.35 GB"),
        (999_999, "1 MB"),
        (10**12, "1 TB"),
        (5 * 10**15, "5000 TB"),
        (-1200, "-1.2 kB"),
    ],
)
def test_format_size_gives_three_significant_digits(n: int, expected: str) -> None:
    assert format_size(n) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (2_345_678_901, "2.18 GiB"),
        (1000 * 2**10, "1000 KiB"),
        (2**20 - 1, "1 MiB"),
        (512 * 2**20, "512 MiB"),
    ],
)
def test_format_size_binary_uses_iec_units(n: int, expected: str) -> None:
    assert format_size(n, binary=True) == expected


@given(st.integers(min_value=0, max_value=10**15), st.booleans())
def test_parse_size_reads_format_size_back_to_three_digits(n: int, binary: bool) -> None:
    assert parse_size(format_size(n, binary=binary)) == pytest.approx(n, rel=5e-3, abs=0.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1m30s", timedelta(seconds=90)),
        ("1h", timedelta(hours=1)),
        ("1h2m3s", timedelta(hours=1, minutes=2, seconds=3)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5s", timedelta(seconds=1.5)),
        (".5s", timedelta(milliseconds=500)),
        ("2us", timedelta(microseconds=2)),
        ("2µs", timedelta(microseconds=2)),  # micro sign, as Go prints it
        ("2μs", timedelta(microseconds=2)),  # Greek mu
        ("1500ns", timedelta(microseconds=2)),
        ("100ns", timedelta(0)),
        ("0s", timedelta(0)),
        ("0", timedelta(0)),
        ("30", timedelta(seconds=30)),
        ("2.5", timedelta(seconds=2.5)),
        (" 30s ", timedelta(seconds=30)),
        (30, timedelta(seconds=30)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_parse_duration_reads_docker_durations_and_seconds(
    value: int | float | str | timedelta, expected: timedelta
) -> None:
    assert parse_duration(value) == expected


def test_integer_durations_are_seconds_not_nanoseconds() -> None:
    assert parse_duration(30) == timedelta(seconds=30)
    assert nanoseconds_to_timedelta(30) == timedelta(0)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("30 seconds", '"30 seconds"'),
        ("30 s", '"30 s"'),
        ("1m 30s", '"1m 30s"'),
        ("30sec", '"30sec"'),
        ("1H", '"1H"'),
        ("1d", '"1d"'),
        ("-1s", '"-1s"'),
        ("+1s", '"+1s"'),
        ("s", '"s"'),
        ("", '""'),
        ("1e3s", '"1e3s"'),
        ("99999999999999h", '"99999999999999h"'),
        (-1, "-1"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        (True, "True"),
        (None, "None"),
        (timedelta(seconds=-30), "-30s"),
    ],
)
def test_bad_durations_name_the_input_and_the_fix(value: object, shown: str) -> None:
    with pytest.raises(ImageCheckError) as excinfo:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(excinfo.value) == f"bad duration {shown}: {DURATION_FIX}"


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=30), "30s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, seconds=5), "1h5s"),
        (timedelta(days=1, minutes=1), "24h1m"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(minutes=1, milliseconds=250), "1m0.25s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=2), "2µs"),
        (timedelta(seconds=-90), "-1m30s"),
    ],
)
def test_format_duration_writes_docker_form(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


@given(st.timedeltas(min_value=timedelta(0)))
def test_parse_duration_reads_format_duration_back(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        (0, timedelta(0)),
        (30_000_000_000, timedelta(seconds=30)),
        (1_500, timedelta(microseconds=2)),
        (2_500, timedelta(microseconds=2)),  # halves round to even, like round()
        (86_400_000_000_000_123_456, timedelta(days=1_000_000, microseconds=123)),
    ],
)
def test_nanoseconds_to_timedelta_rounds_to_microseconds(ns: int, expected: timedelta) -> None:
    assert nanoseconds_to_timedelta(ns) == expected


@pytest.mark.parametrize(
    ("value", "op", "expected"),
    [
        ("30s", "==", timedelta(seconds=30)),
        (30, "==", timedelta(seconds=30)),
        (timedelta(seconds=30), "==", timedelta(seconds=30)),
        ("<=30s", "<=", timedelta(seconds=30)),
        ("<30s", "<", timedelta(seconds=30)),
        (">=1m", ">=", timedelta(minutes=1)),
        (">1m", ">", timedelta(minutes=1)),
        ("==1m", "==", timedelta(minutes=1)),
        ("!=0s", "!=", timedelta(0)),
        (" <= 30s ", "<=", timedelta(seconds=30)),
        ("<=30", "<=", timedelta(seconds=30)),
    ],
)
def test_parse_bound_reads_durations_by_default(value: object, op: str, expected: object) -> None:
    assert parse_bound(value) == Bound(op, expected)


def test_parse_bound_reads_sizes_and_ints_with_the_given_parser() -> None:
    assert parse_bound("<=2.5GB", parse=parse_size) == Bound("<=", 2_500_000_000)
    assert parse_bound(">=3", parse=int) == Bound(">=", 3)
    assert parse_bound("!=0", parse=int) == Bound("!=", 0)
    assert parse_bound(3, parse=int) == Bound("==", 3)
    assert parse_bound(3.0, parse=int) == Bound("==", 3)


@pytest.mark.parametrize(
    ("bound", "actual", "expected"),
    [
        ("<=30s", timedelta(seconds=30), True),
        ("<=30s", timedelta(seconds=31), False),
        ("<30s", timedelta(seconds=30), False),
        (">=30s", timedelta(seconds=30), True),
        (">30s", timedelta(seconds=30), False),
        ("30s", timedelta(seconds=30), True),
        ("30s", timedelta(seconds=29), False),
        ("!=30s", timedelta(seconds=29), True),
    ],
)
def test_calling_a_bound_tells_whether_a_value_meets_it(
    bound: str, actual: timedelta, expected: bool
) -> None:
    assert parse_bound(bound)(actual) is expected


def test_size_and_int_bounds_compare_parsed_values() -> None:
    assert parse_bound("<=2GB", parse=parse_size)(1_999_999_999)
    assert not parse_bound("<=2GB", parse=parse_size)(2_000_000_001)
    assert parse_bound(">=3", parse=int)(3)
    assert not parse_bound("!=0", parse=int)(0)


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        ("<=30s", {}, "<=30s"),
        ("<= 90", {}, "<=1m30s"),
        ("30s", {}, "30s"),
        ("==30s", {}, "30s"),
        ("<=2500MB", {"parse": parse_size}, "<=2.5 GB"),
        ("<=2GiB", {"parse": parse_size, "fmt": partial(format_size, binary=True)}, "<=2 GiB"),
        (">=3", {"parse": int}, ">=3"),
        ("!=0", {"parse": int}, "!=0"),
        ("<=1.5", {"parse": float}, "<=1.5"),
    ],
)
def test_str_of_a_bound_writes_it_as_a_user_would(
    value: str, kwargs: dict[str, object], expected: str
) -> None:
    assert str(parse_bound(value, **kwargs)) == expected  # type: ignore[call-overload]


@pytest.mark.parametrize("value", ["=>30s", "=30s", "<<30s", "<=", "", "  ", "!30s", "<>30s"])
def test_bad_bound_operators_name_the_input_and_the_fix(value: str) -> None:
    with pytest.raises(ImageCheckError) as excinfo:
        parse_bound(value)
    assert str(excinfo.value) == (
        f'bad bound "{value}": start with one of <=, <, >=, >, ==, != or give just the value'
    )


def test_bad_bound_values_get_the_parsers_error() -> None:
    with pytest.raises(ImageCheckError, match=r'^bad duration "30 seconds": use Docker'):
        parse_bound("<=30 seconds")
    with pytest.raises(ImageCheckError, match=r'^bad size "2XB": use bytes'):
        parse_bound("<=2XB", parse=parse_size)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (">=2.5", '"2.5"'),
        (">=three", '"three"'),
        ("3_000", '"3_000"'),
        (2.5, "2.5"),
        (True, "True"),
        (None, "None"),
    ],
)
def test_int_bounds_refuse_what_int_would_truncate_or_guess(value: object, shown: str) -> None:
    with pytest.raises(ImageCheckError) as excinfo:
        parse_bound(value, parse=int)
    assert str(excinfo.value) == f'bad number {shown}: use a whole number, e.g. "3"'


def test_bounds_are_equal_whatever_their_formatter() -> None:
    assert Bound("<=", 3, fmt=str) == Bound("<=", 3, fmt=lambda n: f"{n} things")
