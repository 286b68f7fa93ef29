"""Tumor annotations: polygons in level-0 pixel coordinates, in and out of files.

The model is a list of :class:`Annotation`: an exterior ring, optional
holes, and a class, ``"tumor"`` or ``"exclusion"`` (a region cut out of
tumor, CAMELYON16's group ``_2``).

ASAP XML is the CAMELYON16/17 format: one ``Annotation`` per polygon, its
vertices as ``Coordinate`` elements with float ``X``/``Y`` in level-0 pixels,
grouped by ``PartOfGroup``.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path
from .errors import InputError

__all__ = ["TUMOR", "EXCLUSION", "Annotation", "AnnotationWarning", "check_within", "fill_polygons",
           "fill_rings", "polygon_area", "rasterize", "read_annotations", "read_asap_xml", "read_geojson",
           "summarize", "write_annotations", "write_asap_xml", "write_geojson"]

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


# --- QuPath GeoJSON -------------------------------------------------------

QUPATH_CLASSES = {TUMOR: ("Tumor", [200, 0, 0]), EXCLUSION: ("Exclusion", [0, 180, 0])}
_EXCLUSION_NAMES = EXCLUSION_GROUPS | {"ignore*", "ignore"}


def _ring(coords, path: Path, name: str) -> np.ndarray:
    xy = np.asarray(coords, np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise ValueError("a ring must be a list of [x, y] pairs")
    xy = xy[:, :2]
    if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
        xy = xy[:-1]  # GeoJSON closes rings by repeating the first vertex
    return xy


def _features(data: Any, path: Path) -> list[dict]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return list(data.get("features") or [])
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    if isinstance(data, dict) and data.get("type") in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return [{"type": "Feature", "geometry": data, "properties": {}}]
    raise InputError(f"{path}: not GeoJSON annotations (expected a FeatureCollection, "
                     f"a Feature or a list of Features)")


def _geometry_polygons(geometry: dict) -> list[list]:
    kind = (geometry or {}).get("type")
    if kind == "Polygon":
        return [geometry["coordinates"]]
    if kind == "MultiPolygon":
        return list(geometry["coordinates"])
    if kind == "GeometryCollection":
        return [p for g in geometry.get("geometries", []) for p in _geometry_polygons(g)]
    return []


def read_geojson(path: str | os.PathLike, *, offset: tuple[float, float] = (0.0, 0.0)) -> list[Annotation]:
    """Read QuPath-style GeoJSON annotations.

    ``properties.classification.name`` gives the class: tumor names
    (``Tumor``, ``Metastasis``, ...) are tumor, ``Exclusion``/``Ignore*`` are
    exclusions; anything else warns and counts as tumor. Polygons and
    MultiPolygons are read with their interior rings as holes; other
    geometries are skipped with a warning.

    Parameters
    ----------
    path : str or path-like
    offset : (float, float), optional
        Added to every vertex: the slide's ``(openslide.bounds-x,
        openslide.bounds-y)`` when QuPath saved coordinates relative to the
        scanned area, as it does for some formats (e.g. MRXS).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    shift = np.asarray(offset, np.float64)
    out = []
    for i, feature in enumerate(_features(data, path)):
        props = (feature or {}).get("properties") or {}
        name = str(props.get("name") or feature.get("id") or f"feature {i}")
        classification = props.get("classification") or {}
        class_name = classification.get("name") if isinstance(classification, dict) else None
        if class_name is None:
            warnings.warn(AnnotationWarning(f"{path}: {name}: no classification, read as tumor"), stacklevel=2)
            label = TUMOR
        elif str(class_name).lower() in _EXCLUSION_NAMES:
            label = EXCLUSION
        else:
            label = _group_label(str(class_name), path, name)
        parts = _geometry_polygons(feature.get("geometry") or {})
        if not parts:
            kind = (feature.get("geometry") or {}).get("type")
            warnings.warn(AnnotationWarning(f"{path}: {name}: {kind} geometry is not an area; skipped"),
                          stacklevel=2)
        for rings in parts:
            try:
                exterior, *holes = [_ring(r, path, name) + shift for r in rings]
            except (ValueError, TypeError, IndexError) as exc:
                warnings.warn(AnnotationWarning(f"{path}: {name}: bad coordinates ({exc}); skipped"),
                              stacklevel=2)
                continue
            if len(exterior) < 3 or not np.isfinite(exterior).all():
                warnings.warn(AnnotationWarning(
                    f"{path}: {name}: {len(exterior)} usable vertices, a polygon needs 3; skipped"), stacklevel=2)
                continue
            out.append(Annotation(exterior, label, tuple(h for h in holes if len(h) >= 3), name=name))
    return out


def write_geojson(path: str | os.PathLike, annotations: Sequence[Annotation], *,
                  offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """Write annotations as a QuPath-style GeoJSON FeatureCollection, atomically.

    ``offset`` is subtracted from every vertex (see :func:`read_geojson`).
    """
    shift = np.asarray(offset, np.float64)

    def ring(xy: np.ndarray) -> list:
        xy = np.asarray(xy, np.float64) - shift
        return np.vstack([xy, xy[:1]]).tolist()

    features = []
    for ann in annotations:
        class_name, colour = QUPATH_CLASSES[ann.label]
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid4()),
            "geometry": {"type": "Polygon", "coordinates": [ring(ann.exterior)] + [ring(h) for h in ann.holes]},
            "properties": {"objectType": "annotation", "name": ann.name or None,
                           "classification": {"name": class_name, "color": colour}},
        })
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}) + "\n")


# --- by file extension ----------------------------------------------------

XML_SUFFIXES = (".xml",)
GEOJSON_SUFFIXES = (".geojson", ".json")


def read_annotations(path: str | os.PathLike, *, offset: tuple[float, float] = (0.0, 0.0)) -> list[Annotation]:
    """Read ASAP XML or GeoJSON, chosen by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix in XML_SUFFIXES:
        anns = read_asap_xml(path)
        if any(offset):
            anns = [Annotation(a.exterior + offset, a.label, tuple(h + offset for h in a.holes), a.name)
                    for a in anns]
        return anns
    if suffix in GEOJSON_SUFFIXES:
        return read_geojson(path, offset=offset)
    raise InputError(f"{path}: unknown annotation format; use .xml (ASAP) or .geojson (QuPath)")


def write_annotations(path: str | os.PathLike, annotations: Sequence[Annotation], *,
                      offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """Write ASAP XML or GeoJSON, chosen by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix in XML_SUFFIXES:
        if any(offset):
            annotations = [Annotation(a.exterior - offset, a.label, tuple(h - offset for h in a.holes), a.name)
                           for a in annotations]
        write_asap_xml(path, annotations)
    elif suffix in GEOJSON_SUFFIXES:
        write_geojson(path, annotations, offset=offset)
    else:
        raise InputError(f"{path}: unknown annotation format; use .xml (ASAP) or .geojson (QuPath)")


def check_within(annotations: Sequence[Annotation], dimensions: tuple[int, int], *, source: str,
                 margin: float = 0.05) -> int:
    """Warn about polygons reaching far outside a slide; returns how many.

    "Far" is more than ``margin`` of the slide's long side beyond its edge,
    which usually means the file belongs to another slide, or needs a bounds
    offset.
    """
    w, h = dimensions
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
