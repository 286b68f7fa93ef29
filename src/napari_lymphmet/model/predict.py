"""Scores for patches: one pass or the mean over 8 views, and metrics on a labelled table."""


from __future__ import annotations

import numpy as np

from .card import ModelCard
from .data import make_dataset
from .metrics import binary_metrics
from .preprocess import prepare_batch
from .dataset import PatchTable

__all__ = ['predict_patches', 'predict_prepared', 'score_table']


# -- prediction ---------------------------------------------------------------------
def _dihedral_mean(model, x) -> np.ndarray:
    """Mean probability over the 8 rotations and mirrorings of ``(N, s, s, 3)`` inputs.

    Tissue has no up or left, so every view is as valid as the original;
    averaging them steadies the scores of patches whose look (another
    stain, another scanner) the model saw little of in training.
    """
    x = np.asarray(x)
    total = np.zeros(len(x), np.float64)
    for k in range(4):
        turned = np.rot90(x, k, axes=(1, 2))
        for view in (turned, turned[:, :, ::-1]):
            total += np.asarray(model(np.ascontiguousarray(view), training=False), np.float64).ravel()
    return (total / 8).astype(np.float32)


def predict_patches(model, card: ModelCard, batch: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Tumor probability, ``(N,) float32``, for ``(N, h, w, 3) uint8`` patches.

    ``tta`` averages the 8 rotations and mirrorings of each patch (8 times
    the work).
    """
    if not len(batch):
        return np.zeros(0, np.float32)
    x = prepare_batch(batch, card)
    if tta:
        return _dihedral_mean(model, x)
    return predict_prepared(model, x)


def predict_prepared(model, x: np.ndarray) -> np.ndarray:
    """Tumor probability, ``(N,) float32``, for a batch already through :func:`prepare_batch`.

    Whole-slide inference prepares batches in its reader threads, so the
    thread that runs the model does nothing else.
    """
    return np.asarray(model(x, training=False)).ravel().astype(np.float32)


def score_table(model, card: ModelCard, table: PatchTable, *, batch_size: int = 64,
                tta: bool = True) -> dict[str, float]:
    """Metrics on a labelled patch table at the model's stored threshold.

    With ``tta`` (the default: labelled sets are small) each score is the
    mean over the patch's 8 rotations and mirrorings.
    """
    batches = make_dataset(table, card, batch_size=batch_size, training=False)
    if tta:
        scores = np.concatenate([_dihedral_mean(model, x) for x, _ in batches])
    else:
        scores = np.asarray(model.predict(batches, verbose=0)).ravel()
    return binary_metrics(table.labels, scores, card.threshold)
