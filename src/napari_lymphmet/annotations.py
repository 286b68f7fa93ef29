"""Tumor annotations: polygons in level-0 pixel coordinates, in and out of files.

The model is a list of :class:`Annotation`: an exterior ring, optional
holes, and a class, ``"tumor"`` or ``"exclusion"`` (a region cut out of
tumor, CAMELYON16's group ``_2``).

ASAP XML is the CAMELYON16/17 format: one ``Annotation`` per polygon, its
vertices as ``Coordinate`` elements with float ``X``/``Y`` in level-0 pixels,
grouped by ``PartOfGroup``.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import atomic_path
from .errors import InputError

__all__ = ["TUMOR", "EXCLUSION", "Annotation", "AnnotationWarning", "fill_polygons", "fill_rings", "polygon_area",
           "rasterize", "read_asap_xml", "write_asap_xml"]

TUMOR, EXCLUSION = "tumor", "exclusion"
TUMOR_GROUPS = {"tumor", "_0", "_1", "metastases", "metastasis"}
EXCLUSION_GROUPS = {"_2", "exclusion", "non-tumor", "normal"}
DOT_RADIUS = 25.0  # level-0 px of the disc a Dot annotation becomes
ASAP_GROUPS = {TUMOR: "Tumor", EXCLUSION: "_2"}
GROUP_COLOURS = {"Tumor": "#FF0000", "_0": "#FF0000", "_1": "#FF0000", "metastases": "#FF0000",
                 "_2": "#00FF00"}


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


def _crossings(ring: np.ndarray, height: int, downsample: float) -> tuple[np.ndarray, np.ndarray]:
    """Where a ring's edges cross the centre line ``r + 0.5`` of each mask row."""
    xy = np.asarray(ring, np.float64) / downsample
    if len(xy) < 3:
        return np.empty(0, np.int64), np.empty(0)
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.maximum(np.ceil(lo - 0.5), 0).astype(np.int64)
    last = np.minimum(np.ceil(hi - 0.5), height).astype(np.int64)  # exclusive
    count = np.maximum(last - first, 0)
    edge = np.repeat(np.arange(len(xy)), count)
    r = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + first[edge]
    t = (r + 0.5 - y0[edge]) / (y1[edge] - y0[edge])
    return r, x0[edge] + t * (x1[edge] - x0[edge])


def fill_polygons(polygons: Sequence[Sequence[np.ndarray]], shape: tuple[int, int], *,
                  downsample: float = 1.0) -> np.ndarray:
    """Rasterize the union of polygons, each a list of rings, by scanline.

    Within one polygon the even-odd rule applies, so its holes are passed as
    further rings. A pixel is set when its centre is inside. The cost grows
    with the number of edge crossings, not with the area or the number of
    polygons, so it suits large masks and many polygons.

    Parameters
    ----------
    polygons : sequence of sequences of (N, 2) float ndarray
        Rings of vertices ``(x, y)`` in level-0 pixels; each closes implicitly.
    shape : (H, W) tuple of int
        Mask shape; parts outside are clipped.
    downsample : float, optional
        Level-0 pixels per mask pixel.

    Returns
    -------
    (H, W) bool ndarray
    """
    h, w = shape
    rows, xs, ids = [], [], []
    for i, rings in enumerate(polygons):
        for ring in rings:
            r, x = _crossings(ring, h, downsample)
            rows.append(r)
            xs.append(x)
            ids.append(np.full(len(r), i, np.int64))
    count = np.zeros((h, w + 1), np.int32)
    if rows:
        r, x, g = np.concatenate(rows), np.concatenate(xs), np.concatenate(ids)
        order = np.lexsort((x, r, g))
        r, x = r[order], x[order]
        # Within a polygon and row the crossings pair up: (enter, leave), ...
        start = np.clip(np.ceil(x[0::2] - 0.5), 0, w).astype(np.int64)
        stop = np.clip(np.ceil(x[1::2] - 0.5), 0, w).astype(np.int64)
        np.add.at(count, (r[0::2], start), 1)
        np.add.at(count, (r[1::2], stop), -1)
    return np.cumsum(count[:, :w], axis=1) > 0


def fill_rings(rings: Sequence[np.ndarray], shape: tuple[int, int], *,
               downsample: float = 1.0) -> np.ndarray:
    """Rasterize one polygon given as rings (exterior, then holes), even-odd.

    See :func:`fill_polygons`.
    """
    return fill_polygons([rings], shape, downsample=downsample)


def rasterize(annotations: Sequence[Annotation], shape: tuple[int, int], *,
              downsample: float = 1.0) -> np.ndarray:
    """Tumor mask: tumor polygons minus their holes, minus every exclusion.

    Parameters
    ----------
    annotations : sequence of Annotation
    shape : (H, W) tuple of int
        Mask shape, e.g. the slide's level-0 size divided by ``downsample``;
        polygons are clipped to it.
    downsample : float, optional
        Level-0 pixels per mask pixel.

    Returns
    -------
    (H, W) bool ndarray
        A pixel is tumor when its centre is.
    """
    def fill(label: str) -> np.ndarray:
        return fill_polygons([[a.exterior, *a.holes] for a in annotations if a.label == label],
                             shape, downsample=downsample)

    mask = fill(TUMOR)
    if any(a.label == EXCLUSION for a in annotations):
        mask &= ~fill(EXCLUSION)
    return mask


def _group_label(group: str, path: Path, name: str) -> str:
    key = group.strip().lower()
    if key in TUMOR_GROUPS:
        return TUMOR
    if key in EXCLUSION_GROUPS:
        return EXCLUSION
    warnings.warn(AnnotationWarning(f"{path}: {name}: unknown group {group!r}, read as tumor"),
                  stacklevel=3)
    return TUMOR


def _disc(x: float, y: float, radius: float, n: int = 16) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([x + radius * np.cos(t), y + radius * np.sin(t)])


def read_asap_xml(path: str | os.PathLike) -> list[Annotation]:
    """Read a CAMELYON16/17 ASAP XML file.

    Groups ``Tumor``, ``_0``, ``_1`` and ``metastases`` are tumor, ``_2`` is
    an exclusion; others warn and count as tumor. ``Polygon``, ``Spline``
    (its control points, as a polygon), ``Rectangle`` and ``Dot`` (a disc of
    ``DOT_RADIUS`` px, with a warning) are understood.

    Raises
    ------
    InputError
        The file is missing, not XML, or not ASAP annotations. A single bad
        annotation (too few vertices, bad numbers) is skipped with an
        :class:`AnnotationWarning` naming it instead.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except ET.ParseError as exc:
        raise InputError(f"{path}: not valid XML ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if root.tag != "ASAP_Annotations":
        raise InputError(f"{path}: not an ASAP annotation file (root element <{root.tag}>)")
    out = []
    for i, node in enumerate(root.iter("Annotation")):
        name = node.get("Name") or f"Annotation {i}"
        kind = (node.get("Type") or "Polygon").lower()
        try:
            coords = sorted(((int(float(c.get("Order", k))), float(c.get("X")), float(c.get("Y")))
                             for k, c in enumerate(node.iter("Coordinate"))), key=lambda t: t[0])
        except (TypeError, ValueError):
            warnings.warn(AnnotationWarning(f"{path}: {name}: a coordinate is not a number; skipped"),
                          stacklevel=2)
            continue
        xy = np.array([(x, y) for _, x, y in coords], np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            warnings.warn(AnnotationWarning(f"{path}: {name}: non-finite coordinates; skipped"), stacklevel=2)
            continue
        if kind == "dot" or (kind == "pointset" and len(xy) < 3):
            if not len(xy):
                continue
            warnings.warn(AnnotationWarning(
                f"{path}: {name}: a dot, read as a disc of radius {DOT_RADIUS:g} px"), stacklevel=2)
            polys = [_disc(x, y, DOT_RADIUS) for x, y in xy]
        elif kind == "rectangle" and len(xy) == 2:
            (x0, y0), (x1, y1) = xy
            polys = [np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)]
        else:
            polys = [xy]
        label = _group_label(node.get("PartOfGroup") or "", path, name)
        for poly in polys:
            if len(poly) < 3:
                warnings.warn(AnnotationWarning(
                    f"{path}: {name}: {len(poly)} vertices, a polygon needs 3; skipped"), stacklevel=2)
                continue
            out.append(Annotation(poly, label, name=name))
    return out


def write_asap_xml(path: str | os.PathLike, annotations: Sequence[Annotation | np.ndarray], *,
                   group: str | None = None) -> None:
    """Write annotations as an ASAP XML file that CAMELYON tools read, atomically.

    Tumor goes to group ``Tumor`` and exclusions to ``_2``; a polygon's holes
    are written as ``_2`` polygons, the only way ASAP has to cut them out.

    Parameters
    ----------
    path : str or path-like
    annotations : sequence of Annotation or (N, 2) float ndarray
        Bare vertex arrays ``(x, y)`` in level-0 pixels are tumor.
    group : str, optional
        Put every tumor polygon in this group instead of ``Tumor``.
    """
    rows = []
    for ann in annotations:
        if not isinstance(ann, Annotation):
            ann = Annotation(np.asarray(ann, np.float64))
        tumor_group = group or ASAP_GROUPS[TUMOR]
        rows.append((ann.exterior, tumor_group if ann.label == TUMOR else ASAP_GROUPS[EXCLUSION]))
        rows += [(hole, ASAP_GROUPS[EXCLUSION]) for hole in ann.holes]
    root = ET.Element("ASAP_Annotations")
    annotations_node = ET.SubElement(root, "Annotations")
    for i, (xy, part) in enumerate(rows):
        ann = ET.SubElement(annotations_node, "Annotation", Name=f"Annotation {i}", Type="Polygon",
                            PartOfGroup=part, Color="#F4FA58")
        coords = ET.SubElement(ann, "Coordinates")
        for order, (x, y) in enumerate(np.asarray(xy, float)):
            ET.SubElement(coords, "Coordinate", Order=str(order), X=repr(float(x)), Y=repr(float(y)))
    groups = ET.SubElement(root, "AnnotationGroups")
    for part in dict.fromkeys(p for _, p in rows):
        g = ET.SubElement(groups, "Group", Name=part, PartOfGroup="None",
                          Color=GROUP_COLOURS.get(part, "#64FE2E"))
        ET.SubElement(g, "Attributes")
    ET.indent(root)
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
