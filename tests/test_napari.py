"""The napari reader in a real viewer (run under xvfb-run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Labels, Shapes

import napari_lymphmet._napari.reader as reader_module
from napari_lymphmet import open_slide

from .conftest import open_widget, real_slide

pytestmark = pytest.mark.gui


def test_npe2_discovers_the_reader():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-lymphmet")
    patterns = {p for r in manifest.contributions.readers for p in r.filename_patterns}
    assert {"*.svs", "*.tif", "*.ndpi", "*.mrxs"} <= patterns
    readers = pm.iter_compatible_readers(["slide.svs"])
    assert "napari-lymphmet.get_reader" in [r.command for r in readers]


@pytest.mark.parametrize(
    ("name", "scale", "unit"),
    [("CMU-1-Small-Region.svs", 0.499, "micrometer"), ("tcga-cr-7395-01a-01-ts1.svs", 1.0, "pixel")],
)
def test_viewer_open_gives_one_multiscale_rgb_layer(make_napari_viewer, name, scale, unit):
    path = real_slide(name)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-lymphmet")
    assert len(layers) == 1 and len(viewer.layers) == 1
    layer = layers[0]
    assert layer.rgb and layer.multiscale
    assert tuple(layer.scale) == pytest.approx((scale, scale))
    assert [str(u) for u in layer.units] == [unit, unit]
    assert layer.metadata["path"] == str(path)
    assert layer.metadata["mpp"] == ((0.499, 0.499) if scale != 1.0 else None)
    assert "openslide.vendor" in layer.metadata["properties"]


def test_a_file_that_is_not_a_slide_dropped_on_the_viewer_gets_a_notification_naming_it(make_napari_viewer,
                                                                                           tmp_path):
    """Dropped as a user drops it (napari's own drop handler), with this plugin preferred for .svs."""
    from napari.settings import get_settings
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    open_widget(viewer, "Slides")  # the plugin is active: it has become the preferred reader for slide files
    assert get_settings().plugins.extension2reader.get("*.svs") == "napari-lymphmet"
    text = tmp_path / "scan 7.svs"
    text.write_text("not a slide")
    shown = []
    notification_manager.notification_ready.connect(lambda note: shown.append(str(note.message)))
    viewer.window._qt_viewer._qt_open([str(text)], stack=False)  # what a drop does
    assert len(viewer.layers) == 0
    mine = [m for m in shown if "scan 7.svs" in m]
    assert mine and "cannot open" in mine[0] and len(mine[0].split("scan 7.svs", 1)[1]) > 5, shown
    assert not any("refused" in m for m in shown)
    # A missing file and a folder read the same way: a reader that says why, never a silent decline.
    for bad in (tmp_path / "missing.svs", tmp_path):
        assert reader_module.get_reader(str(bad)) is not None


def test_first_view_of_a_gigapixel_slide_reads_only_low_levels(
        make_napari_viewer, qtbot, monkeypatch, gigapixel_synthetic):
    opened = []

    def recording_open(path, **kwargs):
        opened.append(open_slide(path, cache_bytes=32 * 2**20))
        return opened[-1]

    monkeypatch.setattr(reader_module, "open_slide", recording_open)
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(gigapixel_synthetic), plugin="napari-lymphmet")
    qtbot.waitUntil(lambda: layer.loaded, timeout=20_000)
    slide = opened[-1]
    reads = dict(slide.tile_reads)
    # Fit-to-window shows the coarsest levels: a handful of tiles, none at
    # full resolution out of the 6 241 level-0 tiles.
    assert reads.get(0, 0) == 0
    assert 0 < sum(reads.values()) <= 16, reads
    print("tile reads for the first view:", reads)
    shot = viewer.screenshot(canvas_only=True)
    assert shot.std() > 5  # the slide is drawn, not a blank canvas

    # Zoom in to full resolution and pan: reads stay local, memory bounded.
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom = 4 / 0.25  # 4 screen px per level-0 px
    for i in range(6):
        camera.center = (0, 2_000 + i * 1_500, 3_000 + i * 1_200)
        qtbot.wait(50)
        qtbot.waitUntil(lambda: layer.loaded, timeout=20_000)
        assert slide.cache.nbytes <= slide.cache.max_bytes
    assert 0 < slide.tile_reads[0] < 200


def test_sample_data_opens_slide_and_aligned_tumor_shapes(make_napari_viewer, tmp_path, monkeypatch):
    from napari_lymphmet._napari import sample as _sample
    from napari_lymphmet.annotations import read_asap_xml
    from napari_lymphmet.synthetic import SynthSpec

    monkeypatch.setenv("NAPARI_LYMPHMET_CACHE", str(tmp_path))
    monkeypatch.setattr(_sample, "SAMPLE_SPEC", SynthSpec(width=3072, height=2048, seed=0, mpp=0.5))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lymphmet", "synthetic_lymph_node")
    image, shapes = viewer.layers
    assert image.multiscale and image.rgb and len(image.data) >= 2
    assert isinstance(shapes, Shapes) and len(shapes.data) >= 1
    assert tuple(shapes.scale) == tuple(image.scale) == pytest.approx((0.5, 0.5))
    # Vertices are the XML's, (y, x) in level-0 px, so world coordinates agree.
    (xml,) = tmp_path.glob("*.xml")
    truth = read_asap_xml(xml)
    assert len(truth) == len(shapes.data)
    for ann, verts in zip(truth, shapes.data):
        np.testing.assert_allclose(verts, ann.exterior[:, ::-1], atol=1e-6)
    # A lesion's centre in world µm, looked up in the image through its own
    # transform, lands on tumor-coloured (eosin-rich) pixels, not glass.
    centre_world = shapes.data_to_world(shapes.data[0].mean(axis=0))
    row, col = np.round(image.world_to_data(centre_world)).astype(int)
    pixel = np.asarray(image.data[0][row - 8:row + 8, col - 8:col + 8]).reshape(-1, 3).mean(0)
    assert pixel.max() - pixel.min() > 40  # stained tissue
    # The second open reuses the cached slide.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    viewer.open_sample("napari-lymphmet", "synthetic_lymph_node")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


@pytest.fixture
def slide_with_xml(tmp_path):
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    path = tmp_path / "node.tif"
    write_synthetic_slide(path, SynthSpec(width=2048, height=1536, seed=4, lesions=2, mpp=0.5))
    return path, path.with_suffix(".xml")


def test_open_xml_over_its_slide_then_draw_save_and_reread(make_napari_viewer, slide_with_xml, tmp_path):
    from napari_lymphmet.annotations import TUMOR, read_asap_xml

    slide_path, xml = slide_with_xml
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(slide_path), plugin="napari-lymphmet")
    (shapes,) = viewer.open(str(xml), plugin="napari-lymphmet")
    assert isinstance(shapes, Shapes) and tuple(shapes.scale) == tuple(image.scale)
    truth = read_asap_xml(xml)
    assert len(shapes.data) == len(truth) == 2
    for ann, verts in zip(truth, shapes.data):
        world = np.array([shapes.data_to_world(v) for v in verts])
        np.testing.assert_allclose(world, ann.exterior[:, ::-1] * 0.5, atol=1e-6)  # µm

    widget = open_widget(viewer, "Annotations")
    widget.shapes_box.value = shapes
    square_um = np.array([[100.0, 100.0], [100.0, 300.0], [300.0, 300.0], [300.0, 100.0]])  # (y, x) µm
    shapes.add_polygons([square_um / 0.5])  # layer data: level-0 px
    out = tmp_path / "edited.xml"
    assert widget.save(out) == out
    back = read_asap_xml(out)
    assert len(back) == 3 and all(a.label == TUMOR for a in back)
    np.testing.assert_allclose(back[-1].exterior, square_um[:, ::-1] / 0.5, atol=1e-6)
    for a, b in zip(truth, back):
        np.testing.assert_allclose(a.exterior, b.exterior, atol=1e-3)


def test_new_layer_draws_exclusions_and_saves_geojson(make_napari_viewer, slide_with_xml, tmp_path):
    from napari_lymphmet.annotations import EXCLUSION, TUMOR, read_geojson

    slide_path, _ = slide_with_xml
    viewer = make_napari_viewer()
    viewer.open(str(slide_path), plugin="napari-lymphmet")
    widget = open_widget(viewer, "Annotations")
    layer = widget.new_layer()
    assert layer.mode == "add_polygon" and tuple(layer.scale) == (0.5, 0.5)
    layer.add_polygons([np.array([[10.0, 10], [10, 400], [400, 400]])])
    widget.draw_as.value = EXCLUSION
    layer.add_polygons([np.array([[50.0, 200], [50, 300], [120, 300]])])
    assert list(layer.features["label"]) == [TUMOR, EXCLUSION]
    out = tmp_path / "drawn.geojson"
    widget.save(out)
    tumor, excl = read_geojson(out)
    assert (tumor.label, excl.label) == (TUMOR, EXCLUSION)
    np.testing.assert_allclose(tumor.exterior, [[10, 10], [400, 10], [400, 400]])
    # Loading it back through the widget adds an aligned layer.
    loaded = widget.load(out)
    assert len(loaded.data) == 2 and tuple(loaded.scale) == (0.5, 0.5)
    # Bad input: a notification and the status line, no exception.
    assert widget.load(tmp_path / "missing.xml") is None
    assert "no such file" in widget.status.value


def test_thousands_of_polygons_open_as_labels(make_napari_viewer, slide_with_xml, tmp_path):
    from napari_lymphmet.annotations import write_asap_xml

    slide_path, _ = slide_with_xml
    xml = tmp_path / "node.xml"  # same stem as the slide: found beside it
    cells = [np.array([[x, y], [x + 10, y], [x + 10, y + 10], [x, y + 10]], float)
             for x in range(0, 2000, 40) for y in range(0, 1500, 30)]
    assert len(cells) > 2000
    write_asap_xml(xml, cells)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(xml), plugin="napari-lymphmet")
    assert isinstance(layer, Labels)
    ds = layer.metadata["downsample"]
    assert tuple(layer.scale) == pytest.approx((0.5 * ds, 0.5 * ds))
    assert layer.data.max() == 1 and 0 < layer.data.mean() < 0.2


def test_tissue_widget_slider_brush_save_reload(make_napari_viewer, slide_with_xml, tmp_path):
    from napari_lymphmet._napari.widgets.tissue import find_mask_layer

    slide_path, _ = slide_with_xml
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(slide_path), plugin="napari-lymphmet")
    widget = open_widget(viewer, "Tissue mask")
    layer = widget.detect()
    assert isinstance(layer, Labels) and not layer.multiscale
    assert find_mask_layer(viewer, str(slide_path)) == layer  # the widget holds napari's proxy of it
    # Lies exactly over the slide: mask px (r, c) centre = level-0 centre of its block.
    ds = layer.metadata["downsample"]
    assert ds == 16
    np.testing.assert_allclose(layer.data_to_world((3, 5)), image.data_to_world((3 * ds + 7.5, 5 * ds + 7.5)))
    before = np.array(layer.data)
    assert 0.1 < before.mean() < 0.9

    widget.auto.value = False
    widget.saturation.value = 0.45  # only the most saturated pixels stay
    after = np.array(layer.data)
    assert after.sum() < before.sum()
    assert widget.last_update_ms < 1000  # measured properly in benchmarks/

    # A brush stroke across glass at the top-left corner.
    layer.brush_size = 3
    for col in range(2, 12):
        layer.paint((2, col), 1)
    painted = np.array(layer.data)
    assert painted[2, 2:12].all() and not after[2, 2:12].any()

    out = tmp_path / "tissue.png"
    assert widget.save(out) == out
    viewer.layers.remove(layer)
    reloaded = widget.load(out)
    np.testing.assert_array_equal(np.asarray(reloaded.data) > 0, painted > 0)
    assert tuple(reloaded.scale) == tuple(layer.scale) and tuple(reloaded.translate) == tuple(layer.translate)


def test_patches_widget_preview_counts_and_export_matches_cli(make_napari_viewer, slide_with_xml, tmp_path,
                                                              capsys, qtbot):
    from napari_lymphmet.patches import PatchSpec, plan_for_slide

    from .conftest import run_main

    slide_path, xml = slide_with_xml
    viewer = make_napari_viewer()
    viewer.open(str(slide_path), plugin="napari-lymphmet")
    (shapes,) = viewer.open(str(xml), plugin="napari-lymphmet")
    widget = open_widget(viewer, "Patches")
    widget.tumor_box.value = shapes
    widget.size.value = widget.stride.value = 64
    points = widget.preview()
    with open_slide(slide_path) as slide:
        truth = plan_for_slide(slide, PatchSpec(size=64, mpp=0.5), annotations=xml)
    counts = truth.counts()
    assert counts["tumor"] > 0 and counts["normal"] > 0
    assert len(points.data) == len(truth)
    assert list(points.features["label"]).count("tumor") == counts["tumor"]
    assert f"{counts['tumor']} tumor · {counts['normal']} normal · {truth.uncertain} uncertain" in widget.status.value
    np.testing.assert_allclose(points.data[:, 1], truth.x + truth.box / 2)

    widget.export(tmp_path / "widget")  # blocking; the button runs the same in a worker
    code, _, err = run_main(capsys, "patches", str(slide_path), "-o", str(tmp_path / "cli"),
                            "--annotations", str(xml), "--size", "64")
    assert code == 0, err

    def files(folder):
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.png")}

    assert files(tmp_path / "widget") == files(tmp_path / "cli") and len(files(tmp_path / "cli")) == len(truth)
    widget_csv = (tmp_path / "widget" / "patches.csv").read_text().splitlines()
    cli_csv = (tmp_path / "cli" / "patches.csv").read_text().splitlines()
    assert widget_csv == cli_csv

    # Export in a worker, cancel after the first progress step: whole files
    # only, some but not all, and a CSV that matches the disk.
    worker = widget.export(tmp_path / "cancelled", block=False)
    worker.yielded.connect(lambda _done: widget.cancel())
    qtbot.waitUntil(lambda: widget.export_button.enabled, timeout=20_000)
    on_disk = files(tmp_path / "cancelled")
    rows = (tmp_path / "cancelled" / "patches.csv").read_text().splitlines()[1:]
    assert len(rows) == len(on_disk) and not list((tmp_path / "cancelled").rglob(".*partial*"))
    assert all(on_disk[name] == files(tmp_path / "cli")[name] for name in on_disk)
    assert 0 < len(on_disk) < len(truth)
    assert "cancelled; kept" in widget.status.value


def test_train_widget_runs_an_epoch_updates_progress_and_cancel_keeps_a_model(make_napari_viewer, tmp_path, qtbot,
                                                                              monkeypatch):
    from napari_lymphmet.model import read_card

    from .conftest import write_patch_folder
    from .test_figures import assert_readable_training_plot

    monkeypatch.setenv("NAPARI_LYMPHMET_CACHE", str(tmp_path))
    write_patch_folder(tmp_path / "data", lambda _label: [f"s{s}_{i}_0.png" for s in "ab" for i in range(6)])
    viewer = make_napari_viewer()
    detect = open_widget(viewer, "Detect metastases")
    widget = open_widget(viewer, "Train")
    widget.data.value = tmp_path / "data"
    widget.backbone.value = "small-cnn"
    widget.epochs.value = 3
    widget.minutes.value = 0.5  # leaves no room past the first epoch: the plan shrinks to it, and says so
    widget.batch.value = 4
    widget.output.value = tmp_path / "one.keras"
    result = widget.start()  # blocking: the button runs the same child process in a worker
    assert result.ok and result.summary["epochs_run"] == 1
    assert widget.history["loss"] and "trained: 1 epochs (1 of 3 fit in 0.5 min)" in widget.status.value
    assert_readable_training_plot(widget.figure)  # the Qt canvas's figure, redrawn after the epoch
    assert widget.figure.axes[0].lines and len(widget.figure.axes[0].lines[0].get_xdata()) == 1
    assert read_card(tmp_path / "one.keras").epochs_run == 1
    # The model just trained is Detect's model, at once.
    assert str(detect.model_file.value) == str(tmp_path / "one.keras")

    # In a worker: cancel after the first epoch of many; the child stops and saves the best model so far.
    widget.epochs.value = 50
    widget.minutes.value = 0  # no limit
    widget.output.value = tmp_path / "cancelled.keras"
    worker = widget.start(block=False)
    assert not widget.train_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: bool(widget.history.get("loss")), timeout=120_000)
    widget.cancel()
    assert "cancelling" in widget.status.value
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=60_000)
    assert worker is not None and widget.result.cancelled
    card = read_card(tmp_path / "cancelled.keras")
    assert card.cancelled is True and card.epochs_run < 50 and card.input_size == 32  # small-cnn: the patch size
    assert "cancelled; kept the best model so far" in widget.status.value


def test_detect_widget_one_click_heatmap_lesion_table_and_detections(make_napari_viewer, synthetic_model,
                                                                     tmp_path, monkeypatch):
    from napari_lymphmet._napari.settings import last_model
    from napari_lymphmet._napari.widgets._common import camera_of, scale_bar_of
    from napari_lymphmet.inference import LESION_COLUMNS

    from .conftest import lymphmet

    monkeypatch.setenv("NAPARI_LYMPHMET_CACHE", str(tmp_path))
    model_path, slide_path = synthetic_model
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(str(slide_path), plugin="napari-lymphmet")
    widget = open_widget(viewer, "Detect metastases")
    widget.model_file.value = model_path
    heat = widget.run()  # blocking: the same child process the button starts
    assert heat.name == "Tumor probability" and tuple(heat.contrast_limits) == (0, 1)
    D = heat.metadata["downsample"]
    assert D == 128
    # Drawn over the tissue at the mask's resolution: pixel (r, c) lies over level-0 [c·m, (c+1)·m) and shows
    # the cell its centre falls in, or nothing off the tissue.
    m = heat.metadata["display_downsample"]
    np.testing.assert_allclose(heat.data_to_world((2, 3)), image.data_to_world((2 * m + (m - 1) / 2,
                                                                                3 * m + (m - 1) / 2)))
    assert tuple(heat.scale) == pytest.approx((0.5 * m, 0.5 * m))
    shown, cells = np.asarray(heat.data), widget._run["heatmap"]
    r, c = np.unravel_index(np.argmax(shown), shown.shape)
    assert shown[r, c] == cells[int((r + 0.5) * m // D), int((c + 0.5) * m // D)] > 0.5
    assert [str(u) for u in heat.units] == ["micrometer"] * 2 and scale_bar_of(viewer).visible
    points = widget.points_layer
    assert points is not None and len(points.data) == len(widget.detections) > 0
    assert list(points.features["confidence"]) == sorted(points.features["confidence"], reverse=True)
    # The lesion table: a row per detection, sizes in mm; choosing a row selects the point and goes there.
    assert widget.table.rowCount() == len(widget.detections)
    assert widget.table.item(0, 2).text() not in ("", "–") and float(widget.table.item(0, 1).text()) > 0
    widget.table.selectRow(widget.table.rowCount() - 1)
    last = len(widget.detections) - 1
    assert set(points.selected_data) == {last}
    np.testing.assert_allclose(camera_of(viewer).center[-2:], points.data_to_world(points.data[last])[-2:], atol=1e-3)
    points.selected_data = {0}  # and back: the canvas selects the table's row
    assert {i.row() for i in widget.table.selectedItems()} == {0} and widget.selected_detection() == 0
    # Exported with the results: lesions.csv beside detections.csv, one row per detection.
    folder = widget._run["folder"]
    rows = (folder / "lesions.csv").read_text().splitlines()
    assert rows[0].split(",") == list(LESION_COLUMNS) and len(rows) - 1 == len(widget.detections)
    image.visible = False
    shot = viewer.screenshot(canvas_only=True)
    assert shot[..., :3].std() > 10  # the heatmap is drawn
    assert last_model() == str(model_path)  # remembered for next time
    # Detections come from the heatmap smoothed by a patch width; at 0 the raw map's lone bright cells
    # (the synthetic slide's pen and dust) are detected too, at once, without predicting again.
    smoothed = len(widget.detections)
    widget.smoothing.value = 0
    assert len(widget.detections) > smoothed and len(widget.points_layer.data) == len(widget.detections)
    assert widget.table.rowCount() == len(widget.detections)
    assert "detections at smoothing 0" in widget.status.value
    # Load results: `lymphmet predict`'s folder, through the button, detected at the widget's smoothing.
    lymphmet("predict", str(slide_path), "--model", str(model_path), "-o", str(tmp_path / "saved"))
    saved = (tmp_path / "saved" / "detections.csv").read_text().count("\n")
    widget.smoothing.value = 1
    widget.results_dir.value = tmp_path / "saved"
    widget.load_button.native.click()
    assert len(widget.detections) == len(widget.points_layer.data) == saved == smoothed
    assert widget.status.value.startswith("loaded saved")
    # A node under the node gate says why it is negative despite its detections.
    import tifffile

    from napari_lymphmet.inference import read_heatmap

    heat, info = read_heatmap(tmp_path / "saved" / "heatmap.tif")
    tifffile.imwrite(tmp_path / "saved" / "heatmap.tif", heat, metadata=None, description=json.dumps(
        {**info, "category": "negative", "node_gate": {"gate": 0.5, "level": 0.95, "passed": False}}))
    widget.load_button.native.click()
    assert "node negative (slide score under the node gate, 0.500)" in widget.status.value, widget.status.value


def test_predict_writes_an_ome_zarr_heatmap_that_opens_over_the_slide(make_napari_viewer, synthetic_model, tmp_path):
    """``predict``'s heatmap.ome.zarr, dropped on the viewer: each cell over its level-0 square, in µm."""
    from napari_lymphmet.inference import read_heatmap

    from .conftest import lymphmet

    model_path, slide_path = synthetic_model
    lymphmet("predict", str(slide_path), "--model", str(model_path), "-o", str(tmp_path / "out"))
    store = tmp_path / "out" / "heatmap.ome.zarr"
    heatmap, info = read_heatmap(tmp_path / "out" / "heatmap.tif")
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(slide_path), plugin="napari-lymphmet")
    (heat,) = viewer.open(str(store), plugin="napari-lymphmet")
    D = info["downsample"]
    level0 = heat.data[0] if heat.multiscale else heat.data
    np.testing.assert_allclose(np.asarray(level0), heatmap)
    for r, c in [(0, 0), (2, 3), (heatmap.shape[0] - 1, heatmap.shape[1] - 1)]:
        centre = (r * D + (D - 1) / 2, c * D + (D - 1) / 2)
        np.testing.assert_allclose(heat.data_to_world((r, c)), image.data_to_world(centre))
    assert tuple(heat.contrast_limits) == (0, 1) and tuple(str(u) for u in heat.units) == ("micrometer",) * 2
    assert not list(store.parent.glob(".*partial*"))  # written atomically, no checkpoint left


def test_fifty_slides_opened_used_and_closed_leave_no_open_files(make_napari_viewer, slide_with_xml):
    """Open a slide, detect tissue and preview patches through the widgets, remove the layers: 50 times.

    Each widget action opens the slide for itself and closes it; the layer's
    own slide closes once the layer is gone. The open file descriptors stay put.
    """
    import gc
    import os

    slide_path, _ = slide_with_xml
    viewer = make_napari_viewer()
    tissue, patches = open_widget(viewer, "Tissue mask"), open_widget(viewer, "Patches")

    def open_files() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    counts = {}
    for cycle in range(50):
        (image,) = viewer.open(str(slide_path), plugin="napari-lymphmet")
        mask = tissue.detect()
        patches.slide_box.value = image
        assert patches.preview() is not None
        viewer.layers.clear()
        if cycle in (4, 49):  # after warm-up, and at the end
            counts[cycle] = open_files()
        assert mask is not None
    assert counts[49] <= counts[4] + 2, counts  # flat




def test_detect_with_no_model_chosen_runs_the_bundled_model(make_napari_viewer, slide_with_xml, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("NAPARI_LYMPHMET_CACHE", str(tmp_path))  # nothing remembered from earlier runs
    slide_path, _ = slide_with_xml
    viewer = make_napari_viewer()
    viewer.open(str(slide_path), plugin="napari-lymphmet")
    widget = open_widget(viewer, "Detect metastases")
    assert str(widget.model_file.value) in ("", ".")
    heat = widget.run()  # one click on a freshly opened slide
    assert heat is not None and heat.name == "Tumor probability"
    assert heat.metadata["downsample"] == pytest.approx(96 * 0.972 / 0.5)  # the bundled model's own grid
    assert np.asarray(heat.data).max() > 0 and widget.status.value.startswith("done")


def _false_positive(widget, slide_path) -> int:
    """Index of the most confident detection outside every true lesion."""
    from scipy import ndimage

    from napari_lymphmet.annotations import rasterize, read_asap_xml

    D = widget._run["downsample"]
    lesions = ndimage.binary_dilation(rasterize(read_asap_xml(slide_path.with_suffix(".xml")),
                                                widget._run["heatmap"].shape, downsample=D), iterations=1)
    return next(i for i, (_, x, y) in enumerate(widget.detections) if not lesions[int(y // D), int(x // D)])


def test_correct_and_retrain_loop_lowers_the_marked_false_positive(make_napari_viewer, synthetic_model, tmp_path,
                                                                   monkeypatch):
    """Detect, mark a false positive not tumor (N), outline a lesion, retrain one epoch, re-predict."""
    from napari_lymphmet.annotations import EXCLUSION, TUMOR, read_annotations, read_asap_xml
    from napari_lymphmet.model import read_card

    monkeypatch.setenv("NAPARI_LYMPHMET_CACHE", str(tmp_path))
    model_path, slide_path = synthetic_model
    viewer = make_napari_viewer()
    viewer.open(str(slide_path), plugin="napari-lymphmet")
    widget = open_widget(viewer, "Detect metastases")
    widget.model_file.value = model_path
    widget.smoothing.value = 0  # the raw heatmap: the synthetic pen and dust are one-cell false positives to mark
    assert widget.run() is not None
    corrections = widget.corrections.layer
    assert corrections is not None and corrections.name == "Corrections" and len(corrections.data) == 0
    fp = _false_positive(widget, slide_path)
    _, x, y = widget.detections[fp]
    D = widget._run["downsample"]
    before = float(widget._run["heatmap"][int(y // D), int(x // D)])
    assert before >= widget._run["card"].threshold
    widget.go_to(fp)  # pick it in the table, press N on the layer
    detections = viewer.layers["Detections"]
    assert viewer.layers.selection.active is detections  # picked, ready for N
    (press_n,) = [action for key, action in detections.keymap.items() if str(key) == "N"]
    press_n(detections)
    assert list(corrections.features["label"]) == [EXCLUSION] and len(corrections.data) == 1
    # Draw a tumor outline the way a user does: choose "tumor", add a polygon.
    widget.corrections.draw_as.value = TUMOR
    lesion = read_asap_xml(slide_path.with_suffix(".xml"))[0].exterior
    corrections.add_polygons([lesion[:, ::-1]])
    assert list(corrections.features["label"]) == [EXCLUSION, TUMOR]
    saved = widget.corrections.save(tmp_path / "corrections.xml")
    assert [a.label for a in read_annotations(saved)] == [EXCLUSION, TUMOR]
    assert "_2" in saved.read_text()  # not tumor is ASAP's exclusion group
    result = widget.corrections.retrain(epochs=1)  # blocking: finetune, then predict, both in child processes
    assert result is not None and result.summary["accepted"]
    tuned = Path(str(widget.model_file.value))
    assert tuned.parent == tmp_path / "models" and tuned.name.endswith("-ft1.keras")
    after = float(widget._run["heatmap"][int(y // D), int(x // D)])
    assert widget.heatmap_layer in viewer.layers and after < before, (before, after)
    card = read_card(tuned)
    assert card.extra["parent"]["model"] == "synthetic.keras"
    assert card.extra["finetune"]["corrections"][0]["not_tumor"] == 1
    # At the new model's threshold (from the outlines) the marked false positive is no longer detected.
    assert card.extra["finetune"]["threshold"]["source"] == "corrections"
    assert not any(abs(dx - x) <= D and abs(dy - y) <= D for _, dx, dy in widget.detections), (x, y)
