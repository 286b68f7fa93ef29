"""Outputs: split from inference.py."""


from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_path
from .detect import detect
from ..errors import InputError
from .run import PredictResult
from ..wsi import Slide

__all__ = ['colormap', 'overlay_image', 'read_heatmap', 'write_outputs']


# -- files ------------------------------------------------------------------------------
_TURBO = np.array([[48, 18, 59], [70, 107, 227], [40, 187, 236], [50, 241, 153], [164, 252, 60],
                   [237, 208, 58], [251, 128, 34], [211, 46, 6], [122, 4, 3]], np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """Turbo-like ``(..., 3) uint8`` colours for values in [0, 1]."""
    t = np.clip(values, 0, 1) * (len(_TURBO) - 1)
    i = np.minimum(t.astype(int), len(_TURBO) - 2)
    f = (t - i)[..., None]
    return (_TURBO[i] * (1 - f) + _TURBO[i + 1] * f).astype(np.uint8)


def overlay_image(thumbnail: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.55,
                  floor: float = 0.05) -> np.ndarray:
    """The heatmap over a slide thumbnail, with a colour bar (0 bottom, 1 top) on the right."""
    from PIL import Image

    h, w = thumbnail.shape[:2]
    heat = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize((w, h), Image.Resampling.NEAREST))
    a = (alpha * (heat > floor))[..., None]
    image = (thumbnail[..., :3] * (1 - a) + colormap(heat) * a).astype(np.uint8)
    bar_w = max(8, w // 40)
    bar = np.repeat(colormap(np.linspace(1, 0, h))[:, None], bar_w, axis=1)
    for tick in np.linspace(0, h - 1, 5).astype(int):  # quarter marks
        bar[max(tick - 1, 0):tick + 1, : bar_w // 2] = 255
    gap = np.full((h, max(4, w // 100), 3), 255, np.uint8)
    return np.concatenate([image, gap, bar], axis=1)


def write_outputs(out_dir: str | os.PathLike, slide: Slide, result: PredictResult, *, model_name: str,
                  threshold: float = 0.5, method: str = "components") -> dict:
    """``heatmap.tif``, ``heatmap.json``, ``overlay.png`` and ``detections.csv``, each atomically."""
    import tifffile
    from skimage.io import imsave

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
    with atomic_path(out / "heatmap.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    with atomic_path(out / "overlay.png") as tmp:
        imsave(tmp, overlay_image(slide.thumbnail(1024), result.heatmap), check_contrast=False)
    detections = detect(result.heatmap, grid.downsample, threshold=threshold, method=method)
    with atomic_path(out / "detections.csv") as tmp:
        # CAMELYON16 submission format: confidence,X,Y per line, level-0 px, no header.
        tmp.write_text("".join(f"{c:.6f},{x:.0f},{y:.0f}\n" for c, x, y in detections))
    return {"heatmap": str(out / "heatmap.tif"), "heatmap_json": str(out / "heatmap.json"),
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
