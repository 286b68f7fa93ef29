"""Whole-slide images: metadata, region reads and a lazy dask pyramid.

TIFF-family slides (Aperio SVS, generic pyramidal TIFF such as CAMELYON16)
have their tiles read by offset and decoded with imagecodecs, several times
faster than ``openslide.read_region``; every other format OpenSlide reads
goes through OpenSlide. Either way the pixels are OpenSlide's.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ._cache import TileCache
from ._levels import LevelReader, OpenSlideLevel, TiffLevel, composite_on_white
from .errors import SlideError
from .pyramid import tile_array

__all__ = ["Slide", "open_slide", "DEFAULT_CACHE_BYTES"]

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 256 * 2**20
DEFAULT_TILE = 512
# Vendors whose levels are plain tiled TIFF pages with nothing OpenSlide adds
# on top (no overlaps, offsets or sparse grids).
DIRECT_VENDORS = {"aperio", "generic-tiff"}


@functools.cache
def _decode_pool() -> ThreadPoolExecutor:
    """Threads shared by all slides for decoding the tiles of one region."""
    return ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="lymphmet-decode")


def _float_property(props: Mapping[str, str], key: str) -> float | None:
    try:
        value = float(props[key])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


class Slide:
    """An open whole-slide image. Use :func:`open_slide` to make one.

    Coordinates follow OpenSlide: ``location`` is ``(x, y)`` in level-0
    pixels, ``size`` is ``(w, h)``; arrays are ``(h, w, 3)``.
    """

    def __init__(self, path: str | os.PathLike, *, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 direct: bool = True) -> None:
        import openslide

        self.path = str(path)
        self._check_path()
        try:
            fmt = openslide.OpenSlide.detect_format(self.path)
        except Exception as exc:  # OpenSlide raises on unreadable files
            raise SlideError(f"{self.path}: cannot read file: {exc}") from exc
        if fmt is None:
            raise SlideError(f"{self.path}: not a slide format OpenSlide can read")
        try:
            self._osr = openslide.OpenSlide(self.path)
        except Exception as exc:
            raise SlideError(f"{self.path}: cannot open slide: {exc}") from exc
        self._fd: int | None = None
        self._tiff = None
        self.cache = TileCache(cache_bytes)
        self.tile_reads: Counter[int] = Counter()
        self._reads_lock = threading.Lock()
        try:
            self._levels = self._make_levels(direct)
            self._validate()
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------
    def _check_path(self) -> None:
        p = Path(self.path)
        if not p.exists():
            raise SlideError(f"{self.path}: no such file")
        if p.is_dir():
            raise SlideError(f"{self.path}: is a directory, not a slide file")

    def _native_tile(self, level: int) -> tuple[int, int]:
        props = self._osr.properties
        tw = props.get(f"openslide.level[{level}].tile-width")
        th = props.get(f"openslide.level[{level}].tile-height")
        if tw and th and int(tw) > 0 and int(th) > 0:
            return int(th), int(tw)
        return DEFAULT_TILE, DEFAULT_TILE

    def _make_levels(self, direct: bool) -> list[LevelReader]:
        levels: list[LevelReader] = [
            OpenSlideLevel(self.path, self._osr, i, self._native_tile(i))
            for i in range(self._osr.level_count)
        ]
        if not direct or self.vendor not in DIRECT_VENDORS:
            return levels
        import tifffile

        try:
            self._tiff = tifffile.TiffFile(self.path)
            pages = list(self._tiff.pages)
        except Exception as exc:
            log.info("%s: tifffile cannot parse it, using OpenSlide only: %s", self.path, exc)
            return levels
        self._fd = os.open(self.path, os.O_RDONLY)
        for i, reader in enumerate(levels):
            for page in pages:
                if (page.is_tiled and (int(page.imagelength), int(page.imagewidth)) == reader.shape
                        and TiffLevel.supports(page)):
                    levels[i] = TiffLevel(self.path, self._fd, page, i)
                    break
        return levels

    def _validate(self) -> None:
        size = os.path.getsize(self.path)
        for reader in self._levels:
            if isinstance(reader, TiffLevel) and reader.data_end() > size:
                raise SlideError(
                    f"{self.path}: truncated: tile data of level {reader.level} runs to byte "
                    f"{reader.data_end()} but the file has {size}"
                )
        # One tile of the smallest level proves the decoder works, and, for a
        # direct level, that its colours are OpenSlide's.
        last = self.level_count - 1
        tile = self._levels[last].read_tile(0, 0)
        if isinstance(self._levels[last], TiffLevel):
            h, w = tile.shape[:2]
            ref = OpenSlideLevel(self.path, self._osr, last, (h, w)).read_tile(0, 0)
            if not np.array_equal(ref, tile):
                log.warning("%s: direct tile decoding differs from OpenSlide; using OpenSlide",
                            self.path)
                self._levels = [OpenSlideLevel(self.path, self._osr, i, self._native_tile(i))
                                for i in range(self.level_count)]

    # -- metadata ----------------------------------------------------------
    @property
    def properties(self) -> Mapping[str, str]:
        """OpenSlide's properties, read-only."""
        return MappingProxyType(dict(self._osr.properties))

    @property
    def vendor(self) -> str | None:
        return self._osr.properties.get("openslide.vendor")

    @property
    def level_count(self) -> int:
        return int(self._osr.level_count)

    @property
    def dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of level 0."""
        return tuple(self._osr.dimensions)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level."""
        return tuple(tuple(d) for d in self._osr.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._osr.level_downsamples)

    @property
    def mpp(self) -> tuple[float, float] | None:
        """``(x, y)`` microns per level-0 pixel, or ``None`` when unknown."""
        props = self._osr.properties
        x = _float_property(props, "openslide.mpp-x")
        y = _float_property(props, "openslide.mpp-y")
        if x is None and y is None:
            return None
        return (x or y, y or x)

    @property
    def objective_power(self) -> float | None:
        return _float_property(self._osr.properties, "openslide.objective-power")

    @property
    def bounds(self) -> tuple[int, int, int, int] | None:
        """``(x, y, w, h)`` of the scanned area in level-0 pixels, if the slide says."""
        props = self._osr.properties
        keys = [f"openslide.bounds-{k}" for k in ("x", "y", "width", "height")]
        if not all(k in props for k in keys):
            return None
        return tuple(int(props[k]) for k in keys)

    @property
    def associated_images(self) -> tuple[str, ...]:
        """Names of the label, macro, thumbnail and other associated images."""
        return tuple(self._osr.associated_images)

    @property
    def slide_id(self) -> str:
        """The file name without its extension, as CAMELYON names slides."""
        return Path(self.path).stem

    def tile_shape(self, level: int) -> tuple[int, int]:
        """``(th, tw)`` of the tiles (and dask chunks) of ``level``."""
        return self._levels[level].tile_shape

    def level_backend(self, level: int) -> str:
        """``"tiff"`` when tiles are decoded directly, else ``"openslide"``."""
        return "tiff" if isinstance(self._levels[level], TiffLevel) else "openslide"

    def best_level_for_downsample(self, downsample: float) -> int:
        """The deepest level whose downsample is at most ``downsample``."""
        return int(self._osr.get_best_level_for_downsample(downsample))

    # -- pixels ------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int,
                    size: tuple[int, int]) -> np.ndarray:
        """Read a region through OpenSlide, transparency composited onto white.

        Parameters
        ----------
        location : (int, int)
            ``(x, y)`` of the top-left corner in level-0 pixels.
        level : int
        size : (int, int)
            ``(w, h)`` in pixels of ``level``.

        Returns
        -------
        (h, w, 3) uint8 ndarray
        """
        try:
            rgba = np.asarray(self._osr.read_region(tuple(location), level, tuple(size)))
        except Exception as exc:
            raise SlideError(f"{self.path}: cannot read level {level} region "
                             f"x={location[0]} y={location[1]} w={size[0]} h={size[1]}: {exc}"
                             ) from exc
        return composite_on_white(rgba)

    def read_tile(self, level: int, row: int, col: int) -> np.ndarray:
        """One native tile of ``level``, through the shared cache.

        A tile is cached on its second read, so one pass over a slide does not
        flush the tiles a viewer keeps coming back to.

        Returns
        -------
        (h, w, 3) uint8 ndarray
            Read-only; cropped at the level's edge.
        """
        tile = self.cache.get((level, row, col))
        return self._load_tile(level, row, col) if tile is None else tile

    def _load_tile(self, level: int, row: int, col: int, *, out: np.ndarray | None = None) -> np.ndarray:
        """Decode a tile, caching it on its second miss; else into ``out`` if given."""
        key = (level, row, col)
        keep = self.cache.admit(key)
        tile = self._levels[level].read_tile(row, col, keep=keep, out=None if keep else out)
        with self._reads_lock:
            self.tile_reads[level] += 1
        if keep:
            self.cache.put(key, tile)
        elif tile is not out:
            tile.flags.writeable = False  # callers get the same contract either way
        return tile

    def _read_tiles(self, level: int, cells: list[tuple[int, int]]) -> list[np.ndarray]:
        """Tiles for ``cells``, decoding the uncached ones in parallel."""
        tiles = [self.cache.get((level, r, c)) for r, c in cells]
        missing = [i for i, t in enumerate(tiles) if t is None]
        if len(missing) > 1:
            decoded = _decode_pool().map(lambda i: self._load_tile(level, *cells[i]), missing)
            for i, tile in zip(missing, decoded):
                tiles[i] = tile
        elif missing:
            tiles[missing[0]] = self._load_tile(level, *cells[missing[0]])
        return tiles

    def read_level_region(self, level: int, location: tuple[int, int],
                          size: tuple[int, int]) -> np.ndarray:
        """Read a region of ``level`` in that level's own pixel grid, via the tile cache.

        Parts outside the level are white.

        Parameters
        ----------
        level : int
        location : (int, int)
            ``(x, y)`` in pixels of ``level`` (not level 0).
        size : (int, int)
            ``(w, h)``.

        Returns
        -------
        (h, w, 3) uint8 ndarray
        """
        x, y = (int(v) for v in location)
        w, h = (int(v) for v in size)
        lh, lw = self._levels[level].shape
        th, tw = self.tile_shape(level)
        y0, y1, x0, x1 = max(y, 0), min(y + h, lh), max(x, 0), min(x + w, lw)
        inside = (y0, y1, x0, x1) == (y, y + h, x, x + w)
        out = np.empty((h, w, 3), np.uint8) if inside else np.full((h, w, 3), 255, np.uint8)
        if y1 <= y0 or x1 <= x0:
            return out
        cells = [(r, c) for r in range(y0 // th, -(-y1 // th)) for c in range(x0 // tw, -(-x1 // tw))]
        if len(cells) == 1 and (y % th, x % tw, h, w) == (0, 0, th, tw):
            tile = self.cache.get((level, *cells[0]))
            if tile is None:
                # One whole tile nobody has asked for before: decode it straight
                # into the caller's array.
                tile = self._load_tile(level, *cells[0], out=out)
                if tile is out:
                    return out
            if tile.shape == out.shape:
                out[...] = tile
                return out
        tiles = self._read_tiles(level, cells)
        for (row, col), tile in zip(cells, tiles):
            ty0, tx0 = row * th, col * tw
            sy0, sy1 = max(y0, ty0), min(y1, ty0 + tile.shape[0])
            sx0, sx1 = max(x0, tx0), min(x1, tx0 + tile.shape[1])
            out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = tile[sy0 - ty0:sy1 - ty0, sx0 - tx0:sx1 - tx0]
        return out

    def pyramid(self) -> list:
        """One lazy ``(H, W, 3) uint8`` dask array per level, chunked by native tile.

        A chunk is read (and cached) only when computed; read errors raise
        :class:`~napari_lymphmet.errors.SlideReadError`. The arrays keep the
        slide open; building them is cheap, so they are not kept here (which
        would make a reference cycle that holds the tile cache after use).
        """
        return [
            tile_array(
                functools.partial(self.read_tile, i),
                reader.shape,
                reader.tile_shape,
                name=f"lymphmet-slide-{id(self):x}-level{i}",
                read_region=functools.partial(self._read_box, i),
            )
            for i, reader in enumerate(self._levels)
        ]

    def _read_box(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.read_level_region(level, (x0, y0), (x1 - x0, y1 - y0))

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """An RGB overview whose longer side is at most ``max_size`` pixels.

        Returns
        -------
        (h, w, 3) uint8 ndarray
        """
        from PIL import Image

        w0, h0 = self.dimensions
        scale = max_size / max(w0, h0)
        target = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        level = self.best_level_for_downsample(1 / scale)
        lw, lh = self.level_dimensions[level]
        image = self.read_level_region(level, (0, 0), (lw, lh))
        if (lw, lh) != target:
            image = np.asarray(Image.fromarray(image).resize(target, Image.Resampling.LANCZOS))
        return image

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (``"label"``, ``"macro"``, ...) as ``(h, w, 3) uint8``."""
        try:
            image = self._osr.associated_images[name]
        except KeyError:
            raise KeyError(f"{self.path}: no associated image {name!r}; "
                           f"it has {list(self.associated_images)}") from None
        return composite_on_white(np.asarray(image.convert("RGBA")))

    # -- closing -----------------------------------------------------------
    def close(self) -> None:
        """Release the file handles. Arrays from :meth:`pyramid` stop working."""
        if getattr(self, "_osr", None) is not None:
            self._osr.close()
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.cache.clear()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Slide({self.path!r}, vendor={self.vendor!r}, "
                f"dimensions={self.dimensions}, levels={self.level_count}, mpp={self.mpp})")


def open_slide(path: str | os.PathLike, *, cache_bytes: int = DEFAULT_CACHE_BYTES,
               direct: bool = True) -> Slide:
    """Open a whole-slide image in any format OpenSlide reads.

    Parameters
    ----------
    path : str or path-like
    cache_bytes : int, optional
        Bound on the decoded-tile cache shared by all levels.
    direct : bool, optional
        Decode TIFF-family tiles directly (fast). ``False`` reads every
        tile through OpenSlide.

    Returns
    -------
    Slide

    Raises
    ------
    SlideError
        The path is missing, a directory, not a slide, corrupt or truncated.
    """
    return Slide(path, cache_bytes=cache_bytes, direct=direct)
