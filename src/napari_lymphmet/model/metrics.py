"""Binary classification metrics in plain numpy: ROC AUC, thresholds, rates."""


from __future__ import annotations

import numpy as np

__all__ = ['SCREEN_SENSITIVITY', 'best_threshold', 'binary_metrics', 'normal_score_quantiles', 'roc_auc',
           'screening_threshold']

# The share of validation tumor patches a screening lattice cell must flag (see screening_threshold).
SCREEN_SENSITIVITY = 0.97


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half).

    Parameters
    ----------
    labels : (N,) array of bool or {0, 1}
    scores : (N,) float array

    Returns
    -------
    float
        NaN when only one class is present.
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold maximising Youden's J (sensitivity + specificity - 1).

    Midway between neighbouring scores, so it generalises rather than
    sitting on one sample; 0.5 when there is only one class.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    if labels.all() or not labels.any():
        return 0.5
    values = np.unique(scores)
    cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    sens = np.array([(scores[labels] >= c).mean() for c in cuts])
    spec = np.array([(scores[~labels] < c).mean() for c in cuts])
    j = sens + spec
    best = np.flatnonzero(j == j.max())
    return float(cuts[best[len(best) // 2]])


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """``n``, ``auc``, ``accuracy``, ``sensitivity``, ``specificity`` at ``threshold``."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    called = scores >= threshold

    def rate(mask: np.ndarray) -> float:
        return float(called[mask].mean()) if mask.any() else float("nan")

    return {
        "n": int(len(labels)),
        "auc": roc_auc(labels, scores),
        "accuracy": float((called == labels).mean()) if len(labels) else float("nan"),
        "sensitivity": rate(labels),
        "specificity": 1 - rate(~labels) if (~labels).any() else float("nan"),
        "threshold": float(threshold),
    }


def screening_threshold(labels: np.ndarray, scores: np.ndarray, *,
                        sensitivity: float = SCREEN_SENSITIVITY) -> dict[str, float]:
    """The score that ``sensitivity`` of the tumor patches reach, and what it costs on normal ones.

    Screened inference predicts a lattice of cells and refines around those
    at or above this score; a lesion is missed only if all its lattice cells
    fall below it, so each tumor cell must clear it with ``sensitivity``.
    Taken from a model's own validation scores, it follows the model: one
    that puts normal tissue near 0.3 gets another threshold than one that
    puts it near 0.01.

    Returns
    -------
    dict
        ``screen_threshold``; ``screen_sensitivity``; ``normal_above_screen``,
        the share of normal patches at or above it (the lattice cells that
        will be refined around, on tissue like the validation set's). Empty
        without both classes.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    if labels.all() or not labels.any():
        return {}
    threshold = float(np.quantile(scores[labels], 1 - sensitivity, method="lower"))
    return {"screen_threshold": threshold, "screen_sensitivity": float(sensitivity),
            "normal_above_screen": float((scores[~labels] >= threshold).mean())}


def normal_score_quantiles(labels: np.ndarray, scores: np.ndarray, *, count: int = 201) -> dict[str, list[float]]:
    """The distribution of the normal patches' scores, as ``count`` evenly spaced quantiles (0 to 1).

    What a model says about tumor-free tissue like the validation set's: the
    node gate (:func:`~napari_lymphmet.inference.lesion_calibration.node_gate`)
    draws tumor-free slides from it. Empty without normal patches.
    """
    normal = np.asarray(scores, np.float64)[~np.asarray(labels).astype(bool)]
    if not len(normal):
        return {}
    return {"normal_score_quantiles": [round(float(q), 6) for q in np.quantile(normal, np.linspace(0, 1, count))]}
