"""CAMELYON16 evaluation: lesion-level FROC and slide-level ROC AUC.

This follows the official ``Evaluation_FROC.py`` rule for rule, so scores
compare with published ones, but starts from ASAP XML instead of mask TIFFs:

- evaluation mask at level 5 (downsample 32): tumor minus exclusions,
  dilated by 75 µm (``distance_transform_edt(~mask) < 75 / (mpp·32·2)``),
  holes filled, labelled with 8-connectivity;
- isolated tumor cells (ITC): labelled regions whose ``axis_major_length``
  is below ``275 / (mpp·32)`` mask px;
- a detection is looked up at ``mask[int(y / 32), int(x / 32)]``: in a
  non-ITC lesion it is a TP (the lesion keeps its best confidence), in an
  ITC it is ignored, elsewhere (and on every normal slide) it is an FP;
- thresholds are the sorted unique pooled FP and per-lesion best-hit
  confidences, skipping the smallest, plus a final (0 FP, 0 sensitivity)."""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..annotations import Annotation, rasterize
from ..model.metrics import roc_auc

__all__ = ['DEFAULT_MPP', 'EVAL_DOWNSAMPLE', 'EvaluationWarning', 'FP_RATES', 'FrocCurve', 'SlideEvaluation',
           'evaluation_mask', 'froc', 'froc_score', 'itc_labels', 'score_slide', 'slide_auc']

FP_RATES = (0.25, 0.5, 1, 2, 4, 8)
EVAL_DOWNSAMPLE = 32  # CAMELYON16 level 5
DEFAULT_MPP = 0.243


class EvaluationWarning(UserWarning):
    """A detection file row was skipped or adjusted."""


def evaluation_mask(annotations: Sequence[Annotation], shape: tuple[int, int], mpp: float) -> np.ndarray:
    """``(H, W) int`` labelled lesions at downsample 32, as the official script builds them."""
    from scipy import ndimage
    from skimage import measure

    tumor = rasterize(annotations, shape, downsample=EVAL_DOWNSAMPLE)
    if not tumor.any():
        return np.zeros(shape, np.int32)
    distance = ndimage.distance_transform_edt(~tumor)
    dilated = distance < 75 / (mpp * EVAL_DOWNSAMPLE * 2)
    filled = ndimage.binary_fill_holes(dilated)
    return measure.label(filled, connectivity=2).astype(np.int32)


def itc_labels(mask: np.ndarray, mpp: float) -> set[int]:
    """Labels of isolated tumor cells: major axis under 275 µm."""
    from skimage import measure

    threshold = 275 / (mpp * EVAL_DOWNSAMPLE)
    return {p.label for p in measure.regionprops(mask) if p.axis_major_length < threshold}


@dataclass
class SlideEvaluation:
    """One slide's FP confidences and per-lesion best hits."""

    name: str
    fp_probs: list[float] = field(default_factory=list)
    tp_probs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # one per label, ITC = 0
    lesions: int = 0  # non-ITC
    itc: int = 0
    tp: int = 0


def score_slide(name: str, detections: np.ndarray, mask: np.ndarray | None, itc: set[int]) -> SlideEvaluation:
    """Split a slide's detections ``(N, 3)`` of ``(confidence, x, y)`` into FPs and lesion hits."""
    if mask is None or mask.max() == 0:
        return SlideEvaluation(name, [float(c) for c in detections[:, 0]])
    n = int(mask.max())
    tp_probs = np.zeros(n, np.float64)  # the official script uses float32, which splits ties with FPs
    fps: list[float] = []
    for conf, x, y in detections:
        hit = int(mask[int(y / EVAL_DOWNSAMPLE), int(x / EVAL_DOWNSAMPLE)])
        if hit == 0:
            fps.append(float(conf))
        elif hit not in itc and conf > tp_probs[hit - 1]:
            tp_probs[hit - 1] = conf
    non_itc = [i for i in range(1, n + 1) if i not in itc]
    return SlideEvaluation(name, fps, tp_probs, len(non_itc), len(itc),
                           int(sum(tp_probs[i - 1] > 0 for i in non_itc)))


def froc(slides: Sequence[SlideEvaluation], *, skip_lowest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(fps_per_slide, sensitivity)`` arrays.

    ``skip_lowest=True`` sets the thresholds as the official script does: it
    drops the smallest confidence, so whatever is found only at that
    threshold (hits and false positives alike) never counts. With
    ``skip_lowest=False`` every confidence is a threshold.
    """
    fp = np.array([p for s in slides for p in s.fp_probs], np.float64)
    tp = np.array([p for s in slides for p in s.tp_probs], np.float64)
    lesions = sum(s.lesions for s in slides)
    thresholds = np.unique(np.concatenate([fp, tp]))
    # A 0 marks a missed lesion: the official skip usually drops just that.
    thresholds = thresholds[1:] if skip_lowest else thresholds[thresholds > 0]
    total_fp = [(fp >= t).sum() for t in thresholds] + [0]
    total_tp = [(tp >= t).sum() for t in thresholds] + [0]
    fps = np.asarray(total_fp, np.float64) / len(slides)
    sens = np.asarray(total_tp, np.float64) / lesions if lesions else np.zeros(len(total_tp))
    return fps, sens


@dataclass(frozen=True)
class FrocCurve:
    """The FROC curve by the official rule, the same without skipping the lowest threshold, and their scores."""

    fps: np.ndarray
    sensitivity: np.ndarray
    fps_all: np.ndarray
    sensitivity_all: np.ndarray
    score: float
    score_all: float
    sensitivity_at: dict[str, float]

    @classmethod
    def of(cls, slides: Sequence[SlideEvaluation]) -> FrocCurve:
        fps, sens = froc(slides)
        fps_all, sens_all = froc(slides, skip_lowest=False)
        score, at = froc_score(fps, sens)
        return cls(fps, sens, fps_all, sens_all, score, froc_score(fps_all, sens_all)[0], at)

    @property
    def note(self) -> str | None:
        """One sentence when the official lowest-threshold rule lowered the score, else None."""
        if self.score_all - self.score < 1e-9:
            return None
        return (f"FROC {self.score:.3f} follows the official CAMELYON16 script, which drops the lowest detection "
                f"confidence as a threshold, so lesions found only at that confidence count as missed; "
                f"over all thresholds it is {self.score_all:.3f}.")

    def figure(self):
        """The curve as a matplotlib figure (:func:`napari_lymphmet.figures.froc_figure`)."""
        from ..figures import froc_figure

        return froc_figure(self.fps, self.sensitivity, score=self.score,
                           operating_points={float(k): v for k, v in self.sensitivity_at.items()},
                           all_thresholds=(self.fps_all, self.sensitivity_all))


def froc_score(fps: np.ndarray, sens: np.ndarray) -> tuple[float, dict[str, float]]:
    """Mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 FP per slide, and each of them."""
    at = np.interp(FP_RATES, fps[::-1], sens[::-1])
    return float(np.mean(at)), {f"{r:g}": float(v) for r, v in zip(FP_RATES, at)}


def slide_auc(scores: dict[str, float], tumor: dict[str, bool]) -> float | None:
    """Slide-level ROC AUC over the slides with both a score and a truth; None without both classes."""
    names = [n for n in scores if n in tumor]
    labels = np.array([tumor[n] for n in names])
    if len(set(labels.tolist())) < 2:
        return None
    return roc_auc(labels, np.array([scores[n] for n in names]))
