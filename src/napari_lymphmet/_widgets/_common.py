"""Helpers shared by the widgets: finding slide layers, reporting errors."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container

from ..slide import Slide, open_slide

__all__ = ["PluginWidget", "is_slide_layer", "slide_layers", "slide_of"]


class PluginWidget(Container):
    """A widget with a ``status`` line that also raises napari notifications."""

    status: Any

    def _report(self, text: str, *, warning: bool = False) -> None:
        from napari.utils.notifications import show_info, show_warning

        self.status.value = text
        (show_warning if warning else show_info)(text)


def is_slide_layer(layer: Any) -> bool:
    """An Image layer opened by this plugin's reader (it knows its file)."""
    from napari.layers import Image

    meta = getattr(layer, "metadata", None)
    return isinstance(layer, Image) and isinstance(meta, dict) and "path" in meta and "vendor" in meta


def slide_layers(viewer: Any) -> list[Any]:
    return [layer for layer in viewer.layers if is_slide_layer(layer)]


def slide_of(layer: Any) -> Slide:
    """The slide behind a slide layer, opened afresh (cheap: no pixels are read)."""
    return open_slide(layer.metadata["path"])
