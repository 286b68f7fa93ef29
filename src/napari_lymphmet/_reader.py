"""napari reader: a whole-slide image as one lazy, multiscale RGB layer."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import SlideError
from .slide import Slide, open_slide

__all__ = ["get_reader", "shapes_layer_data", "slide_layer_data"]

CLASS_COLOURS = {"tumor": "#ff2020", "exclusion": "#20d020"}

log = logging.getLogger(__name__)


def slide_layer_data(slide: Slide) -> tuple:
    """``(data, kwargs, "image")`` for a slide's multiscale Image layer.

    The scale is microns per pixel where the slide knows it, so that the
    scale bar, measurements and annotations in µm line up; else 1 px.
    """
    mpp = slide.mpp
    scale = _world_scale(slide)
    units = ("um", "um") if mpp else ("pixel", "pixel")
    kwargs = {
        "name": slide.slide_id,
        "rgb": True,
        "multiscale": True,
        "scale": scale,
        "units": units,
        "contrast_limits": (0, 255),
        "metadata": {
            "path": slide.path,
            "mpp": mpp,
            "vendor": slide.vendor,
            "properties": dict(slide.properties),
        },
    }
    return slide.pyramid(), kwargs, "image"


def _world_scale(slide: Slide) -> tuple[float, float]:
    mpp = slide.mpp
    return (mpp[1], mpp[0]) if mpp else (1.0, 1.0)


def shapes_layer_data(annotations, slide: Slide, *, name: str) -> tuple:
    """``(data, kwargs, "shapes")`` for annotations over ``slide``'s image layer.

    Vertices are level-0 ``(y, x)`` with the slide layer's scale, so both
    layers line up in world (µm) coordinates. A polygon's holes become
    exclusion shapes, as napari polygons have no holes.
    """
    shapes, labels = [], []
    for ann in annotations:
        for ring, label in [(ann.exterior, ann.label)] + [(h, "exclusion") for h in ann.holes]:
            shapes.append(np.asarray(ring, np.float64)[:, ::-1])
            labels.append(label)
    kwargs = {
        "name": name,
        "shape_type": "polygon",
        "scale": _world_scale(slide),
        "units": ("um", "um") if slide.mpp else ("pixel", "pixel"),
        "features": {"label": labels},
        "edge_color": [CLASS_COLOURS.get(label, "#ffff00") for label in labels] or "#ff2020",
        "face_color": "transparent",
        # Data units: thick enough to see at the overview, thin at 40×.
        "edge_width": max(2.0, max(slide.dimensions) / 500),
        "metadata": {"slide": slide.path},
    }
    return shapes, kwargs, "shapes"


def get_reader(path: str | list[str]):
    """Return a reader for slide files OpenSlide can open, else ``None``."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        slide = open_slide(path)
    except SlideError as exc:
        log.info("napari-lymphmet declines %s: %s", Path(path).name, exc)
        return None
    except Exception as exc:  # detection must never raise into napari
        log.warning("napari-lymphmet declines %s: unexpected %r", path, exc)
        return None

    def read(_path):
        return [slide_layer_data(slide)]

    return read
