"""Patch classifiers: the :class:`ModelCard`, architectures, augmentation, data, training and prediction.

TensorFlow is imported inside the functions that need it, never when this
package is imported.
"""

from __future__ import annotations

from .architectures import BACKBONES, DEFAULT_INPUT, build_model
from .card import CARD_VERSION, METADATA_ENTRY, ModelCard, read_card, read_metadata
from .data import make_dataset
from .dataset import (
    CLASSES,
    IMAGE_SUFFIXES,
    PatchTable,
    read_patch_table,
    slide_of_filename,
    split_by_slide,
    why_no_split,
)
from .io import load_model, save_model
from .metrics import best_threshold, binary_metrics, roc_auc
from .predict import TTA_VIEWS, predict_patches, predict_prepared, predict_views, score_table
from .registry import BUNDLED_DIR, DEFAULT_MODEL, bundled_models, describe_models, resolve_model
from .preprocess import prepare_batch
from .runtime import RUNTIMES, available_runtime, load_runner
from .train import Phase, TrainConfig, TrainResult, train, training_phases

__all__ = ["BACKBONES", "BUNDLED_DIR", "CARD_VERSION", "CLASSES", "DEFAULT_INPUT", "DEFAULT_MODEL", "IMAGE_SUFFIXES",
           "METADATA_ENTRY", "ModelCard", "PatchTable", "Phase", "TrainConfig", "TrainResult", "best_threshold",
           "binary_metrics", "build_model", "bundled_models", "describe_models", "load_model", "make_dataset",
           "TTA_VIEWS", "predict_patches", "predict_prepared", "predict_views", "prepare_batch", "read_card",
           "read_metadata", "read_patch_table", "RUNTIMES", "available_runtime", "load_runner",
           "resolve_model", "roc_auc", "save_model", "score_table", "slide_of_filename", "split_by_slide", "train",
           "training_phases", "why_no_split"]
