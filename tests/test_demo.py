"""``lymphmet demo`` end to end, on small slides."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    import contextlib
    import io
    import json

    from napari_lymphmet.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["demo", "-o", str(out), "--size", "6144", "--epochs", "4"])
    assert code == 0, stderr.getvalue()[-3000:]
    return out, json.loads(stdout.getvalue().strip().splitlines()[-1]), stderr.getvalue()


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
    names = ("tissue-mask.png", "annotations.png", "patch-grid.png", "training.png", "detect-metastases.png")
    for name in names:
        image = imread(tmp_path / name)
        assert image.shape[0] > 500 and image[..., :3].std() > 20, name
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
    np.testing.assert_array_equal(detect.heatmap_layer.data, heatmap)
    detections = read_detections(summary["detections"])
    assert len(detections) > 0 and len(detect.points_layer.data) == len(detections)
    assert len(detect.found.choices) == len(detections) and "detections" in detect.status.value
    tissue_layer = viewer.layers[2]
    assert tissue_layer.metadata["kind"] == "tissue" and 0.1 < np.mean(tissue_layer.data > 0) < 0.9


def test_report_opens_in_headless_chromium(demo_run, tmp_path):
    import shutil
    import subprocess

    from skimage.io import imread

    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on this machine")
    out, _, _ = demo_run
    png = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={png}",
                    "--window-size=1100,2600", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    shot = imread(png)
    # The overlay and FROC images are drawn: tens of thousands of coloured
    # pixels (text and tables are grey; a broken image leaves none).
    coloured = shot[..., :3].astype(int).std(axis=2) > 30
    assert coloured.sum() > 40_000, coloured.sum()
