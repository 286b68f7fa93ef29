"""Slides tiled from real labelled patches (PatchCamelyon's, say), for whole-slide checks on real tissue.

Where no annotated whole slide is at hand, a mosaic of patches cut from
such slides is the nearest thing: real tissue, with known lesions (blocks
of tumor patches) and known normal tissue. It is harsher than a real slide
in one way (every patch edge is a seam, and a PCam "normal" patch may hold
tumor outside its central 32 px) and kinder in another (no fat, folds or
pen), and its false alarms are independent patches, where a real slide's
come in runs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["PCAM_MPP", "restain", "write_mosaic_slide"]

PCAM_MPP = 0.972  # µm/px of PatchCamelyon's patches (10×)


def restain(image: np.ndarray, h: float = 1.35, e: float = 0.7) -> np.ndarray:
    """Scale haematoxylin by ``h`` and eosin by ``e`` in HED space, as another lab's stain would."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(image)
    hed[..., 0] *= h
    hed[..., 1] *= e
    return (np.clip(hed2rgb(hed), 0, 1) * 255).round().astype(np.uint8)


def write_mosaic_slide(path: str | os.PathLike, normal: Iterator[str | os.PathLike],
                       tumor: Iterator[str | os.PathLike], *, side: int, lesions: Sequence[tuple[int, int, int, int]],
                       seed: int = 0, patch_mpp: float = PCAM_MPP, upsample: int = 1,
                       stain: tuple[float, float] | None = None) -> list[np.ndarray]:
    """Write a ``side`` × ``side``-patch pyramidal TIFF and, with lesions, their ASAP XML (``path`` with ``.xml``).

    ``lesions`` are ``(row, col, rows, cols)`` blocks of tumor patches; the
    rest are normal. Patches (square, all one size, at ``patch_mpp``) are
    drawn from the iterators (none is used twice), turned at random,
    optionally re-stained (:func:`restain`'s factors), and scaled up by
    ``upsample`` (4 turns PCam's 10× into CAMELYON16's 40× geometry,
    0.243 µm/px). Returns the lesions as level-0 ``(x, y)`` squares, ``(4, 2)``.
    """
    from skimage.io import imread
    from skimage.transform import rescale

    from ..annotations import write_asap_xml
    from ..wsi import write_pyramid_tiff

    path = Path(path)
    rng = np.random.default_rng(seed)
    first = next(normal)
    size = imread(first).shape[0]
    normal = itertools.chain([first], normal)
    is_tumor = np.zeros((side, side), bool)
    squares = []
    for r0, c0, h, w in lesions:
        is_tumor[r0:r0 + h, c0:c0 + w] = True
        squares.append(np.array([[c0, r0], [c0 + w, r0], [c0 + w, r0 + h], [c0, r0 + h]], np.float64)
                       * size * upsample)
    image = np.zeros((side * size, side * size, 3), np.uint8)
    for r in range(side):
        for c in range(side):
            patch = np.rot90(imread(next(tumor) if is_tumor[r, c] else next(normal))[..., :3], int(rng.integers(4)))
            image[r * size:(r + 1) * size, c * size:(c + 1) * size] = restain(patch, *stain) if stain else patch
    if upsample > 1:
        image = (rescale(image, upsample, order=1, channel_axis=-1) * 255).round().astype(np.uint8)

    def render(x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.full((h, w, 3), 240, np.uint8)
        part = image[y:y + h, x:x + w]
        out[:part.shape[0], :part.shape[1]] = part
        return out

    write_pyramid_tiff(path, render, image.shape[1], image.shape[0], mpp=patch_mpp / upsample, tile=256,
                       min_size=256)
    if squares:
        write_asap_xml(path.with_suffix(".xml"), squares, group="Tumor")
    return squares
