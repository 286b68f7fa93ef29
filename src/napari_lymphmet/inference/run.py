"""Whole-slide inference: a tumor-probability heatmap, detections and a slide score.

Geometry: heatmap cell ``(r, c)`` covers level-0 pixels
``x ∈ [c·D, (c+1)·D)``, ``y ∈ [r·D, (r+1)·D)``, with ``D`` the stride in
level-0 px; the patch read for it (the model's patch size at the model's
mpp) is centred on the cell. Only cells on tissue are predicted; the others
stay 0.

Reading overlaps prediction: reader threads fill whole batches (one region
read per run of cells on a row, so slide tiles decode once) while the
calling thread runs the model, with a bounded queue between them, so memory
stays flat whatever the slide size. A partial heatmap is checkpointed, so an
interrupted run resumes where it stopped."""


from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from .grid import HeatmapGrid, _read_batch, _tissue_cells, batches_of, grid_for
from ..model import ModelCard
from ..wsi import Slide

__all__ = ['PredictResult', 'iter_predict', 'model_id', 'predict_slide']


def model_id(path: str | os.PathLike) -> str:
    """Name and content hash of a model file, to tell checkpoints of different models apart."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return f"{Path(path).name}#{digest}"


class _Checkpoint:
    """The partial heatmap on disk: probabilities plus which cells are done."""

    def __init__(self, path: Path, key: dict) -> None:
        self.path, self.key = path, key

    def load(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if json.loads(str(data["key"])) != self.key:
                    return None
                return data["heatmap"].astype(np.float32), data["done"].astype(bool)
        except (OSError, ValueError, KeyError):
            return None  # a damaged checkpoint only costs the time to redo it

    def save(self, heatmap: np.ndarray, done: np.ndarray) -> None:
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, heatmap=heatmap, done=done, key=np.array(json.dumps(self.key)))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class PredictResult:
    """A slide's heatmap (``(rows, cols) float32``, 0 off tissue) and how it was made."""

    heatmap: np.ndarray
    grid: HeatmapGrid
    predicted: int  # patches predicted in this run
    resumed: int  # cells taken from a checkpoint
    total: int  # cells on tissue
    seconds: float
    complete: bool

    @property
    def patches_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds else 0.0


def iter_predict(
    slide: Slide,
    model: Any,
    card: ModelCard,
    *,
    tissue_mask: np.ndarray,
    tissue_downsample: float,
    stride: int | None = None,
    batch_size: int = 64,
    readers: int | None = None,
    min_tissue: float = 0.05,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: float = 20.0,
    model_key: str = "",
    predict_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    cancel: threading.Event | None = None,
) -> Generator[tuple[np.ndarray, int, int], None, PredictResult]:
    """Predict a slide batch by batch, yielding ``(heatmap, done, total)`` after each.

    The heatmap yielded is the live array (cells fill in as batches finish).
    Setting ``cancel`` stops after the current batch; the generator then
    returns the :class:`PredictResult` (``complete`` false) and saves the
    checkpoint, as closing it does.
    """
    from ..model import predict_patches

    grid = grid_for(slide, card, stride=stride)
    heatmap = np.zeros((grid.rows, grid.cols), np.float32)
    done = np.zeros((grid.rows, grid.cols), bool)
    cells = _tissue_cells(grid, np.asarray(tissue_mask, bool), tissue_downsample, min_tissue)
    store = None
    resumed = 0
    if checkpoint is not None:
        key = {"model": model_key, "slide": Path(slide.path).name, "grid": [grid.rows, grid.cols],
               "downsample": grid.downsample, "cells": int(len(cells))}
        store = _Checkpoint(Path(checkpoint), key)
        previous = store.load()
        if previous is not None:
            heatmap, done = previous
            resumed = int(done[cells[:, 0], cells[:, 1]].sum()) if len(cells) else 0
    todo = cells[~done[cells[:, 0], cells[:, 1]]] if len(cells) else cells
    predict = predict_fn or (lambda batch: predict_patches(model, card, batch))
    batches = batches_of(todo, batch_size)
    readers = readers or max(1, min(4, (os.cpu_count() or 2)))
    ahead: queue.Queue = queue.Queue(maxsize=readers + 1)
    stop = threading.Event()
    start = time.monotonic()
    predicted = 0

    def produce() -> None:
        # Read up to a few batches ahead, in order, in a pool of threads.
        with ThreadPoolExecutor(readers) as pool:
            futures: list = []
            for b in batches:
                if stop.is_set():
                    break
                futures.append((b, pool.submit(_read_batch, slide, grid, b)))
                if len(futures) > readers:
                    item = futures.pop(0)
                    _put(item)
            for item in futures:
                _put(item)
        ahead.put(None)

    def _put(item) -> None:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    producer = threading.Thread(target=produce, daemon=True, name="lymphmet-readers")
    producer.start()
    last_save = time.monotonic()
    finished = False
    try:
        while True:
            item = ahead.get()
            if item is None:
                finished = True
                break
            b, future = item
            probabilities = predict(future.result())
            heatmap[b[:, 0], b[:, 1]] = probabilities
            done[b[:, 0], b[:, 1]] = True
            predicted += len(b)
            if store is not None and time.monotonic() - last_save > checkpoint_every:
                store.save(heatmap, done)
                last_save = time.monotonic()
            yield heatmap, resumed + predicted, len(cells)
            if cancel is not None and cancel.is_set():
                break
    finally:
        stop.set()
        while producer.is_alive():  # drain so the producer can finish
            try:
                ahead.get(timeout=0.05)
            except queue.Empty:
                pass
        complete = finished and resumed + predicted == len(cells)
        if store is not None:
            if complete:
                store.remove()
            else:
                store.save(heatmap, done)
    return PredictResult(heatmap=heatmap, grid=grid, predicted=predicted, resumed=resumed, total=len(cells),
                         seconds=time.monotonic() - start, complete=complete)


def predict_slide(slide: Slide, model: Any, card: ModelCard, *, progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None, **options) -> PredictResult:
    """Run :func:`iter_predict` to the end (or until ``cancel``); see it for the options."""
    steps = iter_predict(slide, model, card, cancel=cancel, **options)
    try:
        while True:
            _, done, total = next(steps)
            if progress is not None:
                progress(done, total)
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()
