"""napari readers: whole-slide images, and tumor annotations over them."""


from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..annotations import GEOJSON_SUFFIXES, read_annotations
from ..errors import InputError, SlideError
from ..wsi import open_slide
from .layers import annotation_layer_data, slide_layer_data

__all__ = ['get_annotation_reader', 'get_heatmap_reader', 'get_reader']

log = logging.getLogger(__name__)

_SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide",
                   ".bif", ".dcm")


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


def _looks_like_annotations(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    if path.suffix.lower() == ".xml":
        return "<ASAP_Annotations" in head
    return path.suffix.lower() in GEOJSON_SUFFIXES and head.lstrip().startswith(("{", "[")) \
        and ("Feature" in head or "Polygon" in head)


def _slide_for(path: Path):
    """The slide these annotations belong to: an open slide layer, else a file beside them.

    An open layer whose slide has the same stem wins; else the only open
    slide layer; else a slide file with the same stem in the same folder.
    """
    candidates = []
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # no Qt, no viewer: fall back to files
        viewer = None
    if viewer is not None:
        candidates = [layer.metadata["path"] for layer in viewer.layers
                      if isinstance(getattr(layer, "metadata", None), dict) and "path" in layer.metadata
                      and "vendor" in layer.metadata]
    same = [c for c in candidates if Path(c).stem == path.stem]
    if same or len(candidates) == 1:
        return open_slide((same or candidates)[0])
    for suffix in _SLIDE_SUFFIXES:
        beside = path.with_suffix(suffix)
        if beside.exists():
            return open_slide(beside)
    return None


def get_annotation_reader(path: str | list[str]):
    """Reader for ASAP XML and QuPath GeoJSON: a Shapes layer aligned to its slide."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if not _looks_like_annotations(path):
        return None

    def read(_path):
        from napari.utils.notifications import show_info, show_warning

        try:
            slide = _slide_for(path)
            if slide is None:
                raise InputError(f"{path.name}: open its slide first (no slide layer is open, "
                                 f"and no slide named {path.stem}.* lies beside it)")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                anns = read_annotations(path)
        except InputError as exc:
            show_warning(str(exc))
            return [(None,)]
        for w in caught:
            show_warning(str(w.message))
        if not anns:
            show_warning(f"{path.name}: no polygons")
            return [(None,)]
        with slide:  # only its size and mpp are needed
            data = annotation_layer_data(anns, slide, name=path.stem + " annotations", source=str(path))
        if data[2] == "labels":
            show_info(f"{path.name}: {len(anns)} polygons, shown as a Labels layer (Shapes layers are "
                      f"slow beyond a few thousand)")
        return [data]

    return read


def get_heatmap_reader(path: str | list[str]):
    """Return a reader for a ``heatmap.ome.zarr`` that ``lymphmet predict`` wrote, else ``None``.

    The layer lands over the slide: its scale and translation are in µm,
    as the slide layer's are.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if not (path / "zarr.json").is_file():
        return None
    from ..inference import read_heatmap_zarr

    try:
        heatmap = read_heatmap_zarr(path)
    except InputError as exc:
        log.info("napari-lymphmet declines %s: %s", path.name, exc)
        return None

    def read(_path):
        units = (heatmap.unit or "pixel",) * 2
        data = heatmap.levels if len(heatmap.levels) > 1 else heatmap.levels[0]
        return [(data, {"name": f"Tumor probability ({path.parent.name})", "scale": heatmap.scale,
                        "translate": heatmap.translate, "units": units, "colormap": "turbo", "opacity": 0.5,
                        "contrast_limits": (0.0, 1.0), "blending": "translucent",
                        "multiscale": len(heatmap.levels) > 1, "metadata": {"source": str(path)}}, "image")]

    return read
