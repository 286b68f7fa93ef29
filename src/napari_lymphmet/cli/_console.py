"""What every command shares on the terminal: a progress meter, one-line errors and warnings, JSON-safe values."""


from __future__ import annotations

import argparse
import sys
from pathlib import Path
import time
from collections.abc import Callable
from typing import Any


__all__ = ['Command']

Command = Callable[[argparse.Namespace], dict[str, Any]]


class _Progress:
    """A progress meter on stderr.

    On a terminal it is one line redrawn in place at most every half second;
    elsewhere (CI logs, files) each update is a whole line, at most every
    five seconds, so the log stays readable.
    """

    def __init__(self, label: str, *, quiet: bool) -> None:
        self.label, self.quiet, self._last = label, quiet, 0.0
        self._start = time.monotonic()
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < (0.5 if self._tty else 5.0) and done < total):
            return
        self._last = now
        text = f"{self.label}: {done}/{total} ({100 * done / max(total, 1):.0f}%, {now - self._start:.0f} s)"
        if self._tty:
            print(f"\r{text}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _finite(value: Any) -> Any:
    """NaN and infinity become null: JSON has no NaN."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


_OWN = str(Path(__file__).resolve().parents[1])  # this package's own files


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, DeprecationWarning) and not filename.startswith(_OWN):
        return  # a library's notice to its developers (Keras on NumPy 2, …), not the user's business
    print(f"warning: {_one_line(message) if isinstance(message, BaseException) else message}",
          file=sys.stderr)
