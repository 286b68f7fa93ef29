"""The "Annotations" widget: draw tumor outlines over a slide, load and save them."""


from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, Label, PushButton, RadioButtons

from ...annotations import EXCLUSION, TUMOR, summarize, write_annotations
from ...errors import InputError
from ..layers import (annotation_layer_data, annotations_from_shapes, class_legend_html, class_shapes_kwargs,
                      set_draw_class)
from ._common import PluginWidget, slide_of

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

__all__ = ['AnnotationsWidget']


class AnnotationsWidget(PluginWidget):
    """Create a tumor Shapes layer to draw in; load ASAP XML / GeoJSON; save a layer back."""

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.new_button = PushButton(text="New tumor layer")
        self.draw_as = RadioButtons(label="draw as", choices=[("tumor", TUMOR), ("not tumor", EXCLUSION)],
                                   value=TUMOR, orientation="horizontal")
        self.draw_as.tooltip = ("the class of the outlines you draw next; outlines already drawn keep theirs. "
                                "'not tumor' cuts a region out of tumor (CAMELYON16's exclusion, ASAP group _2)")
        self.legend = Label(value=class_legend_html())
        self.open_file = FileEdit(label="annotations", mode="r", filter="*.xml *.geojson *.json")
        self.load_button = PushButton(text="Load")
        self.shapes_box = ComboBox(label="layer", choices=self._shapes_choices)
        self.save_file = FileEdit(label="save as", mode="w", filter="*.xml *.geojson")
        self.save_button = PushButton(text="Save")
        self.status = Label(value="")
        self.slide_box.tooltip = "the slide to draw on (opened with napari-lymphmet)"
        self.new_button.tooltip = "add an empty layer over the slide, in polygon mode: click the corners, " \
                                  "double-click to close"
        self.open_file.tooltip = "ASAP XML (CAMELYON) or QuPath GeoJSON, in the slide's level-0 pixels"
        self.save_file.tooltip = "ASAP XML or GeoJSON, by the file's extension"
        self.status.native.setWordWrap(True)
        super().__init__(widgets=[self.slide_box, self.new_button, self.draw_as, self.legend, self.open_file,
                                  self.load_button,
                                  self.shapes_box, self.save_file, self.save_button, self.status])
        self.new_button.changed.connect(self.new_layer)
        self.load_button.changed.connect(lambda: self.load(self.open_file.value))
        self.save_button.changed.connect(lambda: self.save(self.save_file.value))
        self.draw_as.changed.connect(self._set_draw_label)
        self._follow_layers(self.slide_box, self.shapes_box)

    # -- choices -------------------------------------------------------------
    def _shapes_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Shapes

        return self._layer_choices(Shapes)


    def _slide_layer(self) -> Any:
        layer = self.slide_box.value
        if layer is None:
            raise InputError("open a slide first")
        return layer

    # -- actions -------------------------------------------------------------
    def new_layer(self) -> Any:
        """Add an empty tumor Shapes layer over the chosen slide, in polygon mode."""
        try:
            image = self._slide_layer()
        except InputError as exc:
            self._warn(str(exc))
            return None
        with slide_of(image) as slide:
            kwargs = class_shapes_kwargs(slide, name=f"{image.name} tumor", label=self.draw_as.value)
        layer = self._viewer.add_shapes(**kwargs)
        set_draw_class(layer, self.draw_as.value)
        layer.mode = "add_polygon"
        self.shapes_box.value = layer
        return layer

    def _set_draw_label(self, label: str) -> None:
        layer = self.shapes_box.value
        if layer is not None and "label" in layer.features:
            set_draw_class(layer, label)

    def load(self, path: str | Path) -> Any:
        """Add the annotations in ``path`` over the chosen slide."""
        image = self.slide_box.value
        anns = self._read_polygons(path)
        if anns is None:
            return None
        with slide_of(image) as slide:
            data, kwargs, kind = annotation_layer_data(anns, slide, name=f"{Path(path).stem} annotations",
                                                       source=str(path))
        layer = getattr(self._viewer, f"add_{kind}")(data, **kwargs)
        counts = summarize(anns, None)["polygons"]
        self._report(f"{Path(path).name}: {counts[TUMOR]} tumor, {counts[EXCLUSION]} exclusion polygons")
        return layer

    def save(self, path: str | Path) -> Path | None:
        """Write the chosen Shapes layer as ASAP XML or GeoJSON (by extension)."""
        layer = self.shapes_box.value
        try:
            if layer is None:
                raise InputError("no Shapes layer to save")
            if not str(path) or Path(path).is_dir():
                raise InputError("choose a file to save to (.xml or .geojson)")
            image = self.slide_box.value
            anns, skipped = annotations_from_shapes(layer, image)
            if not anns:
                raise InputError(f"{layer.name}: no polygons to save")
            write_annotations(path, anns)
        except InputError as exc:
            self._warn(str(exc))
            return None
        note = f" ({skipped} lines skipped)" if skipped else ""
        self._report(f"saved {len(anns)} polygons to {Path(path).name}{note}")
        return Path(path)
