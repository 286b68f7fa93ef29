"""The "Tissue mask" widget: live threshold tuning and brush correction."""


from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
    Slider,
)

from ...errors import InputError
from ...tissue import (
    TissueChannels,
    TissueParams,
    TissueWarning,
    detect_tissue,
    load_mask,
    params_dict,
    save_mask,
    tissue_channels,
)
from ..layers import mask_geometry
from ._common import PluginWidget, slide_of
from ._jobs import Job

if TYPE_CHECKING:  # napari passes the viewer to a parameter named napari_viewer
    from napari.viewer import Viewer

__all__ = ['MASK_KIND', 'TissueMaskWidget', 'find_mask_layer']

MASK_KIND = "tissue"


def find_mask_layer(viewer: Any, slide_path: str, kind: str = MASK_KIND) -> Any | None:
    """The Labels layer holding ``kind`` mask for a slide, as later widgets look it up."""
    from napari.layers import Labels

    for layer in reversed(list(viewer.layers)):
        meta = getattr(layer, "metadata", {})
        if isinstance(layer, Labels) and meta.get("kind") == kind \
                and meta.get("slide") == slide_path:
            return layer
    return None


class TissueMaskWidget(PluginWidget):
    """Detect tissue on a slide layer, tune it live, correct it with the brush, save or load it."""

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self._channels: TissueChannels | None = None
        self._downsample = 1.0
        self._mpp: float | None = None
        self._slide_path: str | None = None
        self._layer: Any = None
        self.last_update_ms = float("nan")
        d = TissueParams()
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.detect_button = PushButton(text="Detect tissue")
        self.auto = CheckBox(label="auto (Otsu)", value=True)
        self.saturation = FloatSlider(label="saturation", min=0.0, max=0.5, step=0.005, value=0.08)
        self.dark = Slider(label="dark (ink) below", min=0, max=255, value=d.dark)
        self.bright = Slider(label="bright (glass) above", min=0, max=255, value=d.bright)
        self.pen = CheckBox(label="remove blue/green pen", value=d.reject_pen)
        self.median = Slider(label="median (px)", min=1, max=15, step=2, value=d.median)
        self.close = Slider(label="close (px)", min=0, max=10, value=d.close)
        self.fill = CheckBox(label="fill holes", value=d.fill_holes)
        self.min_area = FloatSpinBox(label="min area (µm²)", min=0, max=10_000_000, step=1000,
                                     value=d.min_area_um2)
        self.save_file = FileEdit(label="save as", mode="w", filter="*.png *.tif *.tiff")
        self.save_button = PushButton(text="Save mask")
        self.load_file = FileEdit(label="mask file", mode="r", filter="*.png *.tif *.tiff")
        self.load_button = PushButton(text="Load mask")
        self.status = Label(value="")
        self.saturation.enabled = False
        tips = {
            self.slide_box: "the slide to find tissue on (opened with napari-lymphmet)",
            self.detect_button: "find the tissue on a low-resolution level of the slide (about 8 µm/px)",
            self.auto: "choose the saturation threshold from the slide itself (Otsu's method)",
            self.saturation: "pixels more colourful than this are tissue (stain); glass is grey or white",
            self.dark: "pixels darker than this are ink or marker, not tissue (0–255)",
            self.bright: "pixels brighter than this are glass (0–255)",
            self.pen: "drop blue and green pen marks (their hues are far from H&E's)",
            self.median: "smooth the mask by a majority vote over this many mask pixels (odd)",
            self.close: "close gaps narrower than twice this many mask pixels",
            self.fill: "count holes inside the tissue (fat, sinuses) as tissue",
            self.min_area: "drop specks of debris smaller than this area",
            self.save_file: "where to save the mask: a 0/255 PNG or TIFF with a JSON sidecar (its scale)",
            self.save_button: "save the mask, brush edits included; predict and patches take it with --mask",
            self.load_file: "a mask saved earlier, to edit or use again",
            self.load_button: "show the saved mask over the slide",
        }
        for control, tip in tips.items():
            control.tooltip = tip
        self.status.native.setWordWrap(True)
        self._controls = [self.auto, self.saturation, self.dark, self.bright, self.pen, self.median,
                          self.close, self.fill, self.min_area]
        super().__init__(widgets=[self.slide_box, self.detect_button, *self._controls, self.save_file,
                                  self.save_button, self.load_file, self.load_button, self.status])
        self.detect_button.changed.connect(lambda: self.detect(block=False))
        for control in self._controls:
            control.changed.connect(self._on_change)
        self.save_button.changed.connect(lambda: self.save(self.save_file.value))
        self.load_button.changed.connect(lambda: self.load(self.load_file.value))
        self._follow_layers(self.slide_box)



    @property
    def params(self) -> TissueParams:
        return TissueParams(
            saturation=None if self.auto.value else float(self.saturation.value),
            dark=int(self.dark.value), bright=int(self.bright.value), reject_pen=bool(self.pen.value),
            median=int(self.median.value) | 1, close=int(self.close.value), fill_holes=bool(self.fill.value),
            min_area_um2=float(self.min_area.value))

    @property
    def layer(self) -> Any:
        """The Labels layer with the mask (brush-editable), or None before detection."""
        return self._layer

    # -- detection -------------------------------------------------------------
    def detect(self, *, block: bool = True) -> Any:
        """Read the slide's working level (once) and show the mask.

        With ``block=False`` the read runs in a worker thread with a progress
        indicator, so the viewer stays responsive; the preview appears when
        it finishes. Returns the worker, or the layer when blocking.
        """
        image = self.slide_box.value
        if image is None:
            self._report("open a slide first", warning=True)
            return None
        path = image.metadata["path"]

        def read() -> tuple:
            from ...tissue import working_image

            with slide_of(image) as slide:
                rgb, downsample = working_image(slide, self.params)
                mpp = slide.mean_mpp * downsample if slide.mpp else None
                return tissue_channels(rgb), downsample, mpp, mask_geometry(slide, downsample)

        job = Job("Reading the slide for tissue detection", buttons=(self.detect_button, None),
                  report=lambda text: self._warn(f"{Path(path).name}: {text}"))
        outcome = job.run(lambda _job: read(), on_done=lambda result: self._show(path, *result), block=block)
        return self._layer if block else outcome

    def _show(self, path: str, channels: TissueChannels, downsample: float, mpp: float | None,
              geometry: tuple) -> Any:
        self._channels, self._downsample, self._mpp, self._slide_path = channels, downsample, mpp, path
        if self.auto.value:
            self.saturation.value = float(np.clip(channels.otsu, *TissueParams().otsu_range))
        mask = self._compute()
        scale, translate = geometry
        existing = find_mask_layer(self._viewer, path)
        if existing is not None and existing.data.shape == mask.shape:
            self._layer = existing
            existing.data = mask
        else:
            self._layer = self._viewer.add_labels(
                mask, name=f"{Path(path).stem} tissue", scale=scale, translate=translate, opacity=0.4,
                units=("um", "um") if mpp else ("pixel", "pixel"),
                metadata={"kind": MASK_KIND, "slide": path, "downsample": downsample, "mpp": mpp})
        self._report(f"tissue: {mask.mean():.1%} of the slide; paint with label 1, erase with 0")
        return self._layer

    def _compute(self) -> np.ndarray:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TissueWarning)
            result = detect_tissue(self._channels, self.params, mpp=self._mpp, downsample=self._downsample,
                                   source=Path(self._slide_path).name)
        for w in caught:
            self._report(str(w.message), warning=True)
        return result.mask.astype(np.uint8)

    def _on_change(self, _value=None) -> None:
        self.saturation.enabled = not self.auto.value
        if self._channels is None or self._layer is None:
            return
        start = time.perf_counter()
        self._layer.data = self._compute()
        self.last_update_ms = (time.perf_counter() - start) * 1000

    # -- files -----------------------------------------------------------------
    def save(self, path: str | Path) -> Path | None:
        """Save the (possibly brush-edited) mask with its sidecar."""
        try:
            if self._layer is None:
                raise InputError("detect or load a mask first")
            if not str(path) or Path(path).is_dir():
                raise InputError("choose a file to save to (.png or .tif)")
            meta = self._layer.metadata
            save_mask(path, np.asarray(self._layer.data) > 0, downsample=meta["downsample"], kind=MASK_KIND,
                      slide=meta["slide"], mpp=meta.get("mpp"), parameters=params_dict(self.params),
                      edited_in_napari=True)
        except InputError as exc:
            self._warn(str(exc))
            return None
        self._report(f"saved {Path(path).name}")
        return Path(path)

    def load(self, path: str | Path) -> Any:
        """Show a saved mask over the chosen slide, ready to edit."""
        image = self.slide_box.value
        try:
            if image is None:
                raise InputError("open a slide first")
            saved = load_mask(path)
            with slide_of(image) as slide:
                expected = (-(-slide.dimensions[1] // saved.downsample), -(-slide.dimensions[0] // saved.downsample))
                if abs(saved.mask.shape[0] - expected[0]) > 1 or abs(saved.mask.shape[1] - expected[1]) > 1:
                    raise InputError(f"{Path(path).name}: {saved.mask.shape} at downsample {saved.downsample:g} "
                                     f"does not fit this {slide.dimensions[0]} × {slide.dimensions[1]} slide")
                scale, translate = mask_geometry(slide, saved.downsample)
                mpp = slide.mean_mpp * saved.downsample if slide.mpp else None
        except InputError as exc:
            self._warn(str(exc))
            return None
        path_str = image.metadata["path"]
        self._slide_path = path_str
        self._layer = self._viewer.add_labels(
            saved.mask.astype(np.uint8), name=f"{Path(path_str).stem} tissue", scale=scale, translate=translate,
            opacity=0.4, units=("um", "um") if mpp else ("pixel", "pixel"),
            metadata={"kind": MASK_KIND, "slide": path_str, "downsample": saved.downsample,
                                   "mpp": mpp})
        self._report(f"loaded {Path(path).name}: {saved.mask.mean():.1%} tissue")
        return self._layer
