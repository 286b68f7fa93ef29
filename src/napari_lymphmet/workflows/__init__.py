"""Workflows: what the CLI, the widgets and the demo share, one call each.

They sit above the core topics and below ``cli`` and ``_napari``.
"""

from __future__ import annotations

from .background import BackgroundCommand, CommandResult
from .demo import run_demo
from .catalog import SlideEntry, SlideFacts, companions, list_slides, results_for, slide_facts, with_results
from .cohort import CSV_COLUMNS, CohortRow, cohort_row, write_cohort
from .corrections import Corrections, CorrectionsThreshold, corrections_threshold
from .finetune import FinetuneConfig, FinetuneResult, finetune
from .predict import PredictOptions, SlideFailure, SlidePrediction, predict_slides
from .review import MARKS, REVIEW_ORDERS, Review, ReviewItem
from .staging import STAGE_COLUMNS, PatientStage, agreement, read_node_categories, stage_patients, write_stages

__all__ = [
    "MARKS", "REVIEW_ORDERS", "Review", "ReviewItem",
    "STAGE_COLUMNS", "PatientStage", "agreement", "read_node_categories", "stage_patients", "write_stages",
    "BackgroundCommand", "CSV_COLUMNS", "CohortRow", "CommandResult", "Corrections", "CorrectionsThreshold",
    "FinetuneConfig", "FinetuneResult", "PredictOptions", "SlideEntry", "SlideFacts", "SlideFailure",
    "SlidePrediction", "cohort_row", "companions", "corrections_threshold", "finetune", "list_slides",
    "predict_slides", "results_for", "run_demo", "slide_facts", "with_results", "write_cohort",
]
