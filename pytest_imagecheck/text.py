"""Text from images, containers and engines as messages show it: on one line, bounded."""

from __future__ import annotations


def shorten(text: str, limit: int, *, count: bool = False) -> str:
    """``text`` on one line (runs of white space as one space), cut to ``limit`` characters
    with ``…``; with ``count``, the full length follows, so a reader knows how much was cut.

    >>> shorten("RUN apt-get   install -y\\n  gcc", 100)
    'RUN apt-get install -y gcc'
    >>> shorten("a" * 300, 10)
    'aaaaaaaaa…'
    >>> shorten("a" * 300, 10, count=True)
    'aaaaaaaaa… (300 chars)'
    """
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rstrip() + "…"
    return f"{cut} ({len(line)} chars)" if count else cut
