"""The "Patches" widget: preview the labelled grid over a slide, export it."""


from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)

from ...annotations import NORMAL, TUMOR
from ...errors import InputError
from ...patches import ExportResult, PatchPlan, PatchSpec, iter_export, plan_patches
from ...wsi import open_slide
from ..layers import CLASS_COLOURS, NORMAL_COLOUR, annotations_from_shapes, layer_units, slide_scale
from ._common import PluginWidget, layer_tissue, slide_of
from ._jobs import Job, follow
from .tissue import find_mask_layer

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

__all__ = ['LABEL_COLOURS', 'PatchesWidget']

LABEL_COLOURS = {TUMOR: CLASS_COLOURS[TUMOR], NORMAL: NORMAL_COLOUR}  # as the Annotations widget draws them
_NO_LAYER = "(none: all normal)"


def _tumor_count(layer: Any) -> int:
    """Tumor outlines in a Shapes layer: shapes labelled tumor, or every shape of a layer with no labels."""
    if layer is None:
        return 0
    labels = layer.features["label"] if "label" in getattr(layer, "features", {}) else None
    return int(sum(str(v) == TUMOR for v in labels)) if labels is not None else len(layer.data)


class PatchesWidget(PluginWidget):
    """Plan labelled patches on the chosen slide, show them, and export them with progress and cancel."""

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self._plan: PatchPlan | None = None
        self._job: Job | None = None
        self._scale: tuple[float, float] = (1.0, 1.0)
        self._units: tuple[str, str] = ("pixel", "pixel")
        d = PatchSpec()
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.tumor_box = ComboBox(label="tumor layer", choices=self._shapes_choices)
        self.tumor_box.tooltip = ("the Shapes layer whose tumor outlines label patches tumor; defaults to the "
                                  "outlines over the chosen slide. '(none)' labels every patch normal")
        self._offered: list = []  # the tumor layers there were when the choice was last made
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
        self.status.native.setWordWrap(True)
        tips = {
            self.slide_box: "the slide to cut patches from (opened with napari-lymphmet)",
            self.mpp: "patch resolution in µm per pixel (0.972 ≈ 10×, what the bundled model reads)",
            self.level: "for slides without a resolution: read this pyramid level as it is",
            self.size: "patch side in pixels",
            self.stride: "step between patches in pixels (less than the size: overlapping patches)",
            self.min_tissue: "skip patches with less tissue than this fraction",
            self.rule: "center: tumor when the patch centre is inside a tumor outline (PatchCamelyon's rule); "
                       "fraction: when at least the fraction below is",
            self.fraction: "with the fraction rule: the share of the patch that must be tumor",
            self.cap: "sample at most this many patches of each class per slide (0: all)",
            self.balance: "sample normal patches down to the number of tumor patches",
            self.seed: "the sampling's random seed (the same seed, the same patches)",
            self.fmt: "png (lossless) or jpeg (smaller)",
            self.out_dir: "the folder to write tumor/, normal/ and patches.csv into",
            self.preview_button: "show the grid on the slide: a square per patch, coloured by its label",
            self.export_button: "write the patches in the background; existing ones are kept (resumable)",
            self.cancel_button: "stop; whole files only are kept, and patches.csv matches them",
        }
        for control, tip in tips.items():
            control.tooltip = tip
        super().__init__(widgets=[
            self.slide_box, self.tumor_box, self.mpp, self.level, self.size, self.stride, self.min_tissue,
            self.rule, self.fraction, self.cap, self.balance, self.seed, self.fmt, self.out_dir,
            self.preview_button, self.export_button, self.cancel_button, self.status])
        self.preview_button.changed.connect(self.preview)
        self.export_button.changed.connect(lambda: self.export(self.out_dir.value, block=False))
        self.cancel_button.changed.connect(self.cancel)
        self._follow_layers(self.slide_box)  # the tumor box refreshes in _default_tumor_layer, knowing why
        for event in (self._viewer.layers.events.inserted, self._viewer.layers.events.removed):
            event.connect(lambda _event=None: self._default_tumor_layer())
        self.slide_box.changed.connect(lambda _value=None: self._default_tumor_layer())
        self.tumor_box.changed.connect(self._tumor_layer_chosen)
        self._default_tumor_layer()

    def _shapes_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Shapes

        # Layers with tumor outlines first, "(none)" last: an unnoticed default never labels all normal.
        found = self._layer_choices(Shapes)
        found.sort(key=lambda item: -_tumor_count(item[1]))
        return found + [(_NO_LAYER, None)]

    def _tumor_layer_chosen(self, _layer=None) -> None:
        self._say_tumor_layer()

    def _default_tumor_layer(self) -> None:
        """Choose the Shapes layer with the most tumor outlines over the chosen slide, unless the user chose.

        "(none)" chosen while tumor outlines were on screen is the user's choice, and sticks; "(none)"
        because there were none gives way to the first outlines that appear.
        """
        self.tumor_box.reset_choices()
        image = self.slide_box.value
        candidates = [layer for _name, layer in self._shapes_choices() if layer is not None
                      and _tumor_count(layer) and (image is None or layer.metadata.get("slide") in
                                                    (None, image.metadata.get("path")))]
        chose_none = self.tumor_box.value is None and any(layer in candidates for layer in self._offered)
        if self.tumor_box.value is None and candidates and not chose_none:
            self.tumor_box.value = candidates[0]
        self._offered = candidates
        self._say_tumor_layer()

    def _say_tumor_layer(self) -> None:
        layer = self.tumor_box.value
        if layer is None:
            self.status.value = "tumor layer: none, every patch will be labelled normal"
        else:
            self.status.value = f"tumor layer: {layer.name} ({_tumor_count(layer)} tumor outlines)"


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
        from ...tissue import tissue_for

        image = self.slide_box.value
        if image is None:
            raise InputError("open a slide first")
        spec = self.spec
        tumor_layer = self.tumor_box.value
        annotations = annotations_from_shapes(tumor_layer, image)[0] if tumor_layer is not None else []
        with slide_of(image) as slide:
            tissue = tissue_for(slide, layer_tissue(find_mask_layer(self._viewer, image.metadata["path"])))
            self._plan = plan_patches(slide, spec, tissue_mask=tissue.mask, tissue_downsample=tissue.downsample,
                                      annotations=annotations)
            self._scale = slide_scale(slide)
            self._units = layer_units(slide)
        return self._plan

    def preview(self) -> Any:
        """Show the grid as a Points layer (squares coloured by label) and the counts."""
        try:
            plan = self.plan()
        except InputError as exc:
            self._warn(str(exc))
            return None
        centres = np.column_stack([plan.y + plan.box / 2, plan.x + plan.box / 2]).astype(float)
        name = f"{plan.slide_id} patches"
        for layer in [layer for layer in self._viewer.layers if layer.name == name]:
            self._viewer.layers.remove(layer)
        layer = self._viewer.add_points(
            centres, name=name, symbol="square", size=plan.box * 0.9, face_color="transparent",
            border_color=[LABEL_COLOURS[str(label)] for label in plan.labels] if len(plan) else "white",
            border_width=0.06, scale=self._scale, units=self._units, features={"label": plan.labels.astype(str)},
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
        except InputError as exc:
            self._warn(str(exc))
            return None
        fmt = self.spec.format
        self._job = Job("Exporting patches", buttons=(self.export_button, self.cancel_button), report=self._warn)

        def work(job: Job):
            # Cancel by event, not worker.quit(): the export must run on to its
            # end so it closes cleanly and writes patches.csv.
            with open_slide(plan.slide_path) as slide:
                steps = iter_export([(slide, plan)], out_dir, fmt=fmt, cancel=job.cancelled)
                result = yield from follow(steps, job, lambda item: item)
            return result

        def finished(result: ExportResult) -> None:
            state = "exported" if result.complete else "cancelled; kept"
            self._report(f"{state} {result.written} new patches ({result.counts.get(TUMOR, 0)} tumor, "
                         f"{result.counts.get(NORMAL, 0)} normal on disk) in {Path(out_dir).name}")

        return self._job.run(work, on_done=finished, block=block)

    def cancel(self) -> None:
        """Stop after the patches being written; what is on disk stays whole."""
        if self._job is not None:
            self._job.cancel()
