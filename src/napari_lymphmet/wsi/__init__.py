"""Whole-slide images: open, read and write them.

``open_slide`` gives a :class:`Slide` (thin: frozen :class:`SlideInfo`
metadata, a :class:`TileStore` of per-level readers and a byte-bounded
cache); ``Slide.pyramid()`` is one lazy dask array per level. ``tiffwrite``
streams pyramidal JPEG TIFFs. ``limits`` checks what a file claims before
its pixels are decoded. Depends on nothing else in the package but
``errors`` and ``io``.
"""

from __future__ import annotations

from .cache import TileCache
from .files import SLIDE_SUFFIXES, find_slides, is_companion
from .info import SlideInfo
from .levels import DIRECT_COMPRESSIONS, LevelReader, OpenSlideLevel, TiffLevel, composite_on_white
from .limits import MAX_PIXELS_PER_BYTE, MAX_TILE_BYTES
from .pyramid import LevelArray, RegionReader, TileReader, tile_array
from .scaled import READ_BUDGET_PIXELS
from .slide import DEFAULT_CACHE_BYTES, DEFAULT_TILE, DIRECT_VENDORS, Slide, open_slide
from .tiles import TileStore
from .tiffwrite import PyramidInfo, RenderFn, pyramid_shapes, write_jpeg_pages, write_pyramid_tiff

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_TILE", "DIRECT_COMPRESSIONS", "DIRECT_VENDORS", "LevelArray", "LevelReader",
           "MAX_PIXELS_PER_BYTE", "MAX_TILE_BYTES", "READ_BUDGET_PIXELS",
           "OpenSlideLevel", "PyramidInfo", "RegionReader", "RenderFn", "SLIDE_SUFFIXES", "Slide", "SlideInfo",
           "TiffLevel", "TileCache", "TileReader", "TileStore", "composite_on_white", "find_slides", "is_companion",
           "open_slide", "pyramid_shapes", "tile_array", "write_jpeg_pages", "write_pyramid_tiff"]
