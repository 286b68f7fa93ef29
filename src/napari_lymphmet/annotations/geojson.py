"""QuPath GeoJSON annotations: read with every feature's structure checked, written atomically."""


from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, read_limited, text_limit
from .asap import _group_label
from .core import EXCLUSION, EXCLUSION_GROUPS, MAX_COORDINATE, TUMOR, Annotation, AnnotationWarning, Label
from ..errors import InputError

__all__ = ['QUPATH_CLASSES', 'read_geojson', 'write_geojson', 'write_geojson_points']


# --- QuPath GeoJSON -------------------------------------------------------

QUPATH_CLASSES = {TUMOR: ("Tumor", [200, 0, 0]), EXCLUSION: ("Exclusion", [0, 180, 0])}
_EXCLUSION_NAMES = EXCLUSION_GROUPS | {"ignore*", "ignore"}


# GeometryCollections may nest; GeoJSON advises against it, and nothing drawn by a person nests deeper.
_MAX_NESTING = 8


def _ring(coords: Any, where: str) -> np.ndarray:
    """``(N, 2)`` float vertices of one GeoJSON ring, refused unless it is a list of finite [x, y]."""
    try:
        xy = np.asarray(coords, np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: a ring must be a list of [x, y] number pairs") from None
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise InputError(f"{where}: a ring must be a list of [x, y] number pairs, got shape {xy.shape}")
    xy = xy[:, :2]
    if not np.isfinite(xy).all():
        raise InputError(f"{where}: a vertex is not a finite number (NaN or infinite)")
    if np.abs(xy).max(initial=0) > MAX_COORDINATE:
        raise InputError(f"{where}: a vertex lies at {np.abs(xy).max():.3g} px, beyond any slide "
                         f"(at most {MAX_COORDINATE:.0f})")
    if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
        xy = xy[:-1]  # GeoJSON closes rings by repeating the first vertex
    return xy


def _features(data: Any, path: Path) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if features is None:
            return []
        if not isinstance(features, list):
            raise InputError(f"{path}: 'features' must be a list, got {type(features).__name__}")
        return features
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    if isinstance(data, dict) and data.get("type") in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return [{"type": "Feature", "geometry": data, "properties": {}}]
    raise InputError(f"{path}: not GeoJSON annotations (expected a FeatureCollection, "
                     f"a Feature or a list of Features)")


def _geometry_polygons(geometry: Any, where: str, depth: int = 0) -> tuple[str | None, list]:
    """``(type, polygons)``: each polygon a list of rings as given; refused when the structure is wrong."""
    if geometry is None:
        return None, []
    if not isinstance(geometry, dict):
        raise InputError(f"{where}: geometry must be an object, got {type(geometry).__name__}")
    kind = geometry.get("type")
    if kind not in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return str(kind), []
    if kind == "GeometryCollection":
        if depth >= _MAX_NESTING:
            raise InputError(f"{where}: GeometryCollections nested more than {_MAX_NESTING} deep")
        members = geometry.get("geometries")
        if not isinstance(members, list):
            raise InputError(f"{where}: a GeometryCollection needs a list of 'geometries'")
        return kind, [p for g in members for p in _geometry_polygons(g, where, depth + 1)[1]]
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list):
        raise InputError(f"{where}: a {kind} needs a list of 'coordinates', got "
                         f"{'none' if coordinates is None else type(coordinates).__name__}")
    polygons = [coordinates] if kind == "Polygon" else coordinates
    for polygon in polygons:
        if not isinstance(polygon, list) or not all(isinstance(ring, list) for ring in polygon):
            raise InputError(f"{where}: a polygon must be a list of rings, each a list of [x, y] pairs")
    return kind, polygons


def _feature_name(feature: dict, props: dict, i: int) -> str:
    name = props.get("name") or feature.get("id")
    return f"feature {i} ({str(name)[:80]!r})" if name else f"feature {i}"


def read_geojson(path: str | os.PathLike, *, offset: tuple[float, float] = (0.0, 0.0)) -> list[Annotation]:
    """Read QuPath-style GeoJSON annotations.

    ``properties.classification.name`` gives the class: tumor names
    (``Tumor``, ``Metastasis``, ...) are tumor, ``Exclusion``/``Ignore*`` are
    exclusions; anything else warns and counts as tumor. Polygons and
    MultiPolygons are read with their interior rings as holes; other
    geometries (points, lines) are skipped with a warning.

    Parameters
    ----------
    path : str or path-like
    offset : (float, float), optional
        Added to every vertex: the slide's ``(openslide.bounds-x,
        openslide.bounds-y)`` when QuPath saved coordinates relative to the
        scanned area, as it does for some formats (e.g. MRXS).

    Raises
    ------
    InputError
        The file is missing, not a regular file, too large, not JSON, or a
        feature's structure is wrong (a geometry that is not an object, rings
        that are not lists of number pairs, a NaN vertex); the message names
        the feature.
    """
    path = Path(path)
    text = read_limited(path, text_limit(), what="annotation file")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{path}: not valid JSON (nested too deeply)") from None
    shift = np.asarray(offset, np.float64)
    out = []
    for i, feature in enumerate(_features(data, path)):
        if not isinstance(feature, dict):
            raise InputError(f"{path}: feature {i}: must be an object, got {type(feature).__name__}")
        props = feature.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise InputError(f"{path}: feature {i}: 'properties' must be an object, got {type(props).__name__}")
        name = str(props.get("name") or feature.get("id") or f"feature {i}")
        where = f"{path}: {_feature_name(feature, props, i)}"
        kind, parts = _geometry_polygons(feature.get("geometry"), where)
        polygons = [[_ring(r, where) + shift for r in rings] for rings in parts if rings]  # checked first:
        # a warning about a feature's class is noise in front of the error that refuses the file
        if kind not in ("Polygon", "MultiPolygon", "GeometryCollection"):
            warnings.warn(AnnotationWarning(f"{where}: {kind or 'no'} geometry is not an area; skipped"),
                          stacklevel=2)
            continue
        classification = props.get("classification") or {}
        class_name = classification.get("name") if isinstance(classification, dict) else None
        if class_name is None:
            warnings.warn(AnnotationWarning(f"{where}: no classification, read as tumor"), stacklevel=2)
            label = TUMOR
        elif str(class_name).lower() in _EXCLUSION_NAMES:
            label = EXCLUSION
        else:
            label = _group_label(str(class_name), path, name)
        for exterior, *holes in polygons:
            if len(np.unique(exterior, axis=0)) < 3:
                warnings.warn(AnnotationWarning(
                    f"{where}: a polygon with {len(exterior)} vertices, fewer than 3 distinct; skipped"),
                    stacklevel=2)
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
