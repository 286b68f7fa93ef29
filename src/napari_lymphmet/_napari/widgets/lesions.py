"""The lesion table and the heatmap legend of *Detect metastases*, kept in step with its Detections layer.

A mixin of :class:`~napari_lymphmet._napari.widgets.detect.DetectWidget`:
it reads the widget's ``lesions``, ``points_layer``, ``_run`` and viewer.
Selecting a row selects the point and zooms to it; selecting a point
selects its row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import camera_of
from ._table import SortItem, make_table

__all__ = ["LESION_TABLE_COLUMNS", "LesionTableMixin"]

LESION_TABLE_COLUMNS = ("#", "p", "area mm²", "long mm", "x µm", "y µm", "review")
_COLUMN_TIPS = ("rank by probability", "tumor probability: the lesion's highest (on the smoothed map)",
                "area of the lesion's region above the threshold, mm²", "longest diameter: the major axis of that "
                "region, mm (CAMELYON's "
                "measure of a metastasis: ≤ 0.2 mm isolated tumor cells, ≤ 2 mm micro, > 2 mm macro)",
                "position on the slide", "position on the slide",
                "the pathologist's mark in Review detections: tumor, not tumor, or none yet")


class LesionTableMixin:
    """The legend (the heatmap's colours with the threshold) and the lesion table."""

    _viewer: Any
    lesions: list
    points_layer: Any
    _run: dict
    slide_box: Any
    legend_label: Any
    native: Any

    def _add_legend(self) -> Any:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        from ...figures import draw_heatmap_legend

        figure = Figure(figsize=(3.6, 0.75), dpi=90, layout="constrained")
        canvas = FigureCanvasQTAgg(figure)
        canvas.setFixedHeight(68)
        canvas.setToolTip("tumor probability colours; the red line is the detection threshold")
        _insert_after(self, self.legend_label, canvas)
        draw_heatmap_legend(figure, None)
        # Shown from the start: showing it when a run ends would lay out the dock again, and the new
        # size makes the viewer's canvas repaint at once (half a second with Mesa's software OpenGL).
        return figure

    def _show_legend(self, threshold: float | None) -> None:
        from ...figures import mark_threshold

        mark_threshold(self.legend, threshold)
        self.legend.canvas.draw_idle()

    def _add_table(self) -> Any:
        table = make_table(LESION_TABLE_COLUMNS, tooltips=_COLUMN_TIPS, min_height=150)
        table.setToolTip("the detected lesions: click one to go to it (and select it on the canvas)")
        _insert_after(self, self.legend_label, table, offset=2)  # under the legend, above the corrections
        table.itemSelectionChanged.connect(self._table_selected)
        return table

    def _fill_table(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.lesions))
        mpp = self._mpp()
        marks = self.review_marks()
        for row, lesion in enumerate(self.lesions):
            um = (lesion.x * mpp, lesion.y * mpp) if mpp else (None, None)
            mark = marks[row] if row < len(marks) else ""
            cells = [(str(lesion.rank), lesion.rank), (f"{lesion.confidence:.2f}", lesion.confidence),
                     _number(lesion.area_mm2, 3), _number(lesion.major_axis_mm, 2),
                     _number(um[0], 0), _number(um[1], 0), (mark, mark)]
            for col, (text, key) in enumerate(cells):
                item = SortItem(text, key)
                item.setData(256, lesion.rank - 1)  # Qt.UserRole: the detection's index, whatever the sort
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()

    def review_marks(self) -> list[str]:
        """Each detection's mark from *Review detections* (``""`` unmarked), as its Detections layer holds them."""
        layer = self.points_layer
        if layer is None or "review" not in getattr(layer, "features", {}):
            return []
        return [str(mark) if isinstance(mark, str) else "" for mark in layer.features["review"]]

    def _mpp(self) -> float | None:
        image = self._run.get("image") or self.slide_box.value
        mpp = image.metadata.get("mpp") if image is not None else None
        return float(np.mean(mpp)) if mpp else None

    def _table_selected(self) -> None:
        rows = {item.row() for item in self.table.selectedItems()}
        if self._syncing or len(rows) != 1:
            return
        index = self.table.item(rows.pop(), 0).data(256)
        self.go_to(int(index))

    def go_to(self, index: int) -> None:
        """Select detection ``index`` (0 = most probable) on the canvas and in the table, and zoom to it."""
        if self.points_layer is None or not 0 <= index < len(self.points_layer.data):
            return
        self._syncing = True
        try:
            self.points_layer.selected_data = {index}
            for row in range(self.table.rowCount()):
                if self.table.item(row, 0).data(256) == index:
                    self.table.selectRow(row)
        finally:
            self._syncing = False
        world = self.points_layer.data_to_world(self.points_layer.data[index])
        camera = camera_of(self._viewer)
        camera.center = tuple(world)
        # About 1 screen px per µm: a lesion and its surroundings at a readable magnification.
        camera.zoom = 1.0 if self._mpp() else 0.25

    def _points_selected(self, _event=None) -> None:
        if self._syncing or self.points_layer is None:
            return
        chosen = sorted(self.points_layer.selected_data)
        if len(chosen) == 1:
            self._syncing = True
            try:
                for row in range(self.table.rowCount()):
                    if self.table.item(row, 0).data(256) == chosen[0]:
                        self.table.selectRow(row)
            finally:
                self._syncing = False

    def selected_detection(self) -> int | None:
        """The detection chosen in the table or on the canvas, if any."""
        rows = {item.row() for item in self.table.selectedItems()}
        if len(rows) == 1:
            return int(self.table.item(rows.pop(), 0).data(256))
        if self.points_layer is not None and len(self.points_layer.selected_data) == 1:
            return int(next(iter(self.points_layer.selected_data)))
        return None


def _number(value: float | None, digits: int) -> tuple[str, float]:
    if value is None or not np.isfinite(value):
        return "–", float("-inf")
    return f"{value:,.{digits}f}", float(value)


def _insert_after(container: Any, widget: Any, qwidget: Any, *, offset: int = 1) -> None:
    """Put a Qt widget into a magicgui container's layout ``offset`` places after ``widget``.

    magicgui wraps labelled widgets in a row of their own, so the layout
    item to look for is the one that holds ``widget``'s native widget.
    """
    layout = container.native.layout()
    target = widget.native
    for index in range(layout.count()):
        item = layout.itemAt(index).widget()
        if item is not None and (item is target or item.isAncestorOf(target)):
            layout.insertWidget(index + offset, qwidget)
            return
    layout.addWidget(qwidget)
