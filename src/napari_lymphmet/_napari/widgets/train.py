"""The "Train" widget: train a patch classifier from the viewer, with live curves and cancel."""


from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, Label, LineEdit, PushButton, SpinBox

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

        self._viewer = napari_viewer
        self._job: Job | None = None
        self.history: dict[str, list[float]] = {}
        self.result: Any = None
        self.data = FileEdit(label="patches (folder)", mode="d")
        self.val = FileEdit(label="validation (optional)", mode="d")
        self.backbone = ComboBox(label="backbone", choices=list(BACKBONES), value="small-cnn")
        self.weights = LineEdit(label="weights", value="none")
        self.epochs = SpinBox(label="epochs", min=1, max=1000, value=10)
        self.batch = SpinBox(label="batch size", min=1, max=1024, value=32)
        self.output = FileEdit(label="save model as", mode="w", filter="*.keras")
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.status.min_width = 320
        super().__init__(widgets=[self.data, self.val, self.backbone, self.weights, self.epochs, self.batch,
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
        self.status.value = f"epoch {state['epoch']}/{state['epochs']}: loss {state['loss']:.4f}{auc}"

    def start(self, *, block: bool = True) -> Any:
        """Train; ``block=False`` runs in a worker (progress per batch, curves per epoch)."""
        from ...model import TrainConfig, read_patch_table, split_by_slide, why_no_split

        try:
            if not str(self.data.value) or str(self.data.value) == ".":
                raise InputError("choose a folder of patches (tumor/ and normal/)")
            out = Path(self.output.value)
            if out.suffix != ".keras":
                raise InputError("choose where to save the model (.keras)")
            config = TrainConfig(backbone=self.backbone.value, weights=self.weights.value.strip() or "none",
                                 epochs=int(self.epochs.value), batch_size=int(self.batch.value))
            table = read_patch_table([self.data.value])
            if str(self.val.value) not in ("", "."):
                train_table, val_table = table, read_patch_table([self.val.value])
            else:
                train_table, val_table = split_by_slide(table)
                if not len(val_table):
                    self._warn(why_no_split(table) + ": training without validation; choose a validation folder")
        except InputError as exc:
            self._warn(str(exc))
            return None
        self.history = {}
        self._job = Job("Training", buttons=(self.train_button, self.cancel_button), report=self._warn)

        def work(job: Job):
            from ...model import train

            def on_progress(state: dict) -> None:
                if state.get("end_of_epoch"):
                    job.update(state)  # the curves, on the GUI thread
                else:
                    job.step(state["epoch"] * state["batches"] + state["batch"], state["epochs"] * state["batches"])

            # Keras fits right here, in the worker's thread; callbacks hand
            # each epoch to the GUI through the job.
            return train(train_table, val_table, out, config, progress=on_progress, cancel=job.cancelled)

        def done(result) -> None:
            self.result = result
            val = result.card.validation or {}
            auc = f", validation AUC {val['auc']:.3f}" if val and val.get("auc") == val.get("auc") else ""
            state = "cancelled; kept the best model so far" if result.cancelled else "trained"
            self._report(f"{state}: {result.epochs_run} epochs{auc}; saved {result.path.name}")

        outcome = self._job.run(work, on_update=self._on_epoch, on_done=done, block=block)
        return self.result if block else outcome

    def cancel(self) -> None:
        """Stop after the current batch; the best checkpoint so far is saved."""
        if self._job is not None:
            self._job.cancel()
