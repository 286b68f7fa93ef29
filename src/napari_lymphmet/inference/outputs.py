"""Outputs: split from inference.py."""


from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_path
from .detect import detect
from .omezarr import write_heatmap_zarr
from ..errors import InputError
from .run import PredictResult
from ..wsi import Slide

__all__ = ['read_heatmap', 'write_outputs']


def write_outputs(out_dir: str | os.PathLike, slide: Slide, result: PredictResult, *, model_name: str,
                  threshold: float = 0.5, method: str = "components") -> dict:
    """``heatmap.tif``, ``heatmap.ome.zarr``, ``heatmap.json``, ``overlay.png`` and ``detections.csv``, each atomically.
    """
    import tifffile

    from ..figures import axes_box, overlay_figure, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = result.grid
    info = {"downsample": grid.downsample, "mpp": grid.mpp, "model": model_name,
            "shape": list(result.heatmap.shape), "slide": slide.path, "patch_size": grid.patch_size,
            "patch_box": grid.box, "read_level": grid.read_level,
            "cell": "cell (r, c) covers level-0 x in [c*D, (c+1)*D), y in [r*D, (r+1)*D)",
            "complete": result.complete}
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
    detections = detect(result.heatmap, grid.downsample, threshold=threshold, method=method)
    with atomic_path(out / "detections.csv") as tmp:
        # CAMELYON16 submission format: confidence,X,Y per line, level-0 px, no header.
        tmp.write_text("".join(f"{c:.6f},{x:.0f},{y:.0f}\n" for c, x, y in detections))
    return {"heatmap": str(out / "heatmap.tif"), "heatmap_zarr": str(out / "heatmap.ome.zarr"),
            "heatmap_json": str(out / "heatmap.json"),
            "overlay": str(out / "overlay.png"), "detections": str(out / "detections.csv"),
            "n_detections": int(len(detections))}


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
