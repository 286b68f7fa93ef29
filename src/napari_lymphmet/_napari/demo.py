"""``lymphmet demo --open``: the demo's test slide and results in napari, opened as a user would."""

from __future__ import annotations

from pathlib import Path
from typing import Any


__all__ = ["open_in_napari", "show_in_viewer"]


def show_in_viewer(viewer: Any, summary: dict) -> dict[str, Any]:
    """Lay the demo's test slide and results out in ``viewer`` the way a user would.

    The slide and its XML open through the plugin's readers, the tissue mask
    through the *Tissue mask* widget and the heatmap and detections through
    *Detect metastases*, both opened from the plugin menu's path. Returns the
    two widgets by display name.
    """
    from .._napari.widgets import PLUGIN

    slide_path = Path(summary["slides"]["test"])
    viewer.open(str(slide_path), plugin=PLUGIN)
    viewer.open(str(slide_path.with_suffix(".xml")), plugin=PLUGIN)
    _, tissue = viewer.window.add_plugin_dock_widget(PLUGIN, "Tissue mask")
    tissue.load(summary["masks"]["test"])
    _, detect = viewer.window.add_plugin_dock_widget(PLUGIN, "Detect metastases")
    detect.model_file.value = summary["model"]
    detect.results_dir.value = Path(summary["heatmap"]).parent
    detect.load_results(Path(summary["heatmap"]).parent)
    return {"Tissue mask": tissue, "Detect metastases": detect}


def open_in_napari(summary: dict) -> None:
    """Show the test slide with its mask, annotations, heatmap and detections, and run napari."""
    import napari

    viewer = napari.Viewer(title="napari-lymphmet demo")
    show_in_viewer(viewer, summary)
    napari.run()
