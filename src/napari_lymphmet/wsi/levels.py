"""Tile readers for one pyramid level: direct TIFF decoding, or OpenSlide.

Both return ``(h, w, 3) uint8`` RGB tiles cropped to the level's edge, with
transparency composited onto white, and raise :class:`SlideReadError` naming
the file and region when a tile cannot be read."""


from __future__ import annotations

import mmap
import os
from typing import Protocol

import numpy as np

from ..errors import SlideReadError
from .limits import frame_size

__all__ = ['DIRECT_COMPRESSIONS', 'LevelReader', 'OpenSlideLevel', 'TiffLevel', 'composite_on_white']

# Compressions whose decoded pixels tifffile/imagecodecs return as the RGB
# OpenSlide shows. Aperio's 33003 (YCbCr JPEG 2000) is left to OpenSlide,
# which does the colour conversion itself.
DIRECT_COMPRESSIONS = {1, 5, 7, 8, 32946, 33005, 50000}


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite straight-alpha RGBA onto white.

    Parameters
    ----------
    rgba : (M, N, 4) uint8 ndarray
        Non-premultiplied RGBA, as ``openslide.OpenSlide.read_region`` returns.

    Returns
    -------
    (M, N, 3) uint8 ndarray
    """
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.min(initial=255) == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


class LevelReader(Protocol):
    """What a pyramid level needs: its shape, tile shape and a tile reader."""

    shape: tuple[int, int]
    tile_shape: tuple[int, int]

    def read_tile(self, row: int, col: int, *, keep: bool = False,
                  out: np.ndarray | None = None, factor: int = 1) -> np.ndarray: ...

    def scales(self) -> tuple[int, ...]: ...


def _tile_box(reader: LevelReader, row: int, col: int) -> tuple[int, int, int, int]:
    """Return ``(y, x, h, w)`` of a tile in level pixels, cropped at the edge."""
    th, tw = reader.tile_shape
    y, x = row * th, col * tw
    h, w = reader.shape
    if not (0 <= y < h and 0 <= x < w):
        raise IndexError(f"tile ({row}, {col}) is outside a level of shape {reader.shape}")
    return y, x, min(th, h - y), min(tw, w - x)


class TiffLevel:
    """Reads one tiled TIFF page by byte offset and decodes with imagecodecs.

    Reading uses ``os.pread`` on a shared descriptor, so any number of threads
    may call :meth:`read_tile` at once; decoding releases the GIL.
    """

    def __init__(self, path: str, fd: int, page, level: int) -> None:
        self.path = path
        self.level = level
        self.shape = (int(page.imagelength), int(page.imagewidth))
        self.tile_shape = (int(page.tilelength), int(page.tilewidth))
        self._fd = fd
        self._offsets = [int(v) for v in page.dataoffsets]
        self._counts = [int(v) for v in page.databytecounts]
        self._tiles_across = -(-self.shape[1] // self.tile_shape[1])
        self._compression = int(page.compression)
        self._decode = _decoder(page)
        self._decode_scaled = _scaled_decoder(page)

    def scales(self) -> tuple[int, ...]:
        """Factors (1, 2, 4, 8) this level's tiles can be decoded at: DCT-domain scaling for YCbCr JPEG."""
        if self._decode_scaled is None:
            return (1,)
        th, tw = self.tile_shape
        return tuple(f for f in (1, 2, 4, 8) if th % f == 0 and tw % f == 0)

    @staticmethod
    def supports(page) -> bool:
        """Whether this reader decodes ``page`` exactly as OpenSlide does."""
        return (
            page.is_tiled
            and page.imagedepth == 1
            and page.samplesperpixel == 3
            and page.bitspersample == 8
            and page.planarconfig == 1
            and int(page.compression) in DIRECT_COMPRESSIONS
        )

    def data_end(self) -> int:
        """Largest byte position any tile of this level reaches."""
        return max((o + n for o, n in zip(self._offsets, self._counts) if n), default=0)

    def read_tile(self, row: int, col: int, *, keep: bool = False,
                  out: np.ndarray | None = None, factor: int = 1) -> np.ndarray:
        """Decode one tile; ``keep`` says it will be cached (so needs fresh memory).

        A full-size tile is decoded into ``out`` when the codec can; the result
        is ``out`` then, and a new array otherwise. ``factor`` (one of
        :meth:`scales`) decodes at 1/factor of the size in the DCT domain:
        ``(ceil(h/f), ceil(w/f), 3)``.
        """
        th, tw = self.tile_shape
        y, x = row * th, col * tw
        h, w = min(th, self.shape[0] - y), min(tw, self.shape[1] - x)
        if h <= 0 or w <= 0 or row < 0 or col < 0:
            raise IndexError(f"tile ({row}, {col}) is outside a level of shape {self.shape}")
        if factor not in self.scales():
            raise ValueError(f"level {self.level} cannot decode at 1/{factor}; it can at {self.scales()}")
        hs, ws = -(-h // factor), -(-w // factor)
        index = row * self._tiles_across + col
        count = self._counts[index]
        if count == 0:
            # A tile the scanner skipped: OpenSlide shows it transparent.
            return np.full((hs, ws, 3), 255, np.uint8)
        try:
            data = os.pread(self._fd, count, self._offsets[index])
            if len(data) != count:
                raise OSError(f"file ends {count - len(data)} bytes short of the tile")
            claimed = frame_size(data, self._compression)
            if claimed is not None and (claimed[0] > th or claimed[1] > tw):
                # The codec would allocate what the frame claims, not what the tile holds.
                raise ValueError(f"the tile's frame header claims {claimed[1]} × {claimed[0]} px "
                                 f"in a {tw} × {th} px tile")
            if factor == 1:
                tile = self._decode(data, index, keep, out if (h, w) == (th, tw) else None)
            else:
                tile = self._decode_scaled(data, factor)
        except Exception as exc:
            at = "" if factor == 1 else f" at 1/{factor}"
            raise SlideReadError(
                f"{self.path}: cannot read level {self.level} region x={x} y={y} w={w} h={h}{at}: {exc}"
            ) from exc
        if tile.shape[:2] != (hs, ws):
            tile = np.ascontiguousarray(tile[:hs, :ws])
        return tile


def _scaled_decoder(page):
    """``decode(data, factor) -> (th/f, tw/f, 3)`` with libjpeg-turbo's DCT scaling, or None.

    Only for YCbCr JPEG tiles (as almost every scanner writes): libjpeg
    assumes YCbCr for three-channel streams without an Adobe marker, so an
    RGB-coded JPEG (photometric RGB) would decode with the wrong colours;
    those keep the full-size path. Tiles that share a ``JPEGTables`` header
    get it spliced in front (its tables, then the tile's frame), since a
    tile alone is an abbreviated stream.
    """
    if int(page.compression) != 7 or int(page.photometric) != 6:  # JPEG, YCbCr
        return None
    try:
        import simplejpeg
    except ImportError:  # an optional speed-up; without it every level reads at full size
        return None
    tables = page.jpegtables
    prefix = bytes(tables[:-2]) if tables else b""  # the tables' SOI and segments, without their EOI
    th, tw = int(page.tilelength), int(page.tilewidth)

    def decode(data: bytes, factor: int) -> np.ndarray:
        stream = prefix + data[2:] if prefix else data  # the tile's own SOI dropped
        return simplejpeg.decode_jpeg(stream, colorspace="RGB", min_factor=factor,
                                      min_height=th // factor, min_width=tw // factor)

    return decode


def _populated(shape: tuple[int, ...]) -> np.ndarray:
    """A new uint8 array whose pages the kernel maps in one go.

    Decoded tiles stay in the cache, so each needs fresh memory; faulting it
    in page by page costs a quarter of a JPEG decode, MAP_POPULATE a third
    of that.
    """
    size = int(np.prod(shape))
    if _MAP_POPULATE is None or size < 1 << 16:
        return np.empty(shape, np.uint8)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE)
    return np.frombuffer(buf, np.uint8).reshape(shape)


_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", None)


def _decoder(page):
    """``decode(data, index, keep, out) -> (th, tw, 3)`` for one page's tiles."""
    import imagecodecs
    import tifffile

    if int(page.compression) == 7:
        # Straight to libjpeg-turbo: tifffile's generic path costs a tenth
        # of a tile's decode time in Python.
        colorspace, outcolorspace = tifffile.tifffile.jpeg_decode_colorspace(
            page.photometric, page.planarconfig, page.extrasamples, page.is_jfif)
        tables = page.jpegtables
        jpeg8_decode = imagecodecs.jpeg8_decode
        shape = (int(page.tilelength), int(page.tilewidth), 3)

        def decode(data: bytes, index: int, keep: bool, out: np.ndarray | None) -> np.ndarray:
            if out is None and keep:
                out = _populated(shape)
            return jpeg8_decode(data, tables=tables, colorspace=colorspace,
                                outcolorspace=outcolorspace, out=out)

        return decode
    generic = page.decode
    tables = page.jpegtables

    def decode(data: bytes, index: int, keep: bool, out: np.ndarray | None) -> np.ndarray:
        return generic(data, index, jpegtables=tables)[0][0, ..., :3]

    return decode


class OpenSlideLevel:
    """Reads tiles of one level through ``openslide.OpenSlide.read_region``."""

    def __init__(self, path: str, osr, level: int, tile_shape: tuple[int, int]) -> None:
        self.path = path
        self.level = level
        w, h = osr.level_dimensions[level]
        self.shape = (int(h), int(w))
        self.tile_shape = tile_shape
        self._osr = osr
        self._downsample = float(osr.level_downsamples[level])

    def scales(self) -> tuple[int, ...]:
        """OpenSlide decodes at full size only."""
        return (1,)

    def read_tile(self, row: int, col: int, *, keep: bool = False,
                  out: np.ndarray | None = None, factor: int = 1) -> np.ndarray:
        if factor != 1:
            raise ValueError("OpenSlide levels decode at full size only")
        y, x, h, w = _tile_box(self, row, col)
        location = (round(x * self._downsample), round(y * self._downsample))
        try:
            rgba = np.asarray(self._osr.read_region(location, self.level, (w, h)))
        except Exception as exc:
            raise SlideReadError(
                f"{self.path}: cannot read level {self.level} region "
                f"x={x} y={y} w={w} h={h}: {exc}"
            ) from exc
        return composite_on_white(rgba)
