"""The correct-and-retrain part of *Detect metastases*: corrections, and a fine-tune from them.

After a run, a **Corrections** Shapes layer lies over the slide. Picking a
detection and pressing **N** outlines its region as *not tumor*; *draw as
tumor* outlines missed tumor. *Retrain with corrections* fine-tunes the run's
model (:func:`napari_lymphmet.workflows.finetune`) in a worker, saves it as a
new version in the plugin's cache folder, and re-predicts the slide into the
same heatmap layer. The new version's detection threshold sits between the
outlined lesions' and false positives' scores; with 0 epochs that is all
that changes, and the heatmap stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from magicgui.widgets import Container, FileEdit, PushButton, RadioButtons, SpinBox

from ...annotations import TUMOR
from ...errors import InputError
from ..corrections import DRAW_CHOICES
from ._common import slide_of
from ._jobs import Job, follow

__all__ = ["CorrectionsPanel", "DetectHost"]


class DetectHost(Protocol):
    """What the panel needs of the *Detect metastases* widget it sits in (the widget implements it).

    A protocol rather than an import, so the panel and the widget do not import each other.
    """

    _viewer: Any
    _job: Job | None
    _run: dict[str, Any]  # the last run: slide layer, model, card, heatmap, cell size
    slide_box: Any
    model_file: Any
    smoothing: Any
    found: Any
    cancel_button: Any
    points_layer: Any
    detections: list

    def _report(self, text: str, *, warning: bool = False) -> None: ...
    def _warn(self, text: str) -> None: ...
    def _read_polygons(self, path: Any) -> list | None: ...
    def _show_heatmap(self, slide: Any, heatmap: np.ndarray, downsample: float) -> None: ...
    def show_detections(self, slide: Any) -> None: ...


class CorrectionsPanel(Container):
    """The Corrections layer and the retrain button, over the *Detect metastases* widget's last run."""

    def __init__(self, detect: DetectHost) -> None:
        self._detect = detect
        self._viewer = detect._viewer
        self.layer: Any = None
        self.draw_as = RadioButtons(label="draw as", choices=DRAW_CHOICES, value=TUMOR, orientation="horizontal")
        self.mark_button = PushButton(text="Mark detection not tumor (N)")
        self.file = FileEdit(label="corrections", mode="w", filter="*.xml *.geojson")
        self.file.tooltip = "ASAP XML (not tumor = group _2) or GeoJSON (not tumor = class Exclusion)"
        self.save_button = PushButton(text="Save corrections")
        self.load_button = PushButton(text="Load corrections")
        self.epochs = SpinBox(label="epochs", min=1, max=50, value=3)
        self.retrain_button = PushButton(text="Retrain with corrections")
        super().__init__(widgets=[self.draw_as, self.mark_button, self.file, self.save_button, self.load_button,
                                  self.epochs, self.retrain_button], labels=True)
        self.margins = (0, 0, 0, 0)
        self.draw_as.changed.connect(self._set_draw_label)
        self.mark_button.changed.connect(lambda: self.mark_not_tumor())
        self.save_button.changed.connect(lambda: self.save(self.file.value))
        self.load_button.changed.connect(lambda: self.load(self.file.value))
        self.retrain_button.changed.connect(lambda: self.retrain(block=False))

    def _report(self, text: str, *, warning: bool = False) -> None:
        self._detect._report(text, warning=warning)

    def _warn(self, text: str) -> None:
        self._detect._warn(text)

    def ensure_layer(self, slide, image) -> Any:
        """The Corrections layer over this slide, added (empty, in polygon mode) if there is none."""
        from ..corrections import corrections_layer_kwargs

        layer = self.layer
        if layer is None or layer not in self._viewer.layers or layer.metadata.get("slide") != slide.path:
            layer = self._viewer.add_shapes(**corrections_layer_kwargs(slide, units=image.units))
            layer.feature_defaults["label"] = self.draw_as.value
            layer.bind_key("n", lambda _layer: self.mark_not_tumor(), overwrite=True)
            self.layer = layer
            # The detections stay the active layer: pick one, press N (bound on both layers).
            self._viewer.layers.selection.active = self._detect.points_layer or layer
        return layer

    def _set_draw_label(self, label: str) -> None:
        from ..layers import CLASS_COLOURS

        if self.layer is not None:
            self.layer.feature_defaults["label"] = label
            self.layer.current_edge_color = CLASS_COLOURS[label]

    def mark_not_tumor(self, index: int | None = None) -> np.ndarray | None:
        """Outline detection ``index`` (default: the one selected) as *not tumor* in the Corrections layer.

        The outline is the detection's region above the threshold, a cell
        wider. Returns it, level-0 ``(x, y)``.
        """
        from ...annotations import EXCLUSION
        from ...inference import region_around
        from ..corrections import add_correction

        if index is None:
            chosen = list(self._detect.found.value or [])
            if not chosen and self._detect.points_layer is not None:
                chosen = sorted(self._detect.points_layer.selected_data)
            index = chosen[0] if chosen else None
        if not self._detect._run or index is None or not 0 <= index < len(self._detect.detections):
            self._warn("select a detection first (run Detect metastases, then pick one in the list)")
            return None
        _, x, y = self._detect.detections[index]
        run = self._detect._run
        outline = region_around(run["heatmap"], run["downsample"], x, y, threshold=run["card"].threshold)
        with slide_of(self._detect._run["image"]) as slide:
            layer = self.ensure_layer(slide, self._detect._run["image"])
        add_correction(layer, outline, EXCLUSION)
        self._report(f"detection {index + 1} marked not tumor ({self._count()})")
        return outline

    def _count(self) -> str:
        from ...annotations import EXCLUSION

        labels = list(self.layer.features["label"]) if self.layer is not None else []
        return f"{labels.count(TUMOR)} tumor, {labels.count(EXCLUSION)} not tumor"

    def _polygons(self) -> list:
        from ..corrections import layer_corrections

        if self.layer is None or self.layer not in self._viewer.layers:
            raise InputError("no Corrections layer: run Detect metastases first")
        image = self._detect._run.get("image") or self._detect.slide_box.value
        anns = layer_corrections(self.layer, image)
        if not anns:
            raise InputError("the Corrections layer is empty: outline tumor, or mark detections not tumor")
        return anns

    def save(self, path: str | Path) -> Path | None:
        """Write the Corrections layer as ASAP XML or GeoJSON (by extension)."""
        from ...annotations import write_annotations

        try:
            if not str(path) or Path(path).is_dir():
                raise InputError("choose a corrections file to save to (.xml or .geojson)")
            write_annotations(path, self._polygons())
        except InputError as exc:
            self._warn(str(exc))
            return None
        self._report(f"saved corrections to {Path(path).name} ({self._count()})")
        return Path(path)

    def load(self, path: str | Path) -> Any:
        """Add the polygons of an ASAP XML or GeoJSON file to the Corrections layer over the chosen slide."""
        from ..corrections import add_correction

        image = self._detect.slide_box.value
        anns = self._detect._read_polygons(path)
        if anns is None:
            return None
        with slide_of(image) as slide:
            layer = self.ensure_layer(slide, image)
        for ann in anns:
            add_correction(layer, ann.exterior, ann.label)
        self._report(f"{Path(path).name}: loaded ({self._count()})")
        return layer

    def retrain(self, *, epochs: int | None = None, block: bool = True) -> Any:
        """Fine-tune the last run's model on the corrections, save it as a new version, re-predict the slide.

        The heatmap layer updates in place. A new model worse than its parent
        on the replay set is not saved, and the slide keeps its heatmap.
        """
        from ...inference import iter_predict, slide_score
        from ...model import load_model
        from ...workflows import Corrections, FinetuneConfig, finetune
        from ..corrections import new_model_version
        from ..sample import cache_dir

        try:
            if not self._detect._run:
                raise InputError("run Detect metastases first: retraining starts from its model")
            anns = self._polygons()
        except InputError as exc:
            self._warn(str(exc))
            return None
        run = dict(self._detect._run)
        image = run["image"]
        parent = Path(run["model"])
        folder = cache_dir() / "models"
        folder.mkdir(parents=True, exist_ok=True)
        output = new_model_version(parent, folder)
        # The new threshold is set for the detections the pathologist sees: at the widget's smoothing.
        config = FinetuneConfig(epochs=int(epochs or self.epochs.value), smooth=float(self._detect.smoothing.value))
        corrections = [Corrections(image.metadata["path"], tuple(anns), source="Corrections layer")]
        buttons = (self.retrain_button, self._detect.cancel_button)
        self._detect._job = Job("Retraining", buttons=buttons, report=self._warn)
        slide = slide_of(image)  # this job's: closed when it ends, however it ends
        keep_weights = config.epochs == 0  # the heatmap stands; only the threshold moves

        def work(job: Job):
            def progress(stage: str, info: dict) -> None:
                if stage == "train" and "batch" in info:
                    job.step((info["epoch"]) * info["batches"] + info["batch"], info["epochs"] * info["batches"])

            tuned = finetune(parent, corrections, output, config, progress=progress, cancel=job.cancelled)
            if not tuned.accepted or job.cancelled.is_set():
                return tuned, None
            model, card = load_model(tuned.path)
            if keep_weights:
                return tuned, (run["heatmap"], card)
            steps = iter_predict(slide, model, card, tissue_mask=run["tissue"].mask,
                                 tissue_downsample=run["tissue"].downsample, cancel=job.cancelled)
            result = yield from follow(steps, job, lambda item: item[1:])
            return tuned, (result.heatmap, card)

        def finished(outcome) -> None:
            tuned, predicted = outcome
            if predicted is None:
                self._warn("; ".join(tuned.warnings) or "retraining cancelled; the model is unchanged")
                return
            heatmap, card = predicted
            self._detect._run.update(model=tuned.path, card=card, heatmap=heatmap)
            self._detect._show_heatmap(slide, heatmap, run["downsample"])
            self._detect.show_detections(slide)
            self._detect.model_file.value = str(tuned.path)
            before, after = tuned.before.get("accuracy"), tuned.after.get("accuracy")
            check = f"; replay accuracy {before:.3f} → {after:.3f}" if before is not None else ""
            notes = f" ({'; '.join(tuned.warnings)})" if tuned.warnings else ""
            threshold = (f"threshold {run['card'].threshold:.3f} → {card.threshold:.3f} "
                         f"(from the {tuned.threshold.get('source', 'validation')})")
            self._report(f"retrained on {tuned.patches['tumor']} tumor and {tuned.patches['not_tumor']} not-tumor "
                         f"patches in {tuned.seconds:.0f} s{check}: saved {tuned.path.name}; {threshold}; slide "
                         f"score {slide_score(heatmap):.3f}, {len(self._detect.detections)} detections{notes}")

        outcome = self._detect._job.run(work, on_update=lambda item: self._detect._show_heatmap(
            slide, item[0], run["downsample"]), on_done=finished, on_finally=slide.close, block=block)
        return outcome
