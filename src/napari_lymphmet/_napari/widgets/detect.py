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
from ._common import PluginWidget, layer_tissue, slide_of
from ._jobs import Job
from .corrections import CorrectionsPanel
from .detect_results import DetectResultsMixin
from .lesions import LesionTableMixin

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

__all__ = ["DetectWidget", "run_folder_for"]

_NO_MASK = "(detect tissue)"
def run_folder_for(slide_path: str | Path) -> Path:
    """Where the widget's runs on a slide go when no results folder is chosen: the plugin cache, one per slide."""
    from ..sample import cache_dir

    path = Path(slide_path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return cache_dir() / "runs" / f"{path.stem}-{digest}"


class DetectWidget(LesionTableMixin, DetectResultsMixin, PluginWidget):
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
        self.views = ComboBox(label="views per patch", choices=[("1 (fastest)", 1), ("4 rotations", 4),
                                                               ("8 rotations and mirrorings", 8)], value=1)
        self.views.tooltip = ("test-time augmentation: each patch is also seen turned (and mirrored) and the "
                              "probabilities averaged. Steadier on stains the model saw little of; each view "
                              "costs one more pass of the model")
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
        super().__init__(widgets=[self.slide_box, self.model_file, self.mask_box, self.screen, self.views,
                                  self.smoothing,
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
            if int(self.views.value) != 1:
                args += ["--tta", str(int(self.views.value))]
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
            speed = _speed(result.summary)
            self._show_folder(image, folder, model_path, card, block=block,
                              then=lambda: self._report(self._summary("done") + speed))

        def tissue():  # in the worker: where the heatmap is drawn (reading a low level takes a moment)
            # Imported here, off the GUI thread: skimage (the lesion table) and pandas (napari's Points
            # features) load lazily, and pandas alone takes most of a second on first use.
            import pandas  # noqa: F401
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
                f"threshold {self._run['threshold']:.2f}{_node(self._run)}; results in {self._run['folder']}")

    # -- showing a run ------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the running job now; what it has done is kept."""
        if self._job is not None:
            self._job.cancel()


_RUNTIME_NAMES = {"onnx": "ONNX Runtime", "tensorflow": "TensorFlow"}


def _node(run: dict) -> str:
    """``"; node micro"``, or why a node with detections is negative: the run's category (heatmap.json's)."""
    category, gate = run.get("category"), run.get("node_gate")
    if not category:
        return ""
    if isinstance(gate, dict) and not gate.get("passed", True):
        return f"; node {category} (slide score under the node gate, {gate.get('gate', 0):.3f})"
    return f"; node {category}"


def _speed(summary: dict | None) -> str:
    """``"; 3,425 patches in 5.2 s (ONNX Runtime)"``: the run's cost and what ran the model (predict's summary)."""
    try:
        (row,) = summary["slides"]
        patches, seconds = int(row["predicted"]), float(row["seconds"])
    except (KeyError, TypeError, ValueError):
        return ""
    runtime = _RUNTIME_NAMES.get(str(row.get("runtime")), "")
    return f"; {patches:,} patches in {seconds:.1f} s" + (f" ({runtime})" if runtime else "")
