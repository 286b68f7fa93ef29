"""Whole-slide inference: heatmap quality, geometry, resume, distributed, CLI outputs."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from napari_lymphmet import open_slide
from napari_lymphmet.annotations import TUMOR, Annotation, rasterize, read_asap_xml
from napari_lymphmet.evaluation import roc_auc
from napari_lymphmet.inference import DETECTION_SMOOTHING, grid_for, predict_slide, read_heatmap, smooth_heatmap
from napari_lymphmet.model import load_model
from napari_lymphmet.tissue import tissue_mask

from .conftest import run_main

pytestmark = pytest.mark.tf


def _predict(slide_path, model_path, **options):
    model, meta = load_model(model_path)
    with open_slide(slide_path) as slide:
        mask = tissue_mask(slide)
        return predict_slide(slide, model, meta, tissue_mask=mask.mask, tissue_downsample=mask.downsample,
                             **options)


def test_smoothed_detection_drops_a_lone_cell_and_keeps_a_lesion():
    from napari_lymphmet.inference import detect, tumor_regions

    heatmap = np.zeros((20, 20), np.float32)
    heatmap[3, 3] = 0.9  # one patch's false alarm
    heatmap[10:13, 10:14] = 0.9  # a lesion three patches by four
    raw = detect(heatmap, 100, threshold=0.5)
    smoothed = detect(heatmap, 100, threshold=0.5, smooth=1.0)
    assert len(raw) == 2 and len(tumor_regions(heatmap, 100, threshold=0.5)) == 2
    (region,) = tumor_regions(heatmap, 100, threshold=0.5, smooth=1.0)  # the lesion's, at its full extent
    assert len(smoothed) == 1 and region.cells == 12 and region.probability_max == pytest.approx(0.9)
    confidence, x, y = smoothed[0]
    assert 1000 <= x < 1400 and 1000 <= y < 1300 and 0.5 < confidence < 0.9
    assert np.array_equal(detect(heatmap, 100, threshold=0.5, smooth=0), raw)


def test_heatmap_separates_true_tumor_cells_and_top_detection_is_in_a_lesion(synthetic_model):
    from napari_lymphmet.inference import detect

    model_path, slide_path = synthetic_model
    result = _predict(slide_path, model_path)
    D = result.grid.downsample
    assert D == 128 and result.complete and result.total > 500
    lesions = read_asap_xml(slide_path.with_suffix(".xml"))
    tumor = rasterize(lesions, result.heatmap.shape, downsample=D)  # cell centre in tumor
    from scipy import ndimage

    near_tumor = ndimage.binary_dilation(tumor, iterations=2)
    predicted = result.heatmap > 0  # cells on tissue
    normal = predicted & ~near_tumor
    labels = np.concatenate([np.ones(tumor[predicted].sum()), np.zeros(normal.sum())])
    scores = np.concatenate([result.heatmap[tumor & predicted], result.heatmap[normal]])
    assert tumor.sum() > 20
    assert roc_auc(labels, scores) >= 0.98
    confidence, x, y = detect(result.heatmap, D)[0]
    assert rasterize(lesions, (1, 1), downsample=1.0).shape == (1, 1)
    assert any(rasterize([a], (int(y) + 1, int(x) + 1))[int(y), int(x)] for a in lesions)


@pytest.fixture(scope="module")
def square_slide(tmp_path_factory):
    """Normal node tissue everywhere, except one square of tumor texture at a known place."""
    from napari_lymphmet.synthetic import LAYOUT_STEP, NORMAL, TUMOR, SynthSpec, make_layout
    from napari_lymphmet.wsi import write_pyramid_tiff

    spec = SynthSpec(width=4096, height=3072, seed=7, lesions=0, mpp=0.5, artefacts=())
    layout = make_layout(spec)
    layout.classes[:] = NORMAL
    x0, y0, side = 2560, 1024, 768  # level-0 px
    s = LAYOUT_STEP
    layout.classes[y0 // s:(y0 + side) // s, x0 // s:(x0 + side) // s] = TUMOR
    path = tmp_path_factory.mktemp("square") / "square.tif"
    write_pyramid_tiff(path, layout.render, spec.width, spec.height, mpp=spec.mpp)
    return path, (x0 + side / 2, y0 + side / 2)


def test_heatmap_peak_lies_on_the_painted_square(synthetic_model, square_slide, tmp_path):
    from napari.layers import Image
    from scipy import ndimage

    from napari_lymphmet._napari.layers import mask_geometry, slide_layer_data
    from napari_lymphmet.inference import write_outputs

    model_path, _ = synthetic_model
    path, (cx, cy) = square_slide
    result = _predict(path, model_path)
    with open_slide(path) as slide:
        write_outputs(tmp_path, slide, result, model_name="m")
        scale, translate = mask_geometry(slide, result.grid.downsample)
        data, kwargs, _ = slide_layer_data(slide)
        slide_layer = Image(data, **kwargs)
    heatmap, info = read_heatmap(tmp_path / "heatmap.tif")  # the file's geometry, not the array's
    np.testing.assert_array_equal(heatmap, result.heatmap)
    D = info["downsample"]
    # The square is a plateau of ~1; its peak is the plateau's probability-weighted centre.
    labels, _ = ndimage.label(result.heatmap > 0.5)
    biggest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    r, c = ndimage.center_of_mass(result.heatmap * biggest)
    # Cell (r, c) covers [c·D, (c+1)·D): its centre is (c + 0.5)·D.
    assert abs((c + 0.5) * D - cx) <= D and abs((r + 0.5) * D - cy) <= D, ((c + 0.5) * D, (r + 0.5) * D)
    assert result.heatmap[int(cy // D), int(cx // D)] > 0.5
    # The same in napari world coordinates: the heatmap layer's peak against
    # the slide layer's square centre (level-0 pixel index = position - 0.5).
    heat_layer = Image(heatmap, scale=scale, translate=translate)
    peak_world = np.asarray(heat_layer.data_to_world((r, c)))
    centre_world = np.asarray(slide_layer.data_to_world((cy - 0.5, cx - 0.5)))
    assert np.all(np.abs(peak_world - centre_world) <= np.asarray(scale)), (peak_world, centre_world)


def test_the_node_gate_calls_a_node_negative_that_tumor_free_tissue_would_match_until_a_mark_says_tumor(
        synthetic_model, square_slide, tmp_path):
    """Issue 31: a node whose slide score tumor-free tissue like the validation set's reaches is negative, its
    detections still written for review; marking one tumor in the review gives the node its category."""
    import csv

    from napari_lymphmet.inference import node_category, slide_score, write_outputs
    from napari_lymphmet.workflows import Review

    model_path, _ = synthetic_model
    path, _ = square_slide
    result = _predict(path, model_path)
    score = slide_score(result.heatmap)
    written = {}
    with open_slide(path) as slide:
        # Tumor-free tissue that scores low everywhere: the square clears the gate. Tissue that scores a
        # little above the square everywhere: it does not.
        for name, normal in (("low", (0.0, 0.05)), ("high", (score + 0.01, score + 0.01))):
            written[name] = write_outputs(tmp_path / name, slide, result, model_name="m", normal_quantiles=normal)
    low, high = (json.loads((tmp_path / name / "heatmap.json").read_text()) for name in ("low", "high"))
    assert low["node_gate"]["passed"] and low["node_gate"]["gate"] < score
    sizes = [float(r["major_axis_mm"]) for r in csv.DictReader(open(tmp_path / "high" / "lesions.csv"))]
    assert low["category"] == node_category(sizes) == "micro"  # the 0.38 mm square
    assert not high["node_gate"]["passed"] and high["node_gate"]["gate"] > score
    assert high["category"] == written["high"]["category"] == "negative" and high["largest_lesion_mm"] is None
    assert high["detections"] == low["detections"] > 0 and sizes  # still there to review
    review = Review.open(tmp_path / "high")
    assert review.category == "negative"
    review.mark("tumor")  # the largest first
    assert review.category == "micro"


def test_an_outline_s_peak_is_the_heatmap_s_highest_value_inside_it(synthetic_model, square_slide):
    """What a fine-tune reads off each correction: the heatmap's own cells, not a finer or shifted sampling."""
    from napari_lymphmet.model import load_model
    from napari_lymphmet.workflows.corrections import region_peaks

    model_path, _ = synthetic_model
    path, (cx, cy) = square_slide
    heatmap = _predict(path, model_path, min_tissue=0).heatmap
    D = 128  # 64 px at 1 µm/px on a 0.5 µm/px slide

    def square(x: float, y: float, side: float) -> Annotation:
        return Annotation(np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side]]), TUMOR)

    outlines = [square(cx - 500, cy - 500, 1000),  # the painted square and its rim
                square(800, 1200, 700),  # normal node
                square(cx + 10, cy + 10, 40),  # smaller than a cell: the cell under it
                square(1e6, 1e6, 500)]  # off the slide
    model, card = load_model(model_path)
    with open_slide(path) as slide:
        raw = region_peaks(slide, model, card, outlines, smooth=0)
        smoothed = region_peaks(slide, model, card, outlines)  # as predict detects: on the smoothed map
    # Detection's map over the whole slide; the cells here are one patch wide, so sigma is one cell.
    whole = smooth_heatmap(heatmap, DETECTION_SMOOTHING)
    for peaks, values in ((raw, heatmap), (smoothed, whole)):
        expected = [values[int((cy - 500) / D + 0.5):int((cy + 500) / D + 0.5),
                           int((cx - 500) / D + 0.5):int((cx + 500) / D + 0.5)].max(),
                    values[int(1200 / D + 0.5):int(1900 / D + 0.5), int(800 / D + 0.5):int(1500 / D + 0.5)].max(),
                    values[int((cy + 30) // D), int((cx + 30) // D)]]
        np.testing.assert_allclose(peaks[:3], expected, atol=1e-5)
        assert peaks[0] > 0.5 > peaks[1] and np.isnan(peaks[3])


def test_interrupted_run_resumes_and_ends_identical(synthetic_model, tmp_path):
    model_path, slide_path = synthetic_model
    whole = _predict(slide_path, model_path, batch_size=32)
    checkpoint = tmp_path / ".partial.zarr"
    cancel = threading.Event()
    first = _predict(slide_path, model_path, batch_size=32, checkpoint=checkpoint, model_key="m",
                     progress=lambda done, total: done >= 200 and cancel.set(), cancel=cancel)
    assert not first.complete and checkpoint.exists() and 0 < first.predicted < first.total
    import zarr

    on_disk = zarr.open_group(checkpoint, mode="r")  # a chunked zarr store, cells done = cells predicted
    assert int(on_disk["done"][...].sum()) == first.predicted and on_disk["heatmap"].chunks[0] < first.grid.rows
    second = _predict(slide_path, model_path, batch_size=32, checkpoint=checkpoint, model_key="m")
    assert second.complete and second.resumed == first.predicted
    assert second.predicted == second.total - first.predicted < second.total
    np.testing.assert_allclose(second.heatmap, whole.heatmap, atol=1e-6)
    assert not checkpoint.exists()
    # A checkpoint of another model is ignored, not mixed in.
    _predict(slide_path, model_path, batch_size=32, checkpoint=checkpoint, model_key="m",
             progress=lambda done, total: cancel.set(), cancel=cancel)
    fresh = _predict(slide_path, model_path, batch_size=32, checkpoint=checkpoint, model_key="other")
    assert fresh.resumed == 0 and fresh.predicted == fresh.total


@pytest.mark.slow
def test_local_cluster_gives_the_in_process_heatmap(synthetic_model, tmp_path, capsys):
    model_path, slide_path = synthetic_model
    code, local, err = run_main(capsys, "-q", "predict", str(slide_path), "--model", str(model_path),
                                "-o", str(tmp_path / "here"))
    assert code == 0, err
    code, cluster, err = run_main(capsys, "-q", "predict", str(slide_path), "--model", str(model_path),
                                  "-o", str(tmp_path / "cluster"), "--scheduler", "local", "--workers", "2")
    assert code == 0, err
    a, _ = read_heatmap(tmp_path / "here" / "heatmap.tif")
    b, _ = read_heatmap(tmp_path / "cluster" / "heatmap.tif")
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert cluster["slides"][0]["patches"] == local["slides"][0]["patches"]
    # The local cluster's worker processes are gone with the command, not left spinning.
    import multiprocessing
    import time

    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not multiprocessing.active_children()


def test_cli_predict_writes_the_outputs(synthetic_model, tmp_path, capsys):
    from skimage.io import imread

    model_path, slide_path = synthetic_model
    code, summary, err = run_main(capsys, "predict", str(slide_path), "--model", str(model_path),
                                  "-o", str(tmp_path / "out"), "--batch-size", "48")
    assert code == 0, err
    (s,) = summary["slides"]
    heatmap, info = read_heatmap(s["heatmap"])
    assert heatmap.dtype == np.float32 and list(heatmap.shape) == s["grid"] == info["shape"]
    assert info["downsample"] == s["downsample"] == 128 and info["mpp"] == 0.5
    assert info["model"] == "synthetic.keras"
    assert json.loads((tmp_path / "out" / "heatmap.json").read_text())["downsample"] == 128
    assert heatmap.min() == 0 and heatmap.max() <= 1
    with open_slide(slide_path) as slide:
        assert grid_for(slide, load_model(model_path)[1]).rows == heatmap.shape[0]
    overlay = imread(s["overlay"])
    assert overlay.ndim == 3 and overlay.std() > 10
    rows = [line.split(",") for line in (tmp_path / "out" / "detections.csv").read_text().splitlines()]
    assert rows and all(len(r) == 3 for r in rows)
    conf = [float(r[0]) for r in rows]
    assert conf == sorted(conf, reverse=True) and s["n_detections"] == len(rows)
    assert 0 <= s["slide_score"] <= 1 and s["patches_per_second"] > 0
    assert not list((tmp_path / "out").glob(".*partial*"))
    # Detections come from the heatmap smoothed by one patch width (a cell here); --smooth 0 keeps it raw.
    assert info["detection_smoothing"] == {"patches": 1.0, "sigma_cells": 1.0}
    code, raw, err = run_main(capsys, "predict", str(slide_path), "--model", str(model_path), "--smooth", "0",
                              "-o", str(tmp_path / "raw"))
    assert code == 0, err
    assert raw["slides"][0]["n_detections"] >= s["n_detections"]
    code, _, err = run_main(capsys, "predict", str(slide_path), "--smooth", "-1", "-o", str(tmp_path / "bad"))
    assert code == 2 and "--smooth: expected a number ≥ 0, got '-1'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1  # one line: no usage block before it


def _lesions_hit(result, lesions) -> set[int]:
    """Indices of the lesions with a detection within one cell of them."""
    from scipy import ndimage

    from napari_lymphmet.inference import detect

    D = result.grid.downsample
    hit = set()
    for i, lesion in enumerate(lesions):
        near = ndimage.binary_dilation(rasterize([lesion], result.heatmap.shape, downsample=D), iterations=1)
        if any(near[int(y // D), int(x // D)] for _, x, y in detect(result.heatmap, D)):
            hit.add(i)
    return hit


def _cell_auc(result, lesions) -> float:
    D = result.grid.downsample
    tumor = rasterize(lesions, result.heatmap.shape, downsample=D)
    tissue = result.heatmap > 0
    return roc_auc(tumor[tissue].astype(int), result.heatmap[tissue])


def test_screening_predicts_few_cells_and_finds_what_dense_finds(synthetic_model, tmp_path):
    from napari_lymphmet.inference import ScreenConfig, slide_score

    model_path, slide_path = synthetic_model
    lesions = read_asap_xml(slide_path.with_suffix(".xml"))
    dense = _predict(slide_path, model_path)
    screened = _predict(slide_path, model_path, screen=ScreenConfig())
    assert screened.complete and screened.screened and not dense.screened
    assert screened.total == dense.total and screened.predicted + screened.inferred == screened.total
    assert screened.predicted <= 0.40 * screened.total, (screened.predicted, screened.total)
    found = _lesions_hit(dense, lesions)
    assert len(found) == 3 and found <= _lesions_hit(screened, lesions)
    assert abs(_cell_auc(screened, lesions) - _cell_auc(dense, lesions)) <= 0.01
    assert abs(slide_score(screened.heatmap) - slide_score(dense.heatmap)) <= 0.05
    # Same zeros off tissue; a predicted cell has its dense value.
    np.testing.assert_array_equal(screened.heatmap > 0, dense.heatmap > 0)
    # Interrupted part-way, a screened run resumes to the same heatmap.
    cancel = threading.Event()
    checkpoint = tmp_path / ".partial.zarr"
    first = _predict(slide_path, model_path, screen=ScreenConfig(), batch_size=32, checkpoint=checkpoint,
                     model_key="m", progress=lambda done, total: done >= 100 and cancel.set(), cancel=cancel)
    assert not first.complete and first.inferred == 0 and checkpoint.exists()
    second = _predict(slide_path, model_path, screen=ScreenConfig(), batch_size=32, checkpoint=checkpoint,
                      model_key="m")
    assert second.complete and second.resumed == first.predicted and not checkpoint.exists()
    np.testing.assert_allclose(second.heatmap, screened.heatmap, atol=1e-6)


def test_cli_predict_screen_counts_cells_in_heatmap_json(synthetic_model, tmp_path, capsys):
    model_path, slide_path = synthetic_model
    code, summary, err = run_main(capsys, "-q", "predict", str(slide_path), "--model", str(model_path),
                                  "-o", str(tmp_path / "out"), "--screen", "--screen-threshold", "0.2")
    assert code == 0, err
    (s,) = summary["slides"]
    info = json.loads((tmp_path / "out" / "heatmap.json").read_text())
    assert info["screened"] is True
    assert info["cells"]["predicted"] + info["cells"]["inferred"] == info["cells"]["tissue"] == s["patches"]
    assert info["cells"]["inferred"] == s["inferred"] > 0
    code, _, err = run_main(capsys, "predict", str(slide_path), "--model", str(model_path),
                            "-o", str(tmp_path / "bad"), "--screen", "--screen-threshold", "2")
    assert code == 2 and err.strip().count("\n") == 0 and "--screen-threshold" in err


def test_the_screening_threshold_is_the_score_97_percent_of_validation_tumor_patches_reach():
    from napari_lymphmet.inference import ScreenConfig
    from napari_lymphmet.model.metrics import screening_threshold

    tumor = np.linspace(0.01, 1.0, 100)  # 0.01, 0.02, ..., 1.0
    normal = np.linspace(0.0, 0.5, 11)
    found = screening_threshold(np.r_[np.ones(100), np.zeros(11)], np.r_[tumor, normal])
    assert found["screen_threshold"] == pytest.approx(0.03)  # 0.03 and the 97 above it: 98 of 100
    assert (tumor >= found["screen_threshold"]).mean() >= 0.97
    assert found["normal_above_screen"] == pytest.approx(10 / 11)
    assert screening_threshold(np.ones(5), np.linspace(0, 1, 5)) == {}  # one class: nothing to measure
    # A model's measured threshold, never above the detection threshold in use; a given one wins.
    assert ScreenConfig().threshold_for(0.4, 0.19) == pytest.approx(0.19)
    assert ScreenConfig().threshold_for(0.1, 0.19) == pytest.approx(0.1)
    assert ScreenConfig().threshold_for(0.4, None) == pytest.approx(0.2)  # models trained before it
    assert ScreenConfig(threshold=0.3).threshold_for(0.4, 0.19) == pytest.approx(0.3)
