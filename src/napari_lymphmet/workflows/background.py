"""A ``lymphmet`` command in a child process: its events as they come, its summary at the end, cancel at once.

The napari widgets run every TensorFlow job (predict, train, finetune)
this way, never in the viewer's own process. TensorFlow and Mesa's
llvmpipe each bring their own LLVM, and in one process they crash; a
model that holds the GIL would freeze the window; and a child can be
stopped at once, mid-batch, where a thread cannot.

The child is ``python -m napari_lymphmet.cli --events COMMAND ...``: it
writes one JSON object a line on stdout, events first (``{"event":
"progress", ...}``, ``{"event": "cells", ...}``, ``{"event": "epoch",
...}``) and its summary last; its stderr goes to a file, read when it
ends for the ``error:`` line. :meth:`BackgroundCommand.cancel` sends
SIGINT, which every command answers by saving what it has (a heatmap
checkpoint, the best model so far) and exiting; a child that does not
end within the grace period is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHILD_NICENESS", "BackgroundCommand", "CommandResult"]

# The child yields the CPU to the viewer: on 2 cores a prediction at full priority stalls napari's GUI
# thread (its layer and canvas work) for twice as long.
CHILD_NICENESS = 5


@dataclass(frozen=True)
class CommandResult:
    """How a child command ended.

    ``summary`` is its last stdout line (the CLI's JSON result), ``None``
    when it printed none; ``error`` its ``error:`` line without the
    prefix, else the last stderr line of a failure.
    """

    returncode: int
    summary: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.summary is not None and not self.cancelled


class BackgroundCommand:
    """Run ``lymphmet ARGS`` in a child process.

    Parameters
    ----------
    args : sequence of str
        The command and its options, as after ``lymphmet`` on a terminal.
    grace : float
        Seconds a cancelled child gets to save its work before it is killed.
    nice : int
        How much lower the child's CPU priority is (``lymphmet --nice``).

    Examples
    --------
    >>> job = BackgroundCommand(["predict", "slide.svs", "-o", "out"])  # doctest: +SKIP
    >>> for event in job.events():  # doctest: +SKIP
    ...     print(event["event"])
    >>> job.wait().summary  # doctest: +SKIP
    """

    def __init__(self, args: Sequence[str], *, grace: float = 30.0, nice: int = CHILD_NICENESS) -> None:
        self.args = [str(a) for a in args]
        self.grace = grace
        self.nice = nice
        self._proc: subprocess.Popen | None = None
        self._stderr: Any = None
        self._last: dict[str, Any] | None = None
        self._cancelled = threading.Event()
        self._result: CommandResult | None = None

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "napari_lymphmet.cli", "--events", "--nice", str(self.nice), *self.args]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> BackgroundCommand:
        """Start the child (once); returns ``self``."""
        if self._proc is not None:
            return self
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("LYMPHMET_DEBUG", None)
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        # A new session: a Ctrl-C in the terminal that started napari does not also reach the child.
        self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                      stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                      bufsize=1, env=env, start_new_session=True)
        return self

    def events(self) -> Iterator[dict[str, Any]]:
        """The child's events as it writes them; ends when it closes stdout. Starts it if need be."""
        self.start()
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "event" in data:
                yield data
            elif isinstance(data, dict):
                self._last = data

    def wait(self) -> CommandResult:
        """Wait for the child to end (reading any events left) and say how it ended."""
        if self._result is not None:
            return self._result
        for _ in self.events():
            pass
        assert self._proc is not None
        code = self._proc.wait()
        self._stderr.seek(0)
        lines = [line.rstrip() for line in self._stderr.read().splitlines() if line.strip()]
        self._stderr.close()
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        warns = tuple(line.removeprefix("warning: ") for line in lines if line.startswith("warning: "))
        # A cancel that reached the child after it had finished (exit 0, a summary that does not say it was
        # cancelled) stopped nothing: the results are whole, so it ended done, not cancelled.
        finished = code == 0 and self._last is not None and not self._last.get("cancelled", False)
        cancelled = self._cancelled.is_set() and not finished
        error = None
        if code != 0 and not cancelled:
            error = errors[-1] if errors else (lines[-1] if lines else f"exited with code {code}")
        self._result = CommandResult(code, self._last, error, cancelled, warns)
        return self._result

    def cancel(self) -> None:
        """Ask the child to save its work and stop (SIGTERM); kill it if it has not ended after ``grace`` s.

        Returns at once; :meth:`wait` tells when it has ended.
        """
        self._cancelled.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)  # the CLI stops on it as on Ctrl-C, whatever SIGINT's disposition
        except ProcessLookupError:
            return

        def kill_late() -> None:
            try:
                proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                proc.kill()

        threading.Thread(target=kill_late, daemon=True, name="lymphmet-cancel").start()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
