"""Patch datasets: ImageFolders and ``patches.csv``, split by slide.

A patch's slide is what keeps validation honest: patches of one slide are
never split between training and validation. It comes from ``patches.csv``
when there is one, else from the file name, ``<slide>_<x>_<y>[_...].png``."""


from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..annotations import CLASSES

from ..errors import InputError

__all__ = ["CLASSES", "IMAGE_SUFFIXES", "PatchTable", "read_patch_table", "slide_of_filename", "split_by_slide",
           "why_no_split"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# <slide>_<x>_<y>, optionally followed by our _<mpp>mpp or _L<level> tag.
_COORDS = re.compile(r"^(?P<slide>.+)_(?P<x>\d+)_(?P<y>\d+)(?:_(?:[\d.]+mpp|L\d+))?$")


@dataclass
class PatchTable:
    """Patch files with labels (1 tumor, 0 normal) and slide ids; arrays ``(N,)``.

    A slide id is ``""`` when the patch's name and table do not say which
    slide it came from (PatchCamelyon's ``pcam-train-0001234.jpg``, say).
    """

    paths: np.ndarray
    labels: np.ndarray
    slides: np.ndarray
    mpp: float | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> PatchTable:
        return PatchTable(self.paths[keep], self.labels[keep], self.slides[keep], self.mpp)

    @classmethod
    def concat(cls, tables: Sequence[PatchTable | None]) -> PatchTable | None:
        """The tables one after another (``None`` and empty ones skipped; ``None`` if nothing is left).

        The mpp is kept when all agree, else ``None`` (unknown).
        """
        tables = [t for t in tables if t is not None and len(t)]
        if not tables:
            return None
        mpps = {t.mpp for t in tables}
        return cls(np.concatenate([t.paths for t in tables]), np.concatenate([t.labels for t in tables]),
                   np.concatenate([t.slides for t in tables]), mpps.pop() if len(mpps) == 1 else None)

    @property
    def unknown_slides(self) -> int:
        """Patches whose slide is not known."""
        return int((self.slides == "").sum())

    def summary(self) -> dict:
        """Counts per class and the known slide ids (patches of unknown slides are counted, not listed)."""
        out = {"patches": len(self), "tumor": int(self.labels.sum()), "normal": int((self.labels == 0).sum()),
               "slides": sorted(set(self.slides.tolist()) - {""})}
        if self.unknown_slides:
            out["patches_without_slide_id"] = self.unknown_slides
        return out


def slide_of_filename(name: str) -> str:
    """``tumor_073_100242_30748.png`` → ``tumor_073``; ``""`` (unknown) when the name holds no coordinates.

    A name without ``<slide>_<x>_<y>`` says nothing about its slide: taking
    each file for a slide of its own would let a "slide split" put patches
    of one slide on both sides.
    """
    match = _COORDS.match(Path(name).stem)
    return match.group("slide") if match else ""


def _from_csv(path: Path) -> PatchTable:
    rows = list(csv.DictReader(path.open()))
    if not rows or "file" not in rows[0] or "label" not in rows[0]:
        raise InputError(f"{path}: not a patches.csv (needs file and label columns)")
    root = path.parent
    paths, labels, slides, mpps = [], [], [], set()
    for row in rows:
        if row["label"] not in CLASSES:
            raise InputError(f"{path}: unknown label {row['label']!r} (expected tumor or normal)")
        paths.append(str(root / row["file"]))
        labels.append(CLASSES.index(row["label"]))
        slides.append(row.get("slide_id") or slide_of_filename(row["file"]))
        if row.get("mpp"):
            mpps.add(float(row["mpp"]))
    return PatchTable(np.array(paths), np.array(labels, np.int64), np.array(slides),
                      mpps.pop() if len(mpps) == 1 else None)


def _from_folder(path: Path) -> PatchTable:
    paths, labels, slides = [], [], []
    for index, name in enumerate(CLASSES):
        folder = path / name
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith("."):
                paths.append(str(file))
                labels.append(index)
                slides.append(slide_of_filename(file.name))
    return PatchTable(np.array(paths, dtype=str), np.array(labels, np.int64), np.array(slides, dtype=str))


def read_patch_table(sources: Sequence[str | os.PathLike]) -> PatchTable:
    """Gather patches from ImageFolders (``tumor/``, ``normal/``) and/or ``patches.csv`` files.

    A folder holding a ``patches.csv`` is read through it (slide ids, mpp).

    Raises
    ------
    InputError
        A source is missing or holds no patches.
    """
    tables = []
    for source in sources:
        path = Path(source)
        if path.is_dir() and (path / "patches.csv").exists():
            path = path / "patches.csv"
        if path.is_file() and path.suffix == ".csv":
            table = _from_csv(path)
        elif path.is_dir():
            table = _from_folder(path)
        else:
            raise InputError(f"{path}: no such folder or patches.csv")
        if not len(table):
            raise InputError(f"{path}: no patches (expected tumor/ and normal/ folders of images)")
        tables.append(table)
    if not tables:
        raise InputError("no training data given")
    table = PatchTable.concat(tables)
    check_images(table.paths)
    return table


# What tf.data decodes (tf.io.decode_image), and the largest patch it is asked to: 4096² px.
_DECODABLE = {"PNG", "JPEG", "BMP", "GIF"}
MAX_PATCH_PIXELS = 4096 * 4096


def check_images(paths: Sequence[str | os.PathLike]) -> None:
    """Refuse a patch file TensorFlow would fail on mid-epoch, naming it: empty, not an image, a format it
    does not decode (TIFF), or a header claiming a giant image. Headers only: 20,000 patches take a second.

    Raises
    ------
    InputError
    """
    from PIL import Image, UnidentifiedImageError

    for path in map(str, paths):
        try:
            with Image.open(path) as image:
                kind, (width, height) = image.format, image.size
        except Image.DecompressionBombError:
            raise InputError(f"{path}: claims more pixels than PIL will decode; a patch is at most "
                             f"{MAX_PATCH_PIXELS} px") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not an image ({' '.join(str(exc).split())[:120]})") from None
        if kind not in _DECODABLE:
            raise InputError(f"{path}: a {kind} image; patches must be PNG or JPEG (TensorFlow decodes those)")
        if width * height > MAX_PATCH_PIXELS:
            raise InputError(f"{path}: claims {width} × {height} px; a patch is at most {MAX_PATCH_PIXELS} px")


def split_by_slide(table: PatchTable, *, fraction: float = 0.25, seed: int = 0) -> tuple[PatchTable, PatchTable]:
    """Hold out whole slides (about ``fraction`` of the patches) for validation.

    Prefers a hold-out that has both classes; returns an empty validation
    table when there are fewer than two known slides, or ``fraction`` is 0. Patches of unknown
    slides always stay in training.
    """
    slides = np.unique(table.slides[table.slides != ""])
    if len(slides) < 2 or fraction <= 0:  # 0: train on everything, no validation
        return table, table.subset(np.zeros(len(table), bool))
    rng = np.random.default_rng(seed)
    best, best_score = None, None
    for _ in range(200):
        order = rng.permutation(slides)
        held: list[str] = []
        for s in order[:-1]:
            held.append(s)
            if np.isin(table.slides, held).mean() >= fraction:
                break
        mask = np.isin(table.slides, held)
        both = len(np.unique(table.labels[mask])) == 2 and len(np.unique(table.labels[~mask])) == 2
        score = (both, -abs(mask.mean() - fraction))
        if best_score is None or score > best_score:
            best, best_score = mask, score
    return table.subset(~best), table.subset(best)


def why_no_split(table: PatchTable) -> str:
    """Why :func:`split_by_slide` held nothing out, in words for the user."""
    if table.unknown_slides:
        return (f"{table.unknown_slides} patch names carry no slide id (as in PatchCamelyon), so no slide split "
                f"is attempted")
    return f"all patches come from one slide ({table.slides[0]}), so nothing can be held out by slide"
