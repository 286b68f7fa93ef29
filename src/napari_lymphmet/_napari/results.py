"""A finished ``lymphmet predict`` folder as napari layer data over its slide, with no Qt.

The heatmap, the detections and the tumor regions share the slide layer's
world frame (level-0 px times µm per px), so they land where the slide is
whatever the heatmap's cell size.
"""


from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..wsi import Slide
from .layers import mask_geometry, shapes_layer_data, slide_scale

__all__ = ["detections_layer_data", "heatmap_layer_data", "is_results_folder", "mask_layer_data", "results_folder",
           "results_layer_data"]


def results_folder(path: str | Path) -> Path | None:
    """The predictions folder ``path`` is, or whose ``heatmap.tif`` it is; None when it is neither."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name.lower() == "heatmap.tif" else None
    if folder is None or not (folder / "heatmap.tif").is_file() or not (folder / "heatmap.json").is_file():
        return None
    return folder


def is_results_folder(path: str | Path) -> bool:
    return results_folder(path) is not None


def heatmap_layer_data(heatmap: np.ndarray, slide: Slide, downsample: float, *, name: str,
                       source: str | None = None) -> tuple:
    """``(data, kwargs, "image")``: probabilities 0–1 in turbo, each cell exactly over its level-0 square."""
    scale, translate = mask_geometry(slide, downsample)
    return heatmap, {"name": name, "colormap": "turbo", "opacity": 0.5, "contrast_limits": (0.0, 1.0),
                     "scale": scale, "translate": translate, "blending": "translucent",
                     "metadata": {"kind": "heatmap", "slide": slide.path, "downsample": downsample,
                                  "source": source}}, "image"


def detections_layer_data(detections: np.ndarray, slide: Slide, *, name: str, source: str | None = None) -> tuple:
    """``(data, kwargs, "points")``: ``(N, 3)`` ``(confidence, x, y)`` detections as yellow rings on the slide."""
    points = detections[:, [2, 1]] - 0.5 if len(detections) else np.zeros((0, 2))  # pixel centres, (row, col)
    return points, {"name": name, "scale": slide_scale(slide), "size": max(slide.dimensions) / 60,
                    "face_color": "transparent", "border_color": "yellow", "border_width": 0.15,
                    "features": {"confidence": detections[:, 0] if len(detections) else np.zeros(0)},
                    "metadata": {"kind": "detections", "source": source}}, "points"


def results_layer_data(folder: str | Path, slide: Slide) -> list[tuple]:
    """Heatmap, detections and tumor regions of a predictions folder, over ``slide``.

    Raises
    ------
    InputError
        The folder holds no heatmap, or its files are damaged.
    """
    from ..annotations import read_asap_xml
    from ..evaluation import read_detections
    from ..inference import read_heatmap

    folder = Path(folder)
    try:
        heatmap, info = read_heatmap(folder / "heatmap.tif")
        downsample = float(info["downsample"])
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder / 'heatmap.tif'}: not a heatmap written by lymphmet predict ({exc})") from None
    label = Path(info.get("slide") or folder.name).stem
    layers = [heatmap_layer_data(heatmap, slide, downsample, name=f"Tumor probability ({label})",
                                 source=str(folder))]
    detections_file = folder / "detections.csv"
    if detections_file.is_file():
        detections = read_detections(detections_file, dimensions=slide.dimensions)
        layers.append(detections_layer_data(detections, slide, name=f"Detections ({label})",
                                            source=str(detections_file)))
    regions_file = folder / "tumor_regions.xml"
    if regions_file.is_file():
        regions = read_asap_xml(regions_file)
        if regions:
            layers.append(shapes_layer_data(regions, slide, name=f"Tumor regions ({label})",
                                            source=str(regions_file)))
    return layers


def mask_layer_data(mask_path: str | Path, slide_path: str | Path) -> tuple:
    """``(data, kwargs, "labels")``: a saved tissue mask over its slide, each pixel over its level-0 square."""
    from ..tissue import load_mask
    from ..wsi import open_slide

    saved = load_mask(mask_path)
    with open_slide(slide_path) as slide:
        scale, translate = mask_geometry(slide, saved.downsample)
    return saved.mask.astype(np.uint8), {
        "name": f"{Path(slide_path).stem} tissue", "scale": scale, "translate": translate, "opacity": 0.35,
        "metadata": {"kind": "tissue", "slide": str(slide_path), "downsample": saved.downsample,
                     "source": str(mask_path)}}, "labels"
