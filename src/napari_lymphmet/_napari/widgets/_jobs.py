"""One long task of a widget: a worker with one progress bar, Cancel, a live status line, results on the GUI thread.

Every widget that trains, predicts or exports runs its work through a
:class:`Job`, so they all behave alike: the buttons that would start
another job grey out, *Cancel* lights up, one progress bar shows in
napari's activity dock and closes when the job ends, the status line says
how far it is (done, rate, time left), updates reach the widget on the GUI
thread, and a failure is a notification, never an exception into Qt.

Two kinds of work:

- :meth:`Job.run_command`: a ``lymphmet`` command in a child process
  (:class:`~napari_lymphmet.workflows.BackgroundCommand`). Everything that
  loads TensorFlow goes this way, so TensorFlow never enters the viewer's
  process, and *Cancel* stops the child mid-batch.
- :meth:`Job.run`: a generator or function in a napari thread worker, for
  light work with no TensorFlow (patch export, reading slides).

``block=True`` runs the same code in the caller (tests, scripts).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

from ...errors import InputError

__all__ = ["Job", "follow", "progress_text"]

log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")


def progress_text(done: int, total: int, seconds: float, *, unit: str = "patches") -> str:
    """``"1,200/5,000 patches (24 %), 85/s, about 45 s left"`` for the status line."""
    if total <= 0:
        return f"{done:,} {unit}"
    text = f"{done:,}/{total:,} {unit} ({100 * done / total:.0f} %)"
    if seconds > 0.5 and done > 0:
        rate = done / seconds
        text += f", {rate:,.0f}/s" if rate >= 10 else f", {rate:.1f}/s"
        if done < total:
            left = (total - done) / rate
            text += f", about {left:.0f} s left" if left < 120 else f", about {left / 60:.0f} min left"
    return text


class Job(Generic[R]):
    """Run one piece of work; see the module docstring.

    Parameters
    ----------
    desc : str
        The progress bar's label.
    buttons : (starts, cancel), optional
        ``starts``: a button, or a sequence of buttons, that would start
        another job on the same slide; disabled while this one runs.
        ``cancel``: enabled while it runs (``None`` when it cannot be
        cancelled).
    report : callable(str), optional
        Where failures are shown (the widget's status line and a notification).
    status : callable(str), optional
        Where live progress is written (the widget's status line).
    """

    def __init__(self, desc: str, *, buttons: tuple[Any, Any | None] | None = None,
                 report: Callable[[str], None] | None = None, status: Callable[[str], None] | None = None) -> None:
        self.desc = desc
        self.cancelled = threading.Event()
        self.worker: Any = None
        self.command: Any = None  # the BackgroundCommand of run_command
        self.running = False
        self._buttons = buttons
        self._report = report or (lambda text: log.warning("%s", text))
        self._status = status or (lambda text: None)
        self._bar: Any = None
        self._started = time.monotonic()
        self._deliver: Callable[[Any], None] = lambda _payload: None

    # -- called from the work, on any thread --------------------------------
    def step(self, done: int, total: int) -> None:
        """Move the progress bar to ``done`` of ``total`` (from a worker, it moves on the GUI thread)."""
        if threading.current_thread() is not threading.main_thread() and self.worker is not None:
            self._deliver(_Step(done, total))  # Qt objects are changed on the GUI thread only
            return
        self._move_bar(done, total)

    def update(self, payload: Any) -> None:
        """Hand ``payload`` to the widget's ``on_update``, on the GUI thread."""
        self._deliver(payload)

    def cancel(self) -> None:
        """Ask the work to stop: a child process at once (it saves what it has), a thread at its next check."""
        if self.cancelled.is_set() or not self.running:
            return
        self.cancelled.set()
        if self.command is not None:
            self.command.cancel()
        if self._buttons is not None and self._buttons[1] is not None:
            self._buttons[1].enabled = False
        self._status(f"{self.desc}: cancelling…")

    # -- the progress bar, on the GUI thread ----------------------------------------
    def _open_bar(self) -> None:
        from napari.utils import progress

        self._started = time.monotonic()
        self._bar = progress(total=0, desc=self.desc)

    def _move_bar(self, done: int, total: int, *, unit: str = "patches") -> None:
        if self._bar is None:  # a step that arrives after the job ended: no new bar
            return
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = min(done, total) if total else done
        self._bar.refresh()
        self._status(f"{self.desc}: {progress_text(done, total, time.monotonic() - self._started, unit=unit)}")

    def _close(self) -> None:
        if self._bar is not None:
            if self._bar.total:
                self._bar.n = self._bar.total
            self._bar.close()
            self._bar = None
        self._set_running(False)

    # -- running ---------------------------------------------------------------
    def run_command(self, args: Sequence[str], *, on_event: Callable[[dict], None] | None = None,
                    on_done: Callable[[Any], None] | None = None, on_finally: Callable[[], None] | None = None,
                    prepare: Callable[[], Any] | None = None, block: bool = False, unit: str = "patches") -> Any:
        """Run ``lymphmet ARGS`` in a child process; its events reach ``on_event`` on the GUI thread.

        Progress events move the bar and the status line. ``on_done`` gets
        the :class:`~napari_lymphmet.workflows.CommandResult` of a command
        that printed its summary or was cancelled; a failure's ``error:``
        line is reported instead. Returns the worker, or the result with ``block``.
        """
        from ...workflows import BackgroundCommand, CommandResult

        on_event = on_event or (lambda _event: None)

        def work(job: Job):
            self.command = BackgroundCommand(args)
            if prepare is not None:
                yield {"event": "prepared", "value": prepare()}
            if self.cancelled.is_set():  # cancelled before the child started: nothing to stop
                return CommandResult(130, cancelled=True)
            self.command.start()
            yield from self.command.events()
            return self.command.wait()

        def deliver(event: dict) -> None:
            if event.get("event") == "progress":
                self._move_bar(int(event["done"]), int(event["total"]), unit=unit)
            else:
                on_event(event)

        def done(result) -> None:
            # A command that printed its summary said what happened (a refused fine-tune exits 1 with one).
            if result.error and not result.cancelled and result.summary is None:
                self._report(result.error)
            elif on_done is not None:
                on_done(result)

        return self.run(work, on_update=deliver, on_done=done, on_finally=on_finally, block=block)

    def run(self, work: Callable[[Job[R]], R | Generator[Any, None, R]], *,
            on_done: Callable[[R], None] | None = None, on_update: Callable[[Any], None] | None = None,
            on_finally: Callable[[], None] | None = None, block: bool = False) -> Any:
        """Start the job in a thread worker. Returns the worker, or, with ``block``, what ``work`` returned.

        ``work`` may be a generator: what it yields goes to ``on_update``, as
        :meth:`update` does. ``on_done`` gets the result; ``on_finally`` runs
        after success, failure or cancel alike (close files there). An
        :class:`InputError` is reported as one line; any other exception is
        reported and logged with its traceback, and re-raised when blocking,
        so tests see bugs.
        """
        on_update = on_update or (lambda _payload: None)
        self._set_running(True)
        self._open_bar()
        if block:  # the worker's order: results, then the job closes, then on_finally
            self._deliver = lambda payload: self._route(payload, on_update)
            result = None
            try:
                try:
                    result = _drain(work(self), self._deliver)
                except InputError as exc:
                    self._report(str(exc))
                    return None
                if on_done is not None:
                    on_done(result)
            finally:
                self._close()
                if on_finally is not None:
                    on_finally()
            return result
        from napari.qt.threading import create_worker

        def steps():
            out = work(self)
            if inspect.isgenerator(out):
                out = yield from out
            return out

        self.worker = create_worker(steps)
        # A Qt signal emitted on the worker thread reaches its slots on the GUI thread.
        self._deliver = self.worker.yielded.emit
        self.worker.yielded.connect(lambda payload: self._route(payload, on_update))
        if on_done is not None:
            self.worker.returned.connect(on_done)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(lambda: (self._close(), on_finally() if on_finally is not None else None))
        self.worker.start()
        return self.worker

    def _route(self, payload: Any, on_update: Callable[[Any], None]) -> None:
        if isinstance(payload, _Step):
            self._move_bar(payload.done, payload.total)
        else:
            on_update(payload)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, InputError):
            self._report(str(exc))
        else:
            log.error("%s failed", self.desc, exc_info=(type(exc), exc, exc.__traceback__))
            self._report(f"{self.desc} failed: {exc}")

    def _set_running(self, running: bool) -> None:
        self.running = running
        if self._buttons is None:
            return
        starts, cancel = self._buttons
        for button in (starts if isinstance(starts, (list, tuple)) else [starts]):
            button.enabled = not running
        if cancel is not None:
            cancel.enabled = running


class _Step:
    """A progress step sent from the worker thread to the GUI thread."""

    __slots__ = ("done", "total")

    def __init__(self, done: int, total: int) -> None:
        self.done, self.total = done, total


def _drain(out: Any, on_update: Callable[[Any], None]) -> Any:
    """Run a generator to its end in the caller, handing each value to ``on_update``; its return value."""
    if not inspect.isgenerator(out):
        return out
    while True:
        try:
            on_update(next(out))
        except StopIteration as stop:
            return stop.value


def follow(steps: Generator[T, None, R], job: Job, progress: Callable[[T], tuple[int, int]]) -> Generator[T, None, R]:
    """Pass on what a core generator yields, moving ``job``'s progress bar by ``progress(item)``
    (``(done, total)``); return what it returns. Closing this closes ``steps``."""
    try:
        while True:
            item = next(steps)
            job.step(*progress(item))
            yield item
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()
