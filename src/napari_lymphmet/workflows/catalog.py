"""A folder of slides as a list a pathologist can sort: names and scores at once, pictures later.

:func:`list_slides` opens no slide: it finds the slide files and reads each
one's ``heatmap.json`` (a few hundred bytes) when predictions exist, so a
folder of hundreds lists at once. :func:`slide_facts` opens one slide for
its mpp, size and thumbnail, and is cached, for the widget to call in the
background row by row.
"""


from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["MASK_BESIDE", "SlideEntry", "SlideFacts", "companions", "list_slides", "results_for", "slide_facts",
           "with_results"]

MASK_BESIDE = ("_tissue.png", "_mask.png", "_tissue.tif")  # masks saved next to their slide


@dataclass(frozen=True)
class SlideEntry:
    """One slide of a folder, and its predictions when they exist."""

    path: Path
    name: str
    results: Path | None = None
    slide_score: float | None = None
    detections: int | None = None
    category: str | None = None  # the node's, from its largest metastasis (CAMELYON17); None: not predicted


@dataclass(frozen=True)
class SlideFacts:
    """What opening a slide tells: mpp (mean, µm/px), level-0 ``(width, height)``, an RGB thumbnail."""

    mpp: float | None
    dimensions: tuple[int, int]
    thumbnail: np.ndarray


def results_for(slide: Path, predictions: Path | None) -> Path | None:
    """The predictions folder of ``slide`` under ``predictions``: ``<stem>/`` or the folder itself."""
    if predictions is None:
        return None
    for folder in (predictions / slide.stem, predictions):
        info = folder / "heatmap.json"
        if info.is_file() and (folder / "heatmap.tif").is_file():
            try:
                named = json.loads(info.read_text()).get("slide")
            except (OSError, ValueError):
                continue
            if named and Path(named).stem == slide.stem:
                return folder
    return None


def with_results(entry: SlideEntry, folder: Path | None) -> SlideEntry:
    """``entry`` with the score and detection count of the predictions in ``folder``."""
    if folder is None:
        return replace(entry, results=None, slide_score=None, detections=None, category=None)
    info = json.loads((folder / "heatmap.json").read_text())
    score = info.get("slide_score")
    if score is None:  # written before heatmap.json carried the score
        from ..inference import read_heatmap, slide_score

        score = slide_score(read_heatmap(folder / "heatmap.tif")[0])
    detections = info.get("detections")
    if detections is None and (folder / "detections.csv").is_file():
        detections = sum(1 for line in (folder / "detections.csv").read_text().splitlines() if line.strip())
    return replace(entry, results=folder, slide_score=float(score), detections=detections,
                   category=info.get("category"))  # absent from results written before categories


def list_slides(folder: str | os.PathLike, predictions: str | os.PathLike | None = None) -> list[SlideEntry]:
    """The slides in ``folder`` (not its masks, annotations or results), by name, with their predictions.

    Raises
    ------
    InputError
        ``folder`` is not a folder.
    """
    from ..wsi import find_slides

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    root = Path(predictions) if predictions else None
    entries = []
    for path in find_slides([folder]):
        entry = SlideEntry(path, path.stem)
        try:
            entries.append(with_results(entry, results_for(path, root)))
        except (OSError, ValueError, KeyError):  # damaged predictions: listed as not predicted
            entries.append(entry)
    return entries


@functools.lru_cache(maxsize=1024)
def _facts(path: str, mtime: float, size: int) -> SlideFacts:
    from ..wsi import open_slide

    with open_slide(path) as slide:
        return SlideFacts(slide.mean_mpp if slide.mpp else None, tuple(slide.dimensions), slide.thumbnail(size))


def slide_facts(path: str | os.PathLike, *, size: int = 96) -> SlideFacts:
    """Open ``path`` once for its :class:`SlideFacts` (cached while the file is unchanged)."""
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    return _facts(str(path), mtime, size)


def companions(slide: Path) -> dict[str, Path]:
    """Files beside a slide that belong to it: ``mask`` (with its sidecar) and ``annotations``."""
    found = {}
    for suffix in MASK_BESIDE:
        mask = slide.with_name(slide.stem + suffix)
        if mask.is_file() and mask.with_name(mask.name + ".json").is_file():
            found["mask"] = mask
            break
    for suffix in (".xml", ".geojson", ".json"):
        ann = slide.with_suffix(suffix)
        if ann.is_file() and suffix != ".json" or (ann.is_file() and '"Feature' in ann.read_text()[:4096]):
            found["annotations"] = ann
            break
    return found
