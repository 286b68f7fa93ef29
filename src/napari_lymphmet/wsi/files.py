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


def find_slides(paths: Iterable[str | os.PathLike], *, skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Files given stay as given (a bad one fails later, by name); folders give their slide entries, sorted.

    In a folder, every entry named like a slide counts, whatever it turns
    out to be (a folder called ``x.svs``, a broken link, a symlink loop), so
    it fails later with its reason and gets its row in a cohort's table;
    companions (:func:`is_companion`: masks, heatmaps) are left out;
    annotation files and sidecars never have a slide suffix. Other entries
    that are neither (sub-folders, files of other kinds) are appended to
    ``skipped`` as ``(path, reason)`` when it is given.
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if not item.is_dir():
            found.append(item)
            continue
        for entry in sorted(item.iterdir()):
            if entry.suffix.lower() in SLIDE_SUFFIXES:
                if not is_companion(entry):
                    found.append(entry)
            elif skipped is not None and not entry.name.startswith(".") and not _known_companion(entry):
                skipped.append((entry, "a folder: slides in sub-folders are not searched" if entry.is_dir()
                                else "not a slide file (its suffix is none OpenSlide reads)"))
    return found


# Written or read beside slides: annotations, masks and their sidecars, results; not worth a skip line.
_COMPANION_SUFFIXES = {".xml", ".geojson", ".json", ".png", ".csv", ".html", ".md", ".txt", ".zarr"}


def _known_companion(path: Path) -> bool:
    return path.suffix.lower() in _COMPANION_SUFFIXES or path.name.endswith(".ome.zarr")
