"""Regions of one pyramid level assembled from its tiles, through a shared byte-bounded cache."""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .cache import TileCache
from .levels import LevelReader

__all__ = ["TileStore"]


@functools.cache
def _decode_pool() -> ThreadPoolExecutor:
    """Threads shared by all slides for decoding the tiles of one region."""
    return ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="lymphmet-decode")


class TileStore:
    """The tiles of every level of one slide: cached reads, parallel decoding, region assembly.

    Parameters
    ----------
    levels : sequence of LevelReader
        One reader per level (direct TIFF decoding or OpenSlide).
    cache_bytes : int
        Bound on the decoded tiles kept, shared by all levels.
    """

    def __init__(self, levels: Sequence[LevelReader], cache_bytes: int) -> None:
        self.levels = list(levels)
        self.cache = TileCache(cache_bytes)
        self.tile_reads: Counter[int] = Counter()  # decoded tiles per level: what tests and benchmarks count
        self._reads_lock = threading.Lock()

    def read_tile(self, level: int, row: int, col: int) -> np.ndarray:
        """One native tile of ``level``, through the cache; ``(h, w, 3) uint8``, read-only."""
        tile = self.cache.get((level, row, col))
        return self._load(level, row, col) if tile is None else tile

    def _load(self, level: int, row: int, col: int, *, out: np.ndarray | None = None,
              factor: int = 1) -> np.ndarray:
        """Decode a tile, caching it on its second miss (one pass over a slide
        must not flush what a viewer keeps coming back to); else into ``out``.
        ``factor`` > 1 decodes at reduced scale, cached under its own key."""
        key = (level, row, col) if factor == 1 else (level, row, col, factor)
        keep = self.cache.admit(key)
        if factor == 1:
            tile = self.levels[level].read_tile(row, col, keep=keep, out=None if keep else out)
        else:
            tile = self.levels[level].read_tile(row, col, factor=factor)
        with self._reads_lock:
            self.tile_reads[level] += 1
        if keep:
            self.cache.put(key, tile)
        elif tile is not out:
            tile.flags.writeable = False  # callers get the same contract either way
        return tile

    def _read_many(self, level: int, cells: list[tuple[int, int]], factor: int = 1) -> list[np.ndarray]:
        """Tiles for ``cells``, decoding the uncached ones in parallel."""
        tiles = [self.cache.get((level, r, c) if factor == 1 else (level, r, c, factor)) for r, c in cells]
        missing = [i for i, t in enumerate(tiles) if t is None]
        if len(missing) > 1:
            decoded = _decode_pool().map(lambda i: self._load(level, *cells[i], factor=factor), missing)
            for i, tile in zip(missing, decoded):
                tiles[i] = tile
        elif missing:
            tiles[missing[0]] = self._load(level, *cells[missing[0]], factor=factor)
        return tiles

    def scale_for(self, level: int, reduction: float) -> int:
        """The factor to decode ``level`` at (1, 2, 4 or 8) on the way to ``reduction``.

        1/2 wherever ``reduction`` ≥ 2; 1/4 and 1/8 only with a further 4×
        area resize after them: libjpeg's 1/4 and 1/8 decodes keep each 8 × 8
        block's low frequencies rather than its mean, which on nuclei-sized
        texture differs from an area average by about 5 grey levels (2.5
        after a 2× box, under 1 after a 4× box).
        """
        tolerance = 1e-9
        return max(f for f in self.levels[level].scales()
                   if f <= reduction + tolerance and (f <= 2 or 4 * f <= reduction + tolerance))

    def read_region(self, level: int, location: tuple[int, int], size: tuple[int, int], *,
                    factor: int = 1) -> np.ndarray:
        """A region of ``level`` in its own pixel grid, ``(h, w, 3) uint8``; outside the level is white.

        ``location`` is ``(x, y)`` and ``size`` ``(w, h)``, both in pixels of
        ``level``, or with ``factor`` > 1 in pixels of that level decoded at
        1/factor (see :meth:`scale_for`).
        """
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        lh, lw = (-(-n // factor) for n in self.levels[level].shape)
        th, tw = (n // factor for n in self.levels[level].tile_shape)
        y0, y1, x0, x1 = max(y, 0), min(y + h, lh), max(x, 0), min(x + w, lw)
        inside = (y0, y1, x0, x1) == (y, y + h, x, x + w)
        out = np.empty((h, w, 3), np.uint8) if inside else np.full((h, w, 3), 255, np.uint8)
        if y1 <= y0 or x1 <= x0:
            return out
        cells = [(r, c) for r in range(y0 // th, -(-y1 // th)) for c in range(x0 // tw, -(-x1 // tw))]
        if factor == 1 and len(cells) == 1 and (y % th, x % tw, h, w) == (0, 0, th, tw):
            tile = self.cache.get((level, *cells[0]))
            if tile is None:
                # One whole tile nobody has asked for before: decode it straight
                # into the caller's array.
                tile = self._load(level, *cells[0], out=out)
                if tile is out:
                    return out
            if tile.shape == out.shape:
                out[...] = tile
                return out
        for (row, col), tile in zip(cells, self._read_many(level, cells, factor)):
            ty0, tx0 = row * th, col * tw
            sy0, sy1 = max(y0, ty0), min(y1, ty0 + tile.shape[0])
            sx0, sx1 = max(x0, tx0), min(x1, tx0 + tile.shape[1])
            out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = tile[sy0 - ty0:sy1 - ty0, sx0 - tx0:sx1 - tx0]
        return out

    def read_box(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``read_region`` by array bounds, as the pyramid's direct slice path asks."""
        return self.read_region(level, (x0, y0), (x1 - x0, y1 - y0))
