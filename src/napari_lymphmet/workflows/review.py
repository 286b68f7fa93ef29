"""A pathologist's review of one slide's detections: step through them, mark each tumor or not tumor.

:class:`Review` works without a GUI (the *Review detections* widget wraps
it). It reads a ``lymphmet predict`` folder (``lesions.csv``, the heatmap),
keeps the marks in ``review.json`` there (so reopening resumes), and writes
them as ``corrections.geojson``: each marked detection's region above the
threshold, a cell wider, as *tumor* or *not tumor* (``Exclusion``), which
``lymphmet finetune --corrections`` and the Corrections panel take as they
are. The node's category follows the marks: a detection marked not tumor no
longer counts, and one marked tumor counts even on a node the node gate
called negative (its slide score no higher than tumor-free nodes reach;
:func:`~napari_lymphmet.inference.lesion_calibration.node_gate`), where
the unmarked ones do not.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..annotations import EXCLUSION, TUMOR, Annotation, write_geojson
from ..errors import InputError
from ..inference.staging import lesion_category, node_category
from ..io import atomic_path

__all__ = ["MARKS", "REVIEW_ORDERS", "Review", "ReviewItem"]

MARKS = ("tumor", "not tumor")
REVIEW_ORDERS = ("size", "confidence")


@dataclass(frozen=True)
class ReviewItem:
    """One detection as ``lesions.csv`` lists it (level-0 px; sizes ``None`` without an mpp)."""

    rank: int
    confidence: float
    x: float
    y: float
    major_axis_mm: float | None

    @property
    def category(self) -> str:
        return lesion_category(self.major_axis_mm)


@dataclass
class Review:
    """The review of one predictions folder. Mutable: :meth:`mark` and the position change it.

    Attributes
    ----------
    folder : Path
    slide : str
        The slide the predictions are of (``heatmap.json``'s).
    items : list of ReviewItem
        In review order (:meth:`sort`).
    marks : dict of int to str
        Detection rank to ``"tumor"`` or ``"not tumor"``.
    position : int
        Index into ``items`` of the detection under review.
    """

    folder: Path
    slide: str
    items: list[ReviewItem]
    marks: dict[int, str] = field(default_factory=dict)
    position: int = 0
    order: str = "size"
    cell: float = 1.0  # level-0 px of a heatmap cell: how far apart two detections may be and still be one
    gate_passed: bool = True  # the node gate let the slide's unmarked detections count (heatmap.json's node_gate)
    # Each mark's outline, and the heatmap they are drawn from (read on the first mark).
    _outlines: dict = field(default_factory=dict, init=False, repr=False)
    _heatmap: tuple | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, folder: str | os.PathLike, *, order: str = "size") -> Review:
        """The review of ``folder``, resumed from its ``review.json`` when there is one.

        Raises
        ------
        InputError
            Not a predictions folder, or its ``lesions.csv`` is damaged.
        """
        folder = Path(folder)
        info_path, table = folder / "heatmap.json", folder / "lesions.csv"
        if not info_path.is_file() or not table.is_file():
            raise InputError(f"{folder}: no heatmap.json and lesions.csv here; choose a folder lymphmet predict "
                             "(or Detect metastases) wrote")
        info = json.loads(info_path.read_text())
        try:
            with open(table, newline="") as f:
                items = [ReviewItem(int(row["rank"]), float(row["confidence"]), float(row["x"]), float(row["y"]),
                                    float(row["major_axis_mm"]) if row.get("major_axis_mm") else None)
                         for row in csv.DictReader(f)]
        except (KeyError, ValueError) as exc:
            raise InputError(f"{table}: not a lesions.csv of lymphmet predict ({exc})") from None
        gate = info.get("node_gate") if isinstance(info.get("node_gate"), dict) else {}
        review = cls(folder, str(info.get("slide", "")), items, cell=float(info.get("downsample", 1.0)),
                     gate_passed=bool(gate.get("passed", True)))
        saved = folder / "review.json"
        if saved.is_file():
            state = json.loads(saved.read_text())
            review.marks = {int(k): v for k, v in state.get("marks", {}).items() if v in MARKS}
            order = state.get("order", order)
            review.sort(order)
            review.position = min(max(int(state.get("position", 0)), 0), max(len(items) - 1, 0))
        else:
            review.sort(order)
        return review

    # -- moving ---------------------------------------------------------------------------------
    def sort(self, order: str) -> None:
        """Review the largest first (``"size"``; unmeasured last) or the most probable first (``"confidence"``)."""
        if order not in REVIEW_ORDERS:
            raise ValueError(f"order must be one of {REVIEW_ORDERS}, got {order!r}")
        current = self.current
        if order == "size":
            self.items.sort(key=lambda i: (i.major_axis_mm is None, -(i.major_axis_mm or 0.0), i.rank))
        else:
            self.items.sort(key=lambda i: (-i.confidence, i.rank))
        self.order = order
        self.position = self.items.index(current) if current is not None else 0

    @property
    def current(self) -> ReviewItem | None:
        return self.items[self.position] if self.items else None

    def step(self, by: int) -> ReviewItem | None:
        """Move ``by`` detections (clamped at either end); the detection now under review."""
        if self.items:
            self.position = min(max(self.position + by, 0), len(self.items) - 1)
        return self.current

    # -- marking --------------------------------------------------------------------------------
    def mark(self, label: str, *, outline=None) -> None:
        """Mark the current detection ``"tumor"`` or ``"not tumor"``, save, and move to the next unmarked one.

        ``outline`` (``(N, 2)`` level-0 ``(x, y)``) is the region the mark
        covers; by default the detection's region above the threshold.
        """
        if label not in MARKS:
            raise ValueError(f"mark must be one of {MARKS}, got {label!r}")
        item = self.current
        if item is None:
            raise InputError("no detection to mark: this slide has none")
        self.marks[item.rank] = label
        self._outlines[item.rank] = outline if outline is not None else self._region(item)
        self.save()
        later = [i for i in range(len(self.items)) if self.items[i].rank not in self.marks]
        after = [i for i in later if i > self.position]
        if after or later:
            self.position = (after or later)[0]

    def marks_at(self, xy) -> list[str]:
        """The mark of the detection at each level-0 ``(x, y)``, ``""`` where there is none.

        For the same detections shown elsewhere (the Detect widget's table,
        a dropped folder's Detections layer): matched by position, within a
        heatmap cell, as their ranks may differ (another smoothing).
        """
        out = []
        for x, y in xy:
            near = [i for i in self.items if abs(i.x - x) <= self.cell and abs(i.y - y) <= self.cell]
            best = min(near, key=lambda i: (i.x - x) ** 2 + (i.y - y) ** 2) if near else None
            out.append(self.marks.get(best.rank, "") if best is not None else "")
        return out

    @property
    def reviewed(self) -> int:
        return sum(item.rank in self.marks for item in self.items)

    @property
    def category(self) -> str:
        """The node's category from the detections marked tumor and, where the node gate passed, those not yet seen."""
        def counts(item: ReviewItem) -> bool:
            mark = self.marks.get(item.rank)
            return mark == "tumor" or (mark is None and self.gate_passed)

        return node_category(i.major_axis_mm for i in self.items if counts(i))

    # -- files ----------------------------------------------------------------------------------
    @property
    def corrections_path(self) -> Path:
        return self.folder / "corrections.geojson"

    def save(self) -> None:
        """``review.json`` (marks, order, position) and ``corrections.geojson`` (the marks' outlines), atomically."""
        state = {"slide": self.slide, "order": self.order, "position": self.position,
                 "marks": {str(rank): label for rank, label in sorted(self.marks.items())},
                 "category": self.category}
        with atomic_path(self.folder / "review.json") as tmp:
            tmp.write_text(json.dumps(state, indent=2) + "\n")
        by_rank = {item.rank: item for item in self.items}
        annotations = [Annotation(self._outlines[rank] if rank in self._outlines else self._region(by_rank[rank]),
                                  TUMOR if label == "tumor" else EXCLUSION, name=f"detection {rank}")
                       for rank, label in sorted(self.marks.items()) if rank in by_rank]
        write_geojson(self.corrections_path, annotations)

    def _region(self, item: ReviewItem):
        """The detection's region above the threshold on the heatmap, a cell wider: what the mark covers."""
        from ..inference import read_heatmap, region_around

        if self._heatmap is None:
            heatmap, info = read_heatmap(self.folder / "heatmap.tif")
            self._heatmap = (heatmap, float(info["downsample"]), float(info.get("threshold", 0.5)))
        heatmap, downsample, threshold = self._heatmap
        return region_around(heatmap, downsample, item.x, item.y, threshold=threshold)
