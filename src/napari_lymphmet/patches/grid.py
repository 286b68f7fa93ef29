"""Grid: split from patches.py."""


from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..wsi import Slide

__all__ = ['row_runs', 'box_fraction', 'integral_image', 'read_row_boxes']


def integral_image(mask: np.ndarray) -> np.ndarray:
    return np.pad(np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1), ((1, 0), (1, 0)))


def box_fraction(integral: np.ndarray, downsample: float, x: np.ndarray, y: np.ndarray,
                  box: float) -> np.ndarray:
    """Fraction of set mask pixels whose centres fall in each level-0 box."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    c0 = np.clip(np.ceil(x / downsample - 0.5), 0, w).astype(np.int64)
    c1 = np.clip(np.ceil((x + box) / downsample - 0.5), 0, w).astype(np.int64)
    r0 = np.clip(np.ceil(y / downsample - 0.5), 0, h).astype(np.int64)
    r1 = np.clip(np.ceil((y + box) / downsample - 0.5), 0, h).astype(np.int64)
    # A box smaller than one mask pixel takes the pixel under its centre.
    small = (c1 <= c0) | (r1 <= r0)
    cc = np.clip(((x + box / 2) / downsample).astype(np.int64), 0, w - 1)
    rr = np.clip(((y + box / 2) / downsample).astype(np.int64), 0, h - 1)
    c0, c1 = np.where(small, cc, c0), np.where(small, cc + 1, c1)
    r0, r1 = np.where(small, rr, r0), np.where(small, rr + 1, r1)
    total = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    return total / np.maximum((r1 - r0) * (c1 - c0), 1)


def read_row_boxes(slide: Slide, xs: Sequence[float], y: float, box: float, size: int) -> list[np.ndarray]:
    """Square level-0 boxes on one row, read with one region read, as ``(size, size, 3) uint8``.

    Reading the span once decodes each slide tile once, however many boxes
    share it. The span is read by :meth:`Slide.read_scaled` at ``box / size``
    level-0 px per px: from the nearest stored level, decoded at reduced
    scale where the tiles allow, area-resized for the rest. Where ``box /
    size`` is a stored level's downsample the pixels are that level's. Parts
    outside the slide are white.
    """
    ds = box / size
    offsets = [int(round((x - xs[0]) / ds)) for x in xs]
    span = slide.read_scaled((xs[0], y), (offsets[-1] + size, size), ds)
    return [np.ascontiguousarray(span[:, o:o + size]) for o in offsets]


def row_runs(xs: np.ndarray, ys: np.ndarray, *, max_gap: float, max_len: int | None = None) -> list[list[int]]:
    """Indices of boxes in reading order, grouped into runs along a row.

    A box joins the run before it when it lies on the same row (equal ``y``)
    at most ``max_gap`` further right, and the run is shorter than
    ``max_len``: one region read then serves the whole run.
    """
    runs: list[list[int]] = []
    for i in range(len(xs)):
        if runs and (max_len is None or len(runs[-1]) < max_len) and ys[i] == ys[runs[-1][-1]] \
                and 0 < xs[i] - xs[runs[-1][-1]] <= max_gap:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs
