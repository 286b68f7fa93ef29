"""Rasterize: split from annotations.py."""


from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .core import EXCLUSION, TUMOR, Annotation

__all__ = ['fill_polygons', 'fill_rings', 'rasterize']


def _crossings(ring: np.ndarray, height: int, downsample: float) -> tuple[np.ndarray, np.ndarray]:
    """Where a ring's edges cross the centre line ``r + 0.5`` of each mask row."""
    xy = np.asarray(ring, np.float64) / downsample
    if len(xy) < 3:
        return np.empty(0, np.int64), np.empty(0)
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.maximum(np.ceil(lo - 0.5), 0).astype(np.int64)
    last = np.minimum(np.ceil(hi - 0.5), height).astype(np.int64)  # exclusive
    count = np.maximum(last - first, 0)
    edge = np.repeat(np.arange(len(xy)), count)
    r = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + first[edge]
    t = (r + 0.5 - y0[edge]) / (y1[edge] - y0[edge])
    return r, x0[edge] + t * (x1[edge] - x0[edge])


def fill_polygons(polygons: Sequence[Sequence[np.ndarray]], shape: tuple[int, int], *,
                  downsample: float = 1.0) -> np.ndarray:
    """Rasterize the union of polygons, each a list of rings, by scanline.

    Within one polygon the even-odd rule applies, so its holes are passed as
    further rings. A pixel is set when its centre is inside. The cost grows
    with the number of edge crossings, not with the area or the number of
    polygons, so it suits large masks and many polygons.

    Parameters
    ----------
    polygons : sequence of sequences of (N, 2) float ndarray
        Rings of vertices ``(x, y)`` in level-0 pixels; each closes implicitly.
    shape : (H, W) tuple of int
        Mask shape; parts outside are clipped.
    downsample : float, optional
        Level-0 pixels per mask pixel.

    Returns
    -------
    (H, W) bool ndarray
    """
    h, w = shape
    rows, xs, ids = [], [], []
    for i, rings in enumerate(polygons):
        for ring in rings:
            r, x = _crossings(ring, h, downsample)
            rows.append(r)
            xs.append(x)
            ids.append(np.full(len(r), i, np.int64))
    count = np.zeros((h, w + 1), np.int32)
    if rows:
        r, x, g = np.concatenate(rows), np.concatenate(xs), np.concatenate(ids)
        order = np.lexsort((x, r, g))
        r, x = r[order], x[order]
        # Within a polygon and row the crossings pair up: (enter, leave), ...
        start = np.clip(np.ceil(x[0::2] - 0.5), 0, w).astype(np.int64)
        stop = np.clip(np.ceil(x[1::2] - 0.5), 0, w).astype(np.int64)
        np.add.at(count, (r[0::2], start), 1)
        np.add.at(count, (r[1::2], stop), -1)
    return np.cumsum(count[:, :w], axis=1) > 0


def fill_rings(rings: Sequence[np.ndarray], shape: tuple[int, int], *,
               downsample: float = 1.0) -> np.ndarray:
    """Rasterize one polygon given as rings (exterior, then holes), even-odd.

    See :func:`fill_polygons`.
    """
    return fill_polygons([rings], shape, downsample=downsample)


def rasterize(annotations: Sequence[Annotation], shape: tuple[int, int], *,
              downsample: float = 1.0) -> np.ndarray:
    """Tumor mask: tumor polygons minus their holes, minus every exclusion.

    Parameters
    ----------
    annotations : sequence of Annotation
    shape : (H, W) tuple of int
        Mask shape, e.g. the slide's level-0 size divided by ``downsample``;
        polygons are clipped to it.
    downsample : float, optional
        Level-0 pixels per mask pixel.

    Returns
    -------
    (H, W) bool ndarray
        A pixel is tumor when its centre is.
    """
    def fill(label: str) -> np.ndarray:
        return fill_polygons([[a.exterior, *a.holes] for a in annotations if a.label == label],
                             shape, downsample=downsample)

    mask = fill(TUMOR)
    if any(a.label == EXCLUSION for a in annotations):
        mask &= ~fill(EXCLUSION)
    return mask
