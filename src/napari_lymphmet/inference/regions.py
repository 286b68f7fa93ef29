"""Tumor regions: the connected cells above the threshold, as polygons in level-0 px.

The polygons follow cell edges exactly (a staircase, not marching squares'
cut corners), so rasterizing them at the heatmap's resolution gives back the
thresholded heatmap, and their areas are the cells' areas. Cells that touch
only at a corner belong to one region, as in :func:`detect`'s components.
"""


from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..annotations import TUMOR, Annotation, polygon_area

__all__ = ["TumorRegion", "region_annotations", "region_around", "tumor_regions"]


@dataclass(frozen=True)
class TumorRegion:
    """One connected region above the threshold.

    Attributes
    ----------
    exterior : (N, 2) float
        Outer ring, ``(x, y)`` level-0 px, counter-clockwise in image axes, not closed.
    holes : tuple of (M, 2) float
        Rings of cells below the threshold inside the region.
    probability_max, probability_mean : float
        Over the region's cells.
    area_um2 : float
        The cells' area, in µm² (level-0 px² when the slide has no mpp).
    cells : int
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...]
    probability_max: float
    probability_mean: float
    area_um2: float
    cells: int


def tumor_regions(heatmap: np.ndarray, downsample: float, *, threshold: float,
                  mpp: tuple[float, float] | None = None, smooth: float = 0.0) -> list[TumorRegion]:
    """Regions of ``heatmap ≥ threshold``, most probable first.

    Parameters
    ----------
    heatmap : (rows, cols) float
        Cell ``(r, c)`` covers level-0 ``[c·D, (c+1)·D) × [r·D, (r+1)·D)``.
    downsample : float
        ``D``, level-0 px per cell.
    threshold : float
    mpp : (x, y) µm per px, optional
        For ``area_um2``.
    smooth : float
        Gaussian sigma in cells, as :func:`detect` is given it: only regions
        that reach ``threshold`` on the smoothed map are kept (where a
        detection is), each with its full extent and values on the heatmap
        itself, so a lesion's outline and area are not shrunk by smoothing.
    """
    from scipy import ndimage

    from .detect import smooth_heatmap

    labels, n = ndimage.label(heatmap >= threshold, structure=np.ones((3, 3)))
    if smooth > 0 and n:
        kept = np.unique(labels[(smooth_heatmap(heatmap, smooth) >= threshold) & (labels > 0)])
        labels[~np.isin(labels, kept)] = 0
    px_area = (mpp[0] * mpp[1]) if mpp else 1.0
    regions = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == index
        rings = _rings(mask)
        offset = np.array([box[1].start, box[0].start], np.float64)
        rings = [(ring + offset) * downsample for ring in rings]
        outer = max(rings, key=lambda r: abs(polygon_area(r)))
        holes = tuple(r for r in rings if r is not outer)
        values = heatmap[box][mask]
        regions.append(TumorRegion(outer, holes, float(values.max()), float(values.mean()),
                                   float(mask.sum() * downsample * downsample * px_area), int(mask.sum())))
    return sorted(regions, key=lambda r: -r.probability_max)


def region_annotations(regions: list[TumorRegion]) -> list[Annotation]:
    """The regions as tumor :class:`Annotation` objects, for the ASAP and GeoJSON writers."""
    return [Annotation(r.exterior, TUMOR, r.holes, name=f"Tumor region {i + 1}") for i, r in enumerate(regions)]


def region_around(heatmap: np.ndarray, downsample: float, x: float, y: float, *, threshold: float,
                  pad: int = 1) -> np.ndarray:
    """The outline, ``(N, 2)`` level-0 ``(x, y)``, of the region above ``threshold`` at point ``(x, y)``.

    It is the connected cells ``>= threshold`` holding the point's cell,
    grown by ``pad`` cells so the outline takes in the region's fringe (a
    false positive's edge cells sit just under the threshold). A point on a
    cell below the threshold gets the ``(2·pad + 1)``-cell square around it.
    Holes are filled: marking a region *not tumor* means all of it.
    """
    from scipy import ndimage

    rows, cols = heatmap.shape
    r = int(np.clip(y // downsample, 0, rows - 1))
    c = int(np.clip(x // downsample, 0, cols - 1))
    labels, _ = ndimage.label(heatmap >= threshold, structure=np.ones((3, 3)))
    mask = np.zeros((rows, cols), bool)
    if labels[r, c]:
        mask = labels == labels[r, c]
    mask[r, c] = True
    if pad:
        mask = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=pad)
    mask = ndimage.binary_fill_holes(mask)
    rings = _rings(mask)
    return max(rings, key=lambda ring: abs(polygon_area(ring))).astype(np.float64) * downsample


def _rings(mask: np.ndarray) -> list[np.ndarray]:
    """Closed rings along the pixel edges of a (one-component) mask: ``(x, y)`` corners, not repeated.

    Each boundary edge is directed with the inside on its left; edges are
    chained corner to corner. Where two rings touch at a corner (diagonal
    neighbours), the walk turns right first, which keeps them apart.
    """
    padded = np.pad(mask, 1)
    out_edges: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def add(a: tuple[int, int], b: tuple[int, int]) -> None:
        out_edges.setdefault(a, []).append(b)

    # Pixel (r, c) of ``mask`` has corners (x, y) = (c, r) … (c+1, r+1).
    # Directed so the inside lies on the left when y points down (counter-clockwise on screen).
    rows, cols = np.nonzero(padded[1:-1, 1:-1])
    for r, c in zip(rows.tolist(), cols.tolist()):
        pr, pc = r + 1, c + 1
        if not padded[pr - 1, pc]:  # top edge: walk right-to-left
            add((c + 1, r), (c, r))
        if not padded[pr + 1, pc]:  # bottom edge: left-to-right
            add((c, r + 1), (c + 1, r + 1))
        if not padded[pr, pc - 1]:  # left edge: top-to-bottom
            add((c, r), (c, r + 1))
        if not padded[pr, pc + 1]:  # right edge: bottom-to-top
            add((c + 1, r + 1), (c + 1, r))
    rings = []
    while out_edges:
        start = next(iter(out_edges))
        ring, prev, here = [start], None, start
        while True:
            choices = out_edges[here]
            nxt = choices.pop(_turn(prev, here, choices) if len(choices) > 1 else 0)
            if not choices:
                del out_edges[here]
            prev, here = here, nxt
            if here == start:
                break
            ring.append(here)
        rings.append(_drop_collinear(np.asarray(ring, np.float64)))
    return rings


def _turn(prev: tuple[int, int] | None, here: tuple[int, int], choices: list[tuple[int, int]]) -> int:
    """At a corner shared by two rings, the index of the rightmost turn."""
    if prev is None:
        return 0
    dx, dy = here[0] - prev[0], here[1] - prev[1]
    # With y down, "right" of direction (dx, dy) is (-dy, dx).
    right = (-dy, dx)
    for i, (x, y) in enumerate(choices):
        if (x - here[0], y - here[1]) == right:
            return i
    return 0


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    before, after = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - before[:, 0]) * (after[:, 1] - ring[:, 1]) - (ring[:, 1] - before[:, 1]) * \
        (after[:, 0] - ring[:, 0])
    return ring[cross != 0]
