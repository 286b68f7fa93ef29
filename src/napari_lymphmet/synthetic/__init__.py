"""Synthetic lymph-node slides with ground truth: a spec, a low-resolution layout, textures, a renderer.

``spec`` (what to make) → ``layout`` (tissue classes, lesions, artefacts at
1/16 scale) → ``textures`` (periodic nuclei per class) → ``render`` (tiles
at full resolution, streamed into a pyramidal TIFF with the lesions' XML).
``mosaic`` tiles real labelled patches into a slide instead.
"""

from __future__ import annotations

from .layout import SyntheticSlide, make_layout
from .mosaic import PCAM_MPP, restain, write_mosaic_slide
from .render import write_synthetic_slide
from .spec import CAPSULE, DUST, FAT, FOLD, GENERATOR_VERSION, GLASS, LAYOUT_STEP, NORMAL, PEN, TUMOR, SynthSpec

__all__ = ["CAPSULE", "DUST", "FAT", "FOLD", "GENERATOR_VERSION", "GLASS", "LAYOUT_STEP", "NORMAL", "PEN",
           "PCAM_MPP", "TUMOR", "SynthSpec", "SyntheticSlide", "make_layout", "restain", "write_mosaic_slide",
           "write_synthetic_slide"]
