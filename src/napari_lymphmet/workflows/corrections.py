"""A pathologist's corrections on a slide, and what they teach: patches and a detection threshold.

Corrections are polygons in level-0 px: ``tumor`` (missed tumor, or
lesions to keep) and ``exclusion`` ("not tumor": false positives). They
are read from ASAP XML (``_2`` groups) or GeoJSON (``Exclusion`` class).
:func:`correction_patches` plans their patches at a model's mpp and size;
:func:`region_peaks` (each outline's highest heatmap value) and
:func:`corrections_threshold` give the threshold that keeps every marked
lesion and drops as many marked false positives as it can.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..annotations import EXCLUSION, TUMOR, Annotation, read_annotations
from ..errors import InputError
from ..inference.detect import DETECTION_SMOOTHING

__all__ = ["Corrections", "CorrectionsThreshold", "correction_patches", "corrections_threshold", "region_peaks"]


@dataclass(frozen=True)
class Corrections:
    """One slide's corrections: ``annotations`` in level-0 px, read from ``source`` (a file) if given."""

    slide: str
    annotations: tuple[Annotation, ...]
    source: str = ""

    @classmethod
    def read(cls, slide: str | os.PathLike, path: str | os.PathLike) -> Corrections:
        """Corrections from an ASAP XML (``_2`` = not tumor) or GeoJSON (``Exclusion`` = not tumor) file."""
        if not Path(slide).is_file():
            raise InputError(f"{slide}: no such slide")
        if not Path(path).is_file():
            raise InputError(f"{path}: no such corrections file")
        return cls(str(slide), tuple(read_annotations(path)), str(path))

    def counts(self) -> dict[str, int]:
        return {"tumor": sum(a.label == TUMOR for a in self.annotations),
                "not_tumor": sum(a.label == EXCLUSION for a in self.annotations)}



def _centres_in(annotations: Sequence[Annotation], xs: np.ndarray, ys: np.ndarray, box: float,
                dimensions: tuple[int, int], *, dilate: float = 0.0) -> np.ndarray:
    """``(N,) bool``: the patches whose centre lies in the polygons (grown by ``dilate`` level-0 px)."""
    from scipy import ndimage

    from ..annotations import rasterize

    out = np.zeros(len(xs), bool)
    if not annotations or not len(xs):
        return out
    d = max(1.0, box / 8)
    shape = (math.ceil(dimensions[1] / d) + 1, math.ceil(dimensions[0] / d) + 1)
    # rasterize fills tumor and cuts exclusions out, so every polygon is drawn as tumor here
    mask = rasterize([Annotation(a.exterior, TUMOR) for a in annotations], shape, downsample=d)
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=max(1, int(round(dilate / d))))
    r = np.clip(((ys + box / 2) / d).astype(int), 0, shape[0] - 1)
    c = np.clip(((xs + box / 2) / d).astype(int), 0, shape[1] - 1)
    return mask[r, c]


def correction_patches(slide, corrections: Corrections, card, *, per_class: int = 400, elsewhere: int = 400,
                       seed: int = 0):
    """Plan a slide's patches at the model's mpp and size: ``(tumor, not_tumor, elsewhere)`` plans.

    Tumor patches have their centre in a tumor polygon (less exclusions);
    not-tumor patches in an exclusion polygon; up to ``per_class`` of each,
    drawn at random. ``elsewhere`` are (up to ``elsewhere``) tissue patches
    at least a patch away from every correction: candidates for the replay
    sample.

    Raises
    ------
    InputError
        No tumor and no exclusion polygons, or none of them on the slide.
    """
    from ..annotations import NORMAL
    from ..patches import PatchSpec, plan_patches
    from ..tissue import tissue_for

    anns = [a for a in corrections.annotations if a.label in (TUMOR, EXCLUSION)]
    name = corrections.source or "corrections"
    if not anns:
        raise InputError(f"{name}: no tumor and no not-tumor (exclusion) polygons to learn from")
    w, h = slide.dimensions
    on_slide = [a for a in anns if a.exterior[:, 0].max() > 0 and a.exterior[:, 1].max() > 0
                and a.exterior[:, 0].min() < w and a.exterior[:, 1].min() < h]
    if not on_slide:
        raise InputError(f"{name}: none of its {len(anns)} polygons lies on {Path(slide.path).name} ({w} × {h} px); "
                         f"is it the right slide?")
    size = card.read_size
    spec = PatchSpec(size=size, stride=max(1, size // 2), mpp=card.patch_mpp if slide.mpp else None,
                     level=None if slide.mpp else 0, min_tissue=0.25, seed=seed)
    tissue = tissue_for(slide, None)
    plan = plan_patches(slide, spec, tissue_mask=tissue.mask, tissue_downsample=tissue.downsample,
                        annotations=on_slide)
    exclusions = [a for a in on_slide if a.label == EXCLUSION]
    hard = (plan.labels == NORMAL) & _centres_in(exclusions, plan.x, plan.y, plan.box, slide.dimensions)
    tumor = plan.labels == TUMOR
    away = ~_centres_in(on_slide, plan.x, plan.y, plan.box, slide.dimensions, dilate=plan.box) & ~tumor & ~hard
    rng = np.random.default_rng([seed, *Path(slide.path).name.encode()])

    def sample(keep: np.ndarray, n: int):
        idx = np.nonzero(keep)[0]
        if len(idx) > n:
            idx = np.sort(rng.choice(idx, n, replace=False))
        chosen = np.zeros(len(plan), bool)
        chosen[idx] = True
        return plan.take(chosen)

    return sample(tumor, per_class), sample(hard, per_class), sample(away, elsewhere)


def region_peaks(slide, model, card, annotations: Sequence[Annotation], *,
                 smooth: float = DETECTION_SMOOTHING) -> np.ndarray:
    """``(len(annotations),)``: each polygon's highest value, under ``model``, of the map detection thresholds.

    The cells scored are those a whole-slide run scores there (the heatmap
    grid at the model's mpp and patch size, read the same way), so a peak
    says whether :func:`~napari_lymphmet.inference.detect` finds the region
    at a threshold. With ``smooth`` (patch widths, as ``predict`` detects),
    the cells around each polygon are scored too and the map smoothed as a
    whole-slide run's is; those outside the tissue count as scored here,
    where a run would leave them 0. ``nan`` for a polygon off the slide.
    """
    from ..inference import detection_sigma, grid_for, polygon_cells, score_cells, smooth_heatmap

    grid = grid_for(slide, card)
    sigma = detection_sigma(grid, smooth)
    pad = int(np.ceil(3 * sigma))
    inside = [polygon_cells(grid, a.exterior) for a in annotations]
    boxes = [_cell_box(c, pad, grid.rows, grid.cols) for c in inside]
    cells = [np.argwhere(np.ones((r1 - r0, c1 - c0), bool)) + (r0, c0) for r0, r1, c0, c1 in boxes]
    scores = score_cells(slide, model, card, grid, np.concatenate(cells)) if cells else np.zeros(0)
    ends = np.cumsum([len(c) for c in cells])
    peaks = []
    for own, (r0, r1, c0, c1), end, around in zip(inside, boxes, ends, cells):
        if not len(own):
            peaks.append(np.nan)
            continue
        local = smooth_heatmap(scores[end - len(around):end].reshape(r1 - r0, c1 - c0), sigma)
        peaks.append(float(local[own[:, 0] - r0, own[:, 1] - c0].max()))
    return np.array(peaks, np.float64)


def _cell_box(cells: np.ndarray, pad: int, rows: int, cols: int) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: the cells' bounding box grown by ``pad``, on the grid; empty for no cells."""
    if not len(cells):
        return 0, 0, 0, 0
    (r0, c0), (r1, c1) = cells.min(axis=0), cells.max(axis=0) + 1
    return max(0, r0 - pad), min(rows, r1 + pad), max(0, c0 - pad), min(cols, c1 + pad)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


@dataclass(frozen=True)
class CorrectionsThreshold:
    """A detection threshold read off the corrections, and how it was chosen.

    ``lesions``/``false_positives``: the marked regions' peak scores;
    ``kept``: marked false positives still at or above ``threshold`` (those
    that outscore a marked lesion: no threshold drops them and keeps it).
    """

    threshold: float
    source: str  # "corrections", or "validation" when no lesion is marked: nothing to anchor a threshold on
    lesions: tuple[float, ...]
    false_positives: tuple[float, ...]
    kept: int

    def as_dict(self) -> dict:
        return {"threshold": round(self.threshold, 6), "source": self.source, "kept_false_positives": self.kept,
                "lesion_peaks": [round(p, 4) for p in self.lesions],
                "false_positive_peaks": [round(p, 4) for p in self.false_positives]}


def corrections_threshold(lesion_peaks: Sequence[float], false_positive_peaks: Sequence[float],
                          fallback: float, *, lesion_margin: float = 0.5) -> CorrectionsThreshold:
    """The threshold that keeps every marked lesion and drops the most marked false positives.

    A slide from another lab shifts every score: the model may still rank
    its lesions above its false positives while the threshold chosen on its
    training stain lets dozens of them through. The marked regions show
    where the gap now lies. The threshold sits midway (in logits) between
    the faintest lesion's peak and the highest false-positive peak below
    it, but at least ``lesion_margin`` logits under the faintest lesion: the
    next slide's lesions are not the marked ones, and losing one costs more
    than keeping a false positive. With no false positive below the faintest
    lesion, ``fallback`` unless that is too high for the lesions. False
    positives that outscore a lesion stay. Without a marked lesion nothing
    says how high is safe: ``fallback``. ``nan`` peaks (outlines off the
    slide) are ignored.
    """
    lesions = tuple(float(p) for p in lesion_peaks if np.isfinite(p))
    fps = tuple(float(p) for p in false_positive_peaks if np.isfinite(p))
    if not lesions:
        return CorrectionsThreshold(float(fallback), "validation", lesions, fps, sum(p >= fallback for p in fps))
    faintest = _logit(min(lesions))
    below = [_logit(p) for p in fps if p < min(lesions)]
    highest = (faintest + max(below)) / 2 if below else _logit(fallback)
    threshold = _sigmoid(min(highest, faintest - lesion_margin))
    return CorrectionsThreshold(threshold, "corrections", lesions, fps, sum(p >= threshold for p in fps))
