"""Labelled patches: the grid geometry (shared with inference), a frozen plan, and resumable export.
"""

from __future__ import annotations

from .export import CSV_COLUMNS, ExportResult, export_patches, iter_export
from .grid import box_fraction, integral_image, read_row_boxes, row_runs
from .plan import NORMAL, UNCERTAIN, PatchPlan, PatchSpec, plan_for_slide, plan_patches

__all__ = ["CSV_COLUMNS", "NORMAL", "UNCERTAIN", "ExportResult", "PatchPlan", "PatchSpec", "box_fraction",
           "export_patches", "integral_image", "iter_export", "plan_for_slide", "plan_patches", "read_row_boxes",
           "row_runs"]
