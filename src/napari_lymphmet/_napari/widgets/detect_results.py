"""Laying out a run's results in *Detect metastases*: heatmap over the tissue, detections, corrections layer.

A mixin of :class:`~napari_lymphmet._napari.widgets.detect.DetectWidget`;
it also loads a finished ``lymphmet predict`` folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ._common import layer_tissue, scale_bar_of, slide_of

__all__ = ["DetectResultsMixin"]


class DetectResultsMixin:
    """Show a predict folder (a run's or a saved one) and detect on it at the widget's smoothing."""

    _viewer: Any
    _run: dict
    _live: dict
    _job: Any
    heatmap_layer: Any
    points_layer: Any
    detections: np.ndarray
    lesions: list
    slide_box: Any
    mask_box: Any
    smoothing: Any
    corrections: Any

    def _show_folder(self, image, folder: Path, model_path: Path | None, card, *, block: bool = True,
                     then: Any = None) -> None:
        """Show a finished predict folder: heatmap, detections at this widget's smoothing, the table.

        Without ``block`` each step runs in its own turn of the event loop
        (adding a layer makes napari build its shaders and controls on the
        GUI thread), so the window keeps answering between them; ``then``
        runs after the last.
        """
        from ...inference import read_heatmap

        heatmap, info = read_heatmap(folder / "heatmap.tif")
        downsample = float(info["downsample"])
        box = float(info.get("patch_box") or downsample)
        if self._live.get("image") is not image or "tissue" not in self._live:  # loaded, not just run
            from ...tissue import tissue_for

            with slide_of(image) as slide:
                self._live = {"image": image, "tissue": tissue_for(slide, layer_tissue(self.mask_box.value))}
        self._run = {"image": image, "folder": folder, "model": model_path, "card": card, "heatmap": heatmap,
                     "downsample": downsample, "cells_per_patch": box / downsample,
                     "threshold": float(info.get("threshold", card.threshold if card else 0.5)),
                     "category": info.get("category"), "node_gate": info.get("node_gate")}

        def heat() -> None:
            with slide_of(image) as slide:
                self._show_heatmap(slide, heatmap, downsample)

        def detections() -> None:
            with slide_of(image) as slide:
                self.show_detections(slide, table=False)

        def table() -> None:
            self._fill_table()

        def finish() -> None:
            if model_path is not None:
                with slide_of(image) as slide:
                    self.corrections.ensure_layer(slide, image)
            for layer in self._viewer.layers:  # the heatmap says more than the tissue outline now
                if isinstance(layer.metadata, dict) and layer.metadata.get("kind") == "tissue":
                    layer.visible = False
            scale_bar_of(self._viewer).visible = True
            self._show_legend(self._run["threshold"])

        steps = [heat, detections, table, finish] + ([then] if then is not None else [])
        if block:
            for step in steps:
                step()
            return
        self._steps_left = len(steps)

        def run_next() -> None:
            from qtpy.QtCore import QTimer

            step = steps[len(steps) - self._steps_left]
            self._steps_left -= 1
            try:
                step()
            finally:
                if self._steps_left:
                    QTimer.singleShot(0, run_next)

        run_next()

    @property
    def busy(self) -> bool:
        """A job runs, or its results are still being laid out."""
        return (self._job is not None and self._job.running) or getattr(self, "_steps_left", 0) > 0

    def sigma(self) -> float:
        """The detection smoothing in heatmap cells: the spin box's patch widths on the last run's grid."""
        return float(self.smoothing.value) * self._run.get("cells_per_patch", 1.0)

    def show_detections(self, slide, *, table: bool = True) -> None:
        """Detect on the last run's heatmap at its threshold and the smoothing box's value; show them and the table."""
        from ...inference import detect, measure_lesions

        run = self._run
        threshold = run["card"].threshold if run.get("card") is not None else run["threshold"]
        run["threshold"] = threshold
        self.detections = detect(run["heatmap"], run["downsample"], threshold=threshold, smooth=self.sigma())
        self.lesions = measure_lesions(run["heatmap"], run["downsample"], self.detections, threshold=threshold,
                                       smooth=self.sigma(), mpp=slide.mean_mpp if slide.mpp else None)
        self._add_points(slide, self.detections)
        if table:
            self._fill_table()
            self._show_legend(threshold)

    def _redetect(self, _value=None) -> None:
        """Detections again on the last heatmap at the new smoothing: no patch is predicted again."""
        if "heatmap" not in self._run:
            return
        with slide_of(self._run["image"]) as slide:
            self.show_detections(slide)
        self._report(f"{len(self.detections)} detections at smoothing {self.smoothing.value:g} patches")

    def _display(self, heatmap: np.ndarray, downsample: float) -> np.ndarray:
        """What the heatmap layer shows: the heatmap over the tissue only (see ``tissue_heatmap``)."""
        from ..results import tissue_heatmap

        tissue = self._live.get("tissue")
        return heatmap if tissue is None else tissue_heatmap(heatmap, downsample, tissue.mask, tissue.downsample)

    def _show_heatmap(self, slide, heatmap: np.ndarray, downsample: float) -> None:
        """Draw (or refresh in place) the heatmap layer over the tissue, laid exactly over the slide."""
        from ..results import heatmap_layer_data

        tissue = self._live.get("tissue")
        data, kwargs, _ = heatmap_layer_data(heatmap, slide, downsample, name="Tumor probability", tissue=tissue)
        layer = self.heatmap_layer
        if layer is not None and layer in self._viewer.layers and layer.metadata.get("slide") == slide.path \
                and layer.data.shape == data.shape and layer.metadata.get("downsample") == downsample:
            layer.data = data
            return
        if layer is not None and layer in self._viewer.layers:
            self._viewer.layers.remove(layer)
        self.heatmap_layer = self._viewer.add_image(data, **kwargs)
        # The legend in the dock is the colour bar (with the threshold): no second one in the canvas.

    def load_results(self, folder: str | Path) -> Any:
        """Show a finished run (``lymphmet predict``'s folder) over the chosen slide, detected at this smoothing."""
        from ...model import read_card, resolve_model

        image = self.slide_box.value
        folder = Path(folder)
        try:
            if image is None:
                raise InputError("open a slide first")
            if not (folder / "heatmap.tif").is_file():
                raise InputError(f"{folder}: no heatmap.tif here; choose a folder lymphmet predict wrote")
            from ...inference import read_heatmap

            _, info = read_heatmap(folder / "heatmap.tif")
            model_path, card = None, None
            try:  # the model that made it, when it is at hand: then the corrections loop works too
                model_path = resolve_model(info.get("model") or "")
                card = read_card(model_path)
            except InputError:
                model_path = None
            self._show_folder(image, folder, model_path, card)
        except (InputError, OSError, KeyError, ValueError) as exc:  # a damaged results file
            self._report(f"{folder.name}: cannot load results: {exc}", warning=True)
            return None
        self._report(self._summary(f"loaded {folder.name}"))
        return self.heatmap_layer

    def _add_points(self, slide, detections: np.ndarray) -> None:
        from ..results import detections_layer_data

        if self.points_layer is not None and self.points_layer in self._viewer.layers:
            self._viewer.layers.remove(self.points_layer)
        folder = self._run.get("folder")
        source = str(Path(folder) / "detections.csv") if folder is not None else None  # what Review looks for
        points, kwargs, _ = detections_layer_data(detections, slide, name="Detections", lesions=self.lesions,
                                                  source=source)
        self.points_layer = self._viewer.add_points(points, **kwargs)
        # Marks made in Review detections land in the layer's features: the table shows them.
        self.points_layer.events.features.connect(lambda _event: self._fill_table())
        self.points_layer.bind_key("n", lambda _layer: self.corrections.mark_not_tumor(), overwrite=True)
        self.points_layer.selected_data.events.items_changed.connect(self._points_selected)
