"""Writing a synthetic slide: the pyramidal TIFF, rendered tile by tile, its lesions' ASAP XML and tissue mask."""


from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..annotations import write_asap_xml
from ..errors import InputError
from .layout import SyntheticSlide, make_layout
from .spec import LAYOUT_STEP, SynthSpec
from ..wsi import write_pyramid_tiff

__all__ = ['write_synthetic_slide']


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
