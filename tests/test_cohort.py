"""A cohort at a glance: predict over a folder, slides.csv and index.html, QuPath/ASAP outputs, the Slides widget."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from .browser import CHROMIUM
from .conftest import open_widget, run_main

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four synthetic slides with their XML (two with metastases), a tissue mask beside one, a corrupt TIFF."""
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide
    from napari_lymphmet.tissue import save_mask, tissue_mask
    from napari_lymphmet.wsi import open_slide

    folder = tmp_path_factory.mktemp("cohort") / "slides"
    folder.mkdir()
    for name, seed, lesions in (("node_a", 41, 3), ("node_b", 7, 2), ("node_c", 8, 0), ("node_d", 9, 0)):
        write_synthetic_slide(folder / f"{name}.tif", SynthSpec(width=2560, height=2048, seed=seed, lesions=lesions,
                                                                 mpp=0.5))
    with open_slide(folder / "node_a.tif") as slide:
        found = tissue_mask(slide)
    save_mask(folder / "node_a_tissue.png", found.mask, downsample=found.downsample, kind="tissue")
    save_mask(folder / "node_a_tissue.tif", found.mask, downsample=found.downsample, kind="tissue")  # not a slide
    (folder / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)  # a TIFF header and nothing else
    return folder


@pytest.fixture(scope="module")
def cohort_predicted(cohort, synthetic_model, tmp_path_factory):
    """``lymphmet predict`` over the folder, in a child process: GUI tests use it, and must not load TensorFlow."""
    import subprocess
    import sys

    model_path, _ = synthetic_model
    out = tmp_path_factory.mktemp("cohort-out") / "predictions"
    done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "-q", "predict", str(cohort), "--model",
                           str(model_path), "-o", str(out)], capture_output=True, text=True, timeout=900)
    return out, done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_predict_over_a_folder_writes_a_sorted_cohort_table_and_page(cohort, cohort_predicted):
    out, code, summary, err = cohort_predicted
    assert code == 0, err
    with open(out / "slides.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["slide"] for r in rows][-1] == "broken" and len(rows) == 5  # the mask and XML are not slides
    assert list(rows[0]) == ["slide", "path", "slide_score", "detections", "tumor_area_mm2", "largest_lesion_mm",
                             "category", "mpp", "seconds", "status"]
    # Each node's category, as a pathologist reports it, from its largest metastasis; a failed slide is unknown.
    by_slide = {r["slide"]: r for r in rows}
    from napari_lymphmet.inference import lesion_category

    largest = float(by_slide["node_a"]["largest_lesion_mm"])
    assert by_slide["node_a"]["category"] == lesion_category(largest) != "negative"
    assert by_slide["broken"]["category"] == "unknown"
    lesions = list(csv.DictReader(open(out / "node_a" / "lesions.csv")))
    assert lesions and all(row["category"] in ("itc", "micro", "macro") for row in lesions)
    info = json.loads((out / "node_a" / "heatmap.json").read_text())
    assert info["category"] == by_slide["node_a"]["category"]
    assert info["node_gate"] is None  # a model trained without validation patches has no normal scores to gate by
    ok = rows[:4]
    assert all(r["status"] == "ok" for r in ok) and "broken.tif" in rows[-1]["status"]
    scores = [float(r["slide_score"]) for r in ok]
    assert scores == sorted(scores, reverse=True)
    assert {r["slide"] for r in ok[:2]} == {"node_a", "node_b"}  # the slides with metastases rank first
    assert float(ok[0]["tumor_area_mm2"]) > 0 and float(ok[0]["mpp"]) == 0.5
    assert "broken.tif" in err and summary["failed"][0]["slide"].endswith("broken.tif")
    for row in ok:
        folder = out / row["slide"]
        for name in ("heatmap.tif", "heatmap.ome.zarr", "detections.csv", "detections.geojson",
                     "tumor_regions.geojson", "tumor_regions.xml", "overlay.png"):
            assert (folder / name).exists(), (row["slide"], name)
    assert (out / "index.html").is_file()


def test_the_node_gate_is_on_by_default_and_node_gate_0_turns_it_off(cohort, synthetic_model, tmp_path):
    """A model given its validation normal scores (as calibrate_thresholds gives the bundled ones) gates each
    node by default; the metastases of node_b clear it. ``--node-gate 0``: the largest detection's category."""
    import shutil
    import subprocess
    import sys

    model = Path(shutil.copy(synthetic_model[0], tmp_path / "model.keras"))
    script = Path(__file__).resolve().parents[1] / "scripts" / "calibrate_thresholds.py"
    done = subprocess.run([sys.executable, str(script), str(model), str(synthetic_model[0].parent / "patches")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    infos = {}
    for name, extra in (("default", ()), ("off", ("--node-gate", "0"))):
        done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "-q", "predict", str(cohort / "node_b.tif"),
                               "--model", str(model), "-o", str(tmp_path / name), *extra],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        infos[name] = json.loads((tmp_path / name / "heatmap.json").read_text())
    gate = infos["default"]["node_gate"]
    assert gate["level"] == 0.95 and gate["passed"] and infos["default"]["slide_score"] > gate["gate"]
    assert infos["off"]["node_gate"] is None
    assert infos["off"]["category"] == infos["default"]["category"] not in ("negative", "unknown")


def test_every_slide_failing_exits_2_with_one_line(tmp_path, capsys, synthetic_model):
    model_path, _ = synthetic_model
    (tmp_path / "in").mkdir()
    for name in ("a.tif", "b.svs"):
        (tmp_path / "in" / name).write_bytes(b"not a slide")
    code, _, err = run_main(capsys, "-q", "predict", str(tmp_path / "in"), "--model", str(model_path),
                            "-o", str(tmp_path / "out"))
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: none of the 2 slides")
    assert (tmp_path / "out" / "slides.csv").read_text().count("\n") == 3


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (bash .ci/run installs it)")
def test_index_page_shows_every_thumbnail_in_headless_chromium(cohort_predicted, tmp_path):
    from .browser import inspect_images

    out, code, _, _ = cohort_predicted
    images = inspect_images(out / "index.html", tmp_path)
    assert len(images) == 4 and all(image["width"] > 100 and image["height"] > 50 for image in images)


def test_tumor_regions_geojson_is_what_qupath_reads_and_round_trips(cohort_predicted, tmp_path, capsys):
    from napari_lymphmet.annotations import rasterize, read_annotations
    from scipy import ndimage

    from napari_lymphmet.inference import read_heatmap, smooth_heatmap

    out, _, _, _ = cohort_predicted
    folder = out / "node_a"
    collection = json.loads((folder / "tumor_regions.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and collection["features"]
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        for ring in feature["geometry"]["coordinates"]:
            assert len(ring) >= 4 and ring[0] == ring[-1]  # closed rings
        props = feature["properties"]
        assert props["objectType"] == "annotation" and props["classification"]["name"] == "Tumor"
        assert len(props["classification"]["color"]) == 3
        assert 0 < props["probability_mean"] <= props["probability_max"] <= 1 and props["area_um2"] > 0
    points = json.loads((folder / "detections.geojson").read_text())
    assert points["features"] and all(f["geometry"]["type"] == "Point" and f["properties"]["objectType"] ==
                                      "detection" and 0 < f["properties"]["measurements"]["probability"] <= 1
                                      for f in points["features"])
    # Through `annotations convert` to ASAP XML, rasterized on the heatmap's grid: the thresholded heatmap.
    code, _, err = run_main(capsys, "annotations", "convert", str(folder / "tumor_regions.geojson"),
                            str(tmp_path / "regions.xml"))
    assert code == 0, err
    heatmap, info = read_heatmap(folder / "heatmap.tif")
    drawn = rasterize(read_annotations(tmp_path / "regions.xml"), heatmap.shape, downsample=info["downsample"])
    # The heatmap's regions at the threshold that reach it on the smoothed map too (where detections are).
    regions, _ = ndimage.label(heatmap >= info["threshold"], structure=np.ones((3, 3)))
    detected = smooth_heatmap(heatmap, info["detection_smoothing"]["sigma_cells"]) >= info["threshold"]
    truth = np.isin(regions, np.unique(regions[detected & (regions > 0)]))
    assert truth.sum() > 0
    assert (drawn & truth).sum() / (drawn | truth).sum() >= 0.95


@pytest.mark.gui
def test_dropping_a_predictions_folder_lays_its_results_over_the_slide(make_napari_viewer, cohort,
                                                                       cohort_predicted):
    out, _, _, _ = cohort_predicted
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(cohort / "node_a.tif"), plugin="napari-lymphmet")
    layers = viewer.open(str(out / "node_a"), plugin="napari-lymphmet")
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == ["Image", "Points", "Shapes"]
    heat, points, regions = layers
    m = heat.metadata["display_downsample"]  # drawn over the tissue, at the tissue mask's resolution
    np.testing.assert_allclose(heat.data_to_world((1, 2)), image.data_to_world((m + (m - 1) / 2, 2 * m + (m - 1) / 2)))
    assert tuple(points.scale) == tuple(image.scale) == tuple(regions.scale)
    # The heatmap.tif alone does the same.
    (again, *_) = viewer.open(str(out / "node_a" / "heatmap.tif"), plugin="napari-lymphmet")
    np.testing.assert_array_equal(again.data, heat.data)


@pytest.mark.gui
def test_reviewing_detections_marks_them_updates_the_category_resumes_and_feeds_finetune(
        make_napari_viewer, cohort, cohort_predicted, synthetic_model, tmp_path):
    """Issue 31's Review panel, from the Plugins menu, over a dropped predictions folder."""
    import shutil
    import subprocess
    import sys

    from napari_lymphmet.workflows import Corrections

    from .conftest import open_widget

    out, _, _, _ = cohort_predicted
    folder = tmp_path / "node_a"
    shutil.copytree(out / "node_a", folder)  # the review writes into it
    lesions = list(csv.DictReader(open(folder / "lesions.csv")))
    assert lesions
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(cohort / "node_a.tif"), plugin="napari-lymphmet")
    viewer.open(str(folder), plugin="napari-lymphmet")
    review = open_widget(viewer, "Review detections")
    review.slide_box.value = image
    assert Path(str(review.folder.value)) == folder  # found from the dropped folder
    assert review.start() is not None
    sizes = {int(r["rank"]): float(r["major_axis_mm"]) for r in lesions}
    assert review.review.current.major_axis_mm == pytest.approx(max(sizes.values()), abs=1e-3)  # largest first
    assert review.review.category == json.loads((folder / "heatmap.json").read_text())["category"] != "negative"
    assert review.current.value.startswith("1 of") and "node:" in review.category_label.value
    from napari_lymphmet._napari.widgets._common import camera_of

    centre = np.asarray(camera_of(viewer).center[-2:])
    np.testing.assert_allclose(centre, image.data_to_world(np.array([review.review.current.y,
                                                                     review.review.current.x]) - 0.5), atol=1)

    first = review.review.current.rank
    review.tumor_button.native.click()  # the largest is tumor; the next unmarked one comes up, if any
    review.not_tumor_button.native.click()  # ... and that one (or, alone, the first after all) is not
    second = review.review.items[1].rank if len(lesions) > 1 else first
    expected = {str(first): "tumor", str(second): "not tumor"} if second != first else {str(first): "not tumor"}
    assert json.loads((folder / "review.json").read_text())["marks"] == expected
    # The marks show on the dropped folder's Detections layer, and in Detect metastases' lesion table,
    # which follows each new mark.
    (points,) = review.detections_layers()
    assert sorted(m for m in points.features["review"] if m) == sorted(expected.values())
    detect = open_widget(viewer, "Detect metastases")
    detect.slide_box.value = image
    detect.load_results(folder)
    column = list(detect.table.horizontalHeaderItem(i).text()
                  for i in range(detect.table.columnCount())).index("review")

    def table_marks() -> list[str]:
        return sorted(t for t in (detect.table.item(r, column).text() for r in range(detect.table.rowCount())) if t)

    assert table_marks() == sorted(expected.values())
    # A mark changed in Review changes the table at once; changed back, so is the table.
    for label in ("not tumor", expected[str(first)]):
        review.review.position = 0
        (review.tumor_button if label == "tumor" else review.not_tumor_button).native.click()
        assert table_marks() == sorted({**expected, str(first): label}.values())
    # The category counts only what is not marked not tumor.
    from napari_lymphmet.inference import node_category

    kept = [size for rank, size in sizes.items() if rank != second]
    assert review.review.category == node_category(kept) and review.review.category in review.category_label.value

    # Closed and opened again: it resumes where it stopped, with its marks.
    again = open_widget(viewer, "Review detections")
    again.slide_box.value = image
    resumed = again.start()
    assert resumed.marks == review.review.marks and resumed.position == review.review.position

    # The marks are corrections finetune takes as they are.
    corrections = Corrections.read(cohort / "node_a.tif", folder / "corrections.geojson")
    assert corrections.counts() == {"tumor": list(expected.values()).count("tumor"), "not_tumor": 1}
    model_path, _ = synthetic_model
    done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "-q", "finetune", str(model_path),
                           "--slide", str(cohort / "node_a.tif"), "--corrections", str(folder / "corrections.geojson"),
                           "--replay", str(model_path.parent / "patches"),  # both classes, however the marks fell
                           "-o", str(tmp_path / "reviewed.keras"), "--epochs", "0"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: the new model refused by its guard, all read
    assert "corrections" in json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.gui
def test_slides_widget_lists_sorts_opens_and_predicts_all(make_napari_viewer, cohort, cohort_predicted,
                                                          synthetic_model, tmp_path, qtbot):
    import shutil

    model_path, _ = synthetic_model
    out, _, _, _ = cohort_predicted
    # Predictions for two of the four readable slides; the widget predicts the rest.
    predictions = tmp_path / "predictions"
    for name in ("node_a", "node_c"):
        shutil.copytree(out / name, predictions / name)
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "Slides")
    widget.predictions.value = predictions
    widget.model.value = str(model_path)
    widget.folder.value = cohort  # lists at once
    assert sorted(widget.names()) == ["broken", "node_a", "node_b", "node_c", "node_d"]
    qtbot.waitUntil(lambda: all(widget.table.item(r, 3).text() != "…" for r in range(5)), timeout=30_000)
    widget.sort_by("score")
    assert widget.names()[:2] == ["node_a", "node_c"]  # predicted first, the tumor slide on top
    assert widget.table.item(0, 6).text() in ("itc", "micro", "macro")  # the node's category (slides.csv's)
    assert not widget.table.item(0, 0).icon().isNull()  # a thumbnail

    layers = widget.open_row(0)
    names = [layer.name for layer in layers]
    assert names[0] == "node_a" and "node_a tissue" in names
    assert any(n.startswith("Tumor probability") for n in names) and any(n.startswith("Tumor regions") for n in names)
    image = layers[0]
    heat = next(layer for layer in layers if layer.name.startswith("Tumor probability"))
    m = heat.metadata["display_downsample"]  # drawn over the tissue, at the tissue mask's resolution
    np.testing.assert_allclose(heat.data_to_world((0, 0)), image.data_to_world(((m - 1) / 2, (m - 1) / 2)))
    np.testing.assert_allclose(heat.scale, np.asarray(image.scale) * m)

    # Predict all in a worker, cancelled after the first slide; then to the end.
    worker = widget.predict_all(block=False)
    worker.yielded.connect(lambda event: isinstance(event, dict) and event.get("event") == "slide"
                           and not event.get("error") and widget.cancel())  # a slide is done: stop the child
    qtbot.waitUntil(lambda: widget.predict_button.enabled, timeout=60_000)
    assert "cancelled" in widget.status.value
    done = {e.name for e in widget.entries if e.results is not None}
    # The signal meets the child after its first new slide; on a busy machine a second small one may be done too.
    assert {"node_a", "node_c"} < done and len(done) in (3, 4)
    widget.predict_all(block=True)
    scores = {e.name: e.slide_score for e in widget.entries}
    assert all(scores[n] is not None for n in ("node_a", "node_b", "node_c", "node_d"))
    widget.sort_by("score")
    assert widget.names()[-1] == "broken" and set(widget.names()[:2]) == {"node_a", "node_b"}


def test_evaluate_reads_a_cohort_predicted_in_one_go(cohort, cohort_predicted, capsys):
    # predict over a folder writes slides.csv beside the slides' subfolders: it is not a detections file.
    out, _, _, _ = cohort_predicted
    code, summary, err = run_main(capsys, "evaluate", "--detections", str(out), "--truth", str(cohort),
                                  "--slides", str(cohort))
    assert code == 0, err
    assert sorted(s["slide"] for s in summary["per_slide"]) == ["node_a", "node_b", "node_c", "node_d"]
    # Five small lesions on node_a and node_b; near ones merge and the smallest are ITCs (not scored).
    assert summary["lesions"] >= 1 and summary["lesions"] + summary["itc_lesions"] >= 4
    assert summary["slide_auc"] == 1.0 and summary["tp"] >= 1
