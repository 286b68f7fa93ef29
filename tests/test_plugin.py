"""The plugin as napari sees it: the manifest, the Plugins menu, the reader on every real slide."""

from __future__ import annotations

import fnmatch
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_lymphmet._napari.reader import get_reader

from .conftest import PLUGIN, SLIDES, open_widget

WIDGET_CLASSES = {
    "Annotations": "AnnotationsWidget",
    "Tissue mask": "TissueMaskWidget",
    "Patches": "PatchesWidget",
    "Train": "TrainWidget",
    "Detect metastases": "DetectWidget",
    "Slides": "SlidesWidget",
    "Review detections": "ReviewWidget",
}


@pytest.fixture(scope="module")
def manifest():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    return pm.get_manifest(PLUGIN)


def test_npe2_validate_passes():
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent))
    assert npe2, "npe2's command is installed with the plugin"
    done = subprocess.run([npe2, "validate", PLUGIN], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_every_command_resolves_to_a_callable(manifest):
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        target = getattr(importlib.import_module(module), attr)
        assert callable(target), command.id


def test_widget_display_names_unique_and_all_known(manifest):
    names = [w.display_name for w in manifest.contributions.widgets]
    assert len(names) == len(set(names))
    assert set(names) == set(WIDGET_CLASSES)
    sample_names = [s.display_name for s in manifest.contributions.sample_data]
    assert len(sample_names) == len(set(sample_names))


def test_reader_patterns_match_what_the_reader_accepts(manifest, small_synthetic, tmp_path):
    (slide_reader,) = [r for r in manifest.contributions.readers if r.command == f"{PLUGIN}.get_reader"]
    patterns = slide_reader.filename_patterns
    real = sorted(SLIDES.glob("*")) if SLIDES.is_dir() else []
    for path in [*real, small_synthetic]:
        assert any(fnmatch.fnmatch(path.name.lower(), p) for p in patterns), path.name
        assert get_reader(str(path)) is not None, path.name
    # Upper-case suffixes too: napari matches patterns case-insensitively.
    upper = tmp_path / "SMALL.TIF"
    upper.write_bytes(small_synthetic.read_bytes())
    assert get_reader(str(upper)) is not None
    # A text file named like a slide: a reader that opens nothing and says why (napari's "nothing to add").
    text = tmp_path / "notes.svs"
    text.write_text("not a slide")
    read = get_reader(str(text))
    assert read is not None and read(str(text)) == [(None,)]


@pytest.mark.gui
@pytest.mark.parametrize("display_name", list(WIDGET_CLASSES))
def test_each_widget_opens_from_the_plugins_menu(make_napari_viewer, display_name, manifest):
    """Both roads napari has: the menu item (an app-model action) and add_plugin_dock_widget."""
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    command = {w.display_name: w.command for w in manifest.contributions.widgets}[display_name]
    get_app_model().commands.execute_command(command).result()  # what clicking the menu item runs
    docked = dict(viewer.window.dock_widgets)
    assert list(docked) == [f"{display_name} ({PLUGIN})"]
    menu_widget = next(iter(docked.values()))
    assert type(menu_widget).__name__ == WIDGET_CLASSES[display_name]
    # add_plugin_dock_widget finds the same dock instead of building another.
    assert open_widget(viewer, display_name) is menu_widget
    assert len(viewer.window.dock_widgets) == 1


@pytest.mark.gui
@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "tcga-cr-7395-01a-01-ts1.svs", "openslide-small.svs",
                                  "openslide-boxes.tiff"])
def test_reader_opens_every_real_slide_type(make_napari_viewer, name):
    from napari.layers import Image

    from .conftest import real_slide

    path = real_slide(name)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert isinstance(layer, Image) and layer.rgb and layer.multiscale
    assert layer.metadata["path"] == str(path)
    level0 = layer.data[0]
    assert level0.shape[2] == 3 and level0.dtype.name == "uint8"
    tile = level0[: min(64, level0.shape[0]), : min(64, level0.shape[1])].compute()
    assert tile.size > 0


def test_qt_binding_is_current_and_napari_starts_without_a_deprecation_warning():
    """The ``qt`` extra is PyQt6: PyQt5 is absent, and napari's start says nothing about its Qt backend."""
    import importlib.util
    import subprocess
    import sys

    assert importlib.util.find_spec("PyQt5") is None
    code = ("import warnings; warnings.simplefilter('always'); import napari, qtpy; "
            "v = napari.Viewer(show=False); print(qtpy.API_NAME); v.close()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] in ("PyQt6", "PySide6")
    assert "deprecated" not in result.stderr.lower() or "backend" not in result.stderr.lower(), result.stderr


def test_readers_claim_slides_and_result_folders_not_every_file(tmp_path):
    """Dropping a PNG or a CSV never asks about this plugin; a folder may be a predictions folder."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()

    def ours(path) -> list[str]:
        return [r.command for r in pm.iter_compatible_readers([str(path)]) if r.command.startswith(PLUGIN)]

    assert ours(tmp_path / "figure.png") == [] and ours(tmp_path / "table.csv") == []
    assert f"{PLUGIN}.get_results_reader" in ours(tmp_path)
    assert ours(tmp_path / "heatmap.tif") == [f"{PLUGIN}.get_reader"]  # which hands a results heatmap over
