"""Binary masks on disk: a 0/255 PNG or TIFF plus a JSON sidecar.

A mask is a low-resolution picture of a slide; the sidecar
``<mask file>.json`` says how it maps onto level 0 (``downsample``: level-0
pixels per mask pixel) and how it was made, so every later step can take a
saved mask instead of recomputing it."""


from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, available_memory, read_limited
from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ['SavedMask', 'load_mask', 'save_mask']

_FORMATS = {".png", ".tif", ".tiff"}


@dataclass(frozen=True)
class SavedMask:
    """A mask read back from disk.

    Attributes
    ----------
    mask : (H, W) bool ndarray
    downsample : float
        Level-0 pixels per mask pixel.
    info : dict
        The whole sidecar (parameters, slide, kind, ...).
    """

    mask: np.ndarray
    downsample: float
    info: dict[str, Any] = field(default_factory=dict)


def _check_format(path: Path) -> None:
    if path.suffix.lower() not in _FORMATS:
        raise InputError(f"{path}: a mask must be .png, .tif or .tiff")


def save_mask(path: str | os.PathLike, mask: np.ndarray, *, downsample: float,
              **info: Any) -> Path:
    """Write ``mask`` as 0/255 and its sidecar ``<path>.json``, each atomically.

    Parameters
    ----------
    path : str or path-like
        ``.png``, ``.tif`` or ``.tiff``.
    mask : (H, W) bool ndarray
    downsample : float
        Level-0 pixels per mask pixel.
    **info
        Anything JSON-serialisable to keep beside it (parameters, slide path).

    Returns
    -------
    Path
        The sidecar's path.
    """
    import tifffile
    from skimage.io import imsave

    path = Path(path)
    _check_format(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    pixels = np.where(mask, 255, 0).astype(np.uint8)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".png":
            imsave(tmp, pixels, check_contrast=False)
        else:
            tifffile.imwrite(tmp, pixels, compression="zlib")
    sidecar = path.with_name(path.name + ".json")
    meta = {"downsample": float(downsample), "shape": list(mask.shape), **info}
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return sidecar


def _check_pixels(path: Path) -> None:
    """Refuse a mask image whose header claims more pixels than a fifth of free memory holds, before decoding."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                pixels = math.prod(shape)
        else:
            from PIL import Image

            with Image.open(path) as image:
                pixels = image.width * image.height * len(image.getbands())
    except Exception as exc:  # a header PIL or tifffile cannot parse: the decoder will say why
        log.debug("%s: header not read (%s)", path, exc)
        return
    if pixels * 5 > available_memory():
        raise InputError(f"{path}: the image claims {pixels} values, more than this machine's free memory "
                         "holds; not a tissue mask")


def load_mask(path: str | os.PathLike) -> SavedMask:
    """Read a mask written by :func:`save_mask` (any non-zero pixel is set).

    Raises
    ------
    InputError
        The file or its sidecar is missing or unreadable, or they disagree.
    """
    from skimage.io import imread

    path = Path(path)
    _check_format(path)
    sidecar = path.with_name(path.name + ".json")
    if not path.is_file():
        raise InputError(f"{path}: no such mask file")
    if not sidecar.exists():
        raise InputError(f"{path}: its sidecar {sidecar.name} is missing, so its downsample is unknown")
    try:
        meta = json.loads(read_limited(sidecar, 2**20, what="mask sidecar"))
        downsample = float(meta["downsample"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InputError(f"{sidecar}: not a mask sidecar ({exc})") from None
    if not math.isfinite(downsample) or downsample < 1:
        raise InputError(f"{sidecar}: downsample must be a finite number ≥ 1 (level-0 px per mask px), "
                         f"got {meta['downsample']!r}")
    _check_pixels(path)
    try:
        pixels = imread(path)
    except Exception as exc:  # imageio raises many types for a bad image
        raise InputError(f"{path}: cannot read the mask image ({exc})") from None
    if pixels.ndim == 3:
        pixels = pixels[..., 0]
    if list(pixels.shape) != list(meta.get("shape", pixels.shape)):
        raise InputError(f"{path}: image is {pixels.shape} but its sidecar says {meta['shape']}")
    return SavedMask(pixels > 0, downsample, meta)
