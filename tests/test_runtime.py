"""The fast runtime: ONNX Runtime gives Keras's probabilities, never from a stale export, and TensorFlow
takes over where it is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from napari_lymphmet.model import DEFAULT_MODEL, bundled_models, load_model, load_runner, prepare_batch

from .conftest import DATA, run_main

pytestmark = pytest.mark.tf

PCAM_VALID = DATA / "patches" / "pcam" / "valid"


def _real_patches(n: int = 64) -> np.ndarray:
    """PCam patches of both classes from slides the bundled model never trained on."""
    from skimage.io import imread

    files = [p for label in ("tumor", "normal") for p in sorted((PCAM_VALID / label).glob("*.jpg"))[: n // 2]]
    if not files:
        pytest.skip(f"test data not found: {PCAM_VALID}")
    return np.stack([imread(p)[..., :3] for p in files])


@pytest.mark.parametrize("name", sorted(bundled_models()))
def test_the_bundled_models_ship_an_export_that_gives_kerass_probabilities(name):
    runner, card = load_runner(name)
    assert runner.name == "onnx"
    x = prepare_batch(_real_patches(), card)
    keras_model, _ = load_model(name)
    expected = np.asarray(keras_model(x, training=False)).ravel()
    np.testing.assert_allclose(runner(x).ravel(), expected, atol=1e-4)
    assert expected.std() > 0.05  # real tumor and normal patches: a spread of scores, not a constant


@pytest.mark.parametrize(("name", "networks"), [(DEFAULT_MODEL, 1), ("lymph-node-10x-pair", 2)])
def test_each_network_of_a_bundled_model_standardises_a_patch_in_one_onnx_kernel(name, networks):
    """tf2onnx spells a per-patch standardisation out in eleven whole-patch ops (a fifth of ONNX Runtime's
    time a network); the shipped exports have one LayerNormalization a network."""
    import onnx

    runner, card = load_runner(name)
    graph = onnx.load(bundled_models()[name].with_suffix(".onnx")).graph
    if networks > 1:
        assert card.backbone == "ensemble" and len(card.training["members"]) == networks
    assert [node.op_type for node in graph.node].count("LayerNormalization") == networks
    assert "ReduceMean" not in {node.op_type for node in graph.node}


def test_a_p4m_network_and_a_trained_synthetic_model_export_within_tolerance(tmp_path, synthetic_model):
    from napari_lymphmet.model import ModelCard, save_model
    from napari_lymphmet.model.equivariant import p4m_cnn

    p4m = save_model(p4m_cnn(96, filters=(2, 3, 4, 4, 6)), tmp_path / "p4m.keras",
                     ModelCard(backbone="p4m-cnn", input_size=96))
    for path in (p4m, synthetic_model[0]):
        runner, card = load_runner(path)
        assert runner.name == "onnx"
        x = np.random.default_rng(3).normal(0, 1, (32, card.input_size, card.input_size, 3)).astype(np.float32)
        keras_model, _ = load_model(path)
        np.testing.assert_allclose(runner(x), np.asarray(keras_model(x, training=False)), atol=1e-4)


def test_an_export_of_another_model_file_is_never_used(tmp_path, synthetic_model):
    """A model retrained into the same file name must not run with the export of the old one."""
    from napari_lymphmet.model import ModelCard, build_model, save_model
    from napari_lymphmet.model.runtime import write_onnx_beside

    path = shutil.copy(synthetic_model[0], tmp_path / "node.keras")
    write_onnx_beside(path)
    stale = (tmp_path / "node.onnx").read_bytes()
    # Retrained (here: fresh weights) into the same name; the old export stays beside it.
    save_model(build_model("small-cnn", input_size=64, weights="none"), path,
               ModelCard(backbone="small-cnn", input_size=64, input_space="hed"))
    assert (tmp_path / "node.onnx").read_bytes() == stale
    runner, card = load_runner(path)
    x = np.random.default_rng(4).normal(0, 1, (16, 64, 64, 3)).astype(np.float32)
    keras_model, _ = load_model(path)
    np.testing.assert_allclose(runner(x), np.asarray(keras_model(x, training=False)), atol=1e-4)


def test_predict_runs_without_tensorflow_once_exported_and_says_so(tmp_path):
    """The bundled model's export ships with it: a slide is predicted with TensorFlow never imported."""
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    slide = tmp_path / "node.tif"
    write_synthetic_slide(slide, SynthSpec(width=3072, height=2048, seed=5, lesions=1, mpp=0.5))
    code = ("import sys, json\nfrom napari_lymphmet.cli import main\n"
            f"status = main(['-q', 'predict', {str(slide)!r}, '-o', {str(tmp_path / 'out')!r}])\n"
            "print(json.dumps({'status': status, 'tensorflow': 'tensorflow' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    *_, summary_line, probe_line = done.stdout.strip().splitlines()
    assert json.loads(probe_line) == {"status": 0, "tensorflow": False}
    (row,) = json.loads(summary_line)["slides"]
    assert row["runtime"] == "onnx" and row["patches"] > 0
    assert json.loads((tmp_path / "out" / "heatmap.json").read_text())["runtime"] == "onnx"


def test_tensorflow_runs_the_model_where_onnx_runtime_is_not_installed(tmp_path, synthetic_model):
    """Same heatmap, to 1e-4, from both runtimes; without ONNX Runtime, TensorFlow without a word."""
    model, slide = synthetic_model
    code = ("import sys\nsys.modules['onnxruntime'] = None  # as if not installed\n"
            "from napari_lymphmet.cli import main\n"
            f"raise SystemExit(main(['-q', 'predict', {str(slide)!r}, '--model', {str(model)!r}, "
            f"'-o', {str(tmp_path / 'tf')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # Nothing of ours: no warning that the fast runtime is missing, no Python warning or traceback. (TensorFlow's
    # own C++ start-up lines are held back by the quiet import; under CI load one run let two slip through.)
    ours = [line for line in done.stderr.splitlines() if line.startswith(("warning:", "error:"))
            or "Warning" in line or "Traceback" in line]
    assert ours == [], done.stderr
    (row,) = json.loads(done.stdout.strip().splitlines()[-1])["slides"]
    assert row["runtime"] == "tensorflow"
    onnx_run = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "-q", "predict", str(slide),
                               "--model", str(model), "-o", str(tmp_path / "onnx")],
                              capture_output=True, text=True, timeout=600)
    assert onnx_run.returncode == 0, onnx_run.stderr[-2000:]
    (fast,) = json.loads(onnx_run.stdout.strip().splitlines()[-1])["slides"]
    assert fast["runtime"] == "onnx"
    import tifffile

    np.testing.assert_allclose(tifffile.imread(fast["heatmap"]), tifffile.imread(row["heatmap"]), atol=1e-4)


def test_runtime_onnx_without_onnx_runtime_is_one_line_and_exit_2(tmp_path, small_synthetic):
    code = ("import sys\nsys.modules['onnxruntime'] = None\nfrom napari_lymphmet.cli import main\n"
            f"raise SystemExit(main(['predict', {str(small_synthetic)!r}, '--runtime', 'onnx', "
            f"'-o', {str(tmp_path / 'out')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "onnxruntime" in done.stderr, done.stderr


def test_models_says_which_runtime_runs(capsys):
    code, listing, err = run_main(capsys, "models")
    assert code == 0, err
    assert listing["runtime"] == "onnx" and listing["default"] == DEFAULT_MODEL
