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

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..annotations import Annotation, rasterize
from ..errors import InputError
from ..model.metrics import roc_auc

__all__ = ['DEFAULT_MPP', 'EVAL_DOWNSAMPLE', 'EvaluationWarning', 'FP_RATES', 'FrocCurve', 'SlideEvaluation',
           'evaluate', 'evaluation_mask', 'froc', 'froc_score', 'itc_labels', 'read_detections', 'score_slide',
           'slide_auc']

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


def read_detections(path: str | os.PathLike, *, dimensions: tuple[int, int] | None = None) -> np.ndarray:
    """Read a CAMELYON16 ``confidence,X,Y`` file as ``(N, 3)`` float.

    An empty file means no detections. A header row is skipped with a
    warning, as are rows with coordinates outside the slide (or negative).
    A row that is not three finite numbers is an error naming the line.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such detections file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            if number == 1 and not any(p.replace(".", "").isdigit() for p in parts):
                warnings.warn(EvaluationWarning(f"{path}:1: a header row ({line.strip()!r}); skipped"), stacklevel=2)
                continue
            raise InputError(f"{path}:{number}: expected confidence,X,Y numbers, got {line.strip()!r}") from None
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise InputError(f"{path}:{number}: expected three finite numbers confidence,X,Y, got {line.strip()!r}")
        conf, x, y = values
        outside = x < 0 or y < 0 or (dimensions is not None and (x >= dimensions[0] or y >= dimensions[1]))
        if outside:
            where = f" {dimensions[0]} × {dimensions[1]}" if dimensions else ""
            warnings.warn(EvaluationWarning(f"{path}:{number}: ({x:g}, {y:g}) lies outside the{where} slide; "
                                            f"skipped"), stacklevel=2)
            continue
        rows.append(values)
    return np.asarray(rows, np.float64).reshape(-1, 3)


def slide_auc(scores: dict[str, float], tumor: dict[str, bool]) -> float | None:
    """Slide-level ROC AUC over the slides with both a score and a truth; None without both classes."""
    names = [n for n in scores if n in tumor]
    labels = np.array([tumor[n] for n in names])
    if len(set(labels.tolist())) < 2:
        return None
    return roc_auc(labels, np.array([scores[n] for n in names]))


def _find_detections(root: Path) -> dict[str, Path]:
    found = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / "detections.csv").exists():
            found[sub.name] = sub / "detections.csv"
    if not found:  # else the top-level CSVs are predict's cohort table (slides.csv), not detections
        for csv_file in sorted(root.glob("*.csv")):
            found[csv_file.stem] = csv_file
    if (root / "detections.csv").exists() and not found:
        found[root.name] = root / "detections.csv"
    return found


def _slide_facts(name: str, detections_file: Path, slides_dir: Path | None) -> tuple[tuple[int, int] | None,
                                                                                       float | None, str | None]:
    """Dimensions, mpp and path of a slide: from ``--slides``, else from the predict output."""
    import json

    from ..wsi import open_slide

    candidates = []
    if slides_dir is not None:
        candidates = [p for p in sorted(slides_dir.glob(f"{name}.*")) if p.suffix.lower() not in (".xml", ".json")]
    info = detections_file.parent / "heatmap.json"
    if not candidates and info.exists():
        path = json.loads(info.read_text()).get("slide")
        if path and Path(path).exists():
            candidates = [Path(path)]
    for path in candidates:
        try:
            with open_slide(path) as slide:
                return slide.dimensions, (slide.mean_mpp if slide.mpp else None), str(path)
        except InputError:
            continue
    return None, None, None


def _slide_scores(scores_file: Path | None, names: Sequence[str], detections: dict[str, Path]) -> dict[str, float]:
    import csv
    import json

    scores: dict[str, float] = {}
    if scores_file is not None:
        text = scores_file.read_text() if scores_file.exists() else None
        if text is None:
            raise InputError(f"{scores_file}: no such scores file")
        if text.lstrip().startswith("{"):  # lymphmet predict's JSON summary
            for entry in json.loads(text.strip().splitlines()[-1]).get("slides", []):
                scores[Path(entry["slide"]).stem] = float(entry["slide_score"])
        else:
            for number, row in enumerate(csv.reader(text.splitlines()), 1):
                if len(row) < 2:
                    continue
                try:
                    scores[Path(row[0].strip()).stem] = float(row[1])
                except ValueError:
                    if number != 1:  # a header row is fine
                        raise InputError(f"{scores_file}:{number}: expected slide,score, "
                                         f"got {','.join(row)!r}") from None
        return scores
    from ..inference import read_heatmap, slide_score

    for name in names:
        heatmap = detections[name].parent / "heatmap.tif"
        if heatmap.exists():
            scores[name] = slide_score(read_heatmap(heatmap)[0])
    return scores


def evaluate(detections_dir: str | os.PathLike, truth_dir: str | os.PathLike, *,
             slides_dir: str | os.PathLike | None = None, scores_file: str | os.PathLike | None = None,
             mpp: float | None = None) -> tuple[dict, FrocCurve]:
    """Evaluate every slide under ``detections_dir`` against ``truth_dir/<id>.xml``.

    Returns the summary and the FROC curve. The summary's ``froc`` is the
    official figure; ``froc_all_thresholds`` keeps the lowest threshold too,
    and ``froc_note`` says why they differ when they do.
    """
    from ..annotations import TUMOR, read_asap_xml

    root, truth = Path(detections_dir), Path(truth_dir)
    for folder, what in ((root, "--detections"), (truth, "--truth")):
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder ({what})")
    files = _find_detections(root)
    if not files:
        raise InputError(f"{root}: no detections (expected <id>/detections.csv or <id>.csv)")
    slides_path = Path(slides_dir) if slides_dir else None
    evaluations, per_slide, tumor_truth = [], [], {}
    for name, file in files.items():
        dims, slide_mpp, slide_path = _slide_facts(name, file, slides_path)
        use_mpp = mpp or slide_mpp or DEFAULT_MPP
        xml = truth / f"{name}.xml"
        anns = read_asap_xml(xml) if xml.exists() else []
        tumor_truth[name] = any(a.label == TUMOR for a in anns)
        if dims is None:
            extent = [a.exterior.max(axis=0) for a in anns]
            if extent:
                top = np.max(extent, axis=0)
                dims = (int(top[0]) + EVAL_DOWNSAMPLE * 8, int(top[1]) + EVAL_DOWNSAMPLE * 8)
        detections = read_detections(file, dimensions=dims)
        mask, itc = None, set()
        if tumor_truth[name]:
            shape = (math.ceil(dims[1] / EVAL_DOWNSAMPLE), math.ceil(dims[0] / EVAL_DOWNSAMPLE))
            mask = evaluation_mask(anns, shape, use_mpp)
            itc = itc_labels(mask, use_mpp)
            inside = (detections[:, 2] / EVAL_DOWNSAMPLE < shape[0]) & (detections[:, 1] / EVAL_DOWNSAMPLE < shape[1])
            detections = detections[inside]
        result = score_slide(name, detections, mask, itc)
        evaluations.append(result)
        per_slide.append({"slide": name, "tumor": tumor_truth[name], "detections": int(len(detections)),
                          "lesions": result.lesions, "itc": result.itc, "tp": result.tp,
                          "fp": len(result.fp_probs), "mpp": use_mpp, "slide_path": slide_path})
    curve = FrocCurve.of(evaluations)
    scores = _slide_scores(Path(scores_file) if scores_file else None, list(files), files)
    summary = {
        "froc": curve.score,
        "froc_all_thresholds": curve.score_all,
        "froc_note": curve.note,
        "sensitivity_at": curve.sensitivity_at,
        "slide_auc": slide_auc(scores, tumor_truth),
        "slides": len(evaluations),
        "lesions": sum(e.lesions for e in evaluations),
        "itc_lesions": sum(e.itc for e in evaluations),
        "tp": sum(e.tp for e in evaluations),
        "fp": sum(len(e.fp_probs) for e in evaluations),
        "per_slide": per_slide,
    }
    return summary, curve
