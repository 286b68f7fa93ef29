"""What a pathologist reports: each node's category from its largest metastasis, and the patient's pN stage.

The rules are CAMELYON17's (AJCC/UICC 8th edition, as the challenge scored
them), on the longest diameter of each metastasis:

- a node is ``negative`` with no metastasis, ``itc`` (isolated tumor cells)
  when its largest is at most 0.2 mm, ``micro`` above 0.2 mm and at most
  2 mm, ``macro`` above 2 mm; ``unknown`` when it could not be measured (no
  prediction, or a slide without a pixel size);
- a patient is ``pN0`` with no metastasis and no ITC, ``pN0(i+)`` with ITCs
  only, ``pN1mi`` with micro-metastases and no macro, ``pN1`` with 1–3
  positive nodes (micro or macro) of which at least one macro, ``pN2`` with
  4–9, ``pN3`` with 10 or more; ``unknown`` when a node is unknown and the
  others do not already settle the stage.

Pure functions over plain values: no slide, no model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["CATEGORIES", "ITC_MAX_MM", "MICRO_MAX_MM", "STAGES", "lesion_category", "node_category",
           "patient_of", "pn_stage"]

ITC_MAX_MM = 0.2
MICRO_MAX_MM = 2.0
CATEGORIES = ("negative", "itc", "micro", "macro", "unknown")
STAGES = ("pN0", "pN0(i+)", "pN1mi", "pN1", "pN2", "pN3", "unknown")


def lesion_category(major_axis_mm: float | None) -> str:
    """``itc``, ``micro`` or ``macro`` for a metastasis of this longest diameter; ``unknown`` for ``None``.

    The bounds belong to the smaller category: exactly 0.2 mm is ``itc``, exactly 2 mm ``micro``.
    """
    if major_axis_mm is None or major_axis_mm != major_axis_mm:  # None or NaN
        return "unknown"
    if major_axis_mm <= ITC_MAX_MM:
        return "itc"
    return "micro" if major_axis_mm <= MICRO_MAX_MM else "macro"


def node_category(major_axes_mm: Iterable[float | None]) -> str:
    """A node's category from its metastases' longest diameters (mm): its largest one's; ``negative`` for none.

    One unmeasured metastasis makes the node ``unknown`` unless a measured one is already ``macro``.
    """
    sizes = list(major_axes_mm)
    if not sizes:
        return "negative"
    measured = [s for s in sizes if s is not None and s == s]
    largest = lesion_category(max(measured)) if measured else "unknown"
    if len(measured) < len(sizes) and largest != "macro":
        return "unknown"
    return largest


def pn_stage(categories: Sequence[str]) -> str:
    """The patient's pN stage from the categories of all their nodes (see the module's rules).

    Raises
    ------
    ValueError
        A category not in :data:`CATEGORIES`.
    """
    for category in categories:
        if category not in CATEGORIES:
            raise ValueError(f"unknown node category {category!r}; one of {CATEGORIES}")
    macro = sum(c == "macro" for c in categories)
    positive = macro + sum(c == "micro" for c in categories)
    unknown = sum(c == "unknown" for c in categories)
    if macro:
        stage = _macro_stage(positive)
        # Unknown nodes may be positive too: the stage stands only if it would not change with them.
        return stage if _macro_stage(positive + unknown) == stage else "unknown"
    if unknown:
        return "unknown"
    if positive:
        return "pN1mi"
    return "pN0(i+)" if "itc" in categories else "pN0"


def _macro_stage(positive: int) -> str:
    return "pN1" if positive <= 3 else "pN2" if positive <= 9 else "pN3"


_CAMELYON17_NAME = re.compile(r"^(patient_\d+)_node_\d+$")


def patient_of(slide_id: str) -> str | None:
    """The patient of a slide named as CAMELYON17 names them (``patient_004_node_4`` → ``patient_004``)."""
    match = _CAMELYON17_NAME.match(slide_id)
    return match.group(1) if match else None
