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
import time
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


class _Progress:
    """A one-line progress meter on stderr, redrawn at most every half second."""

    def __init__(self, label: str, *, quiet: bool) -> None:
        self.label, self.quiet, self._last = label, quiet, 0.0
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < 0.5 and done < total):
            return
        self._last = now
        end = "\n" if done >= total else ""
        print(f"\r{self.label}: {done}/{total} ({100 * done / max(total, 1):.0f}%, "
              f"{now - self._start:.0f} s)", end=end, file=sys.stderr, flush=True)


def _synth(args: argparse.Namespace) -> dict[str, Any]:
    from .synthetic import SynthSpec, write_synthetic_slide

    spec = SynthSpec(width=args.size, height=args.height or args.size, seed=args.seed,
                     lesions=args.lesions, mpp=args.mpp,
                     artefacts=() if args.no_artefacts else ("pen", "dust", "fold"))
    start = time.monotonic()
    _, summary = write_synthetic_slide(args.output, spec, mask_path=args.mask,
                                       progress=_Progress("synth", quiet=args.quiet))
    summary["seconds"] = round(time.monotonic() - start, 2)
    return summary


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

    p = sub.add_parser("synth", help="write a synthetic lymph-node slide with its tumor XML",
                       description="Write a deterministic, H&E-like synthetic lymph-node slide "
                                   "(pyramidal JPEG TIFF) and an ASAP XML of its metastases beside it.")
    p.add_argument("-o", "--output", required=True, help="the slide to write, e.g. slide.tif")
    p.add_argument("--size", type=int, default=20_000, help="width in level-0 px (default 20000)")
    p.add_argument("--height", type=int, default=None, help="height in px (default: --size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lesions", type=int, default=3, help="metastases to place (default 3)")
    p.add_argument("--mpp", type=float, default=0.25, help="µm per level-0 px (default 0.25)")
    p.add_argument("--mask", default=None, help="also write the true tissue mask (PNG, downsample 16)")
    p.add_argument("--no-artefacts", action="store_true", help="no pen mark, dust or fold")
    p.set_defaults(func=_synth)
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
