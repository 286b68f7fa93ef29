"""Lesion detections and the slide score from a heatmap."""


from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ['DETECTION_SMOOTHING', 'detect', 'detection_sigma', 'slide_score', 'smooth_heatmap']

# Gaussian sigma, in the model's patch widths, of the map that detection thresholds. Patches are
# judged one by one, so a lone false alarm is one cell while a lesion that CAMELYON16 scores
# (≥ 200 µm, two 93 µm patches at 10×) spans several: on slides tiled from real PCam tissue this cut
# false positives from 16.5 to 0.8 a slide with every lesion still found (docs/performance.md).
DETECTION_SMOOTHING = 1.0


# -- detections and scores --------------------------------------------------------
def detection_sigma(grid, patches: float = DETECTION_SMOOTHING) -> float:
    """Smoothing of ``patches`` patch widths in cells of ``grid`` (a :class:`HeatmapGrid`); 1 at the default stride."""
    return float(patches) * grid.box / grid.downsample


def smooth_heatmap(heatmap: np.ndarray, sigma: float) -> np.ndarray:
    """``heatmap`` under a Gaussian of ``sigma`` cells (cells outside the tissue count as 0); as is for 0."""
    from scipy import ndimage

    if sigma <= 0:
        return heatmap
    values = np.nan_to_num(np.asarray(heatmap, np.float64))
    return ndimage.gaussian_filter(values, sigma, mode="constant", truncate=3.0).astype(np.float32)


def detect(heatmap: np.ndarray, downsample: float, *, threshold: float = 0.5, method: str = "components",
           min_distance: int = 2, smooth: float = 0.0) -> np.ndarray:
    """Lesion candidates, ``(N, 3)`` rows ``(confidence, x, y)`` in level-0 px, best first.

    ``components``: one detection per connected region above ``threshold``,
    at its most probable cell. ``peaks``: local maxima above ``threshold`` at
    least ``min_distance`` cells apart. With ``smooth`` (a Gaussian sigma in
    cells, see :func:`detection_sigma`) both are found on, and the
    confidences read from, the smoothed map.
    """
    from scipy import ndimage

    heatmap = smooth_heatmap(heatmap, smooth)
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
