"""Core objects to napari layer data and back, with no Qt.

Every layer over a slide shares the slide layer's world frame: level-0
``(y, x)`` pixels times the slide's ``scale`` (µm per px, or 1 when the
slide has no mpp), so all layers line up and measure in µm."""


from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..annotations import EXCLUSION, TUMOR, Annotation, rasterize
from ..wsi import Slide

__all__ = [
    "CLASS_COLOURS", "MAX_SHAPES", "annotation_layer_data", "annotations_from_shapes", "labels_layer_data",
    "layer_units", "mask_geometry", "shapes_layer_data", "slide_layer_data", "slide_scale",
]

# Okabe & Ito's colour-blind-safe pair, the same in every widget: tumor vermillion; not tumor (an
# exclusion, a normal patch) blue. Red and green would be one colour to a red-green colour-blind reader.
CLASS_COLOURS = {TUMOR: "#d55e00", EXCLUSION: "#0072b2"}
NORMAL_COLOUR = CLASS_COLOURS[EXCLUSION]
CLASS_TEXT = {"string": "{label}", "color": "white", "size": 9, "anchor": "upper_left"}
MAX_SHAPES = 2000  # above this a Shapes layer becomes sluggish; use Labels instead


def slide_scale(slide: Slide) -> tuple[float, float]:
    """``(y, x)`` world units per level-0 px: µm when known, else 1."""
    mpp = slide.mpp
    return (mpp[1], mpp[0]) if mpp else (1.0, 1.0)


def layer_units(slide: Slide) -> tuple[str, str]:
    """Every layer over a slide carries the slide's units (µm, or pixels without an mpp): napari warns when
    layers' units disagree, and its scale bar reads them."""
    return ("um", "um") if slide.mpp else ("pixel", "pixel")


def slide_layer_data(slide: Slide) -> tuple:
    """``(data, kwargs, "image")`` for a slide's lazy multiscale RGB layer."""
    kwargs = {
        "name": slide.slide_id,
        "rgb": True,
        "multiscale": True,
        "scale": slide_scale(slide),
        "units": layer_units(slide),
        "contrast_limits": (0, 255),
        "metadata": {
            "path": slide.path,
            "mpp": slide.mpp,
            "vendor": slide.vendor,
            "properties": dict(slide.properties),
        },
    }
    return slide.pyramid(), kwargs, "image"


def shapes_layer_data(annotations: Sequence[Annotation], slide: Slide, *, name: str,
                      source: str | None = None) -> tuple:
    """``(data, kwargs, "shapes")``: polygons over ``slide``, coloured by class.

    Vertices are level-0 ``(y, x)`` with the slide layer's scale. A polygon's
    holes become exclusion shapes, since napari polygons have no holes.
    """
    shapes, labels = [], []
    for ann in annotations:
        for ring, label in [(ann.exterior, ann.label)] + [(h, EXCLUSION) for h in ann.holes]:
            shapes.append(np.asarray(ring, np.float64)[:, ::-1])
            labels.append(label)
    kwargs = {
        "name": name,
        "shape_type": "polygon",
        "scale": slide_scale(slide),
        "units": layer_units(slide),
        "features": {"label": labels},
        "edge_color": [CLASS_COLOURS[label] for label in labels] if labels else CLASS_COLOURS[TUMOR],
        "text": CLASS_TEXT if labels else None,
        "face_color": "transparent",
        # In data px: visible at the overview, thin at full resolution.
        "edge_width": max(2.0, max(slide.dimensions) / 500),
        "metadata": {"slide": slide.path, "source": source},
    }
    return shapes, kwargs, "shapes"


def mask_geometry(slide: Slide, downsample: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(scale, translate)`` that lay a mask at ``downsample`` exactly over the slide.

    Mask pixel ``c`` covers level-0 pixels ``[c·D, (c+1)·D)``, whose centre is
    level-0 coordinate ``c·D + (D - 1)/2``; napari puts pixel centres at
    ``index·scale + translate``.
    """
    sy, sx = slide_scale(slide)
    return (sy * downsample, sx * downsample), (sy * (downsample - 1) / 2, sx * (downsample - 1) / 2)


def labels_layer_data(annotations: Sequence[Annotation], slide: Slide, *, name: str,
                      max_side: int = 4096, source: str | None = None) -> tuple:
    """``(data, kwargs, "labels")``: annotations rasterized (1 tumor), for many polygons."""
    w, h = slide.dimensions
    downsample = max(1.0, max(w, h) / max_side)
    shape = (int(np.ceil(h / downsample)), int(np.ceil(w / downsample)))
    mask = rasterize(annotations, shape, downsample=downsample).astype(np.uint8)
    scale, translate = mask_geometry(slide, downsample)
    kwargs = {
        "name": name,
        "scale": scale,
        "translate": translate,
        "units": layer_units(slide),
        "opacity": 0.5,
        "metadata": {"slide": slide.path, "source": source, "downsample": downsample},
    }
    return mask, kwargs, "labels"


def annotation_layer_data(annotations: Sequence[Annotation], slide: Slide, *, name: str,
                          source: str | None = None) -> tuple:
    """Shapes layer data, or Labels when there are more than ``MAX_SHAPES`` polygons."""
    n = sum(1 + len(a.holes) for a in annotations)
    if n > MAX_SHAPES:
        return labels_layer_data(annotations, slide, name=name, source=source)
    return shapes_layer_data(annotations, slide, name=name, source=source)


def _ellipse(box: np.ndarray, n: int = 64) -> np.ndarray:
    """napari stores an ellipse as the 4 corners of its box; make it a polygon."""
    centre = box.mean(axis=0)
    half_a, half_b = (box[1] - box[0]) / 2, (box[3] - box[0]) / 2
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    return centre + np.cos(t) * half_a + np.sin(t) * half_b


def annotations_from_shapes(layer: Any, slide_layer: Any | None = None) -> tuple[list[Annotation], int]:
    """Polygons of a napari Shapes layer in level-0 ``(x, y)`` pixels.

    Vertices go through world coordinates into the slide layer's level-0
    frame, so a layer drawn at any scale is saved where it was drawn. Without
    a slide layer, the Shapes layer's own data coordinates are used.
    The class comes from a ``label`` feature when there is one, else tumor.

    Returns
    -------
    annotations : list of Annotation
    skipped : int
        Lines and paths, which enclose no area.
    """
    labels = None
    if "label" in getattr(layer, "features", {}):
        labels = [str(v) for v in layer.features["label"]]
    out, skipped = [], 0
    for i, (verts, kind) in enumerate(zip(layer.data, layer.shape_type)):
        verts = np.asarray(verts, np.float64)[:, -2:]
        if kind in ("line", "path"):
            skipped += 1
            continue
        if kind == "ellipse":
            verts = _ellipse(verts)
        if slide_layer is not None:
            full = np.zeros((len(verts), layer.ndim))
            full[:, -2:] = verts
            world = np.array([layer.data_to_world(v) for v in full])
            verts = np.array([slide_layer.world_to_data(w) for w in world])[:, -2:]
        label = labels[i] if labels and labels[i] in (TUMOR, EXCLUSION) else TUMOR
        out.append(Annotation(verts[:, ::-1].copy(), label, name=f"Annotation {i}"))
    return out, skipped


def class_shapes_kwargs(slide: Slide, *, name: str, label: str = TUMOR, metadata: dict | None = None) -> dict:
    """Keyword arguments for ``viewer.add_shapes``: an empty layer to draw tumor / not-tumor outlines in.

    Each shape's class is its ``label`` feature, shown as its colour and as text.
    """
    return {"name": name, "scale": slide_scale(slide), "units": layer_units(slide),
            "features": {"label": np.array([], dtype=object)}, "feature_defaults": {"label": label},
            "face_color": "transparent", "edge_color": CLASS_COLOURS[label], "text": CLASS_TEXT,
            "edge_width": max(2.0, max(slide.dimensions) / 500), "metadata": metadata or {"slide": slide.path}}


def set_draw_class(layer: Any, label: str) -> None:
    """Draw the next shapes of ``layer`` as ``label``, leaving every shape already drawn as it is.

    napari applies a new current colour to the *selected* shapes, and the
    shape just drawn stays selected: so nothing is selected first.
    """
    layer.selected_data = set()
    layer.feature_defaults["label"] = label
    layer.current_edge_color = CLASS_COLOURS[label]


def class_legend_html() -> str:
    """The class colours as a one-line legend for a widget label."""
    names = {TUMOR: "tumor", EXCLUSION: "not tumor (exclusion)"}
    return "&nbsp;&nbsp;".join(f'<span style="color:{CLASS_COLOURS[k]}">■</span> {v}' for k, v in names.items())
