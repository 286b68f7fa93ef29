"""Geojson: split from annotations.py."""


from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path
from .asap import _group_label
from .core import EXCLUSION, EXCLUSION_GROUPS, TUMOR, Annotation, AnnotationWarning, Label
from ..errors import InputError

__all__ = ['QUPATH_CLASSES', 'read_geojson', 'write_geojson', 'write_geojson_points']


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
                  offset: tuple[float, float] = (0.0, 0.0), properties: Sequence[dict] | None = None) -> None:
    """Write annotations as a QuPath-style GeoJSON FeatureCollection, atomically.

    ``offset`` is subtracted from every vertex (see :func:`read_geojson`).
    ``properties``, one dict per annotation, are added to each feature's
    properties (and to QuPath's ``measurements`` where they are numbers).
    """
    shift = np.asarray(offset, np.float64)

    def ring(xy: np.ndarray) -> list:
        xy = np.asarray(xy, np.float64) - shift
        return np.vstack([xy, xy[:1]]).tolist()

    features = []
    for i, ann in enumerate(annotations):
        class_name, colour = QUPATH_CLASSES[ann.label]
        extra = dict(properties[i]) if properties is not None else {}
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid4()),
            "geometry": {"type": "Polygon", "coordinates": [ring(ann.exterior)] + [ring(h) for h in ann.holes]},
            "properties": {"objectType": "annotation", "name": ann.name or None,
                           "classification": {"name": class_name, "color": colour}, **_with_measurements(extra)},
        })
    _write_collection(path, features)


def write_geojson_points(path: str | os.PathLike, points: np.ndarray, *, measurements: dict[str, np.ndarray],
                         object_type: str = "detection", label: Label = TUMOR,
                         offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """Write ``(N, 2)`` points ``(x, y)`` as QuPath Point features, atomically.

    ``measurements`` maps a name to ``N`` numbers (e.g. ``probability``);
    each goes into the feature's ``properties.measurements`` as QuPath
    stores measurements, and into ``properties`` itself.
    """
    class_name, colour = QUPATH_CLASSES[label]
    shift = np.asarray(offset, np.float64)
    features = []
    for i, (x, y) in enumerate(np.asarray(points, np.float64).reshape(-1, 2) - shift):
        values = {name: float(v[i]) for name, v in measurements.items()}
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid4()),
            "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
            "properties": {"objectType": object_type, "name": f"{class_name} {i + 1}",
                           "classification": {"name": class_name, "color": colour},
                           **_with_measurements(values)},
        })
    _write_collection(path, features)


def _with_measurements(values: dict) -> dict:
    numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**values, "measurements": numbers} if numbers else values


def _write_collection(path: str | os.PathLike, features: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": features}) + "\n")
