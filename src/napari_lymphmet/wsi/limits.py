"""What a slide file may claim before any of its pixels are decoded.

A TIFF is a list of claims (this level is 200000 px wide, its tiles are
65520 px square, this JPEG frame is 65500² px) that cost a few bytes to write
and gigabytes to believe. Each claim is checked against what backs it (the
file's size, the machine's free memory, the tile's own compressed bytes)
before a buffer is allocated for it, so a 200-byte file cannot take the
process down. The limits are derived, not guessed per call site:

- a page may claim at most :data:`MAX_PIXELS_PER_BYTE` pixels per byte of
  pixel data it holds. JPEG cannot do better than about 60 px per byte even on blank
  glass, deflate about 350; a real 40× slide holds 10–30. A file far past the
  limit is mostly tiles that are not there.
- one decoded tile (RGBA, as OpenSlide allocates it) may take at most
  :data:`MAX_TILE_BYTES`, and at most an eighth of the memory the machine has
  free: scanners write 240–1024 px tiles (4 MB at most).
- a JPEG or JPEG 2000 tile's own frame header must not claim more than the
  tile it sits in.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

from ..errors import SlideError
from ..io import available_memory

log = logging.getLogger(__name__)

__all__ = ["MAX_PIXELS_PER_BYTE", "MAX_TILE_BYTES", "check_tiff_claims", "frame_size", "is_tiff",
           "open_checked_tiff"]

MAX_PIXELS_PER_BYTE = 10_000
MAX_TILE_BYTES = 256 * 2**20

_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders


def is_tiff(path: str | os.PathLike) -> bool:
    """Whether the file starts with a TIFF or BigTIFF header (SVS, NDPI and generic TIFF all do)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # unreachable


def check_tiff_claims(path: str | os.PathLike, pages) -> None:
    """Refuse a TIFF whose pages claim more pixels than the file or the machine can back.

    Parameters
    ----------
    path : path-like
        The file, for its size and the message.
    pages : iterable of tifffile.TiffPage
        Every page (levels, label, macro). Only header fields are read.

    Raises
    ------
    SlideError
        Naming the file, the page and the claim.
    """
    size = Path(path).stat().st_size
    tile_limit = min(MAX_TILE_BYTES, available_memory() // 8)
    for index, page in enumerate(pages):
        width, length = int(page.imagewidth), int(page.imagelength)
        if page.is_tiled:
            th, tw = int(page.tilelength), int(page.tilewidth)
            what = f"tiles of {tw} × {th} px"
        else:
            tw, th = width, min(length, int(getattr(page, "rowsperstrip", length) or length))
            what = f"strips of {tw} × {th} px"
        if tw * th * 4 > tile_limit:
            raise SlideError(f"{path}: page {index} claims {what} ({_size(tw * th * 4)} each decoded), "
                             f"more than the {_size(tile_limit)} one tile may take here; not a slide we can read")
        stored = min(size, sum(int(n) for n in page.databytecounts))  # the pixel data actually there
        if width * length > MAX_PIXELS_PER_BYTE * max(stored, 1):
            raise SlideError(f"{path}: page {index} claims {width} × {length} px, but holds {_size(stored)} "
                             f"of pixel data (more than {MAX_PIXELS_PER_BYTE} px per byte): most of its "
                             "tiles are not there; not a slide we can read")


def open_checked_tiff(path: str | os.PathLike) -> tuple[Any, list | None]:
    """``(tifffile.TiffFile, pages)`` of a TIFF whose claims pass :func:`check_tiff_claims`; ``(None, None)``
    for another format, or a TIFF tifffile cannot parse (OpenSlide then decides).

    Raises
    ------
    SlideError
        A claim the file or the machine cannot back.
    """
    if not is_tiff(path):
        return None, None
    import tifffile

    try:
        tiff = tifffile.TiffFile(path)
        pages = list(tiff.pages)
    except Exception as exc:
        log.info("%s: tifffile cannot parse it, using OpenSlide only: %s", path, exc)
        return None, None
    try:
        check_tiff_claims(path, pages)
    except BaseException:
        tiff.close()
        raise
    return tiff, pages


def frame_size(data: bytes, compression: int) -> tuple[int, int] | None:
    """``(height, width)`` a compressed tile's own header claims, or None when it has no header we read.

    Reads the frame header of a JPEG (compression 7: the first SOF marker)
    or a JPEG 2000 codestream (33003, 33005, 34712: the SIZ segment), nothing
    else, so it costs microseconds.
    """
    if compression == 7:
        return _jpeg_frame_size(data)
    if compression in (33003, 33004, 33005, 34712):
        return _j2k_frame_size(data)
    return None


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)  # past SOI
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers with no length
            i += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return height, width
        i += 2 + length
    return None


def _j2k_frame_size(data: bytes) -> tuple[int, int] | None:
    start = data.find(b"\xff\x4f\xff\x51")  # SOC then SIZ, also inside a JP2 box
    if start < 0 or start + 24 > len(data):
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[start + 8:start + 24])
    return ysiz - yosiz, xsiz - xosiz
