"""The "Detect metastases" widget: one click from a slide to a live heatmap and detections."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, Label, PushButton, Select

from ..errors import InputError
from .._layers import mask_geometry
from ._common import PluginWidget, slide_layers, slide_of
from .tissue import find_mask_layer

__all__ = ["DetectWidget"]

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

_NO_MASK = "(detect tissue)"


def _settings_path() -> Path:
    from .._sample import cache_dir

    return cache_dir() / "settings.json"


class DetectWidget(PluginWidget):
    """Predict the chosen slide with a model; the heatmap fills in as batches finish."""

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self._cancel = threading.Event()
        self._worker: Any = None
        self.heatmap_layer: Any = None
        self.points_layer: Any = None
        self.detections = np.zeros((0, 3))
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.model_file = FileEdit(label="model", mode="r", filter="*.keras", value=self._last_model())
        self.mask_box = ComboBox(label="tissue mask", choices=self._mask_choices)
        self.run_button = PushButton(text="Detect metastases")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.results_dir = FileEdit(label="results folder", mode="d")
        self.load_button = PushButton(text="Load results")
        self.found = Select(label="detections", choices=[])
        self.status = Label(value="")
        super().__init__(widgets=[self.slide_box, self.model_file, self.mask_box, self.run_button,
                                  self.cancel_button, self.results_dir, self.load_button, self.found,
                                  self.status])
        self.run_button.changed.connect(lambda: self.run(block=False))
        self.cancel_button.changed.connect(self.cancel)
        self.load_button.changed.connect(lambda: self.load_results(self.results_dir.value))
        self.found.changed.connect(self._go_to_selected)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _e=None: (self.slide_box.reset_choices(), self.mask_box.reset_choices()))

    def _slide_choices(self, _widget=None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in slide_layers(self._viewer)]

    def _mask_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Labels

        return [(_NO_MASK, None)] + [(layer.name, layer) for layer in self._viewer.layers
                                     if isinstance(layer, Labels) and layer.metadata.get("kind") == "tissue"]

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
        """Predict; ``block=False`` runs in a worker, updating the heatmap layer per batch."""
        from ..inference import iter_predict
        from ..model import load_model
        from ..tissue import tissue_mask

        image = self.slide_box.value
        try:
            if image is None:
                raise InputError("open a slide first")
            model_path = str(self.model_file.value)
            if not model_path or not Path(model_path).is_file():
                raise InputError("choose a model file (.keras)")
            model, metadata = load_model(model_path)
        except InputError as exc:
            self._report(str(exc), warning=True)
            return None
        self._remember(model_path)
        slide = slide_of(image)
        mask_layer = self.mask_box.value or find_mask_layer(self._viewer, image.metadata["path"])
        if mask_layer is not None:
            mask, mask_ds = np.asarray(mask_layer.data) > 0, float(mask_layer.metadata["downsample"])
        else:
            found = tissue_mask(slide)
            mask, mask_ds = found.mask, found.downsample
        self._cancel.clear()
        summary: dict = {}

        def work():
            from napari.utils import progress

            steps = iter_predict(slide, model, metadata, tissue_mask=mask, tissue_downsample=mask_ds,
                                 summary=summary)
            try:
                bar = None
                for heatmap, done, total in steps:
                    if bar is None:
                        bar = progress(total=total, desc="Detecting metastases")
                    bar.n = done
                    bar.refresh()
                    yield heatmap
                    if self._cancel.is_set():
                        break
            finally:
                steps.close()
                if bar is not None:
                    bar.close()

        def show(heatmap: np.ndarray) -> None:
            if "grid" in summary:
                downsample = summary["grid"].downsample
            else:
                from ..inference import grid_for

                downsample = grid_for(slide, metadata).downsample
            self._show_heatmap(slide, heatmap, downsample)

        def finished() -> None:
            from ..inference import detect, slide_score

            self.run_button.enabled, self.cancel_button.enabled = True, False
            if "heatmap" not in summary:
                return
            show(summary["heatmap"])
            grid = summary["grid"]
            self.detections = detect(summary["heatmap"], grid.downsample,
                                     threshold=float(metadata.get("threshold", 0.5)))
            self._add_points(slide, self.detections)
            slide.close()
            state = "done" if summary["complete"] else "cancelled; partial heatmap kept"
            self._report(f"{state}: {summary['predicted'] + summary['resumed']}/{summary['total']} patches, "
                         f"slide score {slide_score(summary['heatmap']):.3f}, {len(self.detections)} detections")

        if block:
            for heatmap in work():
                show(heatmap)
            finished()
            return self.heatmap_layer
        from napari.qt.threading import create_worker

        self._worker = create_worker(work)
        self._worker.yielded.connect(show)
        self._worker.finished.connect(finished)
        self._worker.errored.connect(lambda exc: (slide.close(),
                                                  self._report(f"detection failed: {exc}", warning=True)))
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self._worker.start()
        return self._worker

    def _show_heatmap(self, slide, heatmap: np.ndarray, downsample: float) -> None:
        """Draw (or refresh in place) the heatmap layer, each cell exactly over its patch."""
        if self.heatmap_layer is None or self.heatmap_layer not in self._viewer.layers:
            scale, translate = mask_geometry(slide, downsample)
            self.heatmap_layer = self._viewer.add_image(
                heatmap.copy(), name="Tumor probability", colormap="turbo", opacity=0.5,
                contrast_limits=(0, 1), scale=scale, translate=translate, blending="translucent",
                metadata={"kind": "heatmap", "slide": slide.path, "downsample": downsample})
        else:
            self.heatmap_layer.data = heatmap.copy()

    def load_results(self, folder: str | Path) -> Any:
        """Show a finished run (``lymphmet predict``'s ``heatmap.tif`` and ``detections.csv``) over the slide."""
        from ..evaluation import read_detections
        from ..inference import read_heatmap, slide_score

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
                self.detections = detections
                self._add_points(slide, detections)
        except (InputError, OSError, KeyError, ValueError) as exc:
            self._report(f"{folder.name}: cannot load results: {exc}", warning=True)
            return None
        self._report(f"loaded {folder.name}: slide score {slide_score(heatmap):.3f}, "
                     f"{len(detections)} detections")
        return self.heatmap_layer

    def _add_points(self, slide, detections: np.ndarray) -> None:
        from .._layers import slide_scale

        if self.points_layer is not None and self.points_layer in self._viewer.layers:
            self._viewer.layers.remove(self.points_layer)
        points = detections[:, [2, 1]] - 0.5 if len(detections) else np.zeros((0, 2))
        self.points_layer = self._viewer.add_points(
            points, name="Detections", scale=slide_scale(slide), size=max(slide.dimensions) / 60,
            face_color="transparent", border_color="yellow", border_width=0.15,
            features={"confidence": detections[:, 0] if len(detections) else np.zeros(0)})
        self.found.choices = [(f"{i + 1}. p={c:.2f} at ({x:.0f}, {y:.0f})", i)
                              for i, (c, x, y) in enumerate(detections)]

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
        self._cancel.set()
