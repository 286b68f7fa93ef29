"""Helpers shared by the widgets: finding slide and mask layers, reporting, the slides they open."""


from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import Container

import numpy as np

from ...tissue import Tissue
from ...wsi import Slide, open_slide

__all__ = ["PluginWidget", "camera_of", "scale_bar_of", "is_slide_layer", "layer_tissue", "slide_layers", "slide_of"]


class PluginWidget(Container):
    """A widget over a viewer, with a ``status`` line that also raises napari notifications.

    Docked next to another of this plugin's widgets, it joins it as a tab
    rather than stacking under it: two stacked panels need more height
    than a laptop screen has.
    """

    status: Any
    slide_box: Any
    _viewer: Any

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from qtpy.QtCore import QTimer

        from ..reader import prefer_for_slides

        prefer_for_slides()  # as on activation: napari's settings may have been reset since

        QTimer.singleShot(0, self._tabify_with_siblings)  # once napari has docked it

    def _tabify_with_siblings(self) -> None:
        from qtpy.QtWidgets import QDockWidget, QMainWindow

        try:
            dock = self.native.parent()
        except RuntimeError:  # closed before the timer fired
            return
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parent()
        main = dock.parent() if dock is not None else None
        if not isinstance(main, QMainWindow):
            return
        area = main.dockWidgetArea(dock)
        siblings = [d for d in main.findChildren(QDockWidget) if d is not dock and not d.isHidden()
                    and "napari-lymphmet" in d.windowTitle() and main.dockWidgetArea(d) == area]
        if siblings:
            main.tabifyDockWidget(siblings[0], dock)
            dock.raise_()

    def _slide_choices(self, _widget=None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in slide_layers(self._viewer)]

    def _layer_choices(self, kind: type, *, none: str | None = None, where=lambda layer: True) -> list:
        """``(name, layer)`` for the viewer's layers of ``kind``, after a ``(none, None)`` entry if given."""
        found = [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, kind) and where(layer)]
        return ([(none, None)] if none is not None else []) + found

    def _follow_layers(self, *boxes: Any) -> None:
        """Refresh these combo boxes whenever a layer is added or removed."""
        def refresh(_event=None) -> None:
            for box in boxes:
                box.reset_choices()

        for event in (self._viewer.layers.events.inserted, self._viewer.layers.events.removed):
            event.connect(refresh)

    def _report(self, text: str, *, warning: bool = False) -> None:
        from napari.utils.notifications import show_info, show_warning

        # The status line wraps and stays short; the whole text is its tooltip and the notification.
        self.status.native.setWordWrap(True)
        self.status.value = text if len(text) <= 240 else text[:237] + "…"
        self.status.tooltip = text
        (show_warning if warning else show_info)(text)

    def _warn(self, text: str) -> None:
        self._report(text, warning=True)

    def _read_polygons(self, path: Any) -> list | None:
        """The polygons of an ASAP XML or GeoJSON file, its read warnings shown; ``None`` (reported) on error."""
        import warnings

        from ...annotations import check_within, read_annotations
        from ...errors import InputError

        try:
            if self.slide_box.value is None:
                raise InputError("open a slide first")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                anns = read_annotations(path)
                with slide_of(self.slide_box.value) as slide:
                    check_within(anns, slide.dimensions, source=Path(str(path)).name)
            for w in caught:
                self._report(str(w.message), warning=True)
            if not anns:
                raise InputError(f"{path}: no polygons")
        except InputError as exc:
            self._warn(str(exc))
            return None
        return anns


def is_slide_layer(layer: Any) -> bool:
    """An Image layer opened by this plugin's reader (it knows its file)."""
    from napari.layers import Image

    meta = getattr(layer, "metadata", None)
    return isinstance(layer, Image) and isinstance(meta, dict) and "path" in meta and "vendor" in meta


def slide_layers(viewer: Any) -> list[Any]:
    return [layer for layer in viewer.layers if is_slide_layer(layer)]


def slide_of(layer: Any) -> Slide:
    """The slide behind a slide layer, opened afresh (cheap: no pixels are read).

    The caller owns it: use it in a ``with`` block, or close it when its job ends.
    """
    return open_slide(layer.metadata["path"])


def layer_tissue(layer: Any | None) -> Tissue | None:
    """The tissue a mask Labels layer holds (brush edits included), or ``None`` for no layer."""
    if layer is None:
        return None
    return Tissue(np.asarray(layer.data) > 0, float(layer.metadata["downsample"]), source=layer.name)


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9; ``viewer.camera`` before)."""
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def scale_bar_of(viewer: Any) -> Any:
    """The viewer's scale bar overlay (``viewer.canvas.overlays.scale_bar`` from napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.scale_bar if canvas is not None and hasattr(canvas, "overlays") else viewer.scale_bar
