"""The "Detect metastases" widget: one click from a slide to a live heatmap and detections."""


from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox, Label, PushButton, Select

from ...errors import InputError
from ...inference.detect import DETECTION_SMOOTHING
from ._common import PluginWidget, layer_tissue, slide_of
from ._jobs import Job, follow
from .corrections import CorrectionsPanel
from .tissue import find_mask_layer

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

__all__ = ['DetectWidget']

_NO_MASK = "(detect tissue)"


def _settings_path() -> Path:
    from ..sample import cache_dir

    return cache_dir() / "settings.json"


class DetectWidget(PluginWidget):
    """Predict the chosen slide with a model; the heatmap fills in as batches finish."""

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self._job: Job | None = None
        self.heatmap_layer: Any = None
        self.points_layer: Any = None
        self.detections = np.zeros((0, 3))
        self._run: dict[str, Any] = {}  # the last run's slide layer, model, card, heatmap and cell size
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.model_file = FileEdit(label="model", mode="r", filter="*.keras", value=self._last_model())
        self.model_file.tooltip = "a .keras model; leave empty for the bundled lymph-node model"
        self.mask_box = ComboBox(label="tissue mask", choices=self._mask_choices)
        self.screen = CheckBox(text="screen coarse-to-fine (faster; see lymphmet predict --screen)", value=False)
        self.smoothing = FloatSpinBox(label="smoothing", value=DETECTION_SMOOTHING, min=0.0, max=4.0, step=0.5)
        self.smoothing.tooltip = ("detect on the heatmap smoothed this many patch widths (as lymphmet predict "
                                  "--smooth): a lone false alarm fades, a lesion stays; 0 for the raw heatmap")
        self.run_button = PushButton(text="Detect metastases")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.results_dir = FileEdit(label="results folder", mode="d")
        self.load_button = PushButton(text="Load results")
        # Choices from a callable: napari resets every choice widget of a dock widget when layers change.
        self.found = Select(label="detections", choices=self._detection_choices)
        # The correct-and-retrain loop: outline what the model got wrong, fine-tune, re-predict.
        self.corrections = CorrectionsPanel(self)
        self.status = Label(value="")
        super().__init__(widgets=[self.slide_box, self.model_file, self.mask_box, self.screen, self.smoothing,
                                  self.run_button,
                                  self.cancel_button, self.results_dir, self.load_button, self.found,
                                  self.corrections, self.status])
        self.run_button.changed.connect(lambda: self.run(block=False))
        self.cancel_button.changed.connect(self.cancel)
        self.load_button.changed.connect(lambda: self.load_results(self.results_dir.value))
        self.found.changed.connect(self._go_to_selected)
        self.smoothing.changed.connect(self._redetect)
        self._follow_layers(self.slide_box, self.mask_box)

    def _mask_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Labels

        return self._layer_choices(Labels, none=_NO_MASK, where=lambda layer: layer.metadata.get("kind") == "tissue")

    @staticmethod
    def _last_model() -> str:
        try:
            return json.loads(_settings_path().read_text()).get("last_model", "")
        except (OSError, ValueError):
            return ""

    @staticmethod
    def _remember(model: str) -> None:
        try:
            path = _settings_path()
            settings = json.loads(path.read_text()) if path.exists() else {}
            settings["last_model"] = model
            path.write_text(json.dumps(settings))
        except (OSError, ValueError):
            pass  # a preference is not worth an error


    def run(self, *, block: bool = True) -> Any:
        """Predict; ``block=False`` runs in a worker, the heatmap layer updating per batch.

        Returns the heatmap layer when blocking, else the worker.
        """
        from ...inference import ScreenConfig, grid_for, iter_predict
        from ...model import load_model, resolve_model
        from ...tissue import tissue_for

        image = self.slide_box.value
        try:
            if image is None:
                raise InputError("open a slide first")
            chosen = str(self.model_file.value)
            model_path = resolve_model(chosen)  # no file chosen: the bundled default
            model, card = load_model(model_path)
        except InputError as exc:
            self._warn(str(exc))
            return None
        if Path(chosen).is_file():
            self._remember(chosen)
        slide = slide_of(image)  # this job's: closed when it ends, however it ends
        try:
            mask_layer = self.mask_box.value or find_mask_layer(self._viewer, image.metadata["path"])
            tissue = tissue_for(slide, layer_tissue(mask_layer))
            downsample = grid_for(slide, card).downsample
        except InputError as exc:
            slide.close()
            self._warn(str(exc))
            return None
        screen = ScreenConfig() if self.screen.value else None
        self._job = Job("Detecting metastases", buttons=(self.run_button, self.cancel_button), report=self._warn)

        def work(job: Job):
            steps = iter_predict(slide, model, card, tissue_mask=tissue.mask, tissue_downsample=tissue.downsample,
                                 screen=screen, cancel=job.cancelled)
            result = yield from follow(steps, job, lambda item: item[1:])
            return result

        def finished(result) -> None:
            from ...inference import slide_score

            self._run = {"image": image, "model": model_path, "card": card, "heatmap": result.heatmap,
                         "downsample": downsample, "tissue": tissue,
                         "cells_per_patch": result.grid.box / result.grid.downsample}
            self._show_heatmap(slide, result.heatmap, downsample)
            self.show_detections(slide)
            self.corrections.ensure_layer(slide, image)
            state = "done" if result.complete else "cancelled; partial heatmap kept"
            inferred = f" ({result.inferred} inferred by screening)" if result.inferred else ""
            self._report(f"{state}: {result.predicted + result.resumed}/{result.total} patches{inferred}, "
                         f"slide score {slide_score(result.heatmap):.3f}, {len(self.detections)} detections")

        outcome = self._job.run(work, on_update=lambda item: self._show_heatmap(slide, item[0], downsample),
                                on_done=finished, on_finally=slide.close, block=block)
        return self.heatmap_layer if block else outcome

    def sigma(self) -> float:
        """The detection smoothing in heatmap cells: the spin box's patch widths on the last run's grid."""
        return float(self.smoothing.value) * self._run.get("cells_per_patch", 1.0)

    def show_detections(self, slide) -> None:
        """Detect on the last run's heatmap at its model's threshold and the smoothing box's value; show them."""
        from ...inference import detect

        run = self._run
        self.detections = detect(run["heatmap"], run["downsample"], threshold=run["card"].threshold,
                                 smooth=self.sigma())
        self._add_points(slide, self.detections)

    def _redetect(self, _value=None) -> None:
        """Detections again on the last heatmap at the new smoothing: no patch is predicted again."""
        if "heatmap" not in self._run:
            return
        with slide_of(self._run["image"]) as slide:
            self.show_detections(slide)
        self._report(f"{len(self.detections)} detections at smoothing {self.smoothing.value:g}")

    def _show_heatmap(self, slide, heatmap: np.ndarray, downsample: float) -> None:
        """Draw (or refresh in place) the heatmap layer, each cell exactly over its patch."""
        if self.heatmap_layer is None or self.heatmap_layer not in self._viewer.layers:
            from ..results import heatmap_layer_data

            data, kwargs, _ = heatmap_layer_data(heatmap.copy(), slide, downsample, name="Tumor probability")
            self.heatmap_layer = self._viewer.add_image(data, **kwargs)
        else:
            self.heatmap_layer.data = heatmap.copy()

    def load_results(self, folder: str | Path) -> Any:
        """Show a finished run (``lymphmet predict``'s ``heatmap.tif`` and ``detections.csv``) over the slide."""
        from ...evaluation import read_detections
        from ...inference import read_heatmap, slide_score

        image = self.slide_box.value
        folder = Path(folder)
        try:
            if image is None:
                raise InputError("open a slide first")
            heatmap, info = read_heatmap(folder / "heatmap.tif")
            detections_file = folder / "detections.csv"
            with slide_of(image) as slide:
                detections = read_detections(detections_file, dimensions=slide.dimensions) \
                    if detections_file.is_file() else np.zeros((0, 3))
                self._show_heatmap(slide, heatmap, float(info["downsample"]))
                self._run = {}  # a saved result, not a run: no model to retrain, detections as saved
                self.detections = detections
                self._add_points(slide, detections)
        except (InputError, OSError, KeyError, ValueError) as exc:  # a damaged results file
            self._report(f"{folder.name}: cannot load results: {exc}", warning=True)
            return None
        self._report(f"loaded {folder.name}: slide score {slide_score(heatmap):.3f}, "
                     f"{len(detections)} detections")
        return self.heatmap_layer

    def _add_points(self, slide, detections: np.ndarray) -> None:
        from ..results import detections_layer_data

        if self.points_layer is not None and self.points_layer in self._viewer.layers:
            self._viewer.layers.remove(self.points_layer)
        points, kwargs, _ = detections_layer_data(detections, slide, name="Detections")
        self.points_layer = self._viewer.add_points(points, **kwargs)
        self.points_layer.bind_key("n", lambda _layer: self.corrections.mark_not_tumor(), overwrite=True)
        self.found.reset_choices()

    def _detection_choices(self, _widget=None) -> list[tuple[str, int]]:
        return [(f"{i + 1}. p={c:.2f} at ({x:.0f}, {y:.0f})", i) for i, (c, x, y) in enumerate(self.detections)]

    def _go_to_selected(self, selected) -> None:
        if not selected or self.points_layer is None:
            return
        i = selected[0]
        world = self.points_layer.data_to_world(self.points_layer.data[i])
        camera = self._viewer.scene.camera if hasattr(self._viewer, "scene") else self._viewer.camera
        camera.center = tuple(world)
        self.points_layer.selected_data = {i}

    def cancel(self) -> None:
        """Stop after the current batch; the partial heatmap stays."""
        if self._job is not None:
            self._job.cancel()
