"""Workflows: what the CLI, the widgets and the demo share, one call each.

They sit above the core topics and below ``cli`` and ``_napari``.
"""

from __future__ import annotations

from .demo import run_demo
from .predict import PredictOptions, SlidePrediction, predict_slides

__all__ = ["PredictOptions", "SlidePrediction", "predict_slides", "run_demo"]
