"""The "Slides" widget: a folder of slides as a sortable table; open one with its results; predict the rest."""


from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import FileEdit, Label, LineEdit, PushButton

from ...errors import InputError
from ._common import PluginWidget
from ._jobs import Job
from ._table import SortItem, make_table

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

    from ...workflows import SlideEntry

__all__ = ["COLUMNS", "SlidesWidget"]

_SEVERITY = {"unknown": 0, "negative": 1, "itc": 2, "micro": 3, "macro": 4}

COLUMNS = ("thumbnail", "slide", "µm/px", "size (px)", "score", "detections", "node")
_THUMB = 72


class SlidesWidget(PluginWidget):
    """List a folder's slides with their scores; double-click opens one with its heatmap; predict the rest.

    Names and scores come at once (no slide is opened to list them); mpp,
    size and thumbnails fill in from a background worker, row by row.
    """

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self.entries: list[SlideEntry] = []
        self._facts_job: Job | None = None
        self._predict_job: Job | None = None
        self.folder = FileEdit(label="slides (folder)", mode="d")
        self.predictions = FileEdit(label="predictions (optional)", mode="d")
        self.model = LineEdit(label="model", value="")
        self.model.tooltip = "a .keras file or a bundled model's name; empty: the bundled default"
        self.list_button = PushButton(text="List")
        self.predict_button = PushButton(text="Predict all")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.folder.tooltip = "a folder of slides (any format OpenSlide reads)"
        self.predictions.tooltip = ("where lymphmet predict wrote (or will write) results, one subfolder per "
                                    "slide; empty: <slides>/predictions")
        self.list_button.tooltip = "list the folder's slides again"
        self.predict_button.tooltip = "predict every listed slide that has no results yet, in the background"
        self.cancel_button.tooltip = "stop now; finished slides keep their results"
        super().__init__(widgets=[self.folder, self.predictions, self.model, self.list_button, self.predict_button,
                                  self.cancel_button, self.status])
        self.table = self._add_table()
        self.folder.changed.connect(lambda: self.list())
        self.list_button.changed.connect(lambda: self.list())
        self.predict_button.changed.connect(lambda: self.predict_all(block=False))
        self.cancel_button.changed.connect(self.cancel)

    # -- the table ---------------------------------------------------------------
    def _add_table(self) -> Any:
        from qtpy.QtCore import QSize

        table = make_table(COLUMNS, min_height=260)
        table.setIconSize(QSize(_THUMB, _THUMB))
        table.verticalHeader().setDefaultSectionSize(_THUMB + 4)
        table.cellDoubleClicked.connect(lambda row, _col: self.open_row(row))
        layout = self.native.layout()
        layout.insertWidget(layout.count() - 1, table)
        return table

    def _row_of(self, path: Path) -> int | None:
        from qtpy.QtCore import Qt

        for row in range(self.table.rowCount()):
            item = self.table.item(row, 1)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == str(path):
                return row
        return None

    def _entry_at(self, row: int) -> SlideEntry:
        from qtpy.QtCore import Qt

        path = self.table.item(row, 1).data(Qt.ItemDataRole.UserRole)
        return next(e for e in self.entries if str(e.path) == path)

    def _set(self, row: int, column: int, text: str, key: Any) -> None:
        self.table.setItem(row, column, SortItem(text, key))

    def _fill_results(self, row: int, entry: SlideEntry) -> None:
        score = entry.slide_score
        self._set(row, 4, "—" if score is None else f"{score:.3f}", -1.0 if score is None else score)
        n = entry.detections
        self._set(row, 5, "—" if n is None else str(n), -1 if n is None else n)
        # Sorted by severity: macro above micro above itc above negative.
        category = entry.category
        self._set(row, 6, category or "—", _SEVERITY.get(category, -1))

    def list(self) -> list[SlideEntry]:
        """List the folder now (names and scores); mpp, size and thumbnails follow in a worker."""
        from qtpy.QtCore import Qt

        from ...workflows import list_slides

        if self._facts_job is not None:
            self._facts_job.cancel()
        folder = str(self.folder.value)
        if folder in ("", "."):
            return []
        try:
            self.entries = list_slides(folder, self._predictions_dir(create=False))
        except InputError as exc:
            self._warn(str(exc))
            return []
        self.table.setSortingEnabled(False)  # rows keep their place while they are filled
        self.table.setRowCount(len(self.entries))
        for row, entry in enumerate(self.entries):
            self._set(row, 0, "", 0)
            name = SortItem(entry.name, entry.name.lower())
            name.setData(Qt.ItemDataRole.UserRole, str(entry.path))
            name.setToolTip(str(entry.path))
            self.table.setItem(row, 1, name)
            self._set(row, 2, "…", -1.0)
            self._set(row, 3, "…", -1)
            self._fill_results(row, entry)
        self.table.setSortingEnabled(True)
        predicted = sum(e.results is not None for e in self.entries)
        self._report(f"{len(self.entries)} slides, {predicted} predicted")
        self._start_facts()
        return self.entries

    def _start_facts(self) -> None:
        from ...workflows import slide_facts

        paths = [e.path for e in self.entries]
        job = self._facts_job = Job("Reading slides", report=self._warn)

        def work(job: Job):
            for i, path in enumerate(paths):
                if job.cancelled.is_set():
                    return
                try:
                    yield path, slide_facts(path, size=_THUMB)
                except InputError as exc:
                    yield path, exc
                job.step(i + 1, len(paths))

        job.run(work, on_update=self._show_facts)

    def _show_facts(self, update: tuple[Path, Any]) -> None:
        from qtpy.QtGui import QIcon, QImage, QPixmap

        path, facts = update
        row = self._row_of(path)
        if row is None:
            return
        self.table.setSortingEnabled(False)
        if isinstance(facts, InputError):
            self._set(row, 2, "unreadable", -1.0)
            self._set(row, 3, "—", -1)
            self.table.item(row, 1).setToolTip(str(facts))
        else:
            self._set(row, 2, "—" if facts.mpp is None else f"{facts.mpp:.3f}", facts.mpp or -1.0)
            w, h = facts.dimensions
            self._set(row, 3, f"{w} × {h}", w * h)
            thumb = facts.thumbnail[..., :3].copy()
            image = QImage(thumb.data, thumb.shape[1], thumb.shape[0], 3 * thumb.shape[1],
                           QImage.Format.Format_RGB888).copy()
            self.table.item(row, 0).setIcon(QIcon(QPixmap.fromImage(image)))
        self.table.setSortingEnabled(True)

    def sort_by(self, column: str, *, descending: bool = True) -> None:
        """Sort as a click on the column's header does."""
        from qtpy.QtCore import Qt

        order = Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
        self.table.sortItems(COLUMNS.index(column), order)

    def names(self) -> list[str]:
        """The slide names in the table's current order."""
        return [self.table.item(row, 1).text() for row in range(self.table.rowCount())]

    # -- opening -----------------------------------------------------------------
    def open_row(self, row: int) -> list[Any]:
        """Open the slide in ``row`` with its heatmap, detections, regions, tissue mask and annotations."""
        from ...workflows import companions
        from ..results import mask_layer_data
        from ..widgets import PLUGIN

        entry = self._entry_at(row)
        try:
            layers = list(self._viewer.open(str(entry.path), plugin=PLUGIN))
        except Exception as exc:  # napari wraps reader failures in its own errors
            self._warn(f"{entry.path.name}: cannot open: {exc}")
            return []
        found = companions(entry.path)
        if "mask" in found:
            try:
                data, kwargs, _ = mask_layer_data(found["mask"], entry.path)
                layers.append(self._viewer.add_labels(data, **kwargs))
            except InputError as exc:
                self._warn(str(exc))
        if "annotations" in found:
            layers += list(self._viewer.open(str(found["annotations"]), plugin=PLUGIN))
        if entry.results is not None:
            layers += list(self._viewer.open(str(entry.results), plugin=PLUGIN))
        self._report(f"opened {entry.name}" + ("" if entry.results is None else
                                                f": slide score {entry.slide_score:.3f}, "
                                                f"{entry.detections} detections"))
        return layers

    # -- predicting ----------------------------------------------------------------
    def _predictions_dir(self, *, create: bool) -> Path | None:
        value = str(self.predictions.value)
        if value not in ("", "."):
            return Path(value)
        if not create:
            return None
        folder = Path(str(self.folder.value)) / "predictions"
        self.predictions.value = folder
        return folder

    def predict_all(self, *, block: bool = True) -> Any:
        """Predict every listed slide without results (``lymphmet predict`` in a child process), filling in
        scores as each finishes."""
        from ...workflows import results_for, with_results

        todo = [e for e in self.entries if e.results is None]
        if not todo:
            self._report("every listed slide has predictions")
            return None
        out = self._predictions_dir(create=True)
        out.mkdir(parents=True, exist_ok=True)
        args = ["predict", *[str(e.path) for e in todo], "-o", str(out)]
        if self.model.value.strip():
            args += ["--model", self.model.value.strip()]
        self._predict_job = job = Job("Predicting slides", buttons=(self.predict_button, self.cancel_button),
                                      report=self._warn, status=self._say)

        def on_event(event: dict) -> None:
            if event.get("event") != "slide":
                return
            path = Path(event["slide"])
            if event.get("error"):
                self._warn(f"{path.name}: {event['error']}")
                return
            index = next((i for i, e in enumerate(self.entries) if e.path.resolve() == path.resolve()), None)
            if index is None:
                return
            # With several slides predict writes out/<stem>/; with one, out itself.
            entry = with_results(self.entries[index], results_for(self.entries[index].path, out))
            self.entries[index] = entry
            row = self._row_of(entry.path)
            if row is not None:
                self.table.setSortingEnabled(False)
                self._fill_results(row, entry)
                self.table.setSortingEnabled(True)

        def finished() -> None:
            left = sum(e.results is None for e in self.entries)
            state = "cancelled" if job.cancelled.is_set() else "done"
            self._report(f"predict all {state}: {len(self.entries) - left} of {len(self.entries)} slides "
                         f"have predictions")

        return job.run_command(args, on_event=on_event, on_finally=finished, block=block)

    def _say(self, text: str) -> None:
        self.status.value = text

    def cancel(self) -> None:
        """Stop predicting after the current batch; finished slides keep their results."""
        if self._predict_job is not None:
            self._predict_job.cancel()
