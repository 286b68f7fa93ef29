"""What every command shares on the terminal: a progress meter, one-line errors and warnings, JSON-safe values."""


from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ['Command']

Command = Callable[[argparse.Namespace], dict[str, Any]]


class _Events:
    """``--events``: progress as JSON lines on stdout, before the summary line, for front ends (the napari plugin).

    Every event is one object with an ``event`` key: ``progress`` (label,
    done, total, seconds), ``epoch`` (a training epoch's figures), ``plan``
    (the epochs a training time limit left, and an epoch's seconds), ``grid``
    and ``cells`` (a heatmap's geometry, then its newly predicted cells as
    flat indices and probabilities).
    """

    enabled = False
    _lock = threading.Lock()

    @classmethod
    def emit(cls, event: str, **fields: Any) -> None:
        if not cls.enabled:
            return
        line = json.dumps({"event": event, **_finite(fields)})
        with cls._lock:  # reader threads and the model's thread both report
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class _LiveCells:
    """``--events``: a slide's heatmap as it fills in, at most every ``every`` seconds (cells not yet sent)."""

    def __init__(self, slide_id: str, grid: Any, *, every: float = 0.5) -> None:
        self.slide_id, self.every = slide_id, every
        self._sent = np.zeros((grid.rows, grid.cols), np.float32)
        self._last = 0.0
        _Events.emit("grid", slide=slide_id, rows=grid.rows, cols=grid.cols, downsample=grid.downsample)

    def __call__(self, heatmap: np.ndarray) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        changed = np.flatnonzero(heatmap != self._sent)
        if not len(changed):
            return
        values = heatmap.ravel()[changed]
        self._sent.ravel()[changed] = values
        _Events.emit("cells", slide=self.slide_id, index=changed.tolist(),
                     p=np.round(values.astype(float), 4).tolist())


@contextmanager
def _cancel_on_signal() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM (the job then saves what it has and stops); a second one
    interrupts at once."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum, frame) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("stopping after this batch (again to stop at once)", file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield cancel
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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
        if _Events.enabled:
            if now - self._last >= 0.2 or done >= total:
                self._last = now
                _Events.emit("progress", label=self.label, done=int(done), total=int(total),
                             seconds=round(now - self._start, 2))
            return
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
