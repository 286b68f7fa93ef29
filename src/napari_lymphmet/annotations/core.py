"""Annotations in level-0 pixel coordinates, and the one list of class labels.

The model is a list of :class:`Annotation`: an exterior ring, optional
holes, and a :class:`Label`, ``tumor`` or ``exclusion`` (a region cut out
of tumor, CAMELYON16's group ``_2``). Patches and models use the same
labels: ``tumor``, ``normal``, and ``uncertain`` for patches too close to
call."""


from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from ..errors import InputError

__all__ = ["CLASSES", "EXCLUSION", "EXCLUSION_GROUPS", "MAX_COORDINATE", "NORMAL", "TUMOR", "TUMOR_GROUPS",
           "UNCERTAIN", "Annotation", "AnnotationWarning", "Label", "check_within", "polygon_area", "summarize"]

# Slides are at most a few hundred thousand px across; ASAP and QuPath store 32-bit coordinates. A vertex
# beyond this is no outline of a slide, and squaring it (areas, moments) overflows.
MAX_COORDINATE = 2.0**31



class Label(str, Enum):  # noqa: UP042 (StrEnum is 3.11+; we support 3.10)
    """A class label. Members are strings (``Label.TUMOR == "tumor"``), so files and arrays hold plain text."""

    TUMOR = "tumor"
    NORMAL = "normal"
    EXCLUSION = "exclusion"  # an annotation cut out of tumor
    UNCERTAIN = "uncertain"  # a patch neither clearly tumor nor clearly normal

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


TUMOR, NORMAL, EXCLUSION, UNCERTAIN = Label.TUMOR, Label.NORMAL, Label.EXCLUSION, Label.UNCERTAIN
CLASSES = (Label.NORMAL, Label.TUMOR)  # a model's output index -> label; index 1 is the tumor score
TUMOR_GROUPS = {"tumor", "_0", "_1", "metastases", "metastasis"}
EXCLUSION_GROUPS = {"_2", "exclusion", "non-tumor", "normal"}


class AnnotationWarning(UserWarning):
    """An annotation was read, but not quite as written (unknown group, dot, ...)."""


@dataclass(frozen=True)
class Annotation:
    """One polygon in level-0 pixels.

    Attributes
    ----------
    exterior : (N, 2) float64 ndarray
        Vertices ``(x, y)``; the ring closes implicitly.
    label : {"tumor", "exclusion"}
    holes : tuple of (M, 2) float64 ndarray
        Interior rings, cut out of this polygon.
    name : str
    """

    exterior: np.ndarray
    label: str = TUMOR
    holes: tuple[np.ndarray, ...] = field(default=())
    name: str = ""

    @property
    def area(self) -> float:
        """Area in level-0 px², holes subtracted."""
        return polygon_area(self.exterior) - sum(polygon_area(h) for h in self.holes)

    @property
    def n_vertices(self) -> int:
        return len(self.exterior) + sum(len(h) for h in self.holes)


def polygon_area(xy: np.ndarray) -> float:
    """Area of a simple polygon by the shoelace formula.

    Parameters
    ----------
    xy : (N, 2) float ndarray
        Vertices ``(x, y)``.
    """
    x, y = np.asarray(xy, float).T
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def check_within(annotations: Sequence[Annotation], dimensions: tuple[int, int], *, source: str,
                 margin: float = 0.05) -> int:
    """Warn about polygons reaching far outside a slide; returns how many.

    Raises :class:`InputError` when no polygon overlaps the slide at all:
    then every patch would be labelled normal without a word.

    "Far" is more than ``margin`` of the slide's long side beyond its edge,
    which usually means the file belongs to another slide, or needs a bounds
    offset.
    """
    w, h = dimensions
    if annotations and not any(_overlaps(ann.exterior, w, h) for ann in annotations):
        ext = np.concatenate([ann.exterior for ann in annotations])
        raise InputError(f"{source}: none of its {len(annotations)} polygons lies on the slide ({w} × {h} px; "
                         f"they span x {ext[:, 0].min():.0f}..{ext[:, 0].max():.0f}, y {ext[:, 1].min():.0f}.."
                         f"{ext[:, 1].max():.0f}): annotations of another slide, or in another coordinate frame")
    slack = margin * max(w, h)
    bad = 0
    for ann in annotations:
        x, y = ann.exterior[:, 0], ann.exterior[:, 1]
        if x.min() < -slack or y.min() < -slack or x.max() > w + slack or y.max() > h + slack:
            bad += 1
            warnings.warn(AnnotationWarning(
                f"{source}: {ann.name or 'a polygon'}: reaches ({x.min():.0f}..{x.max():.0f}, "
                f"{y.min():.0f}..{y.max():.0f}), far outside the {w} × {h} slide; it is clipped"), stacklevel=2)
    return bad


def _overlaps(xy: np.ndarray, w: int, h: int) -> bool:
    return bool(xy[:, 0].max() > 0 and xy[:, 0].min() < w and xy[:, 1].max() > 0 and xy[:, 1].min() < h)


def summarize(annotations: Sequence[Annotation], mpp: tuple[float, float] | None) -> dict:
    """Polygon counts per class and the tumor area (µm² when mpp is known, else px²)."""
    counts = {TUMOR: 0, EXCLUSION: 0}
    for ann in annotations:
        counts[ann.label] = counts.get(ann.label, 0) + 1
    tumor_px = sum(a.area for a in annotations if a.label == TUMOR)
    excluded_px = sum(a.area for a in annotations if a.label == EXCLUSION)
    area = max(tumor_px - excluded_px, 0.0)
    out = {"polygons": counts, "vertices": int(sum(a.n_vertices for a in annotations))}
    if mpp:
        out["tumor_area_um2"] = round(area * mpp[0] * mpp[1], 1)
    else:
        out["tumor_area_px2"] = round(area, 1)
    return out
