"""napari sample data: a small synthetic lymph node with its tumor outlines.

The slide is generated on first use into the user's cache folder (or
``$NAPARI_LYMPHMET_CACHE``) and reused afterwards; its name carries the
generator version, so a changed generator never serves a stale slide."""


from __future__ import annotations

import os
from pathlib import Path

from ..annotations import read_asap_xml
from ..synthetic import GENERATOR_VERSION, SynthSpec, write_synthetic_slide
from ..wsi import open_slide
from .layers import shapes_layer_data, slide_layer_data

__all__ = ['SAMPLE_SPEC', 'cache_dir', 'sample_slide', 'synthetic_lymph_node']

SAMPLE_SPEC = SynthSpec(width=8192, height=6144, seed=0, lesions=3, mpp=0.5)


def cache_dir() -> Path:
    """Where generated sample slides live."""
    if os.environ.get("NAPARI_LYMPHMET_CACHE"):
        folder = Path(os.environ["NAPARI_LYMPHMET_CACHE"])
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-lymphmet"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sample_slide(spec: SynthSpec = SAMPLE_SPEC) -> Path:
    """The cached sample slide for ``spec``, generated if missing."""
    name = f"synthetic-node-v{GENERATOR_VERSION}-s{spec.seed}-{spec.width}x{spec.height}-{spec.mpp}.tif"
    path = cache_dir() / name
    if not (path.exists() and path.with_suffix(".xml").exists()):
        write_synthetic_slide(path, spec)
    return path


def synthetic_lymph_node() -> list[tuple]:
    """Layer data: the slide as a multiscale image, its metastases as a Shapes layer."""
    path = sample_slide()
    slide = open_slide(path)
    image = slide_layer_data(slide)
    xml = path.with_suffix(".xml")
    tumor = shapes_layer_data(read_asap_xml(xml), slide, name=f"{slide.slide_id} tumor", source=str(xml))
    return [image, tumor]
