"""``lymphmet demo`` end to end, on small slides."""

from __future__ import annotations

import pytest

from .browser import CHROMIUM


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``lymphmet demo`` in a child process, as a user runs it (GUI tests in this file must not load TensorFlow)."""
    import json
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "demo"
    done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "demo", "-o", str(out), "--size", "6144",
                           "--epochs", "4"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_reports(demo_run):
    out, summary, err = demo_run
    tmp_path = out.parent
    for key in ("heatmap_auc", "froc", "slide_auc", "sensitivity_at", "heatmap", "overlay", "froc_png",
                "report", "model"):
        assert key in summary
    assert summary["heatmap_auc"] > 0.9 and summary["lesions"] >= 1
    report = (tmp_path / "demo" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2 and "FROC" in report
    assert "1/6 synthetic slides" in err and "6/6 CAMELYON16 evaluation" in err


@pytest.mark.slow
@pytest.mark.gui
def test_screenshot_script_shows_every_widget_in_use(demo_run, tmp_path):
    """docs/make_screenshots.py on a fresh demo: one non-blank picture per widget."""
    import subprocess
    import sys
    from pathlib import Path

    from skimage.io import imread

    script = Path(__file__).resolve().parents[1] / "docs" / "make_screenshots.py"
    out, _, _ = demo_run
    result = subprocess.run([sys.executable, str(script), str(out), str(tmp_path)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    names = ("tissue-mask.png", "annotations.png", "patch-grid.png", "training.png", "detect-metastases.png",
             "lesion-table.png", "review.png")
    for name in names:
        image = imread(tmp_path / name)
        assert image.shape[0] > 300 and image[..., :3].std() > 20, name
        committed = script.parent / "images" / name
        assert committed.exists() and imread(committed)[..., :3].std() > 20, committed


@pytest.mark.slow
@pytest.mark.gui
def test_demo_open_lays_out_results_through_the_plugin(demo_run, make_napari_viewer):
    """``lymphmet demo --open``: readers for the slide and XML, menu-path widgets for the rest."""
    import numpy as np

    from napari_lymphmet.evaluation import read_detections
    from napari_lymphmet.inference import read_heatmap
    from napari_lymphmet._napari.demo import show_in_viewer

    _, summary, _ = demo_run
    viewer = make_napari_viewer()
    widgets = show_in_viewer(viewer, summary)
    assert list(viewer.window.dock_widgets) == ["Tissue mask (napari-lymphmet)",
                                                 "Detect metastases (napari-lymphmet)"]
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Shapes", "Labels", "Image", "Points"]
    detect = widgets["Detect metastases"]
    heatmap, _ = read_heatmap(summary["heatmap"])
    np.testing.assert_array_equal(detect._run["heatmap"], heatmap)
    detections = read_detections(summary["detections"])
    assert len(detections) > 0 and len(detect.points_layer.data) == len(detections)
    assert detect.table.rowCount() == len(detections) and "detections" in detect.status.value
    tissue_layer = viewer.layers[2]
    assert tissue_layer.metadata["kind"] == "tissue" and 0.1 < np.mean(tissue_layer.data > 0) < 0.9


def _report_problems(report, heatmap_tif, work) -> list[str]:
    """What a reader of ``report`` would miss: images that did not load, a heatmap without its lesions."""
    import numpy as np

    from napari_lymphmet.inference import read_heatmap
    from napari_lymphmet.wsi import open_slide

    from .browser import inspect_images

    images = {image["id"]: image for image in inspect_images(report, work)}
    problems = [f"image {name!r} did not load" for name, image in images.items() if not image["width"]]
    if set(images) != {"heatmap", "froc"}:
        problems.append(f"images {sorted(images)}, expected heatmap and froc")
    if not images.get("heatmap", {}).get("samples"):
        return problems + ["no pixels of the heatmap image"]
    heat, info = read_heatmap(heatmap_tif)
    with open_slide(info["slide"]) as slide:
        width, height = slide.dimensions
    pixels = np.asarray(images["heatmap"]["samples"], float)  # (n, n, 3), inside the plot's axes
    n = pixels.shape[0]
    # Each sample's heatmap cell: the axes span the slide, cells are D level-0 px.
    rows = np.minimum(((np.arange(n) + 0.5) / n * height // info["downsample"]).astype(int), heat.shape[0] - 1)
    cols = np.minimum(((np.arange(n) + 0.5) / n * width // info["downsample"]).astype(int), heat.shape[1] - 1)
    under = heat[np.ix_(rows, cols)]
    # viridis over the slide: green to yellow where the model sees tumor; untouched pink H&E where it does not.
    greenness = pixels[..., 1] - (pixels[..., 0] + pixels[..., 2]) / 2
    lesion, normal = under >= 0.6, (under > 0.06) & (under < 0.3)
    if lesion.sum() < 3:
        return problems + [f"only {lesion.sum()} samples fall on lesion cells"]
    gap = greenness[lesion].mean() - greenness[normal].mean()
    if gap < 40:
        problems.append(f"lesion cells are not drawn: green gap {gap:.0f} against normal tissue")
    return problems


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (bash .ci/run installs it)")
def test_report_shows_every_figure_and_the_lesions_in_headless_chromium(demo_run, tmp_path):
    import re

    out, summary, _ = demo_run
    report = out / "report.html"
    assert _report_problems(report, summary["heatmap"], tmp_path) == []

    # The same check fails a report whose heatmap picture is gone.
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'(<img id="heatmap"[^>]*src=")[^"]*"', r'\1data:image/png;base64,AAAA"',
                             report.read_text()))
    assert "image 'heatmap' did not load" in _report_problems(broken, summary["heatmap"], tmp_path)


@pytest.mark.slow
def test_demo_report_explains_froc_when_the_official_rule_lowers_it(demo_run):
    """Both FROC figures are in the report; when they differ, the one-sentence reason is too."""
    out, summary, _ = demo_run
    report = (out / "report.html").read_text()
    assert summary["froc_all_thresholds"] >= summary["froc"]
    assert "FROC over all thresholds" in report
    if summary["froc_all_thresholds"] > summary["froc"] + 1e-9:
        assert summary["froc_note"] and summary["froc_note"] in report and "lowest" in summary["froc_note"]
    else:
        assert summary["froc_note"] is None and 'id="froc-note"' not in report
