"""Tumor annotations: polygons with a :class:`Label`, ASAP XML and QuPath GeoJSON, rasterization.

Everything is in level-0 pixels; exclusions (``_2``) are cut out of tumor
when rasterized.
"""

from __future__ import annotations

from .asap import ASAP_GROUPS, DOT_RADIUS, GROUP_COLOURS, read_asap_xml, write_asap_xml
from .core import (
    CLASSES,
    EXCLUSION,
    EXCLUSION_GROUPS,
    NORMAL,
    TUMOR,
    TUMOR_GROUPS,
    UNCERTAIN,
    Annotation,
    AnnotationWarning,
    Label,
    check_within,
    polygon_area,
    summarize,
)
from .geojson import QUPATH_CLASSES, read_geojson, write_geojson, write_geojson_points
from .io import GEOJSON_SUFFIXES, XML_SUFFIXES, read_annotations, write_annotations
from .rasterize import fill_polygons, fill_rings, rasterize

__all__ = ["ASAP_GROUPS", "CLASSES", "DOT_RADIUS", "EXCLUSION", "EXCLUSION_GROUPS", "GEOJSON_SUFFIXES", "GROUP_COLOURS",
           "NORMAL", "QUPATH_CLASSES", "TUMOR", "TUMOR_GROUPS", "UNCERTAIN", "XML_SUFFIXES", "Annotation",
           "AnnotationWarning", "Label", "check_within", "fill_polygons", "fill_rings", "polygon_area", "rasterize",
           "read_annotations", "read_asap_xml", "read_geojson", "summarize", "write_annotations", "write_asap_xml",
           "write_geojson", "write_geojson_points"]
