"""A slide's result files: heatmap (TIFF, OME-Zarr, JSON), overlay, detections, lesions and tumor regions."""


from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_path, result_set
from ..annotations import write_asap_xml, write_geojson, write_geojson_points
from .detect import DETECTION_SMOOTHING, detect, detection_sigma, slide_score
from .lesion_calibration import NODE_GATE_LEVEL, node_gate
from .lesions import measure_lesions, write_lesions_csv
from .staging import node_category
from .regions import region_annotations, tumor_regions
from .omezarr import write_heatmap_zarr
from ..errors import InputError
from .run import PredictResult
from ..wsi import Slide

__all__ = ['read_heatmap', 'write_outputs']


def write_outputs(out_dir: str | os.PathLike, slide: Slide, result: PredictResult, *, model_name: str,
                  threshold: float = 0.5, method: str = "components", smooth: float = DETECTION_SMOOTHING,
                  views: int = 1, runtime: str = "", normal_quantiles: Sequence[float] | None = None,
                  gate_level: float = NODE_GATE_LEVEL) -> dict:
    """Write a slide's results into ``out_dir`` as one set: the old complete set or the new, never a mix.

    ``heatmap.tif``, ``heatmap.ome.zarr``, ``heatmap.json``, ``overlay.png``;
    ``detections.csv`` (CAMELYON16) and ``detections.geojson`` (QuPath
    points with a ``probability`` measurement); ``lesions.csv`` (each
    detection's region: area and major axis in mm); ``tumor_regions.geojson``
    and ``tumor_regions.xml`` (ASAP): the connected regions above
    ``threshold`` as polygons in level-0 px. Detections and regions are
    found on the heatmap smoothed by ``smooth`` patch widths (0: as is);
    ``heatmap.tif`` keeps the raw probabilities. GeoJSON coordinates are
    relative to the slide's bounds when it has them (MRXS), as QuPath
    shows such slides; ``heatmap.json`` records that ``geojson_offset``.

    With ``normal_quantiles`` (the model card's
    :attr:`~napari_lymphmet.model.ModelCard.normal_score_quantiles`) the
    node's category is gated: a slide whose score is under what
    ``gate_level`` of tumor-free nodes with its tissue reach (:func:`.lesion_calibration.node_gate`) is
    ``negative`` whatever it detected; its detections and lesions are still
    written, for review. ``heatmap.json``'s ``node_gate`` records the test.

    The files are written into a staging folder and moved in together,
    ``heatmap.json`` (the set's completion marker) last (see
    :func:`napari_lymphmet.io.result_set`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with result_set(out, marker="heatmap.json") as stage:
        summary = _write_set(stage, slide, result, model_name=model_name, threshold=threshold, method=method,
                             smooth=smooth, views=views, runtime=runtime, normal_quantiles=normal_quantiles,
                             gate_level=gate_level)
    names = {"heatmap": "heatmap.tif", "heatmap_zarr": "heatmap.ome.zarr", "heatmap_json": "heatmap.json",
             "overlay": "overlay.png", "detections": "detections.csv", "detections_geojson": "detections.geojson",
             "lesions": "lesions.csv", "tumor_regions_geojson": "tumor_regions.geojson",
             "tumor_regions_xml": "tumor_regions.xml"}
    return {**{key: str(out / name) for key, name in names.items()}, **summary}


def _write_set(out: Path, slide: Slide, result: PredictResult, *, model_name: str, threshold: float, method: str,
               smooth: float, views: int, runtime: str, normal_quantiles: Sequence[float] | None,
               gate_level: float) -> dict:
    """Write every result file into ``out`` (the staging folder); the summary numbers."""
    import tifffile

    from ..figures import axes_box, overlay_figure, save_png

    grid = result.grid
    info = {"downsample": grid.downsample, "mpp": grid.mpp, "model": model_name,
            "shape": list(result.heatmap.shape), "slide": slide.path, "patch_size": grid.patch_size,
            "patch_box": grid.box, "read_level": grid.read_level,
            "cell": "cell (r, c) covers level-0 x in [c*D, (c+1)*D), y in [r*D, (r+1)*D)",
            "complete": result.complete, "screened": result.screened, "tta_views": views,
            "runtime": runtime or None,  # what ran the model: "onnx" or "tensorflow"
            # Screening predicts some tissue cells; the others hold their predicted neighbours' mean.
            "cells": {"tissue": result.total, "predicted": result.total - result.inferred,
                      "inferred": result.inferred}}
    sigma = detection_sigma(grid, smooth)
    detections = detect(result.heatmap, grid.downsample, threshold=threshold, method=method, smooth=sigma)
    regions = tumor_regions(result.heatmap, grid.downsample, threshold=threshold, mpp=slide.mpp, smooth=sigma)
    info.update(threshold=threshold, detection_smoothing={"patches": smooth, "sigma_cells": sigma},
                slide_score=slide_score(result.heatmap), detections=int(len(detections)),
                tumor_area_mm2=sum(r.area_um2 for r in regions) / 1e6 if slide.mpp else None,
                geojson_offset=list(slide.bounds[:2]) if slide.bounds else [0, 0])
    lesions = measure_lesions(result.heatmap, grid.downsample, detections, threshold=threshold, smooth=sigma,
                              mpp=slide.mean_mpp if slide.mpp else None)
    # The node's category, as a pathologist reports it: its largest metastasis's (CAMELYON17), unless no
    # more than a tumor-free node with this tissue would score (the node gate).
    gate = node_gate(result.heatmap, normal_quantiles, level=gate_level)
    passed = gate is None or info["slide_score"] >= gate
    info["node_gate"] = None if gate is None else {"gate": gate, "level": gate_level, "passed": passed}
    counted = [le.major_axis_mm for le in lesions] if passed else []
    info.update(largest_lesion_mm=max((mm for mm in counted if mm is not None), default=None),
                category=node_category(counted))
    with atomic_path(out / "heatmap.tif") as tmp:
        tifffile.imwrite(tmp, result.heatmap.astype(np.float32), description=json.dumps(info),
                         compression="zlib", metadata=None)
    write_heatmap_zarr(out / "heatmap.ome.zarr", result.heatmap, downsample=grid.downsample, mpp=slide.mpp)
    extent = (slide.dimensions[0] * slide.mean_mpp, slide.dimensions[1] * slide.mean_mpp) if slide.mpp else None
    reach = (grid.cols * grid.downsample / slide.dimensions[0], grid.rows * grid.downsample / slide.dimensions[1])
    figure = overlay_figure(slide.thumbnail(1024), result.heatmap, extent_um=extent, heatmap_fraction=reach,
                            title=f"{Path(slide.path).name}: tumor probability")
    save_png(figure, out / "overlay.png")
    # Where the slide lies in overlay.png, so pages and other tools can point into it.
    info["overlay_axes"] = list(axes_box(figure))
    with atomic_path(out / "heatmap.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    with atomic_path(out / "detections.csv") as tmp:
        # CAMELYON16 submission format: confidence,X,Y per line, level-0 px, no header.
        tmp.write_text("".join(f"{c:.6f},{x:.0f},{y:.0f}\n" for c, x, y in detections))
    offset = tuple(float(v) for v in slide.bounds[:2]) if slide.bounds else (0.0, 0.0)
    write_lesions_csv(out / "lesions.csv", lesions)
    write_geojson_points(out / "detections.geojson", detections[:, 1:], offset=offset,
                         measurements={"probability": detections[:, 0]})
    write_geojson(out / "tumor_regions.geojson", region_annotations(regions), offset=offset,
                  properties=[{"probability_max": r.probability_max, "probability_mean": r.probability_mean,
                               "area_um2": r.area_um2} for r in regions])
    write_asap_xml(out / "tumor_regions.xml", region_annotations(regions))
    return {"n_detections": int(len(detections)), "tumor_area_mm2": info["tumor_area_mm2"],
            "largest_lesion_mm": info["largest_lesion_mm"], "category": info["category"]}


def read_heatmap(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """A ``heatmap.tif`` and its metadata."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such heatmap")
    with tifffile.TiffFile(path) as tif:
        data = tif.pages[0].asarray()
        info = json.loads(tif.pages[0].description)
    return data, info
