"""Regions at any downsample: the nearest stored level, decoded at reduced scale, then an area resize.

Real slides store levels at 1, 4, 16 … (or 1, 2, 4 …), while models and
patch exports want what lies between (a 0.5 µm/px model on a 0.25 µm/px
slide). Decoding full-size tiles and throwing away three quarters of the
pixels costs most of a read. libjpeg-turbo can decode a JPEG at 1/2, 1/4
or 1/8 of its size in the DCT domain, skipping most of the inverse
transform and the colour conversion of the dropped pixels; only the rest of
the way is resized.
"""


from __future__ import annotations

import math

import numpy as np

from .tiles import TileStore

__all__ = ["READ_BUDGET_PIXELS", "area_resize", "read_scaled"]

# Decoded pixels one read may hold at once; a larger result is read in bands
# of rows, so a thumbnail of a single-level slide never holds the level.
READ_BUDGET_PIXELS = 32 * 2**20


def read_scaled(tiles: TileStore, level: int, level_downsample: float, location: tuple[float, float],
                size: tuple[int, int], downsample: float) -> np.ndarray:
    """``(h, w, 3) uint8``: ``size = (w, h)`` px at ``downsample``, from stored ``level``.

    Parameters
    ----------
    tiles : TileStore
    level : int
        The stored level to read: the deepest whose downsample is at most ``downsample``.
    level_downsample : float
        That level's downsample.
    location : (float, float)
        Top-left ``(x, y)``, level-0 px; fractions allowed.
    size : (int, int)
    downsample : float
        ≥ 1.

    Notes
    -----
    The level is decoded at the largest factor it supports (1, 2, 4, 8; see
    :meth:`TileStore.scale_for`) that does not overshoot; what remains is a
    box (area) resize over the exact fractional footprint. At a stored
    level's own downsample and an integer location no resize happens, so the
    pixels are :meth:`TileStore.read_region`'s.
    """
    if downsample < 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    factor = tiles.scale_for(level, downsample / level_downsample)
    step = level_downsample * factor  # level-0 px per decoded px
    band = max(1, int(READ_BUDGET_PIXELS / (max(1.0, size[0] * downsample / step) * (downsample / step + 2))))
    if size[1] > band:
        # Each output row's footprint is the same whether read alone or with the others: bands are exact.
        return np.concatenate([
            read_scaled(tiles, level, level_downsample, (location[0], location[1] + y * downsample),
                        (size[0], min(band, size[1] - y)), downsample)
            for y in range(0, size[1], band)])
    x, y = location[0] / step, location[1] / step
    w, h = size[0] * downsample / step, size[1] * downsample / step
    x0, y0 = math.floor(x + 1e-6), math.floor(y + 1e-6)
    x1, y1 = max(x0 + 1, math.ceil(x + w - 1e-6)), max(y0 + 1, math.ceil(y + h - 1e-6))
    region = tiles.read_region(level, (x0, y0), (x1 - x0, y1 - y0), factor=factor)
    if region.shape[1::-1] == tuple(size) and abs(x - x0) < 1e-6 and abs(y - y0) < 1e-6:
        return region
    return area_resize(region, size, (x - x0, y - y0), w / size[0])


def area_resize(region: np.ndarray, size: tuple[int, int], offset: tuple[float, float], scale: float) -> np.ndarray:
    """Average ``region`` over each output pixel's footprint, partial pixels weighted by their overlap.

    Output pixel ``(i, j)`` covers region px ``[offset + j·scale, offset + (j+1)·scale)`` along
    each axis. PIL's box filter rounds a fractional footprint to whole pixels (4 grey levels
    off on tissue texture at a half-pixel offset), so fractional cases use exact weights.

    Parameters
    ----------
    region : (H, W, 3) uint8
    size : (w, h) of the result
    offset : (x, y) of the first footprint's corner, region px
    scale : region px per output px (≥ 1)
    """
    (ox, oy), (w, h) = offset, size
    k = round(scale)
    if abs(ox) < 1e-6 and abs(oy) < 1e-6 and abs(scale - k) < 1e-6 and region.shape[0] >= h * k \
            and region.shape[1] >= w * k:
        from PIL import Image

        return np.asarray(Image.fromarray(np.ascontiguousarray(region[:h * k, :w * k])).reduce(k))
    rows = _weights(h, oy, scale, region.shape[0])
    cols = _weights(w, ox, scale, region.shape[1])
    flat = region.astype(np.float32).reshape(region.shape[0], -1)
    tall = (rows @ flat).reshape(h, region.shape[1], 3)  # (h, W, 3)
    out = (cols @ tall.transpose(1, 0, 2).reshape(region.shape[1], -1)).reshape(w, h, 3).transpose(1, 0, 2)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _weights(n_out: int, start: float, scale: float, n_in: int):
    """``(n_out, n_in)`` sparse matrix: the share of input px ``k`` in output px ``i``'s footprint."""
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i in range(n_out):
        a, b = start + i * scale, start + (i + 1) * scale
        for k in range(max(0, int(np.floor(a))), min(n_in, int(np.ceil(b)))):
            overlap = min(b, k + 1) - max(a, k)
            if overlap > 1e-9:
                rows.append(i)
                cols.append(k)
                vals.append(overlap)
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in), dtype=np.float32)
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    return sparse.diags(1 / np.maximum(totals, 1e-9)) @ matrix  # footprints cut at the edge still average
