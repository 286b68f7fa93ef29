"""Render: split from synthetic.py."""


from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..annotations import write_asap_xml
from ..errors import InputError
from .layout import SyntheticSlide, make_layout
from .spec import FOLD, GLASS, LAYOUT_STEP, PEN, SynthSpec
from ..wsi import write_pyramid_tiff

__all__ = ['write_synthetic_slide']


def _bilinear_weights(start: int, n: int, first: int, size: int) -> np.ndarray:
    """``(n, size) float32``: level-0 px ``start..start+n`` from layout px ``first..first+size``."""
    f = (np.arange(start, start + n, dtype=np.float32) + 0.5) / LAYOUT_STEP - 0.5 - first
    i = np.clip(np.floor(f).astype(int), 0, size - 2)
    t = np.clip(f - i, 0, 1)
    weights = np.zeros((n, size), np.float32)
    rows = np.arange(n)
    weights[rows, i] = 1 - t
    weights[rows, i + 1] = t
    return weights


def _render(slide: SyntheticSlide, x: int, y: int, w: int, h: int) -> np.ndarray:
    s = LAYOUT_STEP
    rows, cols = slide.classes.shape
    y1, x1 = min((y + h - 1) // s + 2, rows), min((x + w - 1) // s + 2, cols)
    y0, x0 = max(min(y // s - 1, y1 - 2), 0), max(min(x // s - 1, x1 - 2), 0)
    block = slide.classes[y0:y1, x0:x1]
    arte = slide.artefacts[y0:y1, x0:x1]
    present = np.unique(block)
    textures = slide._textures
    if len(present) == 1:
        out = textures[int(present[0])].window(x, y, w, h).copy()
        if not arte.any():
            return out
        label = np.full((h, w), present[0], np.uint8)
    if len(present) > 1 or arte.any():
        wy = _bilinear_weights(y, h, y0, block.shape[0])
        wx = _bilinear_weights(x, w, x0, block.shape[1]).T

        def upsample(values: np.ndarray) -> np.ndarray:
            return wy @ values.astype(np.float32) @ wx
    if len(present) > 1:
        # Soft class memberships from the layout, roughened at cell scale by
        # noise; a class competes only where its membership is above zero, so
        # borders move by at most one layout pixel and only between neighbours.
        scores = np.stack([upsample(block == cls) for cls in present])
        for k, cls in enumerate(present):
            if cls != GLASS:
                rough = slide._border_noise.window(x + 211 * int(cls), y + 157 * int(cls), w, h)[..., 0]
                scores[k] = np.where(scores[k] > 0, scores[k] + rough, -1)
        label = present[np.argmax(scores, axis=0)]
        out = textures[int(present[0])].window(x, y, w, h).copy()
        for cls in present[1:]:
            np.copyto(out, textures[int(cls)].window(x, y, w, h), where=(label == cls)[..., None])
    kinds = np.unique(arte[arte > 0])
    if not len(kinds):
        return out
    img = out.astype(np.float32)
    for kind in kinds:
        if kind == FOLD:  # a doubled layer of tissue: darker and more saturated
            cos, sin, offset, half = slide.fold
            across = (np.arange(x, x + w) + 0.5)[None, :] * cos + (np.arange(y, y + h) + 0.5)[:, None] * sin
            alpha = np.clip((half - np.abs(across - offset)) / 6, 0, 1).astype(np.float32) * (label != GLASS)
            img -= img * np.float32([0.22, 0.32, 0.22]) * alpha[..., None]
        else:
            alpha = np.clip(upsample(arte == kind) * 1.6 - 0.3, 0, 1)
            ink = np.float32(slide.pen_colour if kind == PEN else (70, 58, 50))
            img += (ink - img) * (alpha * (0.8 if kind == PEN else 0.95))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def write_synthetic_slide(
    path: str | os.PathLike,
    spec: SynthSpec = SynthSpec(),  # noqa: B008 (frozen: one shared default is safe)
    *,
    xml_path: str | os.PathLike | None = None,
    mask_path: str | os.PathLike | None = None,
    tile: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[SyntheticSlide, dict]:
    """Generate a slide, its ASAP XML of metastases and optionally its tissue mask.

    Parameters
    ----------
    path : str or path-like
        The pyramidal TIFF to write (JPEG tiles, levels down to about 1k px).
    spec : SynthSpec
    xml_path : str or path-like, optional
        Defaults to ``path`` with the suffix ``.xml``.
    mask_path : str or path-like, optional
        Where to write the ground-truth tissue mask, a 0/255 PNG at
        downsample ``LAYOUT_STEP``.
    progress : callable, optional
        ``progress(done, total)`` in level-0 tile rows.

    Returns
    -------
    slide : SyntheticSlide
    summary : dict
        Paths, dimensions, level count, lesion count and tumor area (µm²).
    """
    path = Path(path)
    xml_path = Path(xml_path) if xml_path else path.with_suffix(".xml")
    for out in (path, xml_path, mask_path):
        if out is not None and not Path(out).parent.is_dir():
            raise InputError(f"{out}: output folder {Path(out).parent} does not exist")
    slide = make_layout(spec)
    info = write_pyramid_tiff(path, slide.render, spec.width, spec.height, tile=tile, mpp=spec.mpp,
                              description=f"napari-lymphmet synthetic lymph node seed={spec.seed}",
                              progress=progress)
    write_asap_xml(xml_path, slide.lesions, group="Tumor")
    summary = {
        "slide": str(path),
        "xml": str(xml_path),
        "dimensions": [spec.width, spec.height],
        "level_count": len(info.level_dimensions),
        "lesions": len(slide.lesions),
        "tumor_area_um2": round(slide.tumor_area_um2, 1),
        "mpp": spec.mpp,
        "seed": spec.seed,
    }
    if mask_path is not None:
        from skimage.io import imsave

        with atomic_path(mask_path) as tmp:
            imsave(tmp, (slide.tissue_mask() * 255).astype(np.uint8), check_contrast=False)
        summary["mask"] = str(mask_path)
        summary["mask_downsample"] = LAYOUT_STEP
    return slide, summary
