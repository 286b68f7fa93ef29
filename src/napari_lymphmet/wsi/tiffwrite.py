"""Stream a pyramidal, JPEG-tiled generic TIFF that OpenSlide opens.

Level 0 is rendered tile by tile from a callback; each lower level is the
2×2 mean of the one above, built from a one-tile-row buffer per level, so
memory stays bounded by a few tile rows whatever the slide size."""


from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..io import atomic_path

__all__ = ['PyramidInfo', 'RenderFn', 'pyramid_shapes', 'write_jpeg_pages', 'write_pyramid_tiff']

RenderFn = Callable[[int, int, int, int], np.ndarray]


@dataclass(frozen=True)
class PyramidInfo:
    """What :func:`write_pyramid_tiff` wrote."""

    path: str
    level_dimensions: tuple[tuple[int, int], ...]  # (w, h) per level
    tile: int
    mpp: float | None


def pyramid_shapes(width: int, height: int, *, min_size: int = 1024) -> list[tuple[int, int]]:
    """``(w, h)`` of each power-of-2 level until the long side is at most ``min_size``."""
    shapes = [(int(width), int(height))]
    while max(shapes[-1]) > min_size:
        w, h = shapes[-1]
        shapes.append((-(-w // 2), -(-h // 2)))
    return shapes


def _halve(image: np.ndarray) -> np.ndarray:
    """2×2 mean, rounding half up; an odd last row or column is repeated."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    s = image.astype(np.uint16)
    s = s[0::2, 0::2] + s[1::2, 0::2] + s[0::2, 1::2] + s[1::2, 1::2]
    return ((s + 2) >> 2).astype(np.uint8)


class _Level:
    """Collects one level's pixels a tile row at a time and encodes its tiles."""

    def __init__(self, width: int, height: int, tile: int, encode, pool) -> None:
        self.width, self.height, self.tile = width, height, tile
        self._encode, self._pool = encode, pool
        self._rows: list[np.ndarray] = []
        self._buffered = 0
        self._done = 0
        self.tiles: list[bytes] = []
        self.child: _Level | None = None

    def add_rows(self, rows: np.ndarray) -> None:
        self._rows.append(rows)
        self._buffered += rows.shape[0]
        while self._buffered >= self.tile or (
            self._buffered and self._done + self._buffered >= self.height
        ):
            self._flush_row()

    def _flush_row(self) -> None:
        band = np.concatenate(self._rows, axis=0) if len(self._rows) > 1 else self._rows[0]
        n = min(self.tile, band.shape[0])
        row, rest = band[:n], band[n:]
        self._rows = [rest] if rest.shape[0] else []
        self._buffered = rest.shape[0]
        self._done += n
        cols = range(0, self.width, self.tile)
        self.tiles.extend(self._pool.map(lambda x: self._encode(row[:, x:x + self.tile]), cols))
        if self.child is not None:
            self.child.add_rows(_halve(row))


def _drain(level: _Level) -> Iterator[bytes]:
    tiles, level.tiles = level.tiles, []
    yield from tiles


def write_jpeg_pages(
    path: str | os.PathLike,
    pages: list[tuple[tuple[int, int], Iterator[bytes]]],
    *,
    tile: int,
    mpp: float | None,
    description: str = "napari-lymphmet pyramid",
) -> None:
    """Write already JPEG-encoded tiles as a generic pyramidal TIFF, atomically.

    Parameters
    ----------
    path : str or path-like
    pages : list of ((H, W), iterator of bytes)
        Level 0 first. Each iterator yields one baseline JPEG (YCbCr 4:2:0,
        ``tile`` × ``tile``) per tile in row-major order; iterators are
        consumed one page after another.
    tile : int
    mpp : float or None
        Microns per level-0 pixel for the resolution tags.
    """
    import tifffile

    options = dict(dtype=np.uint8, tile=(tile, tile), compression="jpeg",
                   photometric="ycbcr", subsampling=(2, 2), metadata=None)
    if mpp is not None:
        options.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for i, ((h, w), tiles) in enumerate(pages):
            extra = {"description": description} if i == 0 else {"subfiletype": 1}
            tif.write(tiles, shape=(h, w, 3), **extra, **options)


def write_pyramid_tiff(
    path: str | os.PathLike,
    render: RenderFn,
    width: int,
    height: int,
    *,
    tile: int = 512,
    mpp: float | None = 0.25,
    quality: int = 90,
    min_size: int = 1024,
    description: str = "napari-lymphmet pyramid",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PyramidInfo:
    """Write a pyramidal generic TIFF, rendering level 0 tile by tile.

    Parameters
    ----------
    path : str or path-like
        Output file; written to a temporary name first, then renamed.
    render : callable
        ``render(x, y, w, h)`` returns the ``(h, w, 3) uint8`` level-0 region
        at ``(x, y)``. It is called from several threads at once.
    width, height : int
        Level-0 size in pixels.
    tile : int, optional
        Tile side; a multiple of 16.
    mpp : float or None, optional
        Microns per level-0 pixel, stored in the resolution tags.
    quality : int, optional
        JPEG quality.
    min_size : int, optional
        Stop adding levels once the long side is at most this.
    workers : int, optional
        Threads that render and encode.
    progress : callable, optional
        Called as ``progress(done, total)`` in level-0 tile rows.

    Returns
    -------
    PyramidInfo
    """
    import imagecodecs

    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, got {tile}")
    shapes = pyramid_shapes(width, height, min_size=min_size)

    def encode(region: np.ndarray) -> bytes:
        if region.shape[:2] != (tile, tile):
            padded = np.full((tile, tile, 3), 255, np.uint8)
            padded[: region.shape[0], : region.shape[1]] = region
            region = padded
        return imagecodecs.jpeg8_encode(region, level=quality, subsampling="420")

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        # Level 0 streams straight from render; these buffer levels 1, 2, ...
        levels = [_Level(w, h, tile, encode, pool) for w, h in shapes[1:]]
        for parent, child in zip(levels, levels[1:]):
            parent.child = child
        n_rows = -(-height // tile)

        def level0_tiles() -> Iterator[bytes]:
            for i, y in enumerate(range(0, height, tile)):
                h = min(tile, height - y)

                def render_tile(x: int, y: int = y, h: int = h) -> tuple[bytes, np.ndarray]:
                    w = min(tile, width - x)
                    region = np.asarray(render(x, y, w, h), dtype=np.uint8)
                    if region.shape != (h, w, 3):
                        raise ValueError(f"render returned {region.shape}, expected {(h, w, 3)}")
                    return encode(region), region

                done = list(pool.map(render_tile, range(0, width, tile)))
                # tifffile stops pulling after the last tile it expects, so
                # everything for this row must happen before it is yielded.
                if levels:
                    levels[0].add_rows(_halve(np.concatenate([r for _, r in done], axis=1)))
                if progress is not None:
                    progress(i + 1, n_rows)
                yield from (data for data, _ in done)

        pages = [((height, width), level0_tiles())]
        pages += [((h, w), _drain(level)) for level, (w, h) in zip(levels, shapes[1:])]
        write_jpeg_pages(path, pages, tile=tile, mpp=mpp, description=description)
    return PyramidInfo(str(path), tuple(shapes), tile, mpp)
