"""napari readers: whole-slide images, and tumor annotations over them."""


from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..annotations import GEOJSON_SUFFIXES, check_within, read_annotations
from ..errors import InputError, SlideError
from ..wsi import SLIDE_SUFFIXES, open_slide
from .layers import annotation_layer_data, slide_layer_data
from .results import heatmap_colormap, results_folder, results_layer_data

__all__ = ['SLIDE_ONLY_SUFFIXES', 'get_annotation_reader', 'get_heatmap_reader', 'get_reader', 'get_results_reader',
           'prefer_for_slides']

log = logging.getLogger(__name__)



# Suffixes that only whole-slide images use: for these the plugin asks napari to be the preferred reader.
# .tif/.tiff/.dcm stay a choice (plain images use them too).
SLIDE_ONLY_SUFFIXES = (".svs", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")


def get_reader(path: str | list[str]):
    """A reader for a slide file OpenSlide can open; for one it cannot, a reader that says why.

    napari asks this plugin only for the suffixes it claims (or when the
    user chose it): declining would leave the user napari's generic "refused
    the file", so a file that is not a readable slide gets a notification
    naming it and the reason, and opens nothing.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if results_folder(path) is not None:  # a predictions folder's heatmap.tif: its results, not a slide
        return get_results_reader(path)
    try:
        slide = open_slide(path)
    except SlideError as exc:
        return _refusal(path, str(exc))
    except Exception as exc:  # reading must never raise into napari
        log.warning("napari-lymphmet cannot open %s: unexpected %r", path, exc)
        return _refusal(path, f"unexpected error: {exc}")

    def read(_path):
        return [slide_layer_data(slide)]

    return read


def _refusal(path: str, reason: str):
    """A reader that opens nothing and shows why, in one line naming the file."""
    name = Path(path).name
    reason = " ".join(reason.split())
    text = reason if name in reason else f"{name}: {reason}"
    if Path(path).suffix.lower() not in SLIDE_ONLY_SUFFIXES:
        text += " (to open it as a plain image, use File ▸ Open with Plugin ▸ napari builtins)"

    def read(_path):
        from napari.utils.notifications import show_error

        log.info("napari-lymphmet: %s", text)
        show_error(f"napari-lymphmet cannot open {text}")
        return [(None,)]  # napari's sentinel for "nothing to add", not a failure

    return read


def prefer_for_slides(*_args) -> list[str]:
    """Make this plugin napari's reader for the slide-only suffixes the user has not assigned; the ones set.

    Without it, dropping an SVS asks which reader to use, and napari's
    builtin one opens a flat image the widgets cannot use. Runs when the
    plugin activates (``on_activate`` in the manifest).
    """
    try:
        from napari.settings import get_settings
    except ImportError:  # pragma: no cover (napari is a dependency)
        return []
    plugins = get_settings().plugins
    chosen = dict(plugins.extension2reader)
    added = [f"*{suffix}" for suffix in SLIDE_ONLY_SUFFIXES if f"*{suffix}" not in chosen]
    if added:
        plugins.extension2reader = {**chosen, **dict.fromkeys(added, "napari-lymphmet")}
    return added


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
    """The slide these annotations (or results) belong to: an open slide layer, else a file.

    An open layer whose slide has the same stem (or, in a predictions
    folder, the stem ``heatmap.json`` names) wins; else the only open slide
    layer; else the slide ``heatmap.json`` names; else a slide file with the
    same stem in the same folder.
    """
    candidates = _open_slide_paths()
    named = _slide_named_beside(path)
    same = [c for c in candidates if Path(c).stem == (Path(named).stem if named else path.stem)]
    if same or len(candidates) == 1:
        return open_slide((same or candidates)[0])
    if named and Path(named).is_file():
        return open_slide(named)
    for suffix in SLIDE_SUFFIXES:
        beside = path.with_suffix(suffix)
        if beside.exists():
            return open_slide(beside)
    return None


def _open_slide_paths() -> list[str]:
    """Paths of the slides open in the current viewer (none without Qt or a viewer)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # no Qt, no viewer: fall back to files
        viewer = None
    if viewer is None:
        return []
    return [layer.metadata["path"] for layer in viewer.layers
            if isinstance(getattr(layer, "metadata", None), dict) and "path" in layer.metadata
            and "vendor" in layer.metadata]


def _predictions_info(path: Path) -> dict:
    """``heatmap.json`` of the predictions folder ``path`` lies in (or is); empty elsewhere."""
    import json

    info = path.parent / "heatmap.json" if path.is_file() else path / "heatmap.json"
    try:
        return json.loads(info.read_text()) if info.is_file() else {}
    except (OSError, ValueError):
        return {}


def _slide_named_beside(path: Path) -> str | None:
    """The slide a predictions folder's files belong to, from its ``heatmap.json``."""
    return _predictions_info(path).get("slide")


def get_results_reader(path: str | list[str]):
    """Reader for a ``lymphmet predict`` folder (or its ``heatmap.tif``): heatmap, detections, regions.

    They are laid over the open slide they were made from (else the only
    open slide, else the slide named in ``heatmap.json``).
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    folder = results_folder(path)
    if folder is None:
        return None

    def read(_path):
        from napari.utils.notifications import show_warning

        try:
            slide = _slide_for(folder / "heatmap.tif")
            if slide is None:
                raise InputError(f"{folder.name}: open its slide first (heatmap.json names no slide that exists)")
            with slide:
                return results_layer_data(folder, slide)
        except InputError as exc:
            show_warning(str(exc))
            return [(None,)]

    return read


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
                # predict's GeoJSON is relative to an MRXS slide's bounds, as QuPath shows it
                offset = tuple(_predictions_info(path).get("geojson_offset") or (0, 0)) \
                    if path.suffix.lower() != ".xml" else (0, 0)
                anns = read_annotations(path, offset=offset)
                check_within(anns, slide.dimensions, source=path.name)
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
                        "translate": heatmap.translate, "units": units, "colormap": heatmap_colormap(), "opacity": 1.0,
                        "contrast_limits": (0.0, 1.0), "blending": "translucent",
                        "multiscale": len(heatmap.levels) > 1, "metadata": {"source": str(path)}}, "image")]

    return read
