"""Binary morphology on 2-D masks, by shifted slices: fast enough for the tissue widget's live preview.

Pure array-in/array-out functions; ``scipy.ndimage`` only labels components.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["box_sum", "dilate", "erode", "fill_holes", "remove_small", "set_components"]


def box_sum(mask: np.ndarray, size: int) -> np.ndarray:
    """Count of set pixels in the ``size`` × ``size`` box around each pixel (edges repeated).

    Sums of shifted slices: on a few-megapixel mask this is several times
    faster than ``scipy.ndimage`` filters, which keeps the live preview live.
    """
    r = size // 2
    padded = np.pad(mask, r, mode="edge").view(np.uint8)
    dtype = np.uint8 if size * size < 256 else np.uint16
    h, w = mask.shape
    rows = np.zeros((h, w + 2 * r), dtype)
    for k in range(size):
        rows += padded[k:k + h]
    out = np.zeros((h, w), dtype)
    for k in range(size):
        out += rows[:, k:k + w]
    return out


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)-square, as ORs of shifted slices."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        for k in range(1, r + 1):
            if axis == 0:
                out[k:] |= src[:-k]
                out[:-k] |= src[k:]
            else:
                out[:, k:] |= src[:, :-k]
                out[:, :-k] |= src[:, k:]
    return out


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by a (2r+1)-square; pixels beyond the edge count as set."""
    return ~dilate(~mask, r)


def set_components(mask: np.ndarray, labels: np.ndarray, ids: np.ndarray, value: bool) -> np.ndarray:
    """Set the pixels of the labelled components ``ids`` to ``value``.

    Few components (the usual case) are cleared through their bounding
    boxes, which is much cheaper than indexing the whole label image.
    """
    if len(ids) == 0:
        return mask
    out = mask.copy()
    if len(ids) > 256:
        table = np.zeros(labels.max() + 1, bool)
        table[ids] = True
        out[table[labels]] = value
        return out
    boxes = ndimage.find_objects(labels, max_label=int(ids.max()))
    for i in ids:
        box = boxes[i - 1]
        out[box][labels[box] == i] = value
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Set every background pixel not connected (4-way) to the image border."""
    background, n = ndimage.label(~mask)
    if n == 0:
        return mask
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    holes = np.setdiff1d(np.arange(1, n + 1), border)
    return set_components(mask, background, holes, True)


def remove_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = np.nonzero(sizes[1:] < min_px)[0] + 1
    return set_components(mask, labels, small, False)
