"""Tissue: detection on a low-resolution level, saved masks, and :func:`tissue_for` (a saved mask, else detected).
"""

from __future__ import annotations

from .detect import (
    TissueChannels,
    TissueParams,
    TissueResult,
    TissueWarning,
    detect_tissue,
    params_dict,
    tissue_channels,
    tissue_mask,
    working_image,
)
from .masks import SavedMask, load_mask, save_mask
from .source import MASK_SUFFIXES, Tissue, find_companion, tissue_for

__all__ = ["MASK_SUFFIXES", "SavedMask", "Tissue", "TissueChannels", "TissueParams", "TissueResult", "TissueWarning",
           "detect_tissue", "find_companion", "load_mask", "params_dict", "save_mask", "tissue_channels", "tissue_for",
           "tissue_mask", "working_image"]
