"""Each detection's lesion measured: its region on the (smoothed) heatmap, area and longest diameter in µm.

A detection is the most probable cell of one connected region of the map
that detection thresholds (:func:`~napari_lymphmet.inference.detect` with
``smooth``); that region is the lesion. Its size is measured at the
heatmap's own resolution, one cell being ``downsample`` level-0 px, so a
lesion is never smaller than one cell (about a patch).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..io import write_csv
from .detect import smooth_heatmap
from .staging import lesion_category

__all__ = ["LESION_COLUMNS", "Lesion", "measure_lesions", "write_lesions_csv"]

LESION_COLUMNS = ("rank", "confidence", "x", "y", "area_mm2", "major_axis_mm", "category")


@dataclass(frozen=True)
class Lesion:
    """One detection and its region. ``x``, ``y``: level-0 px; sizes ``None`` when the slide has no mpp."""

    rank: int
    confidence: float
    x: float
    y: float
    cells: int
    area_mm2: float | None
    major_axis_mm: float | None

    def row(self) -> dict:
        """The ``lesions.csv`` row (sizes rounded to µm precision)."""
        out = {k: v for k, v in asdict(self).items() if k in LESION_COLUMNS}
        out["confidence"] = round(self.confidence, 4)
        out["x"], out["y"] = round(self.x, 1), round(self.y, 1)
        for key, digits in (("area_mm2", 6), ("major_axis_mm", 3)):
            out[key] = "" if out[key] is None else round(out[key], digits)
        out["category"] = self.category
        return out

    @property
    def category(self) -> str:
        """``itc``, ``micro`` or ``macro`` by its longest diameter (CAMELYON17); ``unknown`` without an mpp."""
        return lesion_category(self.major_axis_mm)


def measure_lesions(heatmap: np.ndarray, downsample: float, detections: np.ndarray, *, threshold: float,
                    smooth: float = 0.0, mpp: float | None = None) -> list[Lesion]:
    """The lesion of each detection, in the detections' order.

    Parameters
    ----------
    heatmap : (rows, cols) float array
        Probabilities, one cell per ``downsample`` level-0 px.
    detections : (N, 3) array
        ``(confidence, x, y)`` rows as :func:`detect` returns them (same
        ``threshold`` and ``smooth``).
    mpp : float, optional
        µm per level-0 px; without it sizes are ``None``.

    Returns
    -------
    list of Lesion
        ``major_axis_mm`` is the major axis of the region's ellipse of
        inertia (CAMELYON's convention), at least one cell wide.

    Notes
    -----
    A lesion is measured where the smoothed heatmap stands at least halfway
    from the tissue's background (its median) up to the lesion's own peak,
    and never below ``threshold``: the full width at half maximum of a
    blurred blob. Smoothing spreads a lesion's edge, so the extent at the
    detection threshold grows with the lesion's height and swallows
    neighbouring false alarms; at half height the edge sits where the
    lesion's border was. On slides tiled from real tissue (10 lesions of 2 to
    5 patches) this put 8 lesions within 25 % (or one patch) of the truth
    outline's major axis, against 4 at the detection threshold
    (docs/performance.md).
    """
    from scipy import ndimage

    if not len(detections):
        return []
    smoothed = smooth_heatmap(heatmap, smooth)
    labels, _ = ndimage.label(smoothed >= threshold, structure=np.ones((3, 3)))
    boxes = ndimage.find_objects(labels)
    tissue = np.asarray(heatmap) > 0
    background = float(np.median(smoothed[tissue])) if tissue.any() else 0.0
    cell_um = downsample * mpp if mpp else None
    out = []
    for rank, (conf, x, y) in enumerate(np.asarray(detections, float), 1):
        row = min(int(y / downsample), labels.shape[0] - 1)
        col = min(int(x / downsample), labels.shape[1] - 1)
        label = int(labels[row, col])
        region = _half_height_region(smoothed, labels, label, boxes[label - 1], threshold, background) \
            if label else None
        cells = int(region.area) if region is not None else 1
        axis_cells = max(float(region.axis_major_length) if region is not None else 0.0, 1.0)
        area = cells * cell_um**2 / 1e6 if cell_um else None
        major = axis_cells * cell_um / 1e3 if cell_um else None
        out.append(Lesion(rank, float(conf), float(x), float(y), cells, area, major))
    return out


def _half_height_region(smoothed: np.ndarray, labels: np.ndarray, label: int, box: tuple, threshold: float,
                        background: float):
    """The region props of region ``label`` (within ``box``), cut at half its height over the background."""
    from scipy import ndimage
    from skimage.measure import regionprops

    inside = labels[box] == label
    peak = float(smoothed[box][inside].max())
    level = max(threshold, (peak + background) / 2)
    core, _ = ndimage.label(inside & (smoothed[box] >= level), structure=np.ones((3, 3)))
    values = np.where(core > 0, smoothed[box], -np.inf)
    top = core[np.unravel_index(np.argmax(values), values.shape)]  # the part holding the peak
    return regionprops((core == top).astype(np.uint8))[0]


def write_lesions_csv(path: str | os.PathLike, lesions: list[Lesion]) -> Path:
    """``lesions.csv``: one row per lesion, largest-confidence first (header always written)."""
    return write_csv(path, LESION_COLUMNS, (lesion.row() for lesion in lesions))
