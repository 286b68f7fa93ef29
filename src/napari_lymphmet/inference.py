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
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path
from .errors import InputError
from .patches import _box_fraction, _integral, read_row_boxes
from .slide import Slide

__all__ = ["HeatmapGrid", "PredictResult", "batches_of", "detect", "grid_for", "iter_predict", "model_id",
           "predict_slide", "read_heatmap", "slide_score", "write_outputs"]


@dataclass(frozen=True)
class HeatmapGrid:
    """Where every heatmap cell and its patch lie on the slide."""

    rows: int
    cols: int
    downsample: float  # D: level-0 px per cell
    box: float  # level-0 px per patch side
    read_level: int
    patch_size: int  # px of the patch as read (before the model's own resize)
    mpp: float | None  # µm per level-0 px of the slide

    def patch_origin(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 top-left of the patches centred on cells ``(rows, cols)``."""
        centre = self.downsample / 2 - self.box / 2
        return cols * self.downsample + centre, rows * self.downsample + centre


def grid_for(slide: Slide, metadata: dict, *, stride: int | None = None) -> HeatmapGrid:
    """The heatmap grid for a model on a slide: the model's mpp and patch size, ``stride`` in patch px."""
    size = int(metadata.get("patch_size") or metadata["input_size"])
    model_mpp = metadata.get("patch_mpp")
    if model_mpp and slide.mpp:
        scale = float(model_mpp) / float(np.mean(slide.mpp))
    elif model_mpp and not slide.mpp:
        raise InputError(f"{slide.path}: the slide has no mpp, but the model was trained at {model_mpp:g} µm/px; "
                         f"inference needs both")
    else:
        scale = 1.0  # a model without mpp reads level 0 as it is
    level = slide.best_level_for_downsample(scale * 1.001)
    step = (stride or size) * scale
    w, h = slide.dimensions
    return HeatmapGrid(math.ceil(h / step), math.ceil(w / step), step, size * scale, level, size,
                       float(np.mean(slide.mpp)) if slide.mpp else None)


def _tissue_cells(grid: HeatmapGrid, mask: np.ndarray, mask_downsample: float, min_tissue: float) -> np.ndarray:
    """``(N, 2)`` row-major ``(row, col)`` of cells whose area has enough tissue."""
    rr, cc = np.mgrid[0:grid.rows, 0:grid.cols]
    rr, cc = rr.ravel(), cc.ravel()
    frac = _box_fraction(_integral(mask), mask_downsample, cc * grid.downsample, rr * grid.downsample,
                         grid.downsample)
    keep = frac > min_tissue if min_tissue > 0 else frac > 0
    return np.column_stack([rr[keep], cc[keep]])


def batches_of(cells: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive runs of at most ``batch_size`` cells, in row-major order."""
    return [cells[i:i + batch_size] for i in range(0, len(cells), batch_size)]


def _read_batch(slide: Slide, grid: HeatmapGrid, cells: np.ndarray) -> np.ndarray:
    """``(n, s, s, 3) uint8`` patches for ``cells``, one region read per run on a row."""
    xs, ys = grid.patch_origin(cells[:, 0], cells[:, 1])
    out = []
    start = 0
    for i in range(1, len(cells) + 1):
        if i == len(cells) or cells[i, 0] != cells[start, 0] or cells[i, 1] != cells[i - 1, 1] + 1:
            out += read_row_boxes(slide, grid.read_level, xs[start:i], ys[start], grid.box, grid.patch_size)
            start = i
    return np.stack(out)


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
    metadata: dict,
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
    summary: dict | None = None,
) -> Iterator[tuple[np.ndarray, int, int]]:
    """Predict a slide batch by batch, yielding ``(heatmap, done, total)`` after each.

    The heatmap yielded is the live array (cells fill in as batches finish).
    Closing the generator stops after the current batch and saves the
    checkpoint; ``summary`` receives the :class:`PredictResult` fields.
    """
    from .model import predict_patches

    grid = grid_for(slide, metadata, stride=stride)
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
    predict = predict_fn or (lambda batch: predict_patches(model, metadata, batch))
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
        if summary is not None:
            summary.update(heatmap=heatmap, grid=grid, predicted=predicted, resumed=resumed, total=len(cells),
                           seconds=time.monotonic() - start, complete=complete)


def predict_slide(slide: Slide, model: Any, metadata: dict, *, progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None, **options) -> PredictResult:
    """Run :func:`iter_predict` to the end (or until ``cancel``); see it for the options."""
    summary: dict = {}
    steps = iter_predict(slide, model, metadata, summary=summary, **options)
    try:
        for _, done, total in steps:
            if progress is not None:
                progress(done, total)
            if cancel is not None and cancel.is_set():
                break
    finally:
        steps.close()
    return PredictResult(**summary)


# -- detections and scores --------------------------------------------------------
def detect(heatmap: np.ndarray, downsample: float, *, threshold: float = 0.5, method: str = "components",
           min_distance: int = 2) -> np.ndarray:
    """Lesion candidates, ``(N, 3)`` rows ``(confidence, x, y)`` in level-0 px, best first.

    ``components``: one detection per connected region above ``threshold``,
    at its most probable cell. ``peaks``: local maxima above ``threshold`` at
    least ``min_distance`` cells apart.
    """
    from scipy import ndimage

    if method == "components":
        labels, n = ndimage.label(heatmap >= threshold, structure=np.ones((3, 3)))
        if n == 0:
            return np.zeros((0, 3))
        peaks = ndimage.maximum_position(heatmap, labels, range(1, n + 1))
        points = np.array(peaks, float).reshape(-1, 2)
    elif method == "peaks":
        from skimage.feature import peak_local_max

        points = peak_local_max(heatmap, min_distance=min_distance, threshold_abs=threshold,
                                exclude_border=False).astype(float)
    else:
        raise InputError(f"unknown detection method {method!r}; use components or peaks")
    if not len(points):
        return np.zeros((0, 3))
    rows, cols = points[:, 0].astype(int), points[:, 1].astype(int)
    conf = heatmap[rows, cols].astype(float)
    out = np.column_stack([conf, (cols + 0.5) * downsample, (rows + 0.5) * downsample])
    return out[np.argsort(-conf, kind="stable")]


def slide_score(heatmap: np.ndarray, *, window: int = 3) -> float:
    """The highest mean probability over ``window`` × ``window`` cells.

    A lesion has to cover more than a speck of one or two cells to make the
    slide positive: a thin fold or a lone bright cell, the usual false
    alarms, is averaged down, while a metastasis of a few cells across keeps
    its probability. ``window=1`` gives the plain maximum.
    """
    from scipy import ndimage

    if heatmap.size == 0:
        return 0.0
    if window <= 1:
        return float(heatmap.max())
    return float(ndimage.uniform_filter(heatmap.astype(np.float64), window, mode="constant").max())


# -- files ------------------------------------------------------------------------------
_TURBO = np.array([[48, 18, 59], [70, 107, 227], [40, 187, 236], [50, 241, 153], [164, 252, 60],
                   [237, 208, 58], [251, 128, 34], [211, 46, 6], [122, 4, 3]], np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """Turbo-like ``(..., 3) uint8`` colours for values in [0, 1]."""
    t = np.clip(values, 0, 1) * (len(_TURBO) - 1)
    i = np.minimum(t.astype(int), len(_TURBO) - 2)
    f = (t - i)[..., None]
    return (_TURBO[i] * (1 - f) + _TURBO[i + 1] * f).astype(np.uint8)


def overlay_image(thumbnail: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.55,
                  floor: float = 0.05) -> np.ndarray:
    """The heatmap over a slide thumbnail, with a colour bar (0 bottom, 1 top) on the right."""
    from PIL import Image

    h, w = thumbnail.shape[:2]
    heat = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize((w, h), Image.Resampling.NEAREST))
    a = (alpha * (heat > floor))[..., None]
    image = (thumbnail[..., :3] * (1 - a) + colormap(heat) * a).astype(np.uint8)
    bar_w = max(8, w // 40)
    bar = np.repeat(colormap(np.linspace(1, 0, h))[:, None], bar_w, axis=1)
    for tick in np.linspace(0, h - 1, 5).astype(int):  # quarter marks
        bar[max(tick - 1, 0):tick + 1, : bar_w // 2] = 255
    gap = np.full((h, max(4, w // 100), 3), 255, np.uint8)
    return np.concatenate([image, gap, bar], axis=1)


def write_outputs(out_dir: str | os.PathLike, slide: Slide, result: PredictResult, *, model_name: str,
                  threshold: float = 0.5, method: str = "components") -> dict:
    """``heatmap.tif``, ``heatmap.json``, ``overlay.png`` and ``detections.csv``, each atomically."""
    import tifffile
    from skimage.io import imsave

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = result.grid
    info = {"downsample": grid.downsample, "mpp": grid.mpp, "model": model_name,
            "shape": list(result.heatmap.shape), "slide": slide.path, "patch_size": grid.patch_size,
            "patch_box": grid.box, "read_level": grid.read_level,
            "cell": "cell (r, c) covers level-0 x in [c*D, (c+1)*D), y in [r*D, (r+1)*D)",
            "complete": result.complete}
    with atomic_path(out / "heatmap.tif") as tmp:
        tifffile.imwrite(tmp, result.heatmap.astype(np.float32), description=json.dumps(info),
                         compression="zlib", metadata=None)
    with atomic_path(out / "heatmap.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    with atomic_path(out / "overlay.png") as tmp:
        imsave(tmp, overlay_image(slide.thumbnail(1024), result.heatmap), check_contrast=False)
    detections = detect(result.heatmap, grid.downsample, threshold=threshold, method=method)
    with atomic_path(out / "detections.csv") as tmp:
        # CAMELYON16 submission format: confidence,X,Y per line, level-0 px, no header.
        tmp.write_text("".join(f"{c:.6f},{x:.0f},{y:.0f}\n" for c, x, y in detections))
    return {"heatmap": str(out / "heatmap.tif"), "heatmap_json": str(out / "heatmap.json"),
            "overlay": str(out / "overlay.png"), "detections": str(out / "detections.csv"),
            "n_detections": int(len(detections))}


def read_heatmap(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """A ``heatmap.tif`` and its metadata."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such heatmap")
    with tifffile.TiffFile(path) as tif:
        data = tif.pages[0].asarray()
        info = json.loads(tif.pages[0].description)
    return data, info

