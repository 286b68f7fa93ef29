"""CAMELYON16 evaluation: lesion FROC and slide AUC; CAMELYON17's: stage kappa and node-category confusion
(the patch metrics, from ``model.metrics``, re-exported).
"""

from __future__ import annotations

from .froc import (
    DEFAULT_MPP,
    EVAL_DOWNSAMPLE,
    FP_RATES,
    EvaluationWarning,
    FrocCurve,
    SlideEvaluation,
    evaluation_mask,
    froc,
    froc_score,
    itc_labels,
    score_slide,
    slide_auc,
)
from .camelyon16 import evaluate, read_detections
from .camelyon17 import KAPPA_STAGES, category_confusion, quadratic_kappa
from ..model.metrics import best_threshold, binary_metrics, roc_auc  # patch metrics live with the model

__all__ = ['KAPPA_STAGES', 'category_confusion', 'quadratic_kappa',
           'DEFAULT_MPP', 'EVAL_DOWNSAMPLE', 'EvaluationWarning', 'FP_RATES', 'FrocCurve', 'SlideEvaluation',
           'best_threshold', 'binary_metrics', 'evaluate', 'evaluation_mask', 'froc', 'froc_score', 'itc_labels',
           'read_detections', 'roc_auc', 'score_slide', 'slide_auc']
