"""napari reader: a whole-slide image as one lazy, multiscale RGB layer."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import SlideError
from .slide import Slide, open_slide

__all__ = ["get_reader", "slide_layer_data"]

log = logging.getLogger(__name__)


def slide_layer_data(slide: Slide) -> tuple:
    """``(data, kwargs, "image")`` for a slide's multiscale Image layer.

    The scale is microns per pixel where the slide knows it, so that the
    scale bar, measurements and annotations in µm line up; else 1 px.
    """
    mpp = slide.mpp
    scale = (mpp[1], mpp[0]) if mpp else (1.0, 1.0)
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
