"""Training and scoring: synthetic and real patches, the model file, safe mode, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_lymphmet.errors import InputError
from napari_lymphmet.evaluation import best_threshold, binary_metrics, roc_auc
from napari_lymphmet.model import read_patch_table, slide_of_filename, split_by_slide

from .conftest import DATA, run_main, write_patch_folder

pytestmark = pytest.mark.tf

CAMELYON = DATA / "patches" / "camelyon16"


def test_metrics_against_hand_computed_values():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert roc_auc(labels, scores) == pytest.approx(8 / 9)
    assert roc_auc(labels, np.full(6, 0.5)) == 0.5  # ties count half
    assert np.isnan(roc_auc(np.ones(3), np.arange(3)))
    m = binary_metrics(labels, scores, 0.5)
    assert (m["sensitivity"], m["specificity"], m["accuracy"]) == pytest.approx((2 / 3, 1.0, 5 / 6))
    t = best_threshold(labels, scores)
    at = binary_metrics(labels, scores, t)
    assert at["sensitivity"] + at["specificity"] == pytest.approx(5 / 3)  # the best Youden J here


def test_slide_ids_from_names_and_split_keeps_slides_whole(tmp_path):
    assert slide_of_filename("tumor_073_100242_30748.png") == "tumor_073"
    assert slide_of_filename("node_a_1024_2048_0.5mpp.png") == "node_a"
    write_patch_folder(tmp_path, lambda label: [f"s_{slide}_{i}_{i}.png" for slide in "abcd" for i in range(3)],
                       size=8)
    table = read_patch_table([tmp_path])
    train, val = split_by_slide(table, fraction=0.25)
    assert len(train) + len(val) == len(table) and len(val)
    assert not set(train.slides) & set(val.slides)
    assert set(val.labels) == {0, 1}


@pytest.fixture(scope="module")
def synthetic_patches(tmp_path_factory):
    """Patches from two synthetic slides of different seeds (so different stains)."""
    from napari_lymphmet import open_slide
    from napari_lymphmet.patches import PatchSpec, export_patches, plan_for_slide
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    root = tmp_path_factory.mktemp("model")
    folders = {}
    for name, seed in (("train", 31), ("test", 32)):
        path = root / f"slide_{name}.tif"
        write_synthetic_slide(path, SynthSpec(width=8192, height=8192, seed=seed, lesions=3, mpp=0.5))
        with open_slide(path) as slide:
            plan = plan_for_slide(slide, PatchSpec(size=64, mpp=1.0, stride=48, max_per_class=150, seed=seed),
                                  annotations=path.with_suffix(".xml"))
            export_patches([(slide, plan)], root / name)
        folders[name] = root / name
    return folders


def test_small_cnn_separates_a_held_out_synthetic_slide(synthetic_patches, tmp_path, capsys):
    out = tmp_path / "synth.keras"
    code, summary, err = run_main(
        capsys, "train", str(synthetic_patches["train"]), "-o", str(out), "--backbone", "small-cnn",
        "--weights", "none", "--epochs", "6", "--batch-size", "32", "--input-size", "64", "--ema", "0.95")
    assert code == 0, err
    assert summary["epochs_run"] >= 1 and summary["train"]["tumor"] > 20
    code, scored, err = run_main(capsys, "score", str(out), str(synthetic_patches["test"]))
    assert code == 0, err
    assert set(scored) == {"n", "auc", "accuracy", "sensitivity", "specificity", "threshold", "single_pass"}
    assert scored["single_pass"]["n"] == scored["n"]  # the patch as it is, from the same passes
    assert scored["auc"] >= 0.99, scored
    assert scored["accuracy"] >= 0.9


def test_a_time_limit_shortens_the_run_and_says_so(synthetic_patches, tmp_path, capsys):
    """A limit with no room past the first epoch: one epoch of the planned eight, a line saying so, a model."""
    code, summary, err = run_main(
        capsys, "train", str(synthetic_patches["train"]), "-o", str(tmp_path / "m.keras"), "--backbone",
        "small-cnn", "--weights", "none", "--input-size", "32", "--time-limit", "0.5")
    assert code == 0, err
    assert summary["epochs_run"] == 1 and re.search(r"1 of \d\d+ epochs fit in 0.5 min", err), err
    assert (tmp_path / "m.keras").is_file()


def test_the_learning_rate_reaches_its_floor_at_the_end_of_a_shortened_plan():
    from napari_lymphmet.model.schedule import Plan

    plan = Plan(epochs=10, steps_per_epoch=100, learning_rate=1e-3, deadline=1000.0)
    assert plan.rate() == pytest.approx(1e-3)
    assert not plan.refit(50.0, now=100.0) and plan.epochs == 10  # 19 more would fit: the plan stands
    assert plan.refit(300.0, now=100.0) and plan.epochs == 4  # three more fit in the 900 s left
    assert plan.refit(400.0, now=500.0, done=2) and plan.epochs == 3  # the host slowed: one more fits
    assert not plan.refit(400.0, now=990.0, done=3) and plan.epochs == 3  # never fewer than are done
    plan.step = 150
    assert plan.rate() == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # half way through the shortened plan
    plan.step = 300
    assert plan.rate() == pytest.approx(5e-5)
    assert not Plan(epochs=3, steps_per_epoch=5, learning_rate=1e-3).refit(1e6, now=0.0)  # no deadline


def test_a_fast_host_grows_a_default_plan_after_its_first_epoch_only():
    from napari_lymphmet.model.schedule import Plan

    plan = Plan(epochs=10, steps_per_epoch=100, learning_rate=1e-3, deadline=1000.0, most=30)
    assert plan.refit(40.0, now=40.0) and plan.epochs == 25  # 24 more fit in the 960 s left
    assert not plan.refit(20.0, now=60.0, done=2) and plan.epochs == 25  # later refits never grow it
    assert plan.refit(60.0, now=120.0, done=2) and plan.epochs == 16  # but shrink it when the host slows (14 more)
    plan = Plan(epochs=10, steps_per_epoch=100, learning_rate=1e-3, deadline=1000.0, most=30)
    assert plan.refit(1.0, now=1.0) and plan.epochs == 30  # never past ``most``
    plan.step = 1500
    assert plan.rate() == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # half way through the longer plan
    plan = Plan(epochs=10, steps_per_epoch=100, learning_rate=1e-3, deadline=1000.0)
    assert not plan.refit(1.0, now=1.0) and plan.epochs == 10  # without ``most`` (epochs given): as planned


def test_the_weight_average_spans_at_most_a_quarter_of_a_phase():
    from napari_lymphmet.model.train import _average_momentum

    assert _average_momentum(0.998, 9000) == 0.998  # a default PCam run: about 500 steps, under 2 of 15 epochs
    assert _average_momentum(0.998, 60) == pytest.approx(1 - 4 / 60)  # a short run: the last 15 steps
    assert _average_momentum(0.998, 4) == 0.0 and _average_momentum(0.0, 9000) == 0.0  # too short; off


def test_model_file_reloads_in_a_fresh_process_with_metadata(synthetic_patches, tmp_path):
    from napari_lymphmet.model import TrainConfig, train

    table = read_patch_table([synthetic_patches["train"]])
    every_fourth = np.arange(len(table)) % 4 == 0
    train_t, val_t = table.subset(~every_fourth), table.subset(every_fourth)
    result = train(train_t, val_t, tmp_path / "m.keras",
                   TrainConfig(backbone="small-cnn", weights="none", epochs=1, input_size=64))
    code = (
        "import json, sys; from napari_lymphmet.model import load_model;"
        "m, card = load_model(sys.argv[1]); print(json.dumps({'meta': card.to_dict(), 'shape': list(m.input_shape)}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(result.path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    meta = loaded["meta"]
    assert loaded["shape"] == [None, 64, 64, 3]
    assert meta["backbone"] == "small-cnn" and meta["input_size"] == 64 and meta["patch_size"] == 64
    assert meta["patch_mpp"] == 1.0 and meta["classes"] == ["normal", "tumor"]
    assert 0 < meta["threshold"] < 1 and meta["training"]["train"]["tumor"] > 0
    assert "history" in meta and meta["epochs_run"] == 1
    # The screening threshold, from the validation scores: the score 97 % of its tumor patches reach.
    validation = meta["validation"]
    assert validation["screen_sensitivity"] == 0.97 and 0 <= validation["normal_above_screen"] <= 1
    assert 0 <= validation["screen_threshold"] <= 1


def test_unsafe_and_invalid_model_files_are_refused(tmp_path, capsys):
    import keras

    from napari_lymphmet.model import METADATA_ENTRY, load_model

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(METADATA_ENTRY, json.dumps({"backbone": "small-cnn", "input_size": 8}))
    with pytest.raises(InputError, match="refused in safe mode"):
        load_model(path)
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    data = write_patch_folder(tmp_path / "data", lambda label: [f"{label}_0_0.png"], size=8)  # good patches
    code, _, err = run_main(capsys, "score", str(fake), str(data))
    assert code == 2 and "not a Keras model" in err and err.count("\n") == 1
    code, _, err = run_main(capsys, "score", str(tmp_path / "missing.keras"), str(data))
    assert code == 2 and "no such model file" in err


def test_imagenet_weights_offline_fail_fast_with_advice(tmp_path, capsys):
    cached = Path.home() / ".keras" / "models" / "efficientnetb0_notop.h5"
    if cached.exists():
        pytest.skip("ImageNet weights are cached here; the offline path cannot be exercised")
    (tmp_path / "tumor").mkdir()
    (tmp_path / "normal").mkdir()
    from PIL import Image

    for label in ("tumor", "normal"):
        for i in range(2):
            Image.new("RGB", (32, 32), (200, 100 + 50 * i, 150)).save(tmp_path / label / f"s{i}_0_0.png")
    code, _, err = run_main(capsys, "train", str(tmp_path), "-o", str(tmp_path / "m.keras"), "--epochs", "1")
    assert code == 2
    last = err.strip().splitlines()[-1]  # Keras may announce the download attempt first
    assert last.startswith("error:") and "ImageNet weights" in last and "--weights none" in last
    assert "Traceback" not in err
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.slow
def test_real_camelyon_patches_left_out_slide_is_called_normal(tmp_path):
    """Trained on tumor_073 only, tumor_004's normal patches (another stain) score normal."""
    if not CAMELYON.exists():
        pytest.skip(f"test data not found: {CAMELYON}")
    from skimage.io import imread

    from napari_lymphmet.model import TrainConfig, load_model, predict_patches, train

    table = read_patch_table([CAMELYON])
    is_073 = table.slides == "tumor_073"
    assert set(table.slides) == {"tumor_073", "tumor_004"} and set(table.labels[is_073]) == {0, 1}
    train(table.subset(is_073), None, tmp_path / "m.keras",
          TrainConfig(backbone="small-cnn", weights="none", epochs=25, batch_size=16, patch_mpp=0.243))
    model, meta = load_model(tmp_path / "m.keras")
    left_out = np.stack([imread(p)[..., :3] for p in table.paths[~is_073]])
    scores = predict_patches(model, meta, left_out)
    assert (scores < meta.threshold).mean() >= 6 / 7, scores
    trained_on = np.stack([imread(p)[..., :3] for p in table.paths[is_073]])
    assert roc_auc(table.labels[is_073], predict_patches(model, meta, trained_on)) > 0.9


@pytest.mark.parametrize("backbone", ["efficientnetb0", "mobilenetv3small", "small-cnn", "p4m-cnn"])
def test_every_backbone_builds_and_predicts_without_pretrained_weights(backbone):
    from napari_lymphmet.model import ModelCard, build_model, predict_patches

    model = build_model(backbone, input_size=64, weights="none")
    assert model.output_shape == (None, 1)
    meta = ModelCard(backbone=backbone, input_size=64,
                     input_space="hed" if backbone in ("small-cnn", "p4m-cnn") else "rgb")
    scores = predict_patches(model, meta, np.full((2, 80, 80, 3), 200, np.uint8))  # resized to 64
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_test_time_augmentation_is_the_mean_over_the_eight_views():
    from napari_lymphmet.model import ModelCard, build_model, predict_patches

    model = build_model("small-cnn", input_size=32, weights="none")
    meta = ModelCard(backbone="small-cnn", input_size=32, input_space="hed")
    patches = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    views = [np.rot90(patches, k, axes=(1, 2))[:, :, ::-1] if flip else np.rot90(patches, k, axes=(1, 2))
             for k in range(4) for flip in (False, True)]
    expected = np.mean([predict_patches(model, meta, np.ascontiguousarray(v)) for v in views], axis=0)
    averaged = predict_patches(model, meta, patches, tta=True)
    np.testing.assert_allclose(averaged, expected, atol=1e-5)
    # ...so a turned or mirrored patch scores the same.
    np.testing.assert_allclose(predict_patches(model, meta, np.ascontiguousarray(patches[:, ::-1]), tta=True),
                               averaged, atol=1e-5)
    assert not np.allclose(predict_patches(model, meta, patches), averaged, atol=1e-5)


def test_four_views_are_the_mean_over_the_four_turns():
    from napari_lymphmet.model import build_model, predict_prepared, predict_views

    model = build_model("small-cnn", input_size=32, weights="none")
    x = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
    turns = [predict_prepared(model, np.ascontiguousarray(np.rot90(x, k, axes=(1, 2)))) for k in range(4)]
    np.testing.assert_allclose(predict_views(model, x, 4), np.mean(turns, axis=0), atol=1e-5)
    np.testing.assert_array_equal(predict_views(model, x, 1), predict_prepared(model, x))
    with pytest.raises(ValueError, match="views must be one of"):
        predict_views(model, x, 3)


def test_a_p4m_network_gives_one_answer_for_a_patch_and_its_eight_turns_and_mirrorings(tmp_path):
    """Invariant by construction, trained or not: kernels tied across the group, normalised per filter."""
    from napari_lymphmet.model import ModelCard, load_model, save_model
    from napari_lymphmet.model.equivariant import d4_tables, p4m_cnn, transform

    model = p4m_cnn(96, filters=(2, 3, 4, 4, 6))
    x = np.random.default_rng(2).uniform(0, 255, (16, 96, 96, 3)).astype(np.float32)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)  # batch-norm statistics no longer neutral
    scores = np.asarray(model(x, training=False)).ravel()
    assert scores.std() > 1e-4  # not a constant, which would be trivially invariant
    for g in range(1, 8):
        turned = np.asarray(model(np.ascontiguousarray(transform(x, g, axes=(1, 2))), training=False)).ravel()
        np.testing.assert_allclose(turned, scores, atol=1e-5, err_msg=f"group element {g}")
    product, inverse = d4_tables()
    assert (product[np.arange(8), inverse] == 0).all() and (product[0] == np.arange(8)).all()
    # Saved with its card, it loads in Keras safe mode as any bundled model does.
    path = save_model(model, tmp_path / "p4m.keras", ModelCard(backbone="p4m-cnn", input_size=96))
    loaded, card = load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)).ravel(), scores, atol=1e-6)


OLD_MODEL = Path(__file__).parent / "data" / "model-0.1.0.keras"  # made by tests/data/make_model_0_1_0.py


def test_a_model_saved_by_0_1_0_loads_into_a_model_card():
    from napari_lymphmet.model import ModelCard, load_model, predict_patches, read_card, read_metadata

    card = read_card(OLD_MODEL)  # no TensorFlow needed
    assert isinstance(card, ModelCard)
    assert (card.backbone, card.input_size, card.patch_size, card.patch_mpp) == ("small-cnn", 32, 32, 0.5)
    assert card.input_space == "hed" and card.classes == ("normal", "tumor") and card.stain_norm is None
    assert card.threshold == pytest.approx(0.4749959856) and card.validation["auc"] == 0.8125
    assert card.epochs_run == 2 and not card.cancelled and card.history["val_auc"] == (0.84375, 0.9375)
    assert card.training["train"]["slides"] == ("sb",) and card.training["config"]["epochs"] == 2
    # Every key 0.1.0 wrote comes back with its value; the card adds only its version.
    old, new = read_metadata(OLD_MODEL), card.to_dict()
    assert {k: new[k] for k in old} == old and set(new) - set(old) == {"card_version"}
    model, loaded = load_model(OLD_MODEL)
    assert loaded == card and model.input_shape == (None, 32, 32, 3)
    scores = predict_patches(model, loaded, np.full((3, 32, 32, 3), 180, np.uint8))
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_model_card_checks_its_input_and_survives_pickling():
    import pickle

    from napari_lymphmet.model import ModelCard

    with pytest.raises(InputError, match="lacks backbone"):
        ModelCard.from_dict({"input_size": 64}, source="m.keras")
    with pytest.raises(InputError, match="newer"):
        ModelCard.from_dict({"backbone": "small-cnn", "input_size": 64, "card_version": 99})
    with pytest.raises(InputError, match="m.keras: model card: input_size must be a whole number"):
        ModelCard.from_dict({"backbone": "small-cnn", "input_size": "big"}, source="m.keras")
    with pytest.raises(InputError, match="threshold must be a probability"):
        ModelCard(backbone="small-cnn", input_size=64, threshold=float("nan"))
    card = ModelCard.from_dict({"backbone": "small-cnn", "input_size": 64, "training": {"a": [1, 2]},
                                "from_the_future": {"x": 1}})
    assert card.extra["from_the_future"]["x"] == 1 and card.to_dict()["from_the_future"] == {"x": 1}
    with pytest.raises(TypeError):
        card.training["a"] = 3  # read-only all the way down
    assert pickle.loads(pickle.dumps(card)) == card  # dask.distributed ships cards to workers


def test_patches_without_slide_ids_are_not_split_and_not_listed(tmp_path, capsys):
    """PatchCamelyon-style names say nothing about their slide: no fake slide split, no list of names."""
    write_patch_folder(tmp_path / "pcam", lambda label: [f"pcam-train-{i + 40 * (label == 'normal'):07d}.png"
                                                         for i in range(40)], seed=1)
    table = read_patch_table([tmp_path / "pcam"])
    assert table.unknown_slides == 80 and slide_of_filename("pcam-train-0000001.jpg") == ""
    assert table.summary() == {"patches": 80, "tumor": 40, "normal": 40, "slides": [], "patches_without_slide_id": 80}
    train_t, val_t = split_by_slide(table)
    assert len(train_t) == 80 and len(val_t) == 0
    code, summary, err = run_main(capsys, "train", str(tmp_path / "pcam"), "-o", str(tmp_path / "m.keras"),
                                  "--backbone", "small-cnn", "--weights", "none", "--epochs", "1", "--input-size", "32")
    assert code == 0, err
    assert "carry no slide id" in err and "--val" in err
    assert summary["train"]["slides"] == [] and summary["val_slides"] is None
