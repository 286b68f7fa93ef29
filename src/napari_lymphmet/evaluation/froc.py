"""CAMELYON16 evaluation: lesion-level FROC and slide-level ROC AUC.

This follows the official ``Evaluation_FROC.py`` rule for rule, so scores
compare with published ones, but starts from ASAP XML instead of mask TIFFs:

- evaluation mask at level 5 (downsample 32): tumor minus exclusions,
  dilated by 75 µm (``distance_transform_edt(~mask) < 75 / (mpp·32·2)``),
  holes filled, labelled with 8-connectivity;
- isolated tumor cells (ITC): labelled regions whose ``major_axis_length``
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

__all__ = ['DEFAULT_MPP', 'EVAL_DOWNSAMPLE', 'EvaluationWarning', 'FP_RATES', 'SlideEvaluation', 'evaluate',
           'evaluation_mask', 'froc', 'froc_plot', 'froc_score', 'itc_labels', 'read_detections', 'score_slide',
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
    return {p.label for p in measure.regionprops(mask) if p.major_axis_length < threshold}


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


def froc(slides: Sequence[SlideEvaluation]) -> tuple[np.ndarray, np.ndarray]:
    """``(fps_per_slide, sensitivity)`` arrays, thresholds as the official script sets them."""
    fp = np.array([p for s in slides for p in s.fp_probs], np.float64)
    tp = np.array([p for s in slides for p in s.tp_probs], np.float64)
    lesions = sum(s.lesions for s in slides)
    thresholds = np.unique(np.concatenate([fp, tp]))[1:]
    total_fp = [(fp >= t).sum() for t in thresholds] + [0]
    total_tp = [(tp >= t).sum() for t in thresholds] + [0]
    fps = np.asarray(total_fp, np.float64) / len(slides)
    sens = np.asarray(total_tp, np.float64) / lesions if lesions else np.zeros(len(total_tp))
    return fps, sens


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


def froc_plot(fps: np.ndarray, sens: np.ndarray, *, height: int = 360, width: int = 480) -> np.ndarray:
    """``(H, W, 3) uint8``: sensitivity against mean FP per slide, log x from 1/8 to 16."""
    from skimage.draw import line_aa

    image = np.full((height, width, 3), 255, np.uint8)
    pad = 30
    lo, hi = math.log2(0.125), math.log2(16)

    def to_px(fp: float, s: float) -> tuple[int, int]:
        x = pad + (math.log2(min(max(fp, 0.125), 16)) - lo) / (hi - lo) * (width - 2 * pad)
        return int(round(height - pad - s * (height - 2 * pad))), int(round(x))

    for rate in FP_RATES:  # the six operating points
        _, c = to_px(rate, 0)
        image[pad:height - pad, c] = (215, 215, 215)
    image[height - pad, pad:width - pad] = image[pad:height - pad, pad] = 0
    order = np.argsort(fps)
    points = [to_px(f, s) for f, s in zip(fps[order], sens[order])]
    for (r0, c0), (r1, c1) in zip(points, points[1:]):
        rr, cc, val = line_aa(r0, c0, r1, c1)
        ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        blend = image[rr[ok], cc[ok]] * (1 - val[ok, None]) + np.array([30, 90, 200]) * val[ok, None]
        image[rr[ok], cc[ok]] = blend.astype(np.uint8)
    return image


def _find_detections(root: Path) -> dict[str, Path]:
    found = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / "detections.csv").exists():
            found[sub.name] = sub / "detections.csv"
    for csv_file in sorted(root.glob("*.csv")):
        found.setdefault(csv_file.stem, csv_file)
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
             mpp: float | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Evaluate every slide under ``detections_dir`` against ``truth_dir/<id>.xml``.

    Returns the summary, and the FROC curve ``(fps, sensitivity)``.
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
    fps, sens = froc(evaluations)
    score, at = froc_score(fps, sens)
    scores = _slide_scores(Path(scores_file) if scores_file else None, list(files), files)
    summary = {
        "froc": score,
        "sensitivity_at": at,
        "slide_auc": slide_auc(scores, tumor_truth),
        "slides": len(evaluations),
        "lesions": sum(e.lesions for e in evaluations),
        "itc_lesions": sum(e.itc for e in evaluations),
        "tp": sum(e.tp for e in evaluations),
        "fp": sum(len(e.fp_probs) for e in evaluations),
        "per_slide": per_slide,
    }
    return summary, fps, sens
