"""Bundled models by name: listed, the default for predict and the widget, scored and fine-tuned by name."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_lymphmet.model import DEFAULT_MODEL, bundled_models, read_card

from .conftest import DATA, run_main, write_patch_folder

pytestmark = pytest.mark.tf

PCAM = DATA / "patches" / "pcam"


def test_the_default_model_ships_with_the_package_and_is_listed():
    assert DEFAULT_MODEL in bundled_models()
    done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "models"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout.strip().splitlines()[-1])
    assert listing["default"] == DEFAULT_MODEL
    (entry,) = [m for m in listing["models"] if m["name"] == DEFAULT_MODEL]
    assert entry["backbone"] == "small-cnn" and entry["patch_mpp"] == pytest.approx(0.972)
    assert entry["patch_size"] == 96 and 0 < entry["threshold"] < 1 and entry["validation"]["auc"] > 0.9
    assert "tensorflow" not in done.stderr.lower()  # listing reads the cards, not the networks


def test_a_name_that_is_neither_file_nor_bundled_exits_2_and_lists_the_names(tmp_path, capsys, small_synthetic):
    code, _, err = run_main(capsys, "predict", str(small_synthetic), "--model", "lymph-node-40x", "-o",
                            str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert "lymph-node-40x" in err and DEFAULT_MODEL in err


def test_predict_without_a_model_runs_the_bundled_default(tmp_path, capsys):
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    slide = tmp_path / "node.tif"
    write_synthetic_slide(slide, SynthSpec(width=3072, height=2048, seed=5, lesions=1, mpp=0.5))
    code, summary, err = run_main(capsys, "predict", str(slide), "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert summary["model"] == DEFAULT_MODEL
    (result,) = summary["slides"]
    card = read_card(bundled_models()[DEFAULT_MODEL])
    # The grid is the model's own: 96 px at 0.972 µm/px on a 0.5 µm/px slide.
    assert result["downsample"] == pytest.approx(96 * card.patch_mpp / 0.5)
    assert result["patches"] > 0 and (tmp_path / "out" / "heatmap.tif").exists()


def test_score_by_name_on_real_patches_from_other_slides(capsys):
    if not PCAM.exists():
        pytest.skip(f"test data not found: {PCAM}")
    code, metrics, err = run_main(capsys, "score", DEFAULT_MODEL, str(PCAM / "valid"), "--no-tta")
    assert code == 0, err
    assert metrics["n"] == 2907 and metrics["auc"] > 0.9


def test_fine_tuning_a_bundled_model_by_name_keeps_its_input_and_resolution(tmp_path, capsys):
    write_patch_folder(tmp_path / "data", lambda _label: [f"s{s}_{i * 64}_0.png" for s in "ab" for i in range(6)],
                       size=64, seed=3)
    code, summary, err = run_main(capsys, "train", str(tmp_path / "data"), "-o", str(tmp_path / "tuned.keras"),
                                  "--weights", DEFAULT_MODEL, "--epochs", "1", "--batch-size", "8")
    assert code == 0, err
    parent = read_card(bundled_models()[DEFAULT_MODEL])
    card = read_card(tmp_path / "tuned.keras")
    assert (card.backbone, card.input_size, card.patch_size, card.patch_mpp) == \
        (parent.backbone, parent.input_size, parent.patch_size, parent.patch_mpp)
    assert card.input_space == parent.input_space and card.extra["parent"]["model"] == f"{DEFAULT_MODEL}.keras"


def test_the_bundled_model_finds_real_metastases_on_slides_of_unseen_tissue(tmp_path, capsys):
    """The whole-slide road on real tissue: predict with no model, then evaluate, as a user runs them.

    Two slides at CAMELYON16's 40× geometry (0.243 µm/px) tiled from PCam valid/ patches (slides the
    model never trained on): one with two metastases, one tumor-free.
    """
    from napari_lymphmet.synthetic import write_mosaic_slide

    if not PCAM.exists():
        pytest.skip(f"test data not found: {PCAM}")
    rng = np.random.default_rng(0)
    normal = iter(rng.permutation(sorted((PCAM / "valid" / "normal").glob("*.jpg"))))
    tumor = iter(rng.permutation(sorted((PCAM / "valid" / "tumor").glob("*.jpg"))))
    slides = tmp_path / "slides"
    slides.mkdir()
    lesions = write_mosaic_slide(slides / "node_tumor.tif", normal, tumor, side=12,
                                 lesions=[(2, 2, 3, 3), (7, 6, 4, 4)], seed=1, upsample=4)
    write_mosaic_slide(slides / "node_clear.tif", normal, tumor, side=12, lesions=[], seed=2, upsample=4)
    assert len(lesions) == 2 and not (slides / "node_clear.xml").exists()
    code, summary, err = run_main(capsys, "-q", "predict", str(slides), "-o", str(tmp_path / "out"))
    assert code == 0 and summary["model"] == DEFAULT_MODEL, err
    code, found, err = run_main(capsys, "evaluate", "--detections", str(tmp_path / "out"), "--truth", str(slides),
                                "--slides", str(slides))
    assert code == 0, err
    per_slide = {s["slide"]: s for s in found["per_slide"]}
    assert per_slide["node_tumor"]["mpp"] == pytest.approx(0.243)
    assert found["lesions"] == found["tp"] == 2  # every metastasis detected
    assert found["fp"] <= 3 * 2  # at most three false positives a slide on average
    assert found["slide_auc"] == 1.0  # the tumor slide ranks first


def test_the_bundled_models_thresholds_are_what_its_validation_patches_give():
    """Measured on PCam valid (slides it never trained on): the screen refines around 97 % of tumor cells, and
    the stored threshold is the detection threshold of one false alarm per 10 mm² of smoothed normal tissue,
    with about 85 % of the smallest scored lesions (2 × 2 patches) reaching it."""
    if not PCAM.exists():
        pytest.skip(f"test data not found: {PCAM}")
    from skimage.io import imread

    from napari_lymphmet.model import load_runner, predict_patches
    from napari_lymphmet.inference.lesion_calibration import detection_threshold

    runner, card = load_runner(DEFAULT_MODEL)
    assert 0 < card.screen_threshold < card.threshold
    paths = {label: sorted((PCAM / "valid" / label).glob("*.jpg")) for label in ("tumor", "normal")}
    scores = {label: np.concatenate([predict_patches(runner, card, np.stack([imread(p) for p in files[i:i + 256]]))
                                     for i in range(0, len(files), 256)]) for label, files in paths.items()}
    assert (scores["tumor"] >= card.screen_threshold).mean() >= 0.97 - 1e-3
    labels = np.repeat([1, 0], [len(scores["tumor"]), len(scores["normal"])])
    found = detection_threshold(labels, np.concatenate([scores["tumor"], scores["normal"]]),
                                cell_mm=card.read_size * card.patch_mpp / 1000)
    assert card.threshold == pytest.approx(found["detection_threshold"], abs=0.0051)
    assert found["small_lesion_sensitivity"] >= 0.8
    # The node gate's tumor-free tissue is the same normal patches' scores.
    levels = np.linspace(0, 1, len(card.normal_score_quantiles))
    np.testing.assert_allclose(card.normal_score_quantiles, np.quantile(scores["normal"], levels), atol=1e-3)


def test_two_bundled_models_join_into_one_ensemble_that_predicts_a_slide(tmp_path, capsys):
    """`lymphmet ensemble`: one file, the sigmoid of the members' mean logit, in Keras and ONNX Runtime alike,
    with thresholds from the validation patches, and predict takes it as any model."""
    from napari_lymphmet.model import load_model, load_runner, predict_patches
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    val = write_patch_folder(tmp_path / "val", lambda label: [f"{label}{i}.png" for i in range(12)], size=96)
    out = tmp_path / "pair.keras"
    code, summary, err = run_main(capsys, "ensemble", "lymph-node-10x", "lymph-node-10x-hed", "--val",
                                  str(val), "-o", str(out))
    assert code == 0, err
    assert summary["members"] == ["lymph-node-10x", "lymph-node-10x-hed"]
    assert len(summary["members_validation"]) == 2
    card = read_card(out)
    assert (card.backbone, card.input_space, card.patch_mpp) == ("ensemble", "rgb", pytest.approx(0.972))
    assert card.threshold == pytest.approx(summary["validation"]["threshold"])
    assert card.screen_threshold == pytest.approx(summary["validation"]["screen_threshold"])

    from skimage.io import imread

    patches = np.stack([imread(p) for p in sorted((val / "tumor").iterdir()) + sorted((val / "normal").iterdir())])
    members = [predict_patches(*load_model(name), patches) for name in summary["members"]]
    logit = np.mean([np.log(p) - np.log1p(-p) for p in np.clip(members, 1e-7, 1 - 1e-7)], axis=0)
    expected = 1 / (1 + np.exp(-logit))
    model, ens_card = load_model(out)  # safe mode: the ensemble's own layers are registered classes
    np.testing.assert_allclose(predict_patches(model, ens_card, patches), expected, atol=1e-5)
    runner, _ = load_runner(out)
    assert runner.name == "onnx"
    np.testing.assert_allclose(predict_patches(runner, ens_card, patches), expected, atol=1e-4)

    slide = tmp_path / "node.tif"
    write_synthetic_slide(slide, SynthSpec(width=2048, height=2048, seed=5, lesions=1, mpp=0.5))
    code, summary, err = run_main(capsys, "predict", str(slide), "--model", str(out), "-o", str(tmp_path / "pred"))
    assert code == 0, err
    assert summary["slides"][0]["patches"] > 0 and (tmp_path / "pred" / "heatmap.tif").exists()


def test_an_ensemble_of_models_that_read_different_patches_is_refused_in_one_line(tmp_path, capsys,
                                                                                   synthetic_model):
    val = write_patch_folder(tmp_path / "val", lambda label: [f"{label}{i}.png" for i in range(4)], size=96)
    model, _slide = synthetic_model  # 64 px at 1 µm/px, the bundled model 96 px at 0.972
    for argv in ([DEFAULT_MODEL], [DEFAULT_MODEL, str(model)]):
        code, _, err = run_main(capsys, "ensemble", *argv, "--val", str(val), "-o", str(tmp_path / "e.keras"))
        assert code == 2 and err.count("\n") == 1 and err.startswith("error:"), err
    assert "same patches" in err and not (tmp_path / "e.keras").exists()
