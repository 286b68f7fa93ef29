"""Detect: split from inference.py."""


from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ['detect', 'slide_score']


# -- detections and scores --------------------------------------------------------
def detect(heatmap: np.ndarray, downsample: float, *, threshold: float = 0.5, method: str = "components",
           min_distance: int = 2) -> np.ndarray:
    """Lesion candidates, ``(N, 3)`` rows ``(confidence, x, y)`` in level-0 px, best first.

    ``components``: one detection per connected region above ``threshold``,
    at its most probable cell. ``peaks``: local maxima above ``threshold`` at
    least ``min_distance`` cells apart.
    """
    from scipy import ndimage

    if method == "components":
        labels, n = ndimage.label(heatmap >= threshold, structure=np.ones((3, 3)))
        if n == 0:
            return np.zeros((0, 3))
        peaks = ndimage.maximum_position(heatmap, labels, range(1, n + 1))
        points = np.array(peaks, float).reshape(-1, 2)
    elif method == "peaks":
        from skimage.feature import peak_local_max

        points = peak_local_max(heatmap, min_distance=min_distance, threshold_abs=threshold,
                                exclude_border=False).astype(float)
    else:
        raise InputError(f"unknown detection method {method!r}; use components or peaks")
    if not len(points):
        return np.zeros((0, 3))
    rows, cols = points[:, 0].astype(int), points[:, 1].astype(int)
    conf = heatmap[rows, cols].astype(float)
    out = np.column_stack([conf, (cols + 0.5) * downsample, (rows + 0.5) * downsample])
    return out[np.argsort(-conf, kind="stable")]


def slide_score(heatmap: np.ndarray, *, window: int = 3) -> float:
    """The highest mean probability over ``window`` × ``window`` cells.

    A lesion has to cover more than a speck of one or two cells to make the
    slide positive: a thin fold or a lone bright cell, the usual false
    alarms, is averaged down, while a metastasis of a few cells across keeps
    its probability. ``window=1`` gives the plain maximum.
    """
    from scipy import ndimage

    if heatmap.size == 0:
        return 0.0
    if window <= 1:
        return float(heatmap.max())
    return float(ndimage.uniform_filter(heatmap.astype(np.float64), window, mode="constant").max())
