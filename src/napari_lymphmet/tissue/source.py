"""Where a step's tissue comes from: a saved (or painted) mask that fits the slide, else detection."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..wsi import Slide
from .detect import tissue_mask
from .masks import load_mask

__all__ = ["MASK_SUFFIXES", "Tissue", "find_companion", "tissue_for"]

# What a slide's saved mask may be called beside it or in a masks folder.
MASK_SUFFIXES = (".png", ".tif", ".tiff", "_mask.png", "_tissue.png")


@dataclass(frozen=True)
class Tissue:
    """A tissue mask over a slide.

    Attributes
    ----------
    mask : (h, w) bool ndarray
        Pixel ``(r, c)`` covers level-0 ``[c·d, (c+1)·d) × [r·d, (r+1)·d)``.
    downsample : float
        ``d``: level-0 px per mask px.
    source : str
        The mask file, ``"detected"``, or where else it came from (a napari layer).
    """

    mask: np.ndarray
    downsample: float
    source: str = "detected"


def find_companion(slide_path: str | os.PathLike, given: str | os.PathLike | None,
                   suffixes: tuple[str, ...]) -> Path | None:
    """A slide's own file among ``given``: the file itself, or ``<stem><suffix>`` in a folder."""
    if given is None:
        return None
    given = Path(given)
    if not given.is_dir():
        return given
    stem = Path(slide_path).stem
    for suffix in suffixes:
        if (given / f"{stem}{suffix}").exists():
            return given / f"{stem}{suffix}"
    return None


def _check_fits(slide: Slide, tissue: Tissue) -> Tissue:
    w, h = slide.dimensions
    expected = (math.ceil(h / tissue.downsample), math.ceil(w / tissue.downsample))
    if any(abs(a - b) > 1 for a, b in zip(tissue.mask.shape, expected)):
        raise InputError(f"{tissue.source}: a {tissue.mask.shape} mask at downsample {tissue.downsample:g} "
                         f"does not fit {slide.path} ({w} × {h})")
    return tissue


def tissue_for(slide: Slide, mask: str | os.PathLike | Tissue | None = None) -> Tissue:
    """The tissue to work on: ``mask`` (a saved file, or a :class:`Tissue` from a layer) checked against
    the slide, else detected with the default parameters.

    Raises
    ------
    InputError
        The mask cannot be read or does not fit the slide.
    """
    if mask is None:
        found = tissue_mask(slide)
        return Tissue(found.mask, found.downsample, "detected")
    if not isinstance(mask, Tissue):
        saved = load_mask(mask)
        mask = Tissue(saved.mask, saved.downsample, str(mask))
    return _check_fits(slide, mask)
