"""The Corrections layer: tumor and not-tumor outlines a pathologist draws over a heatmap.

A napari Shapes layer with a ``label`` feature: ``tumor``, or ``exclusion``
(shown as "not tumor"; saved as ASAP group ``_2`` and GeoJSON class
``Exclusion``). These helpers make it, add to it and read it back; the
*Detect metastases* widget drives them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import EXCLUSION, TUMOR, Annotation
from ..wsi import Slide
from .layers import annotations_from_shapes, class_shapes_kwargs, set_draw_class

__all__ = ["CORRECTIONS", "DRAW_CHOICES", "add_correction", "corrections_layer_kwargs", "layer_corrections",
           "new_model_version"]

CORRECTIONS = "Corrections"
DRAW_CHOICES = [("tumor", TUMOR), ("not tumor", EXCLUSION)]


def corrections_layer_kwargs(slide: Slide) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_shapes``: an empty Corrections layer over ``slide``."""
    return class_shapes_kwargs(slide, name=CORRECTIONS, metadata={"kind": "corrections", "slide": slide.path})


def add_correction(layer: Any, exterior_xy: np.ndarray, label: str) -> None:
    """Add a polygon, level-0 ``(x, y)``, to a Corrections layer, coloured by ``label``; shapes already there
    keep their class and colour, and the layer goes on drawing what it drew."""
    default = layer.feature_defaults["label"][0] if len(layer.feature_defaults) else TUMOR
    set_draw_class(layer, label)
    layer.add_polygons([np.asarray(exterior_xy, np.float64)[:, ::-1]])
    set_draw_class(layer, default)


def layer_corrections(layer: Any, slide_layer: Any) -> list[Annotation]:
    """The layer's polygons in the slide's level-0 px, labelled tumor or exclusion."""
    anns, _ = annotations_from_shapes(layer, slide_layer)
    return [a for a in anns if a.label in (TUMOR, EXCLUSION)]


def new_model_version(parent: Path, folder: Path) -> Path:
    """``folder/<parent stem>-ft<N>.keras`` with the first unused ``N``: a fine-tune never overwrites."""
    stem = re.sub(r"-ft\d+$", "", parent.stem)
    n = 1
    while (folder / f"{stem}-ft{n}.keras").exists():
        n += 1
    return folder / f"{stem}-ft{n}.keras"
