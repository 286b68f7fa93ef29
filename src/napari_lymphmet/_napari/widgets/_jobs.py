"""One long task of a widget: a napari worker with a progress bar, Cancel, and results on the GUI thread.

Every widget that trains, predicts or exports runs its work through a
:class:`Job`, so they all behave alike: the run button greys out, *Cancel*
lights up, a progress bar shows in napari's activity dock, updates reach
the widget on the GUI thread, and a failure is a notification, never an
exception into Qt. ``block=True`` runs the same code in the caller (tests,
scripts).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

from ...errors import InputError

__all__ = ["Job", "follow"]

log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")


class Job(Generic[R]):
    """Run ``work(job)`` once; it calls :meth:`step`, :meth:`update` and checks :attr:`cancelled`.

    Parameters
    ----------
    desc : str
        The progress bar's label.
    buttons : (run, cancel) magicgui buttons, optional
        Disabled and enabled while the job runs; ``cancel`` may be ``None``
        when there is nothing to cancel.
    report : callable(str), optional
        Where failures are shown (the widget's status line and a notification).
    """

    def __init__(self, desc: str, *, buttons: tuple[Any, Any | None] | None = None,
                 report: Callable[[str], None] | None = None) -> None:
        self.desc = desc
        self.cancelled = threading.Event()
        self.worker: Any = None
        self._buttons = buttons
        self._report = report or (lambda text: log.warning("%s", text))
        self._bar: Any = None
        self._deliver: Callable[[Any], None] = lambda _payload: None

    # -- called from the work, on any thread --------------------------------
    def step(self, done: int, total: int) -> None:
        """Move the progress bar to ``done`` of ``total`` (from the worker, it moves on the GUI thread)."""
        if threading.current_thread() is not threading.main_thread() and self.worker is not None:
            self._deliver(_Step(done, total))  # Qt objects are made and changed on the GUI thread only
            return
        self._move_bar(done, total)

    def _move_bar(self, done: int, total: int) -> None:
        if self._bar is None:
            from napari.utils import progress

            self._bar = progress(total=total, desc=self.desc)
        self._bar.n = done
        self._bar.refresh()

    def update(self, payload: Any) -> None:
        """Hand ``payload`` to the widget's ``on_update``, on the GUI thread."""
        self._deliver(payload)

    def cancel(self) -> None:
        """Ask the work to stop at its next check; what it has done so far is kept."""
        self.cancelled.set()

    # -- running ---------------------------------------------------------------
    def run(self, work: Callable[[Job[R]], R | Generator[Any, None, R]], *,
            on_done: Callable[[R], None] | None = None, on_update: Callable[[Any], None] | None = None,
            on_finally: Callable[[], None] | None = None, block: bool = False) -> Any:
        """Start the job. Returns the napari worker, or, with ``block``, what ``work`` returned.

        ``work`` may be a generator: what it yields goes to ``on_update``, as
        :meth:`update` does. ``on_done`` gets the result; ``on_finally`` runs
        after success, failure or cancel alike (close files there). An
        :class:`InputError` is reported as one line; any other exception is
        reported and logged with its traceback, and re-raised when blocking,
        so tests see bugs.
        """
        on_update = on_update or (lambda _payload: None)
        if block:
            self._deliver = on_update
            try:
                result = _drain(work(self), on_update)
            except InputError as exc:
                self._report(str(exc))
                return None
            finally:
                self._close()
                if on_finally is not None:
                    on_finally()
            if on_done is not None:
                on_done(result)
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

        def deliver(payload: Any) -> None:
            if isinstance(payload, _Step):
                self._move_bar(payload.done, payload.total)
            else:
                on_update(payload)

        self.worker.yielded.connect(deliver)
        if on_done is not None:
            self.worker.returned.connect(on_done)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(lambda: (self._close(), on_finally() if on_finally is not None else None))
        self._set_running(True)
        self.worker.start()
        return self.worker

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, InputError):
            self._report(str(exc))
        else:
            log.error("%s failed", self.desc, exc_info=(type(exc), exc, exc.__traceback__))
            self._report(f"{self.desc} failed: {exc}")

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        if self._buttons is not None:
            run, cancel = self._buttons
            run.enabled = not running
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
