"""Asap: split from annotations.py."""


from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_path, read_limited, text_limit
from .core import EXCLUSION, EXCLUSION_GROUPS, MAX_COORDINATE, TUMOR, TUMOR_GROUPS, Annotation, AnnotationWarning
from ..errors import InputError

__all__ = ['ASAP_GROUPS', 'DOT_RADIUS', 'GROUP_COLOURS', 'read_asap_xml', 'write_asap_xml']
DOT_RADIUS = 25.0  # level-0 px of the disc a Dot annotation becomes
ASAP_GROUPS = {TUMOR: "Tumor", EXCLUSION: "_2"}
GROUP_COLOURS = {"Tumor": "#FF0000", "_0": "#FF0000", "_1": "#FF0000", "metastases": "#FF0000",
                 "_2": "#00FF00"}


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
    text = read_limited(path, text_limit(), what="annotation file")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"{path}: not valid XML ({exc})") from None
    except RecursionError:
        raise InputError(f"{path}: not valid XML (nested too deeply)") from None
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
        if not np.isfinite(xy).all() or np.abs(xy).max(initial=0) > MAX_COORDINATE:
            warnings.warn(AnnotationWarning(f"{path}: {name}: coordinates that are not finite or lie beyond any "
                                            "slide; skipped"), stacklevel=2)
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


def _distinct_vertices(xy: np.ndarray) -> np.ndarray:
    """A ring as ASAP writes it: each vertex once, no repeat of a vertex in a row, the ring left open.

    A polygon drawn in napari starts with its first click twice.
    """
    xy = np.asarray(xy, float)
    keep = np.ones(len(xy), bool)
    keep[1:] = np.any(np.diff(xy, axis=0) != 0, axis=1)
    xy = xy[keep]
    if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
        xy = xy[:-1]
    return xy


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
                            PartOfGroup=part, Color=GROUP_COLOURS.get(part, "#F4FA58"))
        coords = ET.SubElement(ann, "Coordinates")
        for order, (x, y) in enumerate(_distinct_vertices(xy)):
            ET.SubElement(coords, "Coordinate", Order=str(order), X=repr(float(x)), Y=repr(float(y)))
    groups = ET.SubElement(root, "AnnotationGroups")
    for part in dict.fromkeys(p for _, p in rows):
        g = ET.SubElement(groups, "Group", Name=part, PartOfGroup="None",
                          Color=GROUP_COLOURS.get(part, "#64FE2E"))
        ET.SubElement(g, "Attributes")
    ET.indent(root)
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
