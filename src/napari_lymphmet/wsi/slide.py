"""Whole-slide images: open a file, read regions, get a lazy dask pyramid.

TIFF-family slides (Aperio SVS, generic pyramidal TIFF such as CAMELYON16)
have their tiles read by offset and decoded with imagecodecs, several times
faster than ``openslide.read_region``; every other format OpenSlide reads
goes through OpenSlide. Either way the pixels are OpenSlide's.

A :class:`Slide` is thin: its metadata is a frozen :class:`SlideInfo`, its
tiles and cache a :class:`TileStore`; it owns the file handles."""

from __future__ import annotations

import functools
import logging
import os
import weakref
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SlideError
from .cache import TileCache
from .info import SlideInfo
from .limits import open_checked_tiff
from .levels import LevelReader, OpenSlideLevel, TiffLevel, composite_on_white
from .pyramid import tile_array
from .scaled import read_scaled
from .tiles import TileStore

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_TILE", "DIRECT_VENDORS", "Slide", "open_slide"]

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 256 * 2**20
DEFAULT_TILE = 512
# Vendors whose levels are plain tiled TIFF pages with nothing OpenSlide adds
# on top (no overlaps, offsets or sparse grids).
DIRECT_VENDORS = {"aperio", "generic-tiff"}


class _Handles:
    """The open files behind a slide. Closed by :meth:`Slide.close`, or when the slide is
    garbage-collected (a layer removed from napari holds the only reference), so handles never leak."""

    def __init__(self) -> None:
        self.osr: Any = None
        self.tiff: Any = None
        self.fd: int | None = None

    def close(self) -> None:
        if self.osr is not None:
            self.osr.close()
            self.osr = None
        if self.tiff is not None:
            self.tiff.close()
            self.tiff = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _FromInfo:
    """A read-only attribute of the slide's :class:`SlideInfo`, so ``slide.mpp`` keeps working."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.__doc__ = getattr(SlideInfo, name).__doc__ if isinstance(getattr(SlideInfo, name, None), property) \
            else f"See :class:`SlideInfo`.{name}."

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else getattr(obj.info, self.name)


class Slide:
    """An open whole-slide image. Use :func:`open_slide` to make one.

    Coordinates follow OpenSlide: ``location`` is ``(x, y)`` in level-0
    pixels, ``size`` is ``(w, h)``; arrays are ``(h, w, 3)``. The metadata
    attributes (``dimensions``, ``mpp``, ``level_downsamples``, ...) are those
    of :attr:`info`.
    """

    properties: Mapping[str, str] = _FromInfo()
    vendor: str | None = _FromInfo()
    level_count: int = _FromInfo()
    dimensions: tuple[int, int] = _FromInfo()
    level_dimensions: tuple[tuple[int, int], ...] = _FromInfo()
    level_downsamples: tuple[float, ...] = _FromInfo()
    mpp: tuple[float, float] | None = _FromInfo()
    mean_mpp: float | None = _FromInfo()
    objective_power: float | None = _FromInfo()
    bounds: tuple[int, int, int, int] | None = _FromInfo()
    associated_images: tuple[str, ...] = _FromInfo()
    slide_id: str = _FromInfo()

    def __init__(self, path: str | os.PathLike, *, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 direct: bool = True) -> None:
        import openslide

        self.path = str(path)
        self._handles = _Handles()
        self._closer = weakref.finalize(self, self._handles.close)
        _check_path(self.path)
        try:
            fmt = openslide.OpenSlide.detect_format(self.path)
        except Exception as exc:  # OpenSlide raises on unreadable files
            raise SlideError(f"{self.path}: cannot read file: {exc}") from exc
        if fmt is None:
            raise SlideError(f"{self.path}: not a slide format OpenSlide can read")
        # Before OpenSlide reads a pixel: it believes what the tags claim.
        self._handles.tiff, self._pages = open_checked_tiff(self.path)
        try:
            self._handles.osr = openslide.OpenSlide(self.path)
            self.info = SlideInfo.from_openslide(self.path, self._osr)
        except Exception as exc:
            self._handles.close()
            raise SlideError(f"{self.path}: cannot open slide: {exc}") from exc
        try:
            self.tiles = TileStore(self._make_levels(direct), cache_bytes)
            self._validate()
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------
    def _openslide_levels(self) -> list[LevelReader]:
        return [OpenSlideLevel(self.path, self._osr, i, self.info.native_tile(i, DEFAULT_TILE))
                for i in range(self.info.level_count)]

    def _make_levels(self, direct: bool) -> list[LevelReader]:
        levels = self._openslide_levels()
        pages = self._pages
        if not direct or self.vendor not in DIRECT_VENDORS or pages is None:
            return levels
        self._handles.fd = os.open(self.path, os.O_RDONLY)
        for i, reader in enumerate(levels):
            for page in pages:
                if (page.is_tiled and (int(page.imagelength), int(page.imagewidth)) == reader.shape
                        and TiffLevel.supports(page)):
                    levels[i] = TiffLevel(self.path, self._handles.fd, page, i)
                    break
        return levels

    def _validate(self) -> None:
        size = os.path.getsize(self.path)
        levels = self.tiles.levels
        for reader in levels:
            if isinstance(reader, TiffLevel) and reader.data_end() > size:
                raise SlideError(
                    f"{self.path}: truncated: tile data of level {reader.level} runs to byte "
                    f"{reader.data_end()} but the file has {size}"
                )
        # One tile of the smallest level proves the decoder works, and, for a
        # direct level, that its colours are OpenSlide's.
        last = self.level_count - 1
        tile = levels[last].read_tile(0, 0)
        if isinstance(levels[last], TiffLevel):
            h, w = tile.shape[:2]
            ref = OpenSlideLevel(self.path, self._osr, last, (h, w)).read_tile(0, 0)
            if not np.array_equal(ref, tile):
                log.warning("%s: direct tile decoding differs from OpenSlide; using OpenSlide",
                            self.path)
                self.tiles.levels[:] = self._openslide_levels()

    @property
    def _osr(self) -> Any:
        return self._handles.osr

    # -- levels ------------------------------------------------------------
    @property
    def cache(self) -> TileCache:
        """The decoded-tile cache shared by all levels."""
        return self.tiles.cache

    @property
    def tile_reads(self) -> Counter[int]:
        """Tiles decoded so far, per level."""
        return self.tiles.tile_reads

    def tile_shape(self, level: int) -> tuple[int, int]:
        """``(th, tw)`` of the tiles (and dask chunks) of ``level``."""
        return self.tiles.levels[level].tile_shape

    def level_backend(self, level: int) -> str:
        """``"tiff"`` when tiles are decoded directly, else ``"openslide"``."""
        return "tiff" if isinstance(self.tiles.levels[level], TiffLevel) else "openslide"

    def best_level_for_downsample(self, downsample: float) -> int:
        """The deepest level whose downsample is at most ``downsample``."""
        return int(self._osr.get_best_level_for_downsample(downsample))

    # -- pixels ------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
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
        """One native tile of ``level`` through the shared cache: ``(h, w, 3) uint8``, read-only,
        cropped at the level's edge. A tile is cached on its second read."""
        return self.tiles.read_tile(level, row, col)

    def read_level_region(self, level: int, location: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        """A region of ``level`` in that level's own pixel grid, via the tile cache.

        ``location`` ``(x, y)`` and ``size`` ``(w, h)`` are in pixels of
        ``level`` (not level 0). Parts outside the level are white.

        Returns
        -------
        (h, w, 3) uint8 ndarray
        """
        return self.tiles.read_region(level, location, size)

    def read_scaled(self, location: tuple[float, float], size: tuple[int, int], downsample: float) -> np.ndarray:
        """A region at any ``downsample`` ≥ 1, read the cheapest way: ``(h, w, 3) uint8``.

        Parameters
        ----------
        location : (float, float)
            ``(x, y)`` of the top-left corner, level-0 px (fractions allowed).
        size : (int, int)
            ``(w, h)`` of the result, px at ``downsample``.
        downsample : float
            Level-0 px per result px.

        See :func:`napari_lymphmet.wsi.scaled.read_scaled` for how.
        """
        level = self.best_level_for_downsample(downsample * (1 + 1e-9))
        return read_scaled(self.tiles, level, self.level_downsamples[level], location, size, downsample)

    def pyramid(self) -> list:
        """One lazy ``(H, W, 3) uint8`` dask array per level, chunked by native tile.

        A chunk is read (and cached) only when computed; read errors raise
        :class:`~napari_lymphmet.errors.SlideReadError`. The arrays keep the
        slide open; building them is cheap, so they are not kept here (which
        would make a reference cycle that holds the tile cache after use).
        """
        # Bound to the slide, not its TileStore: the arrays keep the slide (and
        # so its open files) alive for as long as a layer shows them.
        return [
            tile_array(
                functools.partial(self.read_tile, i),
                reader.shape,
                reader.tile_shape,
                name=f"lymphmet-slide-{id(self):x}-level{i}",
                read_region=functools.partial(self._read_box, i),
            )
            for i, reader in enumerate(self.tiles.levels)
        ]

    def _read_box(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.tiles.read_box(level, y0, y1, x0, x1)

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """An RGB overview whose longer side is at most ``max_size`` pixels: ``(h, w, 3) uint8``."""
        from PIL import Image

        w0, h0 = self.dimensions
        scale = max_size / max(w0, h0)
        target = (max(1, round(w0 * scale)), max(1, round(h0 * scale)))
        level = self.best_level_for_downsample(1 / scale)
        lw, lh = self.level_dimensions[level]
        if lw * lh > 4 * max_size**2:
            # No level near the thumbnail's size (a single-level slide): reduced band by band.
            return self.read_scaled((0, 0), target, max(1.0, max(w0 / target[0], h0 / target[1])))
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
    @property
    def closed(self) -> bool:
        return self._osr is None

    def close(self) -> None:
        """Release the file handles. Arrays from :meth:`pyramid` stop working. Closing twice is fine."""
        self._handles.close()
        if getattr(self, "tiles", None) is not None:
            self.tiles.cache.clear()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Slide({self.path!r}, vendor={self.vendor!r}, "
                f"dimensions={self.dimensions}, levels={self.level_count}, mpp={self.mpp})")


def _check_path(path: str) -> None:
    import errno

    p = Path(path)
    try:
        p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SlideError(f"{path}: a symbolic link loop, not a slide file") from None
        if p.is_symlink():
            raise SlideError(f"{path}: a broken symbolic link (to {os.readlink(p)})") from None
        if exc.errno == errno.ENOENT:
            raise SlideError(f"{path}: no such file") from None
        raise SlideError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if p.is_dir():
        raise SlideError(f"{path}: is a directory, not a slide file")
    if not p.is_file():
        raise SlideError(f"{path}: not a regular file (a device or a pipe), not a slide file")


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
