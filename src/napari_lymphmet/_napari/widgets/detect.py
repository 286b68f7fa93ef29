"""The "Detect metastases" widget: one click from a slide to a live heatmap and detections."""


from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, PushButton, RadioButtons, Select, SpinBox

from ...errors import InputError
from ._common import PluginWidget, layer_tissue, slide_of
from ._jobs import Job, follow
from ..corrections import DRAW_CHOICES
from ...annotations import TUMOR
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
        self.corrections_layer: Any = None
        self._run: dict[str, Any] = {}  # the last run's slide layer, model, card, heatmap and cell size
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.model_file = FileEdit(label="model", mode="r", filter="*.keras", value=self._last_model())
        self.model_file.tooltip = "a .keras model; leave empty for the bundled lymph-node model"
        self.mask_box = ComboBox(label="tissue mask", choices=self._mask_choices)
        self.screen = CheckBox(text="screen coarse-to-fine (faster; see lymphmet predict --screen)", value=False)
        self.run_button = PushButton(text="Detect metastases")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.results_dir = FileEdit(label="results folder", mode="d")
        self.load_button = PushButton(text="Load results")
        # Choices from a callable: napari resets every choice widget of a dock widget when layers change.
        self.found = Select(label="detections", choices=self._detection_choices)
        # The correct-and-retrain loop: outline what the model got wrong, fine-tune, re-predict.
        self.draw_as = RadioButtons(label="draw as", choices=DRAW_CHOICES, value=TUMOR, orientation="horizontal")
        self.mark_button = PushButton(text="Mark detection not tumor (N)")
        self.corrections_file = FileEdit(label="corrections", mode="w", filter="*.xml *.geojson")
        self.corrections_file.tooltip = "ASAP XML (not tumor = group _2) or GeoJSON (not tumor = class Exclusion)"
        self.save_corrections_button = PushButton(text="Save corrections")
        self.load_corrections_button = PushButton(text="Load corrections")
        self.epochs = SpinBox(label="epochs", min=1, max=50, value=3)
        self.retrain_button = PushButton(text="Retrain with corrections")
        self.status = Label(value="")
        super().__init__(widgets=[self.slide_box, self.model_file, self.mask_box, self.screen, self.run_button,
                                  self.cancel_button, self.results_dir, self.load_button, self.found,
                                  self.draw_as, self.mark_button, self.corrections_file,
                                  self.save_corrections_button, self.load_corrections_button, self.epochs,
                                  self.retrain_button, self.status])
        self.draw_as.changed.connect(self._set_draw_label)
        self.mark_button.changed.connect(lambda: self.mark_not_tumor())
        self.save_corrections_button.changed.connect(lambda: self.save_corrections(self.corrections_file.value))
        self.load_corrections_button.changed.connect(lambda: self.load_corrections(self.corrections_file.value))
        self.retrain_button.changed.connect(lambda: self.retrain(block=False))
        self.run_button.changed.connect(lambda: self.run(block=False))
        self.cancel_button.changed.connect(self.cancel)
        self.load_button.changed.connect(lambda: self.load_results(self.results_dir.value))
        self.found.changed.connect(self._go_to_selected)
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
            from ...inference import detect, slide_score

            self._show_heatmap(slide, result.heatmap, downsample)
            self.detections = detect(result.heatmap, downsample, threshold=card.threshold)
            self._add_points(slide, self.detections)
            self._run = {"image": image, "model": model_path, "card": card, "heatmap": result.heatmap,
                         "downsample": downsample, "tissue": tissue}
            self._ensure_corrections(slide, image)
            state = "done" if result.complete else "cancelled; partial heatmap kept"
            inferred = f" ({result.inferred} inferred by screening)" if result.inferred else ""
            self._report(f"{state}: {result.predicted + result.resumed}/{result.total} patches{inferred}, "
                         f"slide score {slide_score(result.heatmap):.3f}, {len(self.detections)} detections")

        outcome = self._job.run(work, on_update=lambda item: self._show_heatmap(slide, item[0], downsample),
                                on_done=finished, on_finally=slide.close, block=block)
        return self.heatmap_layer if block else outcome

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
                self.detections = detections
                self._add_points(slide, detections)
        except (InputError, OSError, KeyError, ValueError) as exc:  # a damaged results file
            self._report(f"{folder.name}: cannot load results: {exc}", warning=True)
            return None
        self._report(f"loaded {folder.name}: slide score {slide_score(heatmap):.3f}, "
                     f"{len(detections)} detections")
        return self.heatmap_layer

    def _add_points(self, slide, detections: np.ndarray) -> None:
        from ..layers import slide_scale

        if self.points_layer is not None and self.points_layer in self._viewer.layers:
            self._viewer.layers.remove(self.points_layer)
        points = detections[:, [2, 1]] - 0.5 if len(detections) else np.zeros((0, 2))
        self.points_layer = self._viewer.add_points(
            points, name="Detections", scale=slide_scale(slide), size=max(slide.dimensions) / 60,
            face_color="transparent", border_color="yellow", border_width=0.15,
            features={"confidence": detections[:, 0] if len(detections) else np.zeros(0)})
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

    # -- corrections and retraining -------------------------------------------
    def _ensure_corrections(self, slide, image) -> Any:
        """The Corrections layer over this slide, added (empty, in polygon mode) if there is none."""
        from ..corrections import corrections_layer_kwargs

        layer = self.corrections_layer
        if layer is None or layer not in self._viewer.layers or layer.metadata.get("slide") != slide.path:
            layer = self._viewer.add_shapes(**corrections_layer_kwargs(slide, units=image.units))
            layer.feature_defaults["label"] = self.draw_as.value
            layer.bind_key("n", lambda _layer: self.mark_not_tumor(), overwrite=True)
            self.corrections_layer = layer
            self._viewer.layers.selection.active = self.points_layer or layer  # pick a detection, press N
        return layer

    def _set_draw_label(self, label: str) -> None:
        from ..layers import CLASS_COLOURS

        if self.corrections_layer is not None:
            self.corrections_layer.feature_defaults["label"] = label
            self.corrections_layer.current_edge_color = CLASS_COLOURS[label]

    def mark_not_tumor(self, index: int | None = None) -> np.ndarray | None:
        """Outline detection ``index`` (default: the one selected) as *not tumor* in the Corrections layer.

        The outline is the detection's region above the threshold, a cell
        wider. Returns it, level-0 ``(x, y)``.
        """
        from ...annotations import EXCLUSION
        from ...inference import region_around
        from ..corrections import add_correction

        if index is None:
            chosen = list(self.found.value or [])
            if not chosen and self.points_layer is not None:
                chosen = sorted(self.points_layer.selected_data)
            index = chosen[0] if chosen else None
        if not self._run or index is None or not 0 <= index < len(self.detections):
            self._warn("select a detection first (run Detect metastases, then pick one in the list)")
            return None
        _, x, y = self.detections[index]
        outline = region_around(self._run["heatmap"], self._run["downsample"], x, y,
                                threshold=self._run["card"].threshold)
        with slide_of(self._run["image"]) as slide:
            layer = self._ensure_corrections(slide, self._run["image"])
        add_correction(layer, outline, EXCLUSION)
        self._report(f"detection {index + 1} marked not tumor ({self._count_corrections()})")
        return outline

    def _count_corrections(self) -> str:
        from ...annotations import EXCLUSION

        labels = list(self.corrections_layer.features["label"]) if self.corrections_layer is not None else []
        return f"{labels.count(TUMOR)} tumor, {labels.count(EXCLUSION)} not tumor"

    def _corrections(self) -> list:
        from ..corrections import layer_corrections

        if self.corrections_layer is None or self.corrections_layer not in self._viewer.layers:
            raise InputError("no Corrections layer: run Detect metastases first")
        image = self._run.get("image") or self.slide_box.value
        anns = layer_corrections(self.corrections_layer, image)
        if not anns:
            raise InputError("the Corrections layer is empty: outline tumor, or mark detections not tumor")
        return anns

    def save_corrections(self, path: str | Path) -> Path | None:
        """Write the Corrections layer as ASAP XML or GeoJSON (by extension)."""
        from ...annotations import write_annotations

        try:
            if not str(path) or Path(path).is_dir():
                raise InputError("choose a corrections file to save to (.xml or .geojson)")
            write_annotations(path, self._corrections())
        except InputError as exc:
            self._warn(str(exc))
            return None
        self._report(f"saved corrections to {Path(path).name} ({self._count_corrections()})")
        return Path(path)

    def load_corrections(self, path: str | Path) -> Any:
        """Add the polygons of an ASAP XML or GeoJSON file to the Corrections layer over the chosen slide."""
        from ...annotations import read_annotations
        from ..corrections import add_correction

        image = self.slide_box.value
        try:
            if image is None:
                raise InputError("open a slide first")
            anns = read_annotations(path)
            if not anns:
                raise InputError(f"{path}: no polygons")
        except InputError as exc:
            self._warn(str(exc))
            return None
        with slide_of(image) as slide:
            layer = self._ensure_corrections(slide, image)
        for ann in anns:
            add_correction(layer, ann.exterior, ann.label)
        self._report(f"{Path(path).name}: loaded ({self._count_corrections()})")
        return layer

    def retrain(self, *, epochs: int | None = None, block: bool = True) -> Any:
        """Fine-tune the last run's model on the corrections, save it as a new version, re-predict the slide.

        The heatmap layer updates in place. A new model worse than its parent
        on the replay set is not saved, and the slide keeps its heatmap.
        """
        from ...inference import detect, iter_predict, slide_score
        from ...model import load_model
        from ...workflows import Corrections, FinetuneConfig, finetune
        from ..corrections import new_model_version
        from ..sample import cache_dir

        try:
            if not self._run:
                raise InputError("run Detect metastases first: retraining starts from its model")
            anns = self._corrections()
        except InputError as exc:
            self._warn(str(exc))
            return None
        run = dict(self._run)
        image = run["image"]
        parent = Path(run["model"])
        folder = cache_dir() / "models"
        folder.mkdir(parents=True, exist_ok=True)
        output = new_model_version(parent, folder)
        config = FinetuneConfig(epochs=int(epochs or self.epochs.value))
        corrections = [Corrections(image.metadata["path"], tuple(anns), source="Corrections layer")]
        self._job = Job("Retraining", buttons=(self.retrain_button, self.cancel_button), report=self._warn)

        def work(job: Job):
            def progress(stage: str, info: dict) -> None:
                if stage == "train" and "batch" in info:
                    job.step((info["epoch"]) * info["batches"] + info["batch"], info["epochs"] * info["batches"])

            tuned = finetune(parent, corrections, output, config, progress=progress, cancel=job.cancelled)
            if not tuned.accepted or job.cancelled.is_set():
                return tuned, None
            model, card = load_model(tuned.path)
            with slide_of(image) as slide:
                steps = iter_predict(slide, model, card, tissue_mask=run["tissue"].mask,
                                     tissue_downsample=run["tissue"].downsample, cancel=job.cancelled)
                result = yield from follow(steps, job, lambda item: item[1:])
            return tuned, (result, card)

        def finished(outcome) -> None:
            tuned, predicted = outcome
            if predicted is None:
                self._warn("; ".join(tuned.warnings) or "retraining cancelled; the model is unchanged")
                return
            result, card = predicted
            with slide_of(image) as slide:
                self._show_heatmap(slide, result.heatmap, run["downsample"])
                self.detections = detect(result.heatmap, run["downsample"], threshold=card.threshold)
                self._add_points(slide, self.detections)
            self._run.update(model=tuned.path, card=card, heatmap=result.heatmap)
            self.model_file.value = str(tuned.path)
            before, after = tuned.before.get("accuracy"), tuned.after.get("accuracy")
            check = f"; replay accuracy {before:.3f} → {after:.3f}" if before is not None else ""
            notes = f" ({'; '.join(tuned.warnings)})" if tuned.warnings else ""
            self._report(f"retrained on {tuned.patches['tumor']} tumor and {tuned.patches['not_tumor']} not-tumor "
                         f"patches in {tuned.seconds:.0f} s{check}: saved {tuned.path.name}; slide score "
                         f"{slide_score(result.heatmap):.3f}, {len(self.detections)} detections{notes}")

        def update(item) -> None:
            self._show_heatmap_data(item[0])

        outcome = self._job.run(work, on_update=update, on_done=finished, block=block)
        return outcome

    def _show_heatmap_data(self, heatmap: np.ndarray) -> None:
        if self.heatmap_layer is not None and self.heatmap_layer in self._viewer.layers:
            self.heatmap_layer.data = heatmap.copy()

    def cancel(self) -> None:
        """Stop after the current batch; the partial heatmap stays."""
        if self._job is not None:
            self._job.cancel()
