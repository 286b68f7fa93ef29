"""``lymphmet stage``: a predicted cohort's node categories grouped into each patient's pN stage.

Reads the ``slides.csv`` that ``lymphmet predict`` writes over a folder (one
row per slide: its node ``category``, or the error that stopped it) and a
``patients.csv`` (``patient,slide``), or groups slides named as CAMELYON17
names them (``patient_004_node_4``). A slide whose prediction failed is an
``unknown`` node, never a negative one.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..inference.staging import CATEGORIES, patient_of, pn_stage
from ..io import read_limited, text_limit, write_csv

__all__ = ["STAGE_COLUMNS", "PatientStage", "agreement", "read_node_categories", "stage_patients",
           "write_stages"]

STAGE_COLUMNS = ("patient", "stage", "nodes", "nodes_positive", "nodes_macro", "nodes_micro", "nodes_itc",
                 "nodes_unknown")


@dataclass(frozen=True)
class PatientStage:
    """One patient's pN stage and the node counts behind it."""

    patient: str
    stage: str
    categories: tuple[str, ...]

    def row(self) -> dict:
        count = self.categories.count
        return {"patient": self.patient, "stage": self.stage, "nodes": len(self.categories),
                "nodes_positive": count("macro") + count("micro"), "nodes_macro": count("macro"),
                "nodes_micro": count("micro"), "nodes_itc": count("itc"), "nodes_unknown": count("unknown")}


def _rows(path: Path, what: str) -> list[dict]:
    text = read_limited(path, text_limit(), what=what).decode("utf-8-sig", errors="replace")
    return list(csv.DictReader(io.StringIO(text)))


def read_node_categories(predictions: str | os.PathLike) -> dict[str, str]:
    """``{slide id: category}`` from a predictions folder's ``slides.csv``; failed slides are ``unknown``.

    Raises
    ------
    InputError
        No ``slides.csv``, or one without the columns ``lymphmet predict`` writes.
    """
    folder = Path(predictions)
    table = folder / "slides.csv" if folder.is_dir() else folder
    if not table.is_file():
        raise InputError(f"{folder}: no slides.csv here; give the folder lymphmet predict wrote over a cohort")
    rows = _rows(table, "slides table")
    if rows and not {"slide", "status"} <= set(rows[0]):
        raise InputError(f"{table}: not a slides.csv of lymphmet predict (it needs slide and status columns)")
    out = {}
    for row in rows:
        slide = (row.get("slide") or "").removeprefix("'")  # a name that looked like a formula was quoted
        category = row.get("category") or "unknown"
        out[slide] = category if row.get("status") == "ok" and category in CATEGORIES else "unknown"
    return out


def stage_patients(categories: dict[str, str], patients: str | os.PathLike | None = None) -> list[PatientStage]:
    """Each patient's stage from their slides' node categories, patients in name order.

    Parameters
    ----------
    categories : dict
        Slide id to node category (:func:`read_node_categories`).
    patients : path-like, optional
        ``patient,slide`` rows; slide ids as in ``slides.csv`` (file names
        without extension also match). Without it, CAMELYON17 names group
        the slides.

    Raises
    ------
    InputError
        A malformed ``patients.csv`` row, a slide it names that was not
        predicted, or, without it, slides not named as CAMELYON17 names them.
    """
    groups: dict[str, list[str]] = {}
    if patients is not None:
        path = Path(patients)
        rows = _rows(path, "patients table")
        if rows and not {"patient", "slide"} <= set(rows[0]):
            raise InputError(f"{path}: needs the columns patient,slide (got {', '.join(rows[0])})")
        for line, row in enumerate(rows, 2):
            patient, slide = (row.get("patient") or "").strip(), Path((row.get("slide") or "").strip()).stem
            if not patient or not slide:
                raise InputError(f"{path}:{line}: a row needs a patient and a slide")
            if slide not in categories:
                raise InputError(f"{path}:{line}: slide {slide!r} was not predicted (not in slides.csv)")
            groups.setdefault(patient, []).append(slide)
    else:
        unnamed = sorted(s for s in categories if patient_of(s) is None)
        if unnamed:
            raise InputError(f"{unnamed[0]}: not named patient_NNN_node_N as in CAMELYON17; give --patients "
                             "with patient,slide rows")
        for slide in categories:
            groups.setdefault(patient_of(slide), []).append(slide)
    return [PatientStage(patient, pn_stage([categories[s] for s in slides]), tuple(categories[s] for s in slides))
            for patient, slides in sorted(groups.items())]


def write_stages(path: str | os.PathLike, stages: Sequence[PatientStage]) -> Path:
    """``stages.csv``: one row per patient (:data:`STAGE_COLUMNS`), atomically."""
    return write_csv(path, STAGE_COLUMNS, (stage.row() for stage in stages))


def _truth(path: str | os.PathLike, key: str, value: str, allowed: Sequence[str]) -> dict[str, str]:
    path = Path(path)
    rows = _rows(path, "truth table")
    if rows and not {key, value} <= set(rows[0]):
        raise InputError(f"{path}: needs the columns {key},{value} (got {', '.join(rows[0])})")
    out = {}
    for line, row in enumerate(rows, 2):
        name, truth = (row.get(key) or "").strip(), (row.get(value) or "").strip()
        if truth not in allowed:
            raise InputError(f"{path}:{line}: {value} {truth!r} is not one of {', '.join(allowed)}")
        out[Path(name).stem if key == "slide" else name] = truth
    return out


def agreement(stages: Sequence[PatientStage], categories: dict[str, str], *,
              stage_truth: str | os.PathLike | None = None, node_truth: str | os.PathLike | None = None) -> dict:
    """How the reading agrees with the truth: CAMELYON17's quadratic-weighted kappa over the patients in
    ``stage_truth`` (``patient,stage``), and the confusion of node categories over the slides in
    ``node_truth`` (``slide,category``). Patients or slides in a truth table but not predicted are refused.

    Raises
    ------
    InputError
    """
    from ..evaluation import KAPPA_STAGES, category_confusion, quadratic_kappa
    from ..inference.staging import CATEGORIES

    out: dict = {}
    if stage_truth is not None:
        truth = _truth(stage_truth, "patient", "stage", KAPPA_STAGES)
        predicted = {s.patient: s.stage for s in stages}
        missing = sorted(set(truth) - set(predicted))
        if missing:
            raise InputError(f"{stage_truth}: patient {missing[0]!r} has no predicted slides")
        patients = sorted(truth)
        scored = [p for p in patients if predicted[p] in KAPPA_STAGES]  # unknown and pN3 cannot be scored
        out["kappa"] = quadratic_kappa([truth[p] for p in scored], [predicted[p] for p in scored])
        out["patients_scored"] = len(scored)
        out["patients_unscored"] = [p for p in patients if p not in scored]
    if node_truth is not None:
        truth = _truth(node_truth, "slide", "category", CATEGORIES[:4])
        missing = sorted(set(truth) - set(categories))
        if missing:
            raise InputError(f"{node_truth}: slide {missing[0]!r} was not predicted (not in slides.csv)")
        slides = sorted(truth)
        out["node_confusion"] = category_confusion([truth[s] for s in slides], [categories[s] for s in slides])
        out["node_accuracy"] = sum(truth[s] == categories[s] for s in slides) / len(slides) if slides else None
    return out
