"""*Review detections*: step through a slide's detections, mark each tumor (T) or not tumor (N).

A thin shell over :class:`napari_lymphmet.workflows.Review`: it finds the
slide's results (the last *Detect metastases* run, or a dropped predictions
folder), zooms to each detection at a readable magnification, and shows
the node's category as the marks change it. Marks are saved as they are
made (``review.json``, ``corrections.geojson`` in the results folder), so
closing and reopening resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, Label, PushButton
from napari.viewer import Viewer

from ...errors import InputError
from ...workflows.review import Review
from ._common import PluginWidget, camera_of, slide_of
from .detect import run_folder_for

__all__ = ["ReviewWidget"]


class ReviewWidget(PluginWidget):
    """Review one slide's detections, largest (or most probable) first."""

    def __init__(self, napari_viewer: Viewer) -> None:
        self._viewer = napari_viewer
        self.review: Review | None = None
        self.slide_box = ComboBox(label="slide", choices=self._slide_choices)
        self.slide_box.tooltip = "the slide whose detections to review"
        self.folder = FileEdit(label="results folder", mode="d")
        self.folder.tooltip = ("where its results are (lymphmet predict's folder); found for you after Detect "
                               "metastases, or when a results folder was dropped on the viewer")
        self.order = ComboBox(label="order", choices=[("largest first", "size"), ("most probable first",
                                                                                  "confidence")], value="size")
        self.start_button = PushButton(text="Start review")
        self.start_button.tooltip = "load the detections (a review begun before resumes where it stopped)"
        self.previous_button = PushButton(text="◀ Previous")
        self.next_button = PushButton(text="Next ▶")
        self.tumor_button = PushButton(text="Tumor (T)")
        self.tumor_button.tooltip = "this detection is tumor: kept, and its region becomes a tumor correction"
        self.not_tumor_button = PushButton(text="Not tumor (N)")
        self.not_tumor_button.tooltip = ("this detection is not tumor: it no longer counts for the node's "
                                         "category, and its region becomes a not-tumor correction for finetune")
        self.current = Label(value="")
        self.category_label = Label(value="")
        self.status = Label(value="")
        for label in (self.current, self.category_label, self.status):
            label.native.setWordWrap(True)
            label.native.setMinimumWidth(260)  # a line of words, not a column of letters
        super().__init__(widgets=[self.slide_box, self.folder, self.order, self.start_button,
                                  self.previous_button, self.next_button, self.tumor_button, self.not_tumor_button,
                                  self.current, self.category_label, self.status])
        self.start_button.changed.connect(lambda: self.start())
        self.previous_button.changed.connect(lambda: self.step(-1))
        self.next_button.changed.connect(lambda: self.step(1))
        self.tumor_button.changed.connect(lambda: self.mark("tumor"))
        self.not_tumor_button.changed.connect(lambda: self.mark("not tumor"))
        self.order.changed.connect(self._reorder)
        self.slide_box.changed.connect(self._suggest_folder)
        self._follow_layers(self.slide_box)
        self._suggest_folder()
        self._enable(False)

    # -- finding the results --------------------------------------------------------------------
    def _suggest_folder(self, _value: Any = None) -> None:
        found = self.results_folder(self.slide_box.value)
        if found is not None:
            self.folder.value = found

    def results_folder(self, image: Any) -> Path | None:
        """The slide's results: a dropped predictions folder on screen, else its last Detect run."""
        if image is None:
            return None
        path = str(image.metadata.get("path", ""))
        for layer in self._viewer.layers:
            source = layer.metadata.get("source") if isinstance(layer.metadata, dict) else None
            if layer.metadata.get("kind") == "detections" and source and _results_of(Path(source).parent) == path:
                return Path(source).parent
        folder = run_folder_for(path)
        return folder if _results_of(folder) == path else None

    # -- the review -----------------------------------------------------------------------------
    def start(self) -> Review | None:
        """Load (or resume) the review of the chosen folder and go to its current detection."""
        try:
            if self.slide_box.value is None:
                raise InputError("open a slide first")
            folder = Path(str(self.folder.value))
            self.review = Review.open(folder, order=self.order.value)
        except InputError as exc:
            self._warn(str(exc))
            return None
        self._viewer.bind_key("t", lambda _viewer: self.mark("tumor"), overwrite=True)
        self._viewer.bind_key("n", lambda _viewer: self.mark("not tumor"), overwrite=True)
        self._enable(bool(self.review.items))
        if self.order.value != self.review.order:  # resumed in the order it was left in
            self.order.value = self.review.order
        self._publish()
        self._show()
        return self.review

    def step(self, by: int) -> None:
        if self.review is not None:
            self.review.step(by)
            self._show()

    def mark(self, label: str) -> None:
        if self.review is None or self.review.current is None:
            return
        rank = self.review.current.rank
        try:
            self.review.mark(label)
        except (InputError, OSError) as exc:
            self._warn(str(exc))
            return
        self._report(f"detection {rank}: {label} (saved)")
        self._publish()
        self._show()

    def _publish(self) -> None:
        """The marks onto every Detections layer of this folder: a dropped folder's, Detect's own table."""
        from ..results import show_review_marks

        for layer in self.detections_layers():
            show_review_marks(layer, self.review)

    def detections_layers(self) -> list:
        """The viewer's Detections layers of the folder under review."""
        if self.review is None:
            return []
        found = []
        for layer in self._viewer.layers:
            meta = layer.metadata if isinstance(layer.metadata, dict) else {}
            source = meta.get("source")
            if meta.get("kind") == "detections" and source and Path(source).parent == self.review.folder:
                found.append(layer)
        return found

    def _reorder(self, _value: Any = None) -> None:
        if self.review is not None and self.order.value != self.review.order:
            self.review.sort(self.order.value)
            self._show()

    def _enable(self, on: bool) -> None:
        for button in (self.previous_button, self.next_button, self.tumor_button, self.not_tumor_button):
            button.enabled = on

    def _show(self) -> None:
        """The current detection in words, the node's category, and the canvas on it."""
        review = self.review
        item = review.current if review is not None else None
        if review is None or item is None:
            self.current.value = "no detections on this slide" if review is not None else ""
            self.category_label.value = f"node: {review.category}" if review is not None else ""
            return
        size = f"{item.major_axis_mm:.2f} mm {item.category}" if item.major_axis_mm is not None else "size unknown"
        mark = review.marks.get(item.rank, "unmarked")
        self.current.value = f"{review.position + 1} of {len(review.items)}: p {item.confidence:.2f}, {size}; {mark}"
        gated = "" if review.gate_passed else "; under the node gate, only detections marked tumor count"
        self.category_label.value = (f"node: {review.category} ({review.reviewed}/{len(review.items)} reviewed"
                                     f"{gated})")
        self._go_to(item.x, item.y, item.major_axis_mm)

    def _go_to(self, x: float, y: float, major_axis_mm: float | None) -> None:
        image = self.slide_box.value
        if image is None:
            return
        world = image.data_to_world(np.array([y, x]) - 0.5)  # level-0 px to the layer's µm
        camera = camera_of(self._viewer)
        camera.center = tuple(world)
        with slide_of(image) as slide:
            # The lesion and as much again around it on each side, at least 0.3 mm across: its edge and
            # the tissue it sits in. A canvas is about 600 screen px; the layer's world unit is the µm.
            field_um = max(300.0, 3000.0 * (major_axis_mm or 0.0))
            camera.zoom = 600.0 / field_um if slide.mpp else 0.25


def _results_of(folder: Path) -> str | None:
    """The slide a predictions folder is of, when it holds what a review needs."""
    info = folder / "heatmap.json"
    if not info.is_file() or not (folder / "lesions.csv").is_file():
        return None
    try:
        return str(json.loads(info.read_text()).get("slide"))
    except (OSError, ValueError):
        return None
