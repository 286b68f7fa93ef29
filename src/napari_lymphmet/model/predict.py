"""Scores for patches: one pass or the mean over 8 views, and metrics on a labelled table."""


from __future__ import annotations

import numpy as np

from ..errors import ModelOutputError
from .card import ModelCard
from .data import make_dataset
from .metrics import binary_metrics
from .preprocess import prepare_batch
from .dataset import PatchTable

__all__ = ['TTA_VIEWS', 'checked_probabilities', 'predict_patches', 'predict_views', 'predict_prepared', 'score_table']


# -- prediction ---------------------------------------------------------------------
TTA_VIEWS = (1, 4, 8)


def predict_views(model, x, views: int = 8) -> np.ndarray:
    """Mean probability over ``views`` rotations (4) or rotations and mirrorings (8) of ``(N, s, s, 3)``
    prepared inputs; ``views=1`` is one pass.

    Tissue has no up or left, so every view is as valid as the original;
    averaging them steadies the scores of patches whose look (another
    stain, another scanner) the model saw little of in training. Each view
    costs one more pass.
    """
    if views not in TTA_VIEWS:
        raise ValueError(f"views must be one of {TTA_VIEWS}, got {views}")
    x = np.asarray(x)
    if views == 1:
        return predict_prepared(model, x)
    total = np.zeros(len(x), np.float64)
    for view in _views(x, views):
        total += predict_prepared(model, view)
    return (total / views).astype(np.float32)


def _views(x: np.ndarray, views: int):
    """The batch turned by 0, 90, 180 and 270 degrees, each also mirrored when ``views`` is 8; the first is ``x``."""
    for k in range(4):
        turned = np.rot90(x, k, axes=(1, 2))
        for view in (turned, turned[:, :, ::-1])[:views // 4]:
            yield np.ascontiguousarray(view)


def checked_probabilities(output) -> np.ndarray:
    """A model's output as ``(N,) float32`` probabilities, refused unless each is a number in [0, 1].

    A model whose last layer is not a sigmoid (a regression head, logits)
    would otherwise give slide scores of 50 and heatmaps of nonsense, with
    every threshold meaningless.

    Raises
    ------
    ModelOutputError
        Naming the first bad value.
    """
    scores = np.asarray(output, np.float32).ravel()
    bad = ~((scores >= 0) & (scores <= 1))  # NaN fails both
    if bad.any():
        value = scores[np.argmax(bad)]
        raise ModelOutputError(f"the model gave {value:g} for a patch, not a probability in [0, 1] "
                         "(its last layer must be a sigmoid)")
    return scores


def predict_patches(model, card: ModelCard, batch: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Tumor probability, ``(N,) float32``, for ``(N, h, w, 3) uint8`` patches.

    ``tta`` averages the 8 rotations and mirrorings of each patch (8 times
    the work).
    """
    if not len(batch):
        return np.zeros(0, np.float32)
    x = prepare_batch(batch, card)
    return predict_views(model, x, 8 if tta else 1)


def predict_prepared(model, x: np.ndarray) -> np.ndarray:
    """Tumor probability, ``(N,) float32``, for a batch already through :func:`prepare_batch`.

    Whole-slide inference prepares batches in its reader threads, so the
    thread that runs the model does nothing else.
    """
    return checked_probabilities(model(x, training=False))


def score_table(model, card: ModelCard, table: PatchTable, *, batch_size: int = 64,
                tta: bool = True) -> dict[str, float]:
    """Metrics on a labelled patch table at the model's stored threshold.

    With ``tta`` (the default: labelled sets are small) each score is the
    mean over the patch's 8 rotations and mirrorings, and ``single_pass``
    holds the metrics of the first view alone (the patch as it is), from the
    same passes, so one run shows what test-time augmentation buys.
    """
    batches = make_dataset(table, card, batch_size=batch_size, training=False)
    if not tta:
        return binary_metrics(table.labels, checked_probabilities(model.predict(batches, verbose=0)), card.threshold)
    single, mean = [], []
    for x, _ in batches:
        x = np.asarray(x)
        views = [predict_prepared(model, view) for view in _views(x, 8)]
        single.append(views[0])
        mean.append(np.mean(views, axis=0, dtype=np.float64).astype(np.float32))
    metrics = binary_metrics(table.labels, np.concatenate(mean), card.threshold)
    metrics["single_pass"] = binary_metrics(table.labels, np.concatenate(single), card.threshold)
    return metrics
