"""Command line tools: ``python -m pytest_imagecheck baseline IMAGE_REF PATH``.

``baseline`` writes the size baseline of an image on the engine (``DOCKER_HOST``, else the
local socket) to the JSON file ``PATH``, for ``assert_size_within(image, baseline=PATH,
growth="10%")``. Errors print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .checks.size import write_size_baseline
from .engine import Engine, connect, new_session_id
from .errors import ImageCheckError
from .units import format_size

PROG = "python -m pytest_imagecheck"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = _Parser(prog=PROG, description="pytest-imagecheck command line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    baseline = commands.add_parser(
        "baseline",
        help="write the size baseline of an image to a JSON file",
        description="Write the size, layers and ID of IMAGE_REF to PATH, a JSON file that "
        'assert_size_within(image, baseline=PATH, growth="10%") compares later images with.',
    )
    baseline.add_argument("image", metavar="IMAGE_REF", help="image on the engine: name:tag or ID")
    baseline.add_argument("path", metavar="PATH", help="baseline file to write, e.g. size.json")
    args = parser.parse_args(argv)
    try:
        image = Engine(connect(), new_session_id()).image(args.image)
        written = write_size_baseline(image, args.path)
    except ImageCheckError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.path}: {written.image} ({written.id.removeprefix('sha256:')[:12]}) "
        f"is {format_size(written.size)} in {len(written.layers)} history steps"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
