"""``lymphmet``: the command-line shell over the napari-lymphmet workflows.

Contract shared by every command: progress and warnings go to stderr; the
last line of stdout is exactly one JSON object summarising the result. Bad
input exits with code 2 and one line, ``error: <file>: <problem>``, on
stderr; anything else that goes wrong (our bug) is one ``error:`` line too,
exit 1. ``--debug`` shows the traceback instead, and the start-up lines of
TensorFlow that are otherwise held back. One module per command
group; ``parser`` wires them to their options.
"""


from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from ..errors import InputError
from ._console import Command, _Events, _finite, _one_line, _show_warning
from .parser import build_parser

__all__ = ['build_parser', 'main']


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lymphmet``; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # a bad option (its one line is printed), --help or --version
        return int(exit_.code or 0)
    # Our own messages at INFO; other libraries' (matplotlib's font cache, …) only from WARNING.
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(message)s",
                        stream=sys.stderr)
    logging.getLogger("napari_lymphmet").setLevel(logging.WARNING if args.quiet else logging.INFO)
    if args.debug:  # TensorFlow's start-up lines too (see napari_lymphmet._tensorflow)
        os.environ["LYMPHMET_DEBUG"] = "1"
    command: Command = args.func
    warnings.showwarning = _show_warning
    _Events.enabled = bool(getattr(args, "events", False))
    if getattr(args, "nice", 0):
        os.nice(args.nice)
    _sigterm_as_sigint()
    try:
        summary = command(args)
    except (InputError, OSError) as exc:  # a ValueError from our code is a bug: traceback
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print(f"error: lymphmet {args.command}: out of memory", file=sys.stderr)
        return 2
    except Exception as exc:  # our bug: one line, exit 1; --debug shows the traceback
        if args.debug:
            raise
        print(f"error: lymphmet {args.command}: unexpected {type(exc).__name__}: {_one_line(exc)[:300]} "
              f"(a bug in napari-lymphmet; --debug shows the traceback)", file=sys.stderr)
        return 1
    code = 0
    if isinstance(summary, tuple):  # (summary, exit code): a result that is not a success, e.g. a refused model
        summary, code = summary
    sys.stdout.write(json.dumps(_finite(summary)) + "\n")
    sys.stdout.flush()
    return code



def _sigterm_as_sigint() -> None:
    """SIGTERM (a scheduler, ``systemctl``, the napari plugin's Cancel) stops a command as Ctrl-C does."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        # Python leaves SIGINT alone when it starts ignored (a child of a shell's background job, of a
        # launcher): Ctrl-C and Cancel would then do nothing.
        signal.signal(signal.SIGINT, signal.default_int_handler)
