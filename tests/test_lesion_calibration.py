"""The detection threshold from validation scores: a budget of false alarms per mm² on smoothed normal tissue."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lymphmet.inference.lesion_calibration import (FALSE_ALARMS_PER_MM2, NODE_GATE_LEVEL, detection_threshold,
                                                          node_gate)

CELL_MM = 96 * 0.972e-3  # a PCam patch at 10×


def _scores(separation: float, n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Binormal validation scores (probabilities) whose logits lie ``separation`` apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n)
    logits = rng.normal(0, 1.5, 2 * n) + labels * separation - separation / 2
    return labels, 1 / (1 + np.exp(-logits))


def test_the_threshold_keeps_normal_tissue_within_the_budget_and_a_tighter_budget_raises_it():
    labels, scores = _scores(4.0)
    found = detection_threshold(labels, scores, cell_mm=CELL_MM)
    assert 0 < found["detection_threshold"] < 1
    assert found["false_alarms_per_mm2"] <= FALSE_ALARMS_PER_MM2
    stricter = detection_threshold(labels, scores, cell_mm=CELL_MM, false_alarms_per_mm2=0.01)
    assert stricter["detection_threshold"] > found["detection_threshold"]
    assert stricter["small_lesion_sensitivity"] <= found["small_lesion_sensitivity"]


def test_a_model_that_separates_better_finds_more_small_lesions_at_the_same_budget():
    """What the simulation is for: the whole-slide operating point, comparable across models."""
    weak = detection_threshold(*_scores(2.5), cell_mm=CELL_MM)
    strong = detection_threshold(*_scores(5.0), cell_mm=CELL_MM)
    assert strong["small_lesion_sensitivity"] > weak["small_lesion_sensitivity"] + 0.1


def test_the_threshold_follows_the_models_scale_not_youdens_cut():
    """Scores halved (smoothing is linear, so the smoothed map is halved too) give the threshold halved, to
    the step tried: the same cells are false alarms. Youden's cut on patches knows nothing of the map."""
    labels, scores = _scores(4.0)
    a = detection_threshold(labels, scores, cell_mm=CELL_MM)["detection_threshold"]
    b = detection_threshold(labels, scores * 0.5, cell_mm=CELL_MM)["detection_threshold"]
    assert b == pytest.approx(a * 0.5, abs=0.005)


def test_it_is_deterministic_and_needs_both_classes():
    labels, scores = _scores(4.0)
    assert detection_threshold(labels, scores, cell_mm=CELL_MM) == detection_threshold(labels, scores, cell_mm=CELL_MM)
    assert detection_threshold(np.ones(10), np.linspace(0, 1, 10), cell_mm=CELL_MM) == {}


def _quantiles(separation: float = 4.0) -> list[float]:
    from napari_lymphmet.model.metrics import normal_score_quantiles

    return normal_score_quantiles(*_scores(separation))["normal_score_quantiles"]


def _node(shape: tuple[int, int], quantiles, rng: np.random.Generator) -> np.ndarray:
    """A tumor-free node's heatmap: an ellipse of tissue scored from the normal distribution, glass (0) around."""
    rows, cols = np.indices(shape)
    tissue = ((rows - shape[0] / 2) / (shape[0] / 2.2)) ** 2 + ((cols - shape[1] / 2) / (shape[1] / 2.2)) ** 2 < 1
    heatmap = np.zeros(shape)
    heatmap[tissue] = np.interp(rng.random(tissue.sum()), np.linspace(0, 1, len(quantiles)), quantiles)
    return heatmap


def test_the_node_gate_is_what_tumor_free_nodes_stay_under_and_grows_with_the_tissue():
    """About 1 in 20 tumor-free nodes clear it (95 %), and a node with four times the tissue has more chances
    to score high by chance, so its gate is higher; a small lesion of tumor scores clears it."""
    from napari_lymphmet.inference import slide_score

    quantiles = _quantiles()
    rng = np.random.default_rng(1)
    small = node_gate(_node((16, 16), quantiles, rng), quantiles)
    large = node_gate(_node((32, 32), quantiles, rng), quantiles)
    assert 0 < small < large < 1
    # Its rate, away from the default number of draws' sampling noise (about ±1.5 % of nodes).
    precise = node_gate(_node((16, 16), quantiles, rng), quantiles, draws=1000)
    cleared = np.mean([slide_score(_node((16, 16), quantiles, rng)) >= precise for _ in range(1000)])
    assert 1 - NODE_GATE_LEVEL - 0.02 <= cleared <= 1 - NODE_GATE_LEVEL + 0.02
    assert abs(small - precise) < 0.02
    positive = _node((16, 16), quantiles, rng)
    positive[7:10, 7:10] = 0.9  # a 3 x 3-patch metastasis
    assert slide_score(positive) > small


def test_the_node_gate_is_deterministic_and_needs_tissue_and_quantiles():
    quantiles = _quantiles()
    heatmap = _node((20, 24), quantiles, np.random.default_rng(2))
    assert node_gate(heatmap, quantiles) == node_gate(heatmap, quantiles)
    assert node_gate(np.zeros((5, 5)), quantiles) is None
    assert node_gate(heatmap, None) is None and node_gate(heatmap, [0.5]) is None
    assert node_gate(heatmap, quantiles, level=0) is None  # predict --node-gate 0


@pytest.mark.tf
def test_calibrate_thresholds_gives_a_model_file_its_detection_threshold(tmp_path, synthetic_model):
    """The script a bundled model is installed with, on any model file: the card's threshold becomes the
    detection threshold, Youden's cut and the screening threshold are kept beside it, the weights unchanged."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from napari_lymphmet.model import read_card

    from .conftest import write_patch_folder

    model = Path(shutil.copy(synthetic_model[0], tmp_path / "model.keras"))
    before = read_card(model)
    folder = write_patch_folder(tmp_path / "valid", lambda label: [f"{label}{i}.png" for i in range(24)],
                                size=before.input_size)
    script = Path(__file__).resolve().parents[1] / "scripts" / "calibrate_thresholds.py"
    done = subprocess.run([sys.executable, str(script), str(model), str(folder), "--detection"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    card = read_card(model)
    validation = card.validation
    assert card.threshold == validation["detection_threshold"]
    assert 0 <= validation["false_alarms_per_mm2"] <= FALSE_ALARMS_PER_MM2
    assert 0 <= validation["small_lesion_sensitivity"] <= 1 and 0 < validation["youden_threshold"] < 1
    assert 0 <= card.screen_threshold <= 1
    quantiles = card.normal_score_quantiles  # the node gate's tumor-free tissue
    assert len(quantiles) == 201 and list(quantiles) == sorted(quantiles)
    assert (card.backbone, card.input_size, card.patch_mpp) == (before.backbone, before.input_size, before.patch_mpp)
