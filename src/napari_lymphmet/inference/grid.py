"""Grid: split from inference.py."""


from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..patches import box_fraction, integral_image, read_row_boxes, row_runs
from ..model import ModelCard
from ..wsi import Slide

__all__ = ['HeatmapGrid', 'batches_of', 'grid_for']


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
