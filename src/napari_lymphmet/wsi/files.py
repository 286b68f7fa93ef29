"""Which files in a folder are slides: by suffix, leaving out the companions written beside them."""


from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SLIDE_SUFFIXES", "find_slides", "is_companion"]

# What OpenSlide opens (and DICOM), lower case.
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm")
_RESULT_NAMES = {"heatmap.tif", "heatmap.tiff"}


def is_companion(path: Path) -> bool:
    """A file written beside slides that is not one: a mask with its ``.json`` sidecar, a heatmap, a hidden file."""
    return (path.name.startswith(".") or path.name.lower() in _RESULT_NAMES
            or path.with_name(path.name + ".json").exists())


def find_slides(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files given stay as given (a bad one fails later, by name); folders give their slide files, sorted.

    In a folder, only names with a slide suffix count, and companions
    (:func:`is_companion`: masks, heatmaps) are left out; annotation files
    (``.xml``, ``.geojson``) and sidecars never have a slide suffix.
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found += sorted(p for p in item.iterdir()
                            if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES and not is_companion(p))
        else:
            found.append(item)
    return found
