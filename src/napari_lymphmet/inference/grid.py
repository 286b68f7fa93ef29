"""The heatmap grid: where each cell's patch lies on the slide, and reading and scoring cells.

A cell is one patch at the model's mpp and size (``stride`` apart); its
value is the model's probability for that patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..patches import box_fraction, integral_image, read_row_boxes, row_runs
from ..model import ModelCard
from ..wsi import Slide

__all__ = ['HeatmapGrid', 'batches_of', 'grid_for', 'polygon_cells', 'score_cells']


@dataclass(frozen=True)
class HeatmapGrid:
    """Where every heatmap cell and its patch lie on the slide."""

    rows: int
    cols: int
    downsample: float  # D: level-0 px per cell
    box: float  # level-0 px per patch side
    read_level: int
    patch_size: int  # px of the patch as read: the model's input size (the box is resized while it is read)
    mpp: float | None  # µm per level-0 px of the slide

    def patch_origin(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 top-left of the patches centred on cells ``(rows, cols)``."""
        centre = self.downsample / 2 - self.box / 2
        return cols * self.downsample + centre, rows * self.downsample + centre


def grid_for(slide: Slide, card: ModelCard, *, stride: int | None = None) -> HeatmapGrid:
    """The heatmap grid for a model on a slide: the model's mpp and patch size, ``stride`` in patch px."""
    size, model_mpp = card.read_size, card.patch_mpp
    if model_mpp and slide.mpp:
        scale = model_mpp / slide.mean_mpp
    elif model_mpp and not slide.mpp:
        raise InputError(f"{slide.path}: the slide has no mpp, but the model was trained at {model_mpp:g} µm/px; "
                         f"inference needs both")
    else:
        scale = 1.0  # a model without mpp reads level 0 as it is
    step = (stride or size) * scale
    box = size * scale
    read = card.input_size or size  # read straight at the input size: no full-size decode, no resize later
    level = slide.best_level_for_downsample(box / read * (1 + 1e-9))
    w, h = slide.dimensions
    return HeatmapGrid(math.ceil(h / step), math.ceil(w / step), step, box, level, read, slide.mean_mpp)


def _tissue_cells(grid: HeatmapGrid, mask: np.ndarray, mask_downsample: float, min_tissue: float) -> np.ndarray:
    """``(N, 2)`` row-major ``(row, col)`` of cells whose area has enough tissue."""
    rr, cc = np.mgrid[0:grid.rows, 0:grid.cols]
    rr, cc = rr.ravel(), cc.ravel()
    frac = box_fraction(integral_image(mask), mask_downsample, cc * grid.downsample, rr * grid.downsample,
                         grid.downsample)
    keep = frac > min_tissue if min_tissue > 0 else frac > 0
    return np.column_stack([rr[keep], cc[keep]])


def batches_of(cells: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive runs of at most ``batch_size`` cells, in row-major order."""
    return [cells[i:i + batch_size] for i in range(0, len(cells), batch_size)]


def _read_batch(slide: Slide, grid: HeatmapGrid, cells: np.ndarray) -> np.ndarray:
    """``(n, s, s, 3) uint8`` patches for ``cells`` at the model's input size, one region read per run on a row."""
    xs, ys = grid.patch_origin(cells[:, 0], cells[:, 1])
    out = []
    for run in row_runs(xs, ys, max_gap=1.5 * grid.downsample):  # neighbouring cells only
        out += read_row_boxes(slide, xs[run], ys[run[0]], grid.box, grid.patch_size)
    return np.stack(out)


def polygon_cells(grid: HeatmapGrid, exterior: np.ndarray) -> np.ndarray:
    """``(N, 2)`` ``(row, col)`` cells whose centre lies in a polygon (``(M, 2)`` level-0 ``(x, y)``).

    A polygon smaller than a cell gets the cell under its centroid, so every
    outline on the slide has at least one cell.
    """
    from skimage.measure import points_in_poly

    x0, y0 = exterior.min(axis=0)
    x1, y1 = exterior.max(axis=0)
    D = grid.downsample
    cols = np.arange(max(0, int(x0 // D)), min(grid.cols, int(x1 // D) + 1))
    rows = np.arange(max(0, int(y0 // D)), min(grid.rows, int(y1 // D) + 1))
    rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    inside = points_in_poly(np.column_stack([(cc + 0.5) * D, (rr + 0.5) * D]), exterior) if len(rr) else []
    if np.any(inside):
        return np.column_stack([rr[inside], cc[inside]])
    r, c = int(exterior[:, 1].mean() // D), int(exterior[:, 0].mean() // D)
    if 0 <= r < grid.rows and 0 <= c < grid.cols:
        return np.array([[r, c]])
    return np.zeros((0, 2), np.int64)


def score_cells(slide: Slide, model: Any, card: ModelCard, grid: HeatmapGrid, cells: np.ndarray, *,
                batch_size: int = 64) -> np.ndarray:
    """``(N,)``: the heatmap's values at ``(row, col)`` cells, read and predicted as a whole-slide run does."""
    from ..model import predict_patches

    out = [predict_patches(model, card, _read_batch(slide, grid, batch))
           for batch in batches_of(np.asarray(cells), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

