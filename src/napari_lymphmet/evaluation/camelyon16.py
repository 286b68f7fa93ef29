"""Evaluating a predictions folder against CAMELYON16 truth: detection files in, the FROC summary out.

:mod:`.froc` holds the challenge's rules; this module finds and reads the
files (``<id>/detections.csv`` or ``<id>.csv``, ``<id>.xml``, slide scores)
and applies the rules slide by slide.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .froc import (DEFAULT_MPP, EVAL_DOWNSAMPLE, EvaluationWarning, FrocCurve, evaluation_mask, itc_labels,
                   score_slide, slide_auc)

__all__ = ["evaluate", "read_detections"]


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
    and ``froc_note`` says why they differ when they do. Where ``predict``
    wrote the detections (``<id>/heatmap.json`` beside them), each slide's
    node category is set against the truth's (from its largest outline's
    major axis, measured as ``lesions.csv`` measures a detection):
    ``node_categories`` is their confusion, ``categories_agree`` the share
    that match (issue 31).
    """
    from ..annotations import TUMOR, read_asap_xml
    from .camelyon17 import category_confusion

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
                          "fp": len(result.fp_probs), "mpp": use_mpp, "slide_path": slide_path,
                          "truth_category": _truth_category(anns, dims, use_mpp),
                          "category": _predicted_category(file)})
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
    pairs = [(s["truth_category"], s["category"]) for s in per_slide if s["category"] is not None]
    if pairs:
        summary["node_categories"] = category_confusion(*zip(*pairs))
        summary["categories_agree"] = sum(t == p for t, p in pairs) / len(pairs)
    return summary, curve


def _truth_category(annotations, dims: tuple[int, int] | None, mpp: float) -> str:
    """The node category of a slide's truth: its largest tumor outline's major axis (ellipse of inertia,
    at the evaluation mask's resolution), as :func:`~napari_lymphmet.inference.lesion_category` reads it."""
    from skimage import measure

    from ..annotations import TUMOR, rasterize
    from ..inference import lesion_category

    tumor = [a for a in annotations if a.label == TUMOR]
    if not tumor or dims is None:
        return "negative"
    shape = (math.ceil(dims[1] / EVAL_DOWNSAMPLE), math.ceil(dims[0] / EVAL_DOWNSAMPLE))
    labels = measure.label(rasterize(annotations, shape, downsample=EVAL_DOWNSAMPLE), connectivity=2)
    axes = [p.axis_major_length for p in measure.regionprops(labels)]
    if not axes:
        return "negative"
    return lesion_category(max(max(axes), 1.0) * EVAL_DOWNSAMPLE * mpp / 1e3)


def _predicted_category(detections_file: Path) -> str | None:
    """The node category ``predict`` wrote beside a slide's detections, or None (detections from elsewhere)."""
    import json

    info = detections_file.parent / "heatmap.json"
    if detections_file.name != "detections.csv" or not info.is_file():
        return None
    try:
        category = json.loads(info.read_text()).get("category")
    except (OSError, ValueError):
        return None
    return category if isinstance(category, str) else None
