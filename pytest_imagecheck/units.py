"""Sizes, durations, bounds, ports and file modes: values as users write them, parsed one way
everywhere in the plugin.

Sizes follow the SI/IEC split: ``kB``, ``MB``, ``GB``, ``TB`` are powers of 1000 and
``KiB``, ``MiB``, ``GiB``, ``TiB`` powers of 1024. Durations use Docker's (Go's) form,
``"1m30s"``. A :class:`Bound` is an expectation such as ``"<=30s"`` or ``">=3"``. A port is
``5000`` or ``"53/udp"``; a file mode is octal digits, ``"0644"``.

Each grammar is written once, as a ``*_PATTERN`` regular expression (no groups, no flags, so
JSON Schema can use it too): the parsers here match with it, and imagecheck.yaml's schema is
made from it.

Bad input raises :class:`~pytest_imagecheck.errors.ImageCheckError` with one line that
names the input and the fix.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Generic, TypeGuard, TypeVar, overload

from pytest_imagecheck.errors import ImageCheckError

__all__ = [
    "DURATION_PATTERN",
    "MODE_PATTERN",
    "NUMBER_PATTERN",
    "OPERATOR_PATTERN",
    "PORT_PATTERN",
    "SIZE_PATTERN",
    "Bound",
    "format_duration",
    "format_size",
    "nanoseconds_to_timedelta",
    "parse_bound",
    "parse_duration",
    "parse_mode",
    "parse_size",
    "port_key",
]

T = TypeVar("T")

#: A number in a size or a duration: ``2``, ``2.5``, ``2.``, ``.5``.
NUMBER_PATTERN = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# The keys of _SIZE_UNITS, in any case.
_SIZE_UNIT_PATTERN = r"(?:[bB]|[kKmMgGtT][bB]|[kKmMgGtT][iI][bB])"
#: A size written as a string, blanks around it aside: ``"2.5GB"``, ``"512 MiB"``, ``"100"``.
SIZE_PATTERN = rf"{NUMBER_PATTERN} *{_SIZE_UNIT_PATTERN}?"
_SIZE = re.compile(rf"({NUMBER_PATTERN}) *({_SIZE_UNIT_PATTERN}?)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_FIX = 'use bytes or a number with B, kB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. "2.5GB")'
_DECIMAL_SIZE_NAMES = ("B", "kB", "MB", "GB", "TB")
_BINARY_SIZE_NAMES = ("B", "KiB", "MiB", "GiB", "TiB")

_DURATION_UNITS = {
    "ns": 1,
    "us": 1000,
    "µs": 1000,  # U+00B5 MICRO SIGN, what Go prints
    "μs": 1000,  # U+03BC GREEK SMALL LETTER MU, what people type
    "ms": 1000**2,
    "s": 1000**3,
    "m": 60 * 1000**3,
    "h": 3600 * 1000**3,
}
_DURATION_UNIT_PATTERN = f"(?:{'|'.join(_DURATION_UNITS)})"
#: A duration written as a string, blanks around it aside: Docker's form (``"1m30s"``) or a
#: number of seconds (``"30"``).
DURATION_PATTERN = rf"(?:{NUMBER_PATTERN}|(?:{NUMBER_PATTERN}{_DURATION_UNIT_PATTERN})+)"
_DURATION_PART = re.compile(rf"({NUMBER_PATTERN})({_DURATION_UNIT_PATTERN})")
_DURATION_FIX = 'use Docker\'s form, e.g. "30s", "1m30s", "500ms"'

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}
#: The comparison a bound may start with (the keys of _OPERATORS, longest first).
OPERATOR_PATTERN = r"(?:<=|>=|==|!=|<|>)"
_BOUND = re.compile(rf"({OPERATOR_PATTERN})? *(.*)", re.DOTALL)
_BOUND_FIX = "start with one of <=, <, >=, >, ==, != or give just the value"

#: A port: a number, and optionally its protocol (tcp when none is given).
PORT_PATTERN = r"[0-9]+(?:/(?:tcp|udp|sctp))?"
_PORTS = range(1, 65536)
#: A file mode: octal permission bits, as ``chmod`` takes them (``"644"``, ``"0644"``,
#: ``"4755"``), at most ``07777``.
MODE_PATTERN = r"0?[0-7]{3,4}"
_MODE_MAX = 0o7777


def parse_size(value: int | float | str) -> int:
    """Return a size in bytes.

    Numbers are bytes. Strings are a number and an optional unit, with or without a
    space between: ``kB``, ``MB``, ``GB``, ``TB`` are decimal (``"100KB"`` is 100000
    bytes) and ``KiB``, ``MiB``, ``GiB``, ``TiB`` binary. Units are case-insensitive,
    so ``b`` means bytes too, never bits. Bare ``k``, ``m``, ``g`` are refused because
    ``docker run -m 1g`` means GiB while ``1GB`` here means 10**9. Fractions round to
    the nearest byte.

    >>> parse_size("2.5GB")
    2500000000
    >>> parse_size("512 MiB")
    536870912
    >>> parse_size(123)
    123
    """
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            return round(Decimal(match[1]) * _SIZE_UNITS[match[2].lower()])
    elif _is_non_negative_number(value):
        return round(value)
    raise ImageCheckError(f"bad size {_show(value)}: {_SIZE_FIX}")


def format_size(n: int, *, binary: bool = False) -> str:
    """Return ``n`` bytes for a person to read, to three significant digits.

    The result is decimal (kB, MB, ...) unless ``binary`` is true (KiB, MiB, ...),
    and :func:`parse_size` reads it back.

    >>> format_size(2_345_678_901)
    '2.35 GB'
    >>> format_size(512_000_000), format_size(1200), format_size(17)
    ('512 MB', '1.2 kB', '17 B')
    >>> format_size(2_345_678_901, binary=True)
    '2.18 GiB'
    """
    if n < 0:
        return "-" + format_size(-n, binary=binary)
    base, names = (1024, _BINARY_SIZE_NAMES) if binary else (1000, _DECIMAL_SIZE_NAMES)
    scaled = float(n)
    for name in names[:-1]:
        text = _three_significant_digits(scaled)
        # Rounding can carry into the next unit: 999_999 B is "1 MB", not "1000 kB".
        if float(text) < base:
            return f"{text} {name}"
        scaled /= base
    return f"{_three_significant_digits(scaled)} {names[-1]}"


def parse_duration(value: int | float | str | timedelta) -> timedelta:
    """Return a duration.

    Strings use Docker's (Go's) form: numbers with ``h``, ``m``, ``s``, ``ms``,
    ``us``/``µs`` or ``ns``, run together as in ``"1m30s"``; units are case-sensitive,
    as in Docker. A bare number is seconds, in a string or not: ``30`` and ``"30"`` are
    30 seconds, never nanoseconds (use :func:`nanoseconds_to_timedelta` for those).
    A :class:`~datetime.timedelta` is returned as it is. Negative durations are
    refused. Results round to the nearest microsecond, the resolution of timedelta.

    >>> parse_duration("1m30s")
    datetime.timedelta(seconds=90)
    >>> parse_duration("500ms") == parse_duration(0.5) == parse_duration("0.5")
    True
    """
    if isinstance(value, timedelta):
        if value >= timedelta(0):
            return value
    else:
        nanoseconds = _duration_nanoseconds(value)
        if nanoseconds is not None:
            try:
                return _timedelta(nanoseconds)
            except OverflowError:
                pass
    raise ImageCheckError(f"bad duration {_show(value)}: {_DURATION_FIX}")


def format_duration(td: timedelta) -> str:
    """Return ``td`` in Docker's form, leaving out zero parts; :func:`parse_duration`
    reads it back.

    >>> format_duration(timedelta(seconds=90)), format_duration(timedelta(hours=2))
    ('1m30s', '2h')
    >>> format_duration(timedelta(milliseconds=500)), format_duration(timedelta(0))
    ('500ms', '0s')
    """
    microseconds = td // timedelta(microseconds=1)
    if microseconds < 0:
        return "-" + format_duration(-td)
    if microseconds == 0:
        return "0s"
    if microseconds < 1000:
        return f"{microseconds}µs"
    if microseconds < 1_000_000:
        return _decimal(microseconds, 1000) + "ms"
    minutes, microseconds = divmod(microseconds, 60_000_000)
    hours, minutes = divmod(minutes, 60)
    return "".join(
        (
            f"{hours}h" if hours else "",
            f"{minutes}m" if minutes else "",
            _decimal(microseconds, 1_000_000) + "s" if microseconds else "",
        )
    )


def time_limit(value: int | float | str | timedelta, *, leaves: str, example: str) -> timedelta:
    """A duration that bounds a wait (a timeout): :func:`parse_duration`, and above 0.

    A limit of 0 would make one attempt with no time to answer and report the service's
    silence, so it is refused up front (:class:`ImageCheckError`). ``leaves`` says what the
    time is for, ``example`` a sensible value: ``0s leaves no time to wait: give a duration
    above 0, e.g. "60s"``.
    """
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ImageCheckError(
            f"{format_duration(duration)} leaves no time {leaves}: "
            f'give a duration above 0, e.g. "{example}"'
        )
    return duration


def nanoseconds_to_timedelta(ns: int) -> timedelta:
    """Return ``ns`` nanoseconds, the unit of the healthcheck durations in ``docker
    inspect``, rounded to the nearest microsecond.

    >>> nanoseconds_to_timedelta(30_000_000_000)
    datetime.timedelta(seconds=30)
    """
    return _timedelta(Decimal(ns))


@dataclass(frozen=True)
class Bound(Generic[T]):
    """An expectation on a value: ``op`` is one of ``<=``, ``<``, ``>=``, ``>``, ``==``,
    ``!=``, and ``fmt`` writes ``value`` back in the form a user would type.

    Calling a bound tells whether a value meets it.

    >>> bound = parse_bound("<=30s")
    >>> bound(timedelta(seconds=12)), bound(timedelta(minutes=1))
    (True, False)
    >>> str(bound)
    '<=30s'
    """

    op: str
    value: T
    fmt: Callable[[T], str] = field(default=str, compare=False, repr=False)

    def __call__(self, actual: T) -> bool:
        return _OPERATORS[self.op](actual, self.value)

    def __str__(self) -> str:
        return ("" if self.op == "==" else self.op) + self.fmt(self.value)


_FORMATTERS: dict[Callable[[Any], Any], Callable[[Any], str]] = {
    parse_duration: format_duration,
    parse_size: format_size,
}


@overload
def parse_bound(
    value: object, *, fmt: Callable[[timedelta], str] | None = None
) -> Bound[timedelta]: ...
@overload
def parse_bound(
    value: object, *, parse: Callable[[Any], T], fmt: Callable[[T], str] | None = None
) -> Bound[T]: ...
def parse_bound(
    value: object,
    *,
    parse: Callable[[Any], Any] = parse_duration,
    fmt: Callable[[Any], str] | None = None,
) -> Bound[Any]:
    """Return the bound ``value`` describes.

    A string may start with a comparison (``"<=30s"``, ``">= 3"``); anything else is an
    exact value (``"30s"``, ``30``, a timedelta), a bound with ``op`` ``"=="``. The value
    goes through ``parse``, which raises ImageCheckError on bad input: pass
    ``parse_duration`` (the default), ``parse_size`` or ``int`` (made strict: ``"2.5"``
    and ``True`` are refused). ``fmt`` defaults to the formatter that matches ``parse``,
    or ``str``.

    >>> parse_bound("<=2GB", parse=parse_size)
    Bound(op='<=', value=2000000000)
    >>> str(parse_bound(">=3", parse=int)), str(parse_bound(90))
    ('>=3', '1m30s')
    """
    if fmt is None:
        fmt = _FORMATTERS.get(parse, str)
    convert: Callable[[Any], Any] = _parse_int if parse is int else parse
    if not isinstance(value, str):
        return Bound("==", convert(value), fmt)
    match = _BOUND.fullmatch(value.strip())
    assert match is not None  # the pattern matches any string
    op, text = match[1] or "==", match[2]
    if not text or text[0] in "<>=!":
        raise ImageCheckError(f"bad bound {_show(value)}: {_BOUND_FIX}")
    return Bound(op, convert(text), fmt)


def port_key(port: int | str) -> str:
    """Return ``port`` as the engine names it: ``5000`` and ``"5000"`` are ``"5000/tcp"``;
    ``"53/udp"`` stays. Ports run from 1 to 65535; the protocol is tcp, udp or sctp.

    >>> port_key(5000), port_key("53/udp"), port_key("08080")
    ('5000/tcp', '53/udp', '8080/tcp')
    """
    text = str(port) if isinstance(port, str) or _is_int(port) else ""
    number, _, protocol = text.partition("/")
    if not re.fullmatch(PORT_PATTERN, text) or int(number) not in _PORTS:
        raise ImageCheckError(
            f'bad port "{port}": use a number like 5000 or "5000/udp" (tcp, udp or sctp)'
        )
    return f"{int(number)}/{protocol or 'tcp'}"


def parse_mode(mode: str | int) -> int:
    """Return file permission bits: a string is octal digits (``"0644"``, ``"644"``), an int
    is taken as it is (``0o644``). Refused: anything above ``0o7777``.

    >>> parse_mode("0644") == parse_mode("644") == parse_mode(0o644) == 420
    True
    """
    value = -1
    if _is_int(mode):
        value = mode
    elif isinstance(mode, str) and re.fullmatch(MODE_PATTERN, mode):
        value = int(mode, 8)
    elif isinstance(mode, str) and re.fullmatch("[0-7]+", mode) and int(mode, 8) > _MODE_MAX:
        raise ImageCheckError(
            f'bad mode "{mode}": above 7777, the largest file mode (setuid, setgid, sticky '
            'and rwx for all); use 3 or 4 octal digits like "0644"'
        )
    if not 0 <= value <= _MODE_MAX:
        raise ImageCheckError(
            f'bad mode "{mode}": use octal digits like "0644" or "644" (or an int like 0o644)'
        )
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_int(value: object) -> int:
    # int() would truncate 2.5 and take True for 1; a bound on a count must not.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    raise ImageCheckError(f'bad number {_show(value)}: use a whole number, e.g. "3"')


def _duration_nanoseconds(value: int | float | str) -> Decimal | None:
    if _is_non_negative_number(value):
        return Decimal(value) * _DURATION_UNITS["s"]
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(NUMBER_PATTERN, text):
            return Decimal(text) * _DURATION_UNITS["s"]
        if re.fullmatch(DURATION_PATTERN, text):
            parts = _DURATION_PART.findall(text)
            return sum(
                (Decimal(number) * _DURATION_UNITS[unit] for number, unit in parts), Decimal(0)
            )
    return None


def _is_non_negative_number(value: object) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _timedelta(nanoseconds: Decimal) -> timedelta:
    return timedelta(microseconds=round(nanoseconds / 1000))


def _three_significant_digits(x: float) -> str:
    decimals = max(0, 3 - len(str(int(x))))
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _decimal(n: int, unit: int) -> str:
    """Write ``n / unit`` exactly, ``unit`` being a power of ten: ``_decimal(1500, 1000)``
    is ``"1.5"``."""
    whole, fraction = divmod(n, unit)
    return f"{whole}.{fraction:0{len(str(unit)) - 1}d}".rstrip("0").rstrip(".")


def _show(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # quoted, and on one line
    if isinstance(value, timedelta):
        return format_duration(value)
    return repr(value)
