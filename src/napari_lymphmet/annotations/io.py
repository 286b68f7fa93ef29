"""Io: split from annotations.py."""


from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .asap import read_asap_xml, write_asap_xml
from .core import Annotation
from ..errors import InputError
from .geojson import read_geojson, write_geojson

__all__ = ['GEOJSON_SUFFIXES', 'XML_SUFFIXES', 'read_annotations', 'write_annotations']


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
