"""CAMELYON17's measures of what is reported: agreement of pN stages (quadratic-weighted kappa) and the
confusion of node categories."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["KAPPA_STAGES", "category_confusion", "quadratic_kappa"]

# The stages CAMELYON17 scored, in order; pN3 (10 or more nodes) cannot occur with its 5 nodes a patient.
KAPPA_STAGES = ("pN0", "pN0(i+)", "pN1mi", "pN1", "pN2")


def quadratic_kappa(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = KAPPA_STAGES) -> float:
    """Cohen's kappa with quadratic weights, ``1 - Σ w·O / Σ w·E`` with ``w = (i - j)² / (k - 1)²``.

    ``O`` is the confusion of ``truth`` and ``predicted`` over ``labels`` in
    order, ``E`` the outer product of its margins over the count. 1 is
    perfect agreement, 0 chance; NaN when there is nothing to compare.

    Raises
    ------
    ValueError
        The two differ in length, or a value is not one of ``labels``.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true and {len(predicted)} predicted stages")
    index = {label: i for i, label in enumerate(labels)}
    for value in (*truth, *predicted):
        if value not in index:
            raise ValueError(f"stage {value!r} is not one of {tuple(labels)}")
    k = len(labels)
    if not len(truth):
        return float("nan")
    observed = np.zeros((k, k))
    for t, p in zip(truth, predicted):
        observed[index[t], index[p]] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    i, j = np.indices((k, k))
    weights = (i - j) ** 2 / (k - 1) ** 2
    denominator = (weights * expected).sum()
    return 1.0 if denominator == 0 else float(1 - (weights * observed).sum() / denominator)


def category_confusion(truth: Sequence[str], predicted: Sequence[str],
                       labels: Sequence[str] = ("negative", "itc", "micro", "macro", "unknown")) -> dict:
    """``{true category: {predicted category: count}}`` over ``labels``, every cell present."""
    table = {t: {p: 0 for p in labels} for t in labels}
    for t, p in zip(truth, predicted, strict=True):
        table[t][p] += 1
    return table
