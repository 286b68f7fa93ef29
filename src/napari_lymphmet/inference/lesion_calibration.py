"""What a model's validation scores say about whole slides: its detection threshold and the node gate.

Detection (:func:`napari_lymphmet.inference.detect`) thresholds the heatmap
smoothed by a Gaussian one patch wide, not single patches. The height that
map reaches over normal tissue, and over a small metastasis, depends on a
model's whole score distribution, so Youden's J on single patches is not
its operating point: two models of equal patch AUC put it 0.1 apart
(0.371 and 0.466), and the one with the higher threshold lost half the
smallest lesions on whole slides (docs/performance.md). Here the
threshold is the lowest at which normal tissue gives at most a set number
of false alarms per mm², measured where detection looks: on fields of
cells that take the scores of the validation set's normal patches at
random, smoothed as detection smooths, counted as detection counts
(connected regions above the threshold).

The node gate answers the question a node's category asks: could a
tumor-free node with this much tissue score as high as this one? Every
wrong node category on the mosaics of real tissue was a tumor-free node
given one by a false alarm, while the slide score ranked every tumor node
above every tumor-free one (docs/performance.md). The gate is the slide
score that 95 % of tumor-free nodes with the slide's own tissue (its
tissue cells, in their places, scored at random from the validation set's
normal patches) stay under; a node under it is ``negative`` whatever it
detected, unless the pathologist marks a detection tumor.
"""


from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ['FALSE_ALARMS_PER_MM2', 'NODE_GATE_LEVEL', 'detection_threshold', 'node_gate']

# One false alarm per 10 mm² of normal tissue: about one a slide on the 32 × 32-patch mosaics
# of real tissue (8 mm² of tissue each), a few on a lymph-node section of tens of mm².
FALSE_ALARMS_PER_MM2 = 0.1

# The share of simulated tumor-free nodes that stay under the gate: one in 20 tumor-free nodes with a
# false alarm keeps its category, the price of calling few true ones negative.
NODE_GATE_LEVEL = 0.95

_FIELD = 200  # cells a side of each simulated field of normal tissue
_FIELDS = 4
_LESIONS = 2000  # simulated smallest lesions, for the sensitivity reported beside the threshold
_STEP = 0.0025  # resolution of the thresholds tried


def detection_threshold(labels: np.ndarray, scores: np.ndarray, *, cell_mm: float, sigma_cells: float = 1.0,
                        false_alarms_per_mm2: float = FALSE_ALARMS_PER_MM2, seed: int = 0) -> dict[str, float]:
    """The lowest threshold on the smoothed heatmap with at most ``false_alarms_per_mm2`` on normal tissue.

    Parameters
    ----------
    labels : (N,) array of bool or {0, 1}
        Validation patches, 1 tumor.
    scores : (N,) float array
        The model's probabilities for them.
    cell_mm : float
        Side of a heatmap cell in mm (a patch at the model's mpp, at the default stride).
    sigma_cells : float
        The detection smoothing, in cells.
    false_alarms_per_mm2 : float
        The budget.
    seed : int
        For the random fields; the result is deterministic for a seed.

    Returns
    -------
    dict
        ``detection_threshold``; ``false_alarms_per_mm2``, what normal tissue gives at it;
        ``small_lesion_sensitivity``, the share of simulated 2 × 2-cell lesions (tumor scores at
        random, in normal tissue; about 0.19 mm at 10×, CAMELYON16's smallest scored size) whose
        smoothed peak reaches it. Empty without both classes.
    """
    from .detect import detect, smooth_heatmap

    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    if labels.all() or not labels.any():
        return {}
    rng = np.random.default_rng(seed)
    normal, tumor = scores[~labels], scores[labels]
    # Smoothed as detection smooths, on a margin of tissue cut off afterwards (the smoothing reads 3 sigma
    # around a cell; at a field's edge it would read glass).
    margin = int(np.ceil(3 * sigma_cells))
    fields = [smooth_heatmap(rng.choice(normal, (_FIELD + 2 * margin,) * 2), sigma_cells)[margin:-margin or None,
                                                                                        margin:-margin or None]
              for _ in range(_FIELDS)]
    area = _FIELDS * _FIELD ** 2 * cell_mm ** 2

    def density(threshold: float) -> float:  # counted as detection counts: one a connected region above it
        return sum(len(detect(f, 1.0, threshold=float(threshold))) for f in fields) / area

    # From the top down, the last threshold before the budget is first exceeded: a region can split in
    # two as the threshold rises, so the count is not monotonic and a bisection could stop inside a dip.
    chosen = 1.0
    for threshold in np.arange(1.0, 0.0, -_STEP):
        if density(threshold) > false_alarms_per_mm2:
            break
        chosen = float(threshold)
    peaks = _small_lesion_peaks(rng, normal, tumor, sigma_cells)
    return {"detection_threshold": round(chosen, 4), "false_alarms_per_mm2": round(density(chosen), 4),
            "small_lesion_sensitivity": round(float((peaks >= chosen).mean()), 4)}


def _small_lesion_peaks(rng: np.random.Generator, normal: np.ndarray, tumor: np.ndarray, sigma: float) -> np.ndarray:
    """``(_LESIONS,)`` smoothed peaks of 2 × 2-cell lesions of tumor scores set in normal tissue."""
    from .detect import smooth_heatmap

    at = int(np.ceil(3 * sigma)) + 2  # the lesion's cells [at, at + 2), its neighbourhood clear of the edges
    side = 2 * at + 2
    peaks = np.empty(_LESIONS)
    for i in range(_LESIONS):
        field = rng.choice(normal, (side, side))
        field[at:at + 2, at:at + 2] = rng.choice(tumor, (2, 2))
        peaks[i] = smooth_heatmap(field, sigma)[at - 1:at + 3, at - 1:at + 3].max()
    return peaks


def node_gate(heatmap: np.ndarray, normal_quantiles: Sequence[float] | None, *, level: float = NODE_GATE_LEVEL,
              draws: int = 500, seed: int = 0) -> float | None:
    """The slide score that ``level`` of tumor-free nodes with this heatmap's tissue stay under.

    Parameters
    ----------
    heatmap : (rows, cols) float array
        A slide's heatmap, 0 off tissue (:class:`~napari_lymphmet.inference.PredictResult`).
    normal_quantiles : sequence of float
        Evenly spaced quantiles (0 to 1) of the model's scores on normal validation patches
        (:attr:`~napari_lymphmet.model.ModelCard.normal_score_quantiles`).
    level : float
        The share of simulated tumor-free nodes under the gate; 0 (or less): no gate.
    draws : int
        Simulated nodes.
    seed : int
        For the draws; the gate is deterministic for a seed.

    Returns
    -------
    float or None
        The gate, on :func:`~napari_lymphmet.inference.slide_score`'s scale; None without tissue or
        quantiles, or at level 0.
    """
    from .detect import slide_score

    quantiles = np.asarray(normal_quantiles if normal_quantiles is not None else (), np.float64)
    tissue = np.asarray(heatmap) > 0
    if level <= 0 or quantiles.size < 2 or not tissue.any():
        return None
    rows, cols = np.nonzero(tissue)
    # Cropped to the tissue and a 1-cell rim: the 3 x 3 windows see glass (0) where the slide's do.
    top, left = max(rows.min() - 1, 0), max(cols.min() - 1, 0)
    rows, cols = rows - top, cols - left
    field = np.zeros((rows.max() + 2, cols.max() + 2))
    rng = np.random.default_rng(seed)
    # The distribution's inverse, tabulated finely: a draw is an index (a tenth of the time of interpolating).
    inverse = np.interp(np.linspace(0.0, 1.0, 4096), np.linspace(0.0, 1.0, quantiles.size), quantiles)
    scores = np.empty(draws)
    for i in range(draws):
        field[rows, cols] = inverse[rng.integers(0, inverse.size, rows.size)]
        scores[i] = slide_score(field)
    return round(float(np.quantile(scores, level)), 4)
