"""The correct-and-retrain part of *Detect metastases*: corrections, and a fine-tune from them.

After a run, a **Corrections** Shapes layer lies over the slide. Picking a
detection and pressing **N** outlines its region as *not tumor*; *draw as
tumor* outlines missed tumor. *Retrain with corrections* fine-tunes the run's
model (``lymphmet finetune``, in a child process like every TensorFlow job
of the plugin), saves it as a new version in the plugin's cache folder, and
re-predicts the slide into the same heatmap layer. The new version's
detection threshold sits between the outlined lesions' and false positives'
scores; with 0 epochs that is all that changes, and the heatmap stays.

A retrain whose corrections mark every detection not tumor, with no tumor
outline to learn from, would leave a model that finds nothing on this
slide: the panel asks before it replaces the model.
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
from ._jobs import Job

__all__ = ["CorrectionsPanel", "DetectHost"]


class DetectHost(Protocol):
    """What the panel needs of the *Detect metastases* widget it sits in (the widget implements it).

    A protocol rather than an import, so the panel and the widget do not import each other.
    """

    _viewer: Any
    _job: Job | None
    _run: dict[str, Any]  # the last run: slide layer, folder, model, card, heatmap, cell size
    slide_box: Any
    model_file: Any
    smoothing: Any
    run_button: Any
    load_button: Any
    cancel_button: Any
    points_layer: Any
    detections: np.ndarray

    def _report(self, text: str, *, warning: bool = False) -> None: ...
    def _warn(self, text: str) -> None: ...
    def _say(self, text: str) -> None: ...
    def _read_polygons(self, path: Any) -> list | None: ...
    def selected_detection(self) -> int | None: ...
    def sigma(self) -> float: ...
    @property
    def busy(self) -> bool: ...
    def show_detections(self, slide: Any) -> None: ...
    def run(self, *, block: bool = True, model: str | Path | None = None) -> Any: ...


class CorrectionsPanel(Container):
    """The Corrections layer and the retrain button, over the *Detect metastases* widget's last run."""

    def __init__(self, detect: DetectHost) -> None:
        self._detect = detect
        self._viewer = detect._viewer
        self.layer: Any = None
        self.draw_as = RadioButtons(label="draw as", choices=DRAW_CHOICES, value=TUMOR, orientation="horizontal")
        self.draw_as.tooltip = "the class of the outlines you draw next in the Corrections layer"
        self.mark_button = PushButton(text="Mark detection not tumor (N)")
        self.mark_button.tooltip = ("outline the selected detection's region as not tumor (a false positive); "
                                    "or press N on the canvas")
        self.file = FileEdit(label="corrections", mode="w", filter="*.xml *.geojson")
        self.file.tooltip = "ASAP XML (not tumor = group _2) or GeoJSON (not tumor = class Exclusion)"
        self.save_button = PushButton(text="Save corrections")
        self.save_button.tooltip = "write the Corrections layer to the file above"
        self.load_button = PushButton(text="Load corrections")
        self.load_button.tooltip = "add the outlines of the file above to the Corrections layer"
        self.epochs = SpinBox(label="epochs", min=0, max=50, value=3)
        self.epochs.tooltip = ("passes over the corrections when retraining; 0 keeps the weights and only moves "
                               "the detection threshold to fit your outlines (seconds)")
        self.retrain_button = PushButton(text="Retrain with corrections")
        self.retrain_button.tooltip = ("fine-tune the model on your outlines in the background, save it as a new "
                                       "version and re-predict this slide with it")
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
        from ..layers import set_draw_class

        layer = self.layer
        if layer is None or layer not in self._viewer.layers or layer.metadata.get("slide") != slide.path:
            layer = self._viewer.add_shapes(**corrections_layer_kwargs(slide))
            set_draw_class(layer, self.draw_as.value)
            layer.bind_key("n", lambda _layer: self.mark_not_tumor(), overwrite=True)
            self.layer = layer
            # The detections stay the active layer: pick one, press N (bound on both layers).
            self._viewer.layers.selection.active = self._detect.points_layer or layer
        return layer

    def _set_draw_label(self, label: str) -> None:
        from ..layers import set_draw_class

        if self.layer is not None:
            set_draw_class(self.layer, label)

    def mark_not_tumor(self, index: int | None = None) -> np.ndarray | None:
        """Outline detection ``index`` (default: the one selected) as *not tumor* in the Corrections layer.

        The outline is the detection's region above the threshold, a cell
        wider. Returns it, level-0 ``(x, y)``.
        """
        from ...annotations import EXCLUSION
        from ...inference import region_around
        from ..corrections import add_correction

        if index is None:
            index = self._detect.selected_detection()
        if not self._detect._run or index is None or not 0 <= index < len(self._detect.detections):
            self._warn("select a detection first (run Detect metastases, then pick one in the table)")
            return None
        _, x, y = self._detect.detections[index]
        run = self._detect._run
        outline = region_around(run["heatmap"], run["downsample"], x, y, threshold=run["threshold"])
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
        """Fine-tune the last run's model on the corrections (``lymphmet finetune`` in a child process), save it
        as a new version, then re-predict the slide (or, with 0 epochs, re-detect at its new threshold).

        A new model worse than its parent on the replay set is not saved,
        and the slide keeps its heatmap. Returns the worker, or the
        :class:`~napari_lymphmet.workflows.CommandResult` when blocking.
        """
        from ...annotations import write_annotations
        from ..corrections import new_model_version
        from ..sample import cache_dir

        detect = self._detect
        try:
            if not detect._run or detect._run.get("model") is None:
                raise InputError("run Detect metastases first: retraining starts from its model")
            if detect.busy:
                raise InputError("a job is already running on this slide: wait for it or cancel it")
            anns = self._polygons()
            run = dict(detect._run)
            corrections_file = Path(run["folder"]) / "corrections.xml"
            write_annotations(corrections_file, anns)
        except (InputError, OSError) as exc:
            self._warn(str(exc))
            return None
        image = run["image"]
        parent = Path(run["model"])
        folder = cache_dir() / "models"
        folder.mkdir(parents=True, exist_ok=True)
        output = new_model_version(parent, folder)
        n_epochs = int(self.epochs.value if epochs is None else epochs)
        # The new threshold is set for the detections the pathologist sees: at the widget's smoothing.
        args = ["finetune", str(parent), "--slide", image.metadata["path"], "--corrections", str(corrections_file),
                "-o", str(output), "--epochs", str(n_epochs), "--smooth", f"{float(detect.smoothing.value):g}"]
        has_tumor = any(a.label == TUMOR for a in anns)
        before = len(detect.detections)
        starts = [detect.run_button, detect.load_button, self.retrain_button]
        detect._job = Job("Retraining", buttons=(starts, detect.cancel_button), report=self._warn,
                          status=detect._say)
        follow_up: list = []

        def finished(result) -> None:
            from ...model import read_card

            summary = result.summary or {}
            if result.cancelled or not summary.get("accepted"):
                why = "; ".join(summary.get("warnings") or []) or "cancelled"
                self._warn(f"retraining {why}: the model is unchanged")
                return
            card = read_card(output)
            after = self._detections_at(card.threshold)
            if not has_tumor and before and not after and not self.confirm(
                    f"The corrections mark every detection not tumor and outline no tumor, so the new model "
                    f"({output.name}) finds nothing on this slide at threshold {card.threshold:.2f}. Use it "
                    f"anyway?"):
                output.unlink(missing_ok=True)
                self._warn("kept the previous model: outline some tumor too, so the model keeps finding it")
                return
            detect.model_file.value = str(output)
            threshold = f"threshold {run['card'].threshold:.2f} → {card.threshold:.2f}"
            self._report(f"retrained ({summary.get('epochs', n_epochs)} epochs, {summary.get('seconds', 0):.0f} s): "
                         f"saved {output.name}; {threshold}")
            if n_epochs == 0:  # the weights are the parent's: the heatmap stands, detections move
                detect._run.update(model=output, card=card)
                with slide_of(image) as slide:
                    detect.show_detections(slide)
                self._report(f"retrained: {threshold}; {len(detect.detections)} detections (was {before})")
            else:
                follow_up.append(lambda: detect.run(block=block, model=output))

        def then() -> None:  # after the job has closed, so the next one owns the buttons
            for step in follow_up:
                step()

        return detect._job.run_command(args, on_done=finished, on_finally=then, block=block, unit="batches")

    def _detections_at(self, threshold: float) -> int:
        from ...inference import detect

        run = self._detect._run
        return len(detect(run["heatmap"], run["downsample"], threshold=threshold, smooth=self._detect.sigma()))

    def confirm(self, question: str) -> bool:
        """Ask the pathologist a yes/no question (a dialog); tests replace it."""
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(self.native, "Retrain with corrections", question)
        return answer == QMessageBox.StandardButton.Yes
