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

from .grid import HeatmapGrid, _read_batch, _tissue_cells, batches_of, grid_for
from .screen import ScreenConfig, cells_to_refine, fill_unpredicted, lattice_cells
from ..model import ModelCard
from ..wsi import Slide

__all__ = ['PredictResult', 'iter_predict', 'model_id', 'predict_slide']


def model_id(path: str | os.PathLike) -> str:
    """Name and content hash of a model file, to tell checkpoints of different models apart."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return f"{Path(path).name}#{digest}"


class _Checkpoint:
    """The partial heatmap on disk: a zarr group of ``heatmap`` and ``done`` arrays, chunked by rows.

    Each save writes only the rows finished since the last one (zarr writes
    each chunk file atomically), so saving costs the new work, not the whole
    heatmap. ``heatmap`` is written before ``done``: a cell marked done
    always has its probability on disk, whenever the run was killed. The
    run's key (model, slide, grid) sits in the group's attributes; a
    checkpoint with another key is started afresh, not mixed in.
    """

    def __init__(self, path: Path, key: dict) -> None:
        self.path, self.key = path, key
        self._group = None

    def load(self) -> tuple[np.ndarray, np.ndarray] | None:
        import zarr

        if not self.path.exists():
            return None
        try:
            group = zarr.open_group(self.path, mode="r+")
            if dict(group.attrs).get("key") != self.key:
                return None
            heatmap, done = group["heatmap"][...], group["done"][...]
        except Exception:  # any damage only costs the time to redo the work
            return None
        self._group = group
        return heatmap.astype(np.float32), done.astype(bool)

    def save(self, heatmap: np.ndarray, done: np.ndarray, rows: slice) -> None:
        import zarr

        if self._group is None:
            chunks = (min(heatmap.shape[0], 32), heatmap.shape[1])  # bands of rows: batches run row by row
            group = zarr.open_group(self.path, mode="w", zarr_format=3)
            group.create_array("heatmap", shape=heatmap.shape, dtype="float32", chunks=chunks, fill_value=0)
            group.create_array("done", shape=done.shape, dtype="bool", chunks=chunks, fill_value=False)
            group.attrs["key"] = self.key
            self._group, rows = group, slice(0, heatmap.shape[0])
        self._group["heatmap"][rows] = heatmap[rows]
        self._group["done"][rows] = done[rows]

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class PredictResult:
    """A slide's heatmap (``(rows, cols) float32``, 0 off tissue) and how it was made.

    With screening, ``inferred`` cells were never predicted: they hold the
    mean of their predicted neighbours (see :mod:`.screen`).
    """

    heatmap: np.ndarray
    grid: HeatmapGrid
    predicted: int  # patches predicted in this run
    resumed: int  # cells taken from a checkpoint
    total: int  # cells on tissue
    seconds: float
    complete: bool
    inferred: int = 0  # tissue cells given a value from their neighbours, not predicted
    screened: bool = False

    @property
    def patches_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds else 0.0


def _pipeline(batches: list[np.ndarray], read: Callable[[np.ndarray], np.ndarray],
              predict: Callable[[np.ndarray], np.ndarray], readers: int
              ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """Yield ``(cells, probabilities)`` batch by batch, reading ahead in a pool of threads.

    Closing the generator stops the readers and waits for them.
    """
    ahead: queue.Queue = queue.Queue(maxsize=readers + 1)
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        # Read up to a few batches ahead, in order.
        with ThreadPoolExecutor(readers) as pool:
            futures: list = []
            for b in batches:
                if stop.is_set():
                    break
                futures.append((b, pool.submit(read, b)))
                if len(futures) > readers:
                    put(futures.pop(0))
            for item in futures:
                put(item)
        put(None)

    producer = threading.Thread(target=produce, daemon=True, name="lymphmet-readers")
    producer.start()
    try:
        while True:
            item = ahead.get()
            if item is None:
                return
            b, future = item
            yield b, predict(future.result())
    finally:
        stop.set()
        while producer.is_alive():  # drain so the producer can finish
            try:
                ahead.get(timeout=0.05)
            except queue.Empty:
                pass


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
    screen: ScreenConfig | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: float = 20.0,
    model_key: str = "",
    predict_fn: Callable[[np.ndarray], np.ndarray] | None = None,  # on prepared batches
    cancel: threading.Event | None = None,
    views: int = 1,
) -> Generator[tuple[np.ndarray, int, int], None, PredictResult]:
    """Predict a slide batch by batch, yielding ``(heatmap, done, total)`` after each.

    The heatmap yielded is the live array (cells fill in as batches finish).
    With ``screen``, a lattice of cells is predicted first and then only
    the neighbourhoods of suspicious ones (:mod:`.screen`); ``total`` is
    then the cells planned so far. Setting ``cancel`` stops after the
    current batch; the generator then returns the :class:`PredictResult`
    (``complete`` false) and saves the checkpoint, as closing it does. A
    checkpoint holds predicted cells only, so dense and screened runs can
    resume each other's. ``views`` (1, 4 or 8) averages each patch over its
    rotations (and mirrorings): test-time augmentation, ``views`` times the
    model's work.
    """
    from ..model import predict_views, prepare_batch
    from ..model.runtime import as_runner

    grid = grid_for(slide, card, stride=stride)
    heatmap = np.zeros((grid.rows, grid.cols), np.float32)
    done = np.zeros((grid.rows, grid.cols), bool)
    cells = _tissue_cells(grid, np.asarray(tissue_mask, bool), tissue_downsample, min_tissue)
    tissue = np.zeros_like(done)
    tissue[cells[:, 0], cells[:, 1]] = True
    store = None
    resumed = 0
    if checkpoint is not None:
        key = {"model": model_key, "slide": Path(slide.path).name, "grid": [grid.rows, grid.cols],
               "downsample": grid.downsample, "cells": int(len(cells))}
        if views != 1:  # cells of another view count are other numbers (and older checkpoints say nothing)
            key["views"] = views
        store = _Checkpoint(Path(checkpoint), key)
        previous = store.load()
        if previous is not None:
            heatmap, done = previous
            resumed = int((done & tissue).sum())
    if predict_fn is None:
        model = as_runner(model)
    predict = predict_fn or (lambda x: predict_views(model, x, views))

    def read(cells: np.ndarray) -> np.ndarray:
        # Reading, resizing and the model's input transform all run here, in
        # reader threads, so the thread running the model only runs it.
        return prepare_batch(_read_batch(slide, grid, cells), card)

    def passes() -> Generator[np.ndarray, None, None]:
        # Row-major (row, col) cells of each pass; the second sees the lattice's heatmap.
        if screen is None:
            yield np.argwhere(tissue & ~done)
            return
        lattice = lattice_cells(tissue, screen.step)
        yield np.argwhere(lattice & ~done)
        threshold = screen.threshold_for(card.threshold, card.screen_threshold)
        yield np.argwhere(cells_to_refine(heatmap, lattice, done, tissue, threshold=threshold, reach=screen.reach))

    readers = readers or max(1, min(4, (os.cpu_count() or 2)))
    start = time.monotonic()
    predicted = planned = 0
    last_save = time.monotonic()
    dirty = (grid.rows, 0)  # rows changed since the last save
    finished = False
    try:
        for todo in passes():
            planned += len(todo)
            steps = _pipeline(batches_of(todo, batch_size), read, predict, readers)
            try:
                for b, probabilities in steps:
                    heatmap[b[:, 0], b[:, 1]] = probabilities
                    done[b[:, 0], b[:, 1]] = True
                    predicted += len(b)
                    dirty = (min(dirty[0], int(b[:, 0].min())), max(dirty[1], int(b[:, 0].max()) + 1))
                    if store is not None and time.monotonic() - last_save > checkpoint_every:
                        store.save(heatmap, done, slice(*dirty))
                        dirty, last_save = (grid.rows, 0), time.monotonic()
                    yield heatmap, resumed + predicted, len(cells) if screen is None else resumed + planned
                    if cancel is not None and cancel.is_set():
                        break
            finally:
                steps.close()
            if cancel is not None and cancel.is_set():
                break
        else:
            finished = True
    finally:
        if store is not None:
            if finished:
                store.remove()
            elif dirty[1] > dirty[0] or not store.path.exists():
                store.save(heatmap, done, slice(*dirty))
    inferred = 0
    if finished and screen is not None:
        inferred = int((tissue & ~done).sum())
        heatmap[...] = fill_unpredicted(heatmap, done, tissue)  # in place: callers hold the live array
    return PredictResult(heatmap=heatmap, grid=grid, predicted=predicted, resumed=resumed, total=len(cells),
                         seconds=time.monotonic() - start, complete=finished, inferred=inferred,
                         screened=screen is not None)


def predict_slide(slide: Slide, model: Any, card: ModelCard, *, progress: Callable[[int, int], None] | None = None,
                  live: Callable[[np.ndarray], None] | None = None, cancel: threading.Event | None = None,
                  **options) -> PredictResult:
    """Run :func:`iter_predict` to the end (or until ``cancel``); see it for the options.

    ``progress(done, total)`` and ``live(heatmap)`` (the live array, do not keep it) follow each batch.
    """
    steps = iter_predict(slide, model, card, cancel=cancel, **options)
    try:
        while True:
            heatmap, done, total = next(steps)
            if progress is not None:
                progress(done, total)
            if live is not None:
                live(heatmap)
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()
