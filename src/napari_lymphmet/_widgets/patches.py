"""The "Patches" widget: preview the labelled grid over a slide, export it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox, ComboBox, FileEdit, FloatSpinBox, Label, PushButton, SpinBox,
)

from ..annotations import TUMOR
from ..errors import InputError
from ..patches import PatchPlan, PatchSpec, iter_export, plan_patches
from .._layers import annotations_from_shapes, slide_scale
from ._common import PluginWidget, slide_layers, slide_of
from .tissue import find_mask_layer

__all__ = ["PatchesWidget"]

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

LABEL_COLOURS = {TUMOR: "#ff3030", "normal": "#30c030"}
_NO_LAYER = "(none: all normal)"


class PatchesWidget(PluginWidget):
    """Plan labelled patches on the chosen slide, show them, and export them with progress and cancel."""

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self._plan: PatchPlan | None = None
        self._worker: Any = None
        self._cancel = threading.Event()
        d = PatchSpec()
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.tumor_box = ComboBox(label="tumor layer", choices=self._shapes_choices)
        self.mpp = FloatSpinBox(label="mpp (µm/px)", min=0.05, max=64, step=0.05, value=d.mpp)
        self.level = SpinBox(label="level (no mpp)", min=0, max=20, value=0)
        self.size = SpinBox(label="size (px)", min=8, max=4096, value=d.size)
        self.stride = SpinBox(label="stride (px)", min=1, max=4096, value=d.size)
        self.min_tissue = FloatSpinBox(label="min tissue", min=0, max=1, step=0.05, value=d.min_tissue)
        self.rule = ComboBox(label="label rule", choices=["center", "fraction"], value="center")
        self.fraction = FloatSpinBox(label="tumor fraction ≥", min=0.01, max=1, step=0.05, value=0.5)
        self.cap = SpinBox(label="max per class (0: all)", min=0, max=10_000_000, value=0)
        self.balance = CheckBox(label="balance classes", value=False)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.fmt = ComboBox(label="format", choices=["png", "jpeg"], value="png")
        self.out_dir = FileEdit(label="output folder", mode="d")
        self.preview_button = PushButton(text="Preview grid")
        self.export_button = PushButton(text="Export")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        super().__init__(widgets=[
            self.slide_box, self.tumor_box, self.mpp, self.level, self.size, self.stride, self.min_tissue,
            self.rule, self.fraction, self.cap, self.balance, self.seed, self.fmt, self.out_dir,
            self.preview_button, self.export_button, self.cancel_button, self.status])
        self.preview_button.changed.connect(self.preview)
        self.export_button.changed.connect(lambda: self.export(self.out_dir.value, block=False))
        self.cancel_button.changed.connect(self.cancel)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda _e=None: (self.slide_box.reset_choices(), self.tumor_box.reset_choices()))

    def _slide_choices(self, _widget=None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in slide_layers(self._viewer)]

    def _shapes_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Shapes

        return [(_NO_LAYER, None)] + [(layer.name, layer) for layer in self._viewer.layers
                                      if isinstance(layer, Shapes)]


    @property
    def spec(self) -> PatchSpec:
        image = self.slide_box.value
        has_mpp = image is not None and image.metadata.get("mpp")
        return PatchSpec(
            size=int(self.size.value), stride=int(self.stride.value), mpp=float(self.mpp.value) if has_mpp else None,
            level=None if has_mpp else int(self.level.value), min_tissue=float(self.min_tissue.value),
            label_rule="center" if self.rule.value == "center" else f"fraction:{self.fraction.value:g}",
            max_per_class=int(self.cap.value) or None, balance=bool(self.balance.value),
            seed=int(self.seed.value), format=self.fmt.value)

    # -- planning ---------------------------------------------------------------
    def plan(self) -> PatchPlan:
        """The labelled grid for the current settings (tissue from the Tissue mask layer, or detected)."""
        from ..tissue import tissue_mask

        image = self.slide_box.value
        if image is None:
            raise InputError("open a slide first")
        spec = self.spec
        slide = slide_of(image)
        mask_layer = find_mask_layer(self._viewer, image.metadata["path"])
        if mask_layer is not None:
            tissue, downsample = np.asarray(mask_layer.data) > 0, float(mask_layer.metadata["downsample"])
        else:
            result = tissue_mask(slide)
            tissue, downsample = result.mask, result.downsample
        tumor_layer = self.tumor_box.value
        annotations = annotations_from_shapes(tumor_layer, image)[0] if tumor_layer is not None else []
        self._slide = slide
        self._plan = plan_patches(slide, spec, tissue_mask=tissue, tissue_downsample=downsample,
                                  annotations=annotations)
        return self._plan

    def preview(self) -> Any:
        """Show the grid as a Points layer (squares coloured by label) and the counts."""
        try:
            plan = self.plan()
        except (InputError, ValueError) as exc:
            self._report(str(exc), warning=True)
            return None
        centres = np.column_stack([plan.y + plan.box / 2, plan.x + plan.box / 2]).astype(float)
        name = f"{plan.slide_id} patches"
        for layer in [layer for layer in self._viewer.layers if layer.name == name]:
            self._viewer.layers.remove(layer)
        layer = self._viewer.add_points(
            centres, name=name, symbol="square", size=plan.box * 0.9, face_color="transparent",
            border_color=[LABEL_COLOURS[str(label)] for label in plan.labels] if len(plan) else "white",
            border_width=0.06, scale=slide_scale(self._slide), features={"label": plan.labels.astype(str)},
            metadata={"kind": "patch-grid", "slide": plan.slide_path})
        counts = plan.counts()
        self._report(f"{counts[TUMOR]} tumor · {counts['normal']} normal · {plan.uncertain} uncertain skipped")
        return layer

    # -- export -----------------------------------------------------------------
    def export(self, out_dir: str | Path, *, block: bool = True) -> Any:
        """Export the planned patches. ``block=False`` runs in a worker with progress and cancel."""
        try:
            if not str(out_dir) or str(out_dir) == ".":
                raise InputError("choose an output folder")
            plan = self.plan()
        except (InputError, ValueError) as exc:
            self._report(str(exc), warning=True)
            return None
        summary: dict = {}
        plans = [(self._slide, plan)]

        self._cancel = threading.Event()

        def run():
            from napari.utils import progress

            # Cancel by event, not worker.quit(): the generator must run on to
            # its end so the export closes cleanly and writes patches.csv.
            steps = iter_export(plans, out_dir, fmt=plan_fmt, summary=summary)
            with progress(total=len(plan), desc="Exporting patches") as bar:
                try:
                    last = 0
                    for done, _total in steps:
                        bar.update(done - last)
                        last = done
                        yield done
                        if self._cancel.is_set():
                            break
                finally:
                    steps.close()

        plan_fmt = self.spec.format

        def finished():
            self.export_button.enabled, self.cancel_button.enabled = True, False
            counts = summary.get("counts", {})
            state = "exported" if summary.get("complete") else "cancelled; kept"
            self._report(f"{state} {summary.get('written', 0)} new patches ({counts.get(TUMOR, 0)} tumor, "
                         f"{counts.get('normal', 0)} normal on disk) in {Path(out_dir).name}")

        if block:
            for _ in run():
                pass
            finished()
            return summary
        from napari.qt.threading import create_worker

        self._worker = create_worker(run)
        self._worker.finished.connect(finished)
        self._worker.errored.connect(lambda exc: self._report(f"export failed: {exc}", warning=True))
        self.export_button.enabled, self.cancel_button.enabled = False, True
        self._worker.start()
        return self._worker

    def cancel(self) -> None:
        """Stop after the patches being written; what is on disk stays whole."""
        self._cancel.set()
