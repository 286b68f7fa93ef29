"""The "Detect metastases" widget: one click from a slide to a live heatmap, a legend and a lesion table.

Prediction runs as ``lymphmet predict`` in a child process (see
:mod:`._jobs`): TensorFlow never loads into napari, the window stays
responsive, and *Cancel* stops the child at once, keeping a checkpoint the
next run resumes from. The heatmap fills in as the child reports cells;
when it ends, the widget reads its folder (``heatmap.tif``, ...) and
detects on it at the smoothing chosen here, so changing the smoothing
re-detects at once without predicting again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, Label, PushButton

from ...errors import InputError
from ...inference.detect import DETECTION_SMOOTHING
from ._common import PluginWidget, camera_of, layer_tissue, scale_bar_of, slide_of
from ._jobs import Job
from ._table import SortItem, make_table
from .corrections import CorrectionsPanel

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

__all__ = ["LESION_TABLE_COLUMNS", "DetectWidget", "run_folder_for"]

_NO_MASK = "(detect tissue)"
LESION_TABLE_COLUMNS = ("#", "p", "area mm²", "long mm", "x µm", "y µm")
_COLUMN_TIPS = ("rank by probability", "tumor probability: the lesion's highest (on the smoothed map)",
                "area of the lesion's region above the threshold, mm²", "longest diameter: the major axis of that "
                "region, mm (CAMELYON's "
                "measure of a metastasis: ≤ 0.2 mm isolated tumor cells, ≤ 2 mm micro, > 2 mm macro)",
                "position on the slide", "position on the slide")


def run_folder_for(slide_path: str | Path) -> Path:
    """Where the widget's runs on a slide go when no results folder is chosen: the plugin cache, one per slide."""
    from ..sample import cache_dir

    path = Path(slide_path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return cache_dir() / "runs" / f"{path.stem}-{digest}"


class DetectWidget(PluginWidget):
    """Predict the chosen slide with a model; heatmap, detections and the lesion table follow."""

    def __init__(self, napari_viewer: Viewer) -> None:
        from ..settings import last_model, when_model_changes

        self._viewer = napari_viewer
        self._job: Job | None = None
        self.heatmap_layer: Any = None
        self.points_layer: Any = None
        self.detections = np.zeros((0, 3))
        self.lesions: list = []
        # The last run: its slide layer, folder, model and card, heatmap, cell size.
        self._run: dict[str, Any] = {}
        self._live: dict[str, Any] = {}
        self._syncing = False
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.slide_box.tooltip = "the slide to predict (opened with napari-lymphmet)"
        self.model_file = FileEdit(label="model", mode="r", filter="*.keras", value=last_model())
        self.model_file.tooltip = ("a .keras model (the one trained last in Train is chosen for you); empty: the "
                                   "bundled lymph-node model, trained on CAMELYON16 tissue at 10×")
        self.mask_box = ComboBox(label="tissue mask", choices=self._mask_choices)
        self.mask_box.tooltip = "where to look: a Tissue mask layer (brush edits count), or detect tissue afresh"
        self.screen = CheckBox(text="quick screen", value=False)
        self.screen.tooltip = ("predict a sample of the tissue first (every second patch), then only the "
                               "neighbours of any that might be tumor; the rest take their neighbours' mean. "
                               "Faster on large, mostly clear slides")
        self.smoothing = FloatSpinBox(label="smoothing (patches)", value=DETECTION_SMOOTHING, min=0.0, max=4.0,
                                      step=0.5)
        self.smoothing.tooltip = ("detect on the heatmap blurred by this many patch widths (a patch is about 93 µm "
                                  "for the bundled model): a lone false alarm fades, a lesion stays. 0: the raw "
                                  "heatmap. Changing it re-detects at once")
        self.run_button = PushButton(text="Detect metastases")
        self.run_button.tooltip = "predict the slide in a background process; the heatmap fills in as it goes"
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.cancel_button.tooltip = "stop now; the heatmap so far is kept and the next run resumes from it"
        self.results_dir = FileEdit(label="results folder", mode="d")
        self.results_dir.tooltip = ("where Detect writes its results (heatmap, detections, lesions.csv, tumor "
                                    "regions for QuPath/ASAP), and where Load results reads them; empty: the "
                                    "plugin's cache")
        self.load_button = PushButton(text="Load results")
        self.load_button.tooltip = "show a finished lymphmet predict folder over the chosen slide"
        self.legend_label = Label(value="")
        # The correct-and-retrain loop: outline what the model got wrong, fine-tune, re-predict.
        self.corrections = CorrectionsPanel(self)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        super().__init__(widgets=[self.slide_box, self.model_file, self.mask_box, self.screen, self.smoothing,
                                  self.run_button, self.cancel_button, self.results_dir, self.load_button,
                                  self.legend_label, self.corrections, self.status])
        self.legend = self._add_legend()
        self.table = self._add_table()
        self.run_button.changed.connect(lambda: self.run(block=False))
        self.cancel_button.changed.connect(self.cancel)
        self.load_button.changed.connect(lambda: self.load_results(self.results_dir.value))
        self.smoothing.changed.connect(self._redetect)
        self._follow_layers(self.slide_box, self.mask_box)
        self.slide_box.changed.connect(self._slide_changed)
        when_model_changes(self._model_trained)

    # -- the legend and the lesion table ---------------------------------------------------
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
        canvas.hide()
        return figure

    def _show_legend(self, threshold: float | None) -> None:
        from ...figures import draw_heatmap_legend

        draw_heatmap_legend(self.legend, threshold)
        self.legend.canvas.draw_idle()
        self.legend.canvas.show()
        self.legend_label.value = "tumor probability"

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
        for row, lesion in enumerate(self.lesions):
            um = (lesion.x * mpp, lesion.y * mpp) if mpp else (None, None)
            cells = [(str(lesion.rank), lesion.rank), (f"{lesion.confidence:.2f}", lesion.confidence),
                     _number(lesion.area_mm2, 3), _number(lesion.major_axis_mm, 2),
                     _number(um[0], 0), _number(um[1], 0)]
            for col, (text, key) in enumerate(cells):
                item = SortItem(text, key)
                item.setData(256, lesion.rank - 1)  # Qt.UserRole: the detection's index, whatever the sort
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()

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

    # -- choices and settings --------------------------------------------------------------
    def _mask_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Labels

        return self._layer_choices(Labels, none=_NO_MASK, where=lambda layer: layer.metadata.get("kind") == "tissue")

    def _model_trained(self, path: str) -> None:
        self.model_file.value = path
        self._report(f"model {Path(path).name} (just trained) will detect from now on")

    def _slide_changed(self, _value=None) -> None:
        """Another slide: the last run's detections and table belong to the old one."""
        image = self.slide_box.value
        if self._run and image is not self._run.get("image"):
            self._run = {}
            self.detections, self.lesions = np.zeros((0, 3)), []
            self._fill_table()

    def _folder(self, image) -> Path:
        chosen = str(self.results_dir.value)
        return Path(chosen) if chosen not in ("", ".") else run_folder_for(image.metadata["path"])

    # -- running -----------------------------------------------------------------------------
    def run(self, *, block: bool = True, model: str | Path | None = None) -> Any:
        """Predict the chosen slide in a child process (``lymphmet predict``); the heatmap fills in as it goes.

        ``model`` overrides the model box (the retrain loop uses it).
        Returns the heatmap layer when blocking, else the worker.
        """
        from ...model import read_card, resolve_model

        image = self.slide_box.value
        try:
            if image is None:
                raise InputError("open a slide first")
            if self.busy:
                raise InputError("a job is already running on this slide: wait for it or cancel it")
            chosen = str(model or self.model_file.value)
            model_path = resolve_model(chosen)  # no file chosen: the bundled default
            card = read_card(model_path)  # the card only: no TensorFlow in the viewer
            folder = self._folder(image)
            folder.mkdir(parents=True, exist_ok=True)
            args = ["predict", image.metadata["path"], "-o", str(folder), "--model", str(model_path),
                    "--smooth", f"{float(self.smoothing.value):g}"]
            mask = self._save_mask(folder)
            if mask is not None:
                args += ["--mask", str(mask)]
            if self.screen.value:
                args.append("--screen")
        except (InputError, OSError) as exc:
            self._warn(str(exc))
            return None
        if Path(chosen).is_file():
            from ..settings import remember_model

            remember_model(chosen)
        self._live = {"image": image}
        mask_layer = self.mask_box.value
        starts = [self.run_button, self.load_button, self.corrections.retrain_button]
        self._job = Job("Detecting metastases", buttons=(starts, self.cancel_button), report=self._warn,
                        status=self._say)

        def finished(result) -> None:
            if result.cancelled:
                self._report("cancelled; the heatmap so far is kept, and the next run resumes from it")
                return
            self._show_folder(image, folder, model_path, card, block=block,
                              then=lambda: self._report(self._summary("done")))

        def tissue():  # in the worker: where the heatmap is drawn (reading a low level takes a moment)
            # Imported here, off the GUI thread, for the lesion table (skimage loads its parts lazily).
            from skimage.measure import regionprops  # noqa: F401

            from ...tissue import tissue_for

            with slide_of(image) as slide:
                return tissue_for(slide, layer_tissue(mask_layer))

        outcome = self._job.run_command(args, on_event=self._on_event, on_done=finished, prepare=tissue,
                                        block=block)
        return self.heatmap_layer if block else outcome

    def _save_mask(self, folder: Path) -> Path | None:
        """The chosen Tissue mask layer (brush edits included) as a file predict reads; ``None`` for none."""
        from ...tissue import save_mask

        layer = self.mask_box.value
        if layer is None:
            return None
        path = folder / "tissue-mask.png"
        save_mask(path, np.asarray(layer.data) > 0, float(layer.metadata["downsample"]))
        return path

    def _on_event(self, event: dict) -> None:
        """A child's event: a heatmap's geometry, then its cells as they are predicted."""
        kind = event.get("event")
        image = self._live.get("image")
        if kind == "prepared":
            self._live["tissue"] = event["value"]
        elif kind == "grid" and image is not None:
            self._live.update(heatmap=np.zeros((int(event["rows"]), int(event["cols"])), np.float32),
                              downsample=float(event["downsample"]))
            with slide_of(image) as slide:
                self._show_heatmap(slide, self._live["heatmap"], self._live["downsample"])
        elif kind == "cells" and "heatmap" in self._live:
            heatmap = self._live["heatmap"]
            heatmap.ravel()[np.asarray(event["index"], np.int64)] = np.asarray(event["p"], np.float32)
            if self.heatmap_layer is not None:
                self.heatmap_layer.data = self._display(heatmap, self._live["downsample"])

    def _say(self, text: str) -> None:
        self.status.value = text

    def _summary(self, state: str) -> str:
        from ...inference import slide_score

        heatmap = self._run["heatmap"]
        return (f"{state}: slide score {slide_score(heatmap):.3f}, {len(self.detections)} detections at "
                f"threshold {self._run['threshold']:.2f}; results in {self._run['folder']}")

    # -- showing a run ------------------------------------------------------------------------
    def _show_folder(self, image, folder: Path, model_path: Path | None, card, *, block: bool = True,
                     then: Any = None) -> None:
        """Show a finished predict folder: heatmap, detections at this widget's smoothing, the table.

        Without ``block`` each step runs in its own turn of the event loop
        (adding a layer makes napari build its shaders and controls on the
        GUI thread), so the window keeps answering between them; ``then``
        runs after the last.
        """
        from ...inference import read_heatmap

        heatmap, info = read_heatmap(folder / "heatmap.tif")
        downsample = float(info["downsample"])
        box = float(info.get("patch_box") or downsample)
        if self._live.get("image") is not image or "tissue" not in self._live:  # loaded, not just run
            from ...tissue import tissue_for

            with slide_of(image) as slide:
                self._live = {"image": image, "tissue": tissue_for(slide, layer_tissue(self.mask_box.value))}
        self._run = {"image": image, "folder": folder, "model": model_path, "card": card, "heatmap": heatmap,
                     "downsample": downsample, "cells_per_patch": box / downsample,
                     "threshold": float(info.get("threshold", card.threshold if card else 0.5))}

        def heat() -> None:
            with slide_of(image) as slide:
                self._show_heatmap(slide, heatmap, downsample)

        def detections() -> None:
            with slide_of(image) as slide:
                self.show_detections(slide, table=False)

        def table() -> None:
            self._fill_table()

        def finish() -> None:
            if model_path is not None:
                with slide_of(image) as slide:
                    self.corrections.ensure_layer(slide, image)
            for layer in self._viewer.layers:  # the heatmap says more than the tissue outline now
                if isinstance(layer.metadata, dict) and layer.metadata.get("kind") == "tissue":
                    layer.visible = False
            scale_bar_of(self._viewer).visible = True
            self._show_legend(self._run["threshold"])

        steps = [heat, detections, table, finish] + ([then] if then is not None else [])
        if block:
            for step in steps:
                step()
            return
        self._steps_left = len(steps)

        def run_next() -> None:
            from qtpy.QtCore import QTimer

            step = steps[len(steps) - self._steps_left]
            self._steps_left -= 1
            try:
                step()
            finally:
                if self._steps_left:
                    QTimer.singleShot(0, run_next)

        run_next()

    @property
    def busy(self) -> bool:
        """A job runs, or its results are still being laid out."""
        return (self._job is not None and self._job.running) or getattr(self, "_steps_left", 0) > 0

    def sigma(self) -> float:
        """The detection smoothing in heatmap cells: the spin box's patch widths on the last run's grid."""
        return float(self.smoothing.value) * self._run.get("cells_per_patch", 1.0)

    def show_detections(self, slide, *, table: bool = True) -> None:
        """Detect on the last run's heatmap at its threshold and the smoothing box's value; show them and the table."""
        from ...inference import detect, measure_lesions

        run = self._run
        threshold = run["card"].threshold if run.get("card") is not None else run["threshold"]
        run["threshold"] = threshold
        self.detections = detect(run["heatmap"], run["downsample"], threshold=threshold, smooth=self.sigma())
        self.lesions = measure_lesions(run["heatmap"], run["downsample"], self.detections, threshold=threshold,
                                       smooth=self.sigma(), mpp=slide.mean_mpp if slide.mpp else None)
        self._add_points(slide, self.detections)
        if table:
            self._fill_table()
            self._show_legend(threshold)

    def _redetect(self, _value=None) -> None:
        """Detections again on the last heatmap at the new smoothing: no patch is predicted again."""
        if "heatmap" not in self._run:
            return
        with slide_of(self._run["image"]) as slide:
            self.show_detections(slide)
        self._report(f"{len(self.detections)} detections at smoothing {self.smoothing.value:g} patches")

    def _display(self, heatmap: np.ndarray, downsample: float) -> np.ndarray:
        """What the heatmap layer shows: the heatmap over the tissue only (see ``tissue_heatmap``)."""
        from ..results import tissue_heatmap

        tissue = self._live.get("tissue")
        return heatmap if tissue is None else tissue_heatmap(heatmap, downsample, tissue.mask, tissue.downsample)

    def _show_heatmap(self, slide, heatmap: np.ndarray, downsample: float) -> None:
        """Draw (or refresh in place) the heatmap layer over the tissue, laid exactly over the slide."""
        from ..results import heatmap_layer_data

        tissue = self._live.get("tissue")
        data, kwargs, _ = heatmap_layer_data(heatmap, slide, downsample, name="Tumor probability", tissue=tissue)
        layer = self.heatmap_layer
        if layer is not None and layer in self._viewer.layers and layer.metadata.get("slide") == slide.path \
                and layer.data.shape == data.shape and layer.metadata.get("downsample") == downsample:
            layer.data = data
            return
        if layer is not None and layer in self._viewer.layers:
            self._viewer.layers.remove(layer)
        self.heatmap_layer = self._viewer.add_image(data, **kwargs)
        # The legend in the dock is the colour bar (with the threshold): no second one in the canvas.

    def load_results(self, folder: str | Path) -> Any:
        """Show a finished run (``lymphmet predict``'s folder) over the chosen slide, detected at this smoothing."""
        from ...model import read_card, resolve_model

        image = self.slide_box.value
        folder = Path(folder)
        try:
            if image is None:
                raise InputError("open a slide first")
            if not (folder / "heatmap.tif").is_file():
                raise InputError(f"{folder}: no heatmap.tif here; choose a folder lymphmet predict wrote")
            from ...inference import read_heatmap

            _, info = read_heatmap(folder / "heatmap.tif")
            model_path, card = None, None
            try:  # the model that made it, when it is at hand: then the corrections loop works too
                model_path = resolve_model(info.get("model") or "")
                card = read_card(model_path)
            except InputError:
                model_path = None
            self._show_folder(image, folder, model_path, card)
        except (InputError, OSError, KeyError, ValueError) as exc:  # a damaged results file
            self._report(f"{folder.name}: cannot load results: {exc}", warning=True)
            return None
        self._report(self._summary(f"loaded {folder.name}"))
        return self.heatmap_layer

    def _add_points(self, slide, detections: np.ndarray) -> None:
        from ..results import detections_layer_data

        if self.points_layer is not None and self.points_layer in self._viewer.layers:
            self._viewer.layers.remove(self.points_layer)
        points, kwargs, _ = detections_layer_data(detections, slide, name="Detections", lesions=self.lesions)
        self.points_layer = self._viewer.add_points(points, **kwargs)
        self.points_layer.bind_key("n", lambda _layer: self.corrections.mark_not_tumor(), overwrite=True)
        self.points_layer.selected_data.events.items_changed.connect(self._points_selected)

    def cancel(self) -> None:
        """Stop the running job now; what it has done is kept."""
        if self._job is not None:
            self._job.cancel()


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
