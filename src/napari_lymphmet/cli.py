"""``lymphmet``: the command-line shell over the napari-lymphmet core.

Contract shared by every command: progress and warnings go to stderr; the
last line of stdout is exactly one JSON object summarising the result. Bad
input exits with code 2 and one line, ``error: <file>: <problem>``, on
stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .errors import InputError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], dict[str, Any]]


def _info(args: argparse.Namespace) -> dict[str, Any]:
    from .slide import open_slide

    with open_slide(args.slide) as slide:
        return {
            "path": slide.path,
            "vendor": slide.vendor,
            "dimensions": list(slide.dimensions),
            "level_count": slide.level_count,
            "level_dimensions": [list(d) for d in slide.level_dimensions],
            "level_downsamples": list(slide.level_downsamples),
            "mpp": list(slide.mpp) if slide.mpp else None,
            "objective_power": slide.objective_power,
            "bounds": list(slide.bounds) if slide.bounds else None,
            "tile_size": [list(slide.tile_shape(i))[::-1] for i in range(slide.level_count)],
            "reader": [slide.level_backend(i) for i in range(slide.level_count)],
            "associated_images": list(slide.associated_images),
        }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lymphmet",
        description="Find lymph-node metastases in whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="print a slide's levels, mpp and metadata")
    p.add_argument("slide", help="a whole-slide image in any format OpenSlide reads")
    p.set_defaults(func=_info)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lymphmet``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    command: Command = args.func
    try:
        summary = command(args)
    except (InputError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
