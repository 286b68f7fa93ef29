"""The "Train" widget: train a patch classifier from the viewer, with live curves and cancel."""


from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, Label, LineEdit, PushButton, SpinBox

from ...errors import InputError
from ._common import PluginWidget
from ._jobs import Job

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

__all__ = ['TrainWidget']


class TrainWidget(PluginWidget):
    """Choose patch folders and a backbone, train in a worker thread, watch loss and AUC per epoch."""

    def __init__(self, napari_viewer: Viewer) -> None:
        from ...model import BACKBONES
        from ...model.train import DEFAULT_TIME_LIMIT

        self._viewer = napari_viewer
        self._job: Job | None = None
        self.history: dict[str, list[float]] = {}
        self.result: Any = None
        self.data = FileEdit(label="patches (folder)", mode="d")
        self.val = FileEdit(label="validation (optional)", mode="d")
        self.backbone = ComboBox(label="backbone", choices=list(BACKBONES), value="small-cnn")
        self.weights = LineEdit(label="weights", value="none")
        self.epochs = SpinBox(label="epochs", min=1, max=1000, value=10)
        self.minutes = FloatSpinBox(label="time limit (min)", min=0, max=10_000, step=5, value=DEFAULT_TIME_LIMIT)
        self.batch = SpinBox(label="batch size", min=1, max=1024, value=32)
        self.output = FileEdit(label="save model as", mode="w", filter="*.keras")
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self._epoch_text = ""
        self.data.tooltip = "a folder with tumor/ and normal/ patch images (what Patches exports)"
        self.val.tooltip = ("patches from other slides to validate on (picks the best epoch and the detection "
                            "threshold); empty: a quarter of the slides are held out")
        self.backbone.tooltip = "small-cnn trains in minutes on a CPU; the others want ImageNet weights and a GPU"
        self.weights.tooltip = "none (from scratch), imagenet, a weights file, or a .keras model to fine-tune"
        self.epochs.tooltip = "passes over the training patches; the best epoch on validation is kept"
        self.minutes.tooltip = ("keep only the epochs that fit in this many minutes (each epoch is timed, the "
                                "learning rate follows the shorter plan); 0: no limit")
        self.batch.tooltip = "patches per training step"
        self.output.tooltip = "the model file to write (.keras); Detect metastases uses it when training ends"
        self.train_button.tooltip = "train in a background process; the curves update after each epoch"
        self.cancel_button.tooltip = "stop now; the best model so far is saved"
        super().__init__(widgets=[self.data, self.val, self.backbone, self.weights, self.epochs, self.minutes,
                                  self.batch,
                                  self.output, self.train_button, self.cancel_button, self.status])
        self.figure = self._add_plot()
        self.train_button.changed.connect(lambda: self.start(block=False))
        self.cancel_button.changed.connect(self.cancel)


    def _add_plot(self) -> Any:
        """Loss and validation AUC per epoch: a matplotlib figure on a Qt canvas, above the status line."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        from ...figures import draw_training

        figure = Figure(figsize=(4.0, 2.8), dpi=80, layout="constrained")
        canvas = FigureCanvasQTAgg(figure)
        canvas.setMinimumSize(320, 220)
        layout = self.native.layout()
        layout.insertWidget(layout.count() - 1, canvas)
        draw_training(figure, {})
        return figure

    def _on_epoch(self, state: dict) -> None:
        from ...figures import draw_training

        for key in ("loss", "val_loss", "val_auc"):
            if key in state:
                self.history.setdefault(key, []).append(float(state[key]))
        draw_training(self.figure, self.history)
        auc = f", val AUC {state['val_auc']:.3f}" if "val_auc" in state else ""
        self._epoch_text = f"epoch {state['epoch']}/{state['epochs']}: loss {state['loss']:.4f}{auc}"
        self.status.value = self._epoch_text

    def start(self, *, block: bool = True) -> Any:
        """Train in a child process (``lymphmet train``): progress per batch, curves per epoch, a real Cancel.

        When it ends, the model is offered to *Detect metastases* at once.
        Returns the command's result when blocking, else the worker.
        """
        try:
            if not str(self.data.value) or str(self.data.value) == ".":
                raise InputError("choose a folder of patches (tumor/ and normal/)")
            out = Path(self.output.value)
            if out.suffix != ".keras":
                raise InputError("choose where to save the model (.keras)")
            if not out.parent.is_dir():
                raise InputError(f"{out.parent}: no such folder to save the model in")
            args = ["train", str(self.data.value), "-o", str(out), "--backbone", self.backbone.value,
                    "--weights", self.weights.value.strip() or "none", "--epochs", str(int(self.epochs.value)),
                    "--batch-size", str(int(self.batch.value)), "--time-limit", f"{float(self.minutes.value):g}"]
            if str(self.val.value) not in ("", "."):
                args += ["--val", str(self.val.value)]
        except InputError as exc:
            self._warn(str(exc))
            return None
        self.history = {}
        self._epoch_text = ""
        self._job = Job("Training", buttons=(self.train_button, self.cancel_button), report=self._warn,
                        status=self._progress_status)

        plan: list[str] = []  # the epochs the time limit left or made room for, when they differ from the plan

        def on_event(event: dict) -> None:
            if event.get("event") == "epoch":
                self._on_epoch(event)
            elif event.get("event") == "plan":
                fit, planned = event["epochs"], event["planned"]
                plan[:] = [f"{fit} {'epochs' if fit > planned else f'of {planned}'} fit in "
                           f"{float(self.minutes.value):g} min"]
                self._report(f"{plan[0]} (an epoch takes {event['epoch_seconds']:.0f} s); the learning rate "
                             f"follows the {'longer' if fit > planned else 'shorter'} plan")

        def done(result) -> None:
            from ..settings import remember_model

            self.result = result
            summary = result.summary or {}
            if not out.is_file():
                self._warn("training was cancelled before the first epoch ended: no model saved")
                return
            val = summary.get("validation") or {}
            auc = f", validation AUC {val['auc']:.3f}" if val.get("auc") is not None else ""
            state = "cancelled; kept the best model so far" if result.cancelled or summary.get("cancelled") \
                else "trained"
            epochs = summary.get("epochs_run", len(self.history.get("loss", [])))
            fitted = f" ({plan[0]})" if plan else ""
            self._report(f"{state}: {epochs} epochs{fitted}{auc}; saved {out.name}; Detect metastases uses it now")
            remember_model(out, announce=True)

        outcome = self._job.run_command(args, on_event=on_event, on_done=done, block=block, unit="batches")
        return self.result if block else outcome

    def _progress_status(self, text: str) -> None:
        epoch = self._epoch_text
        self.status.value = f"{epoch}; {text}" if epoch else text

    def cancel(self) -> None:
        """Stop after the current batch; the best model so far is saved."""
        if self._job is not None:
            self._job.cancel()
