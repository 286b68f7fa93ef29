"""A finished ``lymphmet predict`` folder as napari layer data over its slide, with no Qt.

The heatmap, the detections and the tumor regions share the slide layer's
world frame (level-0 px times µm per px), so they land where the slide is
whatever the heatmap's cell size.
"""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..wsi import Slide
from .layers import layer_units, mask_geometry, shapes_layer_data, slide_scale

__all__ = [
    "detections_layer_data", "heatmap_colormap", "heatmap_layer_data", "is_results_folder", "mask_layer_data",
    "results_folder", "results_layer_data", "show_review_marks", "tissue_heatmap",
]


def results_folder(path: str | Path) -> Path | None:
    """The predictions folder ``path`` is, or whose ``heatmap.tif`` it is; None when it is neither."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name.lower() == "heatmap.tif" else None
    if folder is None or not (folder / "heatmap.tif").is_file() or not (folder / "heatmap.json").is_file():
        return None
    return folder


def is_results_folder(path: str | Path) -> bool:
    return results_folder(path) is not None


def heatmap_colormap() -> Any:
    """napari's colormap for tumor probability: transparent up to ``HEATMAP_FLOOR``, then viridis, more opaque
    as the probability rises (:mod:`napari_lymphmet.figures.heatmap`)."""
    from napari.utils.colormaps import Colormap

    from ..figures import heatmap_rgba

    colours = heatmap_rgba(256)
    return Colormap(colors=colours, controls=np.linspace(0, 1, len(colours)), name="lymphmet tumor probability")


def tissue_heatmap(heatmap: np.ndarray, downsample: float, tissue_mask: np.ndarray,
                   tissue_downsample: float) -> np.ndarray:
    """The heatmap drawn at the tissue mask's resolution, 0 wherever the mask has no tissue.

    A heatmap cell is a patch wide, so a cell at the tissue's edge covers
    glass too; drawn per cell, it would tint that glass. Each mask pixel
    takes the cell its centre falls in.

    Parameters
    ----------
    heatmap : (rows, cols) float array, one cell per ``downsample`` level-0 px
    tissue_mask : (h, w) bool array, one pixel per ``tissue_downsample`` level-0 px

    Returns
    -------
    (h, w) float32 array
    """
    h, w = tissue_mask.shape
    rows = np.minimum(((np.arange(h) + 0.5) * tissue_downsample // downsample).astype(np.int64), heatmap.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * tissue_downsample // downsample).astype(np.int64), heatmap.shape[1] - 1)
    return np.where(tissue_mask, heatmap[np.ix_(rows, cols)], 0).astype(np.float32)


def heatmap_layer_data(heatmap: np.ndarray, slide: Slide, downsample: float, *, name: str,
                       source: str | None = None, threshold: float | None = None, tissue: Any = None) -> tuple:
    """``(data, kwargs, "image")``: probabilities 0–1 over the slide.

    With ``tissue`` (a :class:`~napari_lymphmet.tissue.Tissue`) the layer is
    drawn over the tissue only, at the mask's resolution
    (:func:`tissue_heatmap`); without it, each cell exactly over its
    level-0 square. Either way off-tissue cells (0) and low probabilities
    are transparent, so glass and normal tissue look as they do without the
    overlay. ``metadata["downsample"]`` is the cells' size; ``threshold`` is
    kept for the legend.
    """
    shown = downsample if tissue is None else float(tissue.downsample)
    data = heatmap if tissue is None else tissue_heatmap(heatmap, downsample, tissue.mask, tissue.downsample)
    scale, translate = mask_geometry(slide, shown)
    return data, {"name": name, "colormap": heatmap_colormap(), "opacity": 1.0, "contrast_limits": (0.0, 1.0),
                  "scale": scale, "translate": translate, "units": layer_units(slide),
                  "blending": "translucent", "interpolation2d": "nearest",
                  "metadata": {"kind": "heatmap", "slide": slide.path, "downsample": downsample,
                               "display_downsample": shown, "source": source, "threshold": threshold}}, "image"


def detections_layer_data(detections: np.ndarray, slide: Slide, *, name: str, source: str | None = None,
                          lesions: list | None = None) -> tuple:
    """``(data, kwargs, "points")``: ``(N, 3)`` ``(confidence, x, y)`` detections as rings on the slide.

    Each point's features are its rank and confidence, and, given its
    :class:`~napari_lymphmet.inference.Lesion`, its size (napari shows them
    under the cursor; the lesion table lists them); with ``source`` (the
    ``detections.csv`` of a predictions folder) whose folder has been
    reviewed, each point's ``review`` mark (see :func:`show_review_marks`).
    """
    points = detections[:, [2, 1]] - 0.5 if len(detections) else np.zeros((0, 2))  # pixel centres, (row, col)
    n = len(points)
    features = {"rank": np.arange(1, n + 1), "confidence": detections[:, 0] if n else np.zeros(0)}
    if lesions is not None and len(lesions) == n:
        features["area_mm2"] = np.array([np.nan if le.area_mm2 is None else le.area_mm2 for le in lesions])
        features["major_axis_mm"] = np.array([np.nan if le.major_axis_mm is None else le.major_axis_mm
                                              for le in lesions])
    if source is not None:
        marks = _review_marks(Path(source).parent, detections[:, 1:3] if n else np.zeros((0, 2)))
        if marks is not None:
            features["review"] = np.array(marks, dtype=object)
    return points, {"name": name, "scale": slide_scale(slide), "units": layer_units(slide),
                    "size": max(slide.dimensions) / 60, "face_color": "transparent", "border_color": "#ff00ff",
                    "border_width": 0.15, "features": features,
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
    from ..tissue import tissue_for

    layers = [heatmap_layer_data(heatmap, slide, downsample, name=f"Tumor probability ({label})",
                                 source=str(folder), threshold=info.get("threshold"), tissue=tissue_for(slide))]
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
        units = layer_units(slide)
    return saved.mask.astype(np.uint8), {
        "name": f"{Path(slide_path).stem} tissue", "scale": scale, "translate": translate, "opacity": 0.35,
        "units": units,
        "metadata": {"kind": "tissue", "slide": str(slide_path), "downsample": saved.downsample,
                     "source": str(mask_path)}}, "labels"


def _review_marks(folder: Path, xy: np.ndarray) -> list[str] | None:
    """The marks of ``folder``'s review at each level-0 ``(x, y)``, or None where it was never reviewed."""
    from ..errors import InputError
    from ..workflows.review import Review

    if not (folder / "review.json").is_file():
        return None
    try:
        return Review.open(folder).marks_at(xy)
    except (InputError, OSError, ValueError):  # a damaged review only goes unshown here
        return None


def show_review_marks(layer: Any, review: Any) -> None:
    """Put ``review``'s marks into a Detections layer's ``review`` feature, matched by position.

    Setting the features emits the layer's ``features`` event, on which the
    *Detect metastases* table shows them: the panels share the layer, not
    each other.
    """
    data = np.asarray(layer.data, float).reshape(-1, 2)
    features = layer.features.copy()
    features["review"] = np.array(review.marks_at(data[:, ::-1] + 0.5), dtype=object)  # (row, col) to (x, y)
    layer.features = features
