"""The heatmap as a multiscale OME-Zarr (NGFF 0.5, zarr 3), in µm, for napari and other NGFF viewers.

Cell ``(r, c)`` covers level-0 px ``[c·D, (c+1)·D)``; its centre, in the
OME coordinate system (pixel centres at ``index·scale + translation``), is
level-0 px ``c·D + (D − 1)/2``. Scale and translation are in µm when the
slide's mpp is known, else in level-0 px (no unit). Level ``k`` halves the
one before by a 2 × 2 mean, so a zoomed-out view shows the average
probability, not a sample of it.
"""


from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import atomic_dir
from ..errors import InputError

__all__ = ["HeatmapZarr", "read_heatmap_zarr", "write_heatmap_zarr"]

_MIN_SIDE = 64  # the coarsest level keeps at least this many cells on its short side
_CHUNK = 256


class HeatmapZarr:
    """What :func:`read_heatmap_zarr` returns: the levels and where level 0 lies.

    Attributes
    ----------
    levels : list of zarr.Array
        ``(rows, cols) float32`` per level, finest first; read lazily.
    scale, translate : (y, x) float
        Level 0's cell size and first cell centre, in ``unit``.
    unit : str or None
        ``"micrometer"``, or None for level-0 px.
    """

    def __init__(self, levels: list, scale: tuple[float, float], translate: tuple[float, float],
                 unit: str | None) -> None:
        self.levels, self.scale, self.translate, self.unit = levels, scale, translate, unit


def _mean2(a: np.ndarray) -> np.ndarray:
    h, w = (a.shape[0] + 1) // 2 * 2, (a.shape[1] + 1) // 2 * 2
    padded = np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1])), mode="edge")
    return padded.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.float32)


def write_heatmap_zarr(path: str | os.PathLike, heatmap: np.ndarray, *, downsample: float,
                       mpp: tuple[float, float] | None, name: str = "tumor probability") -> Path:
    """Write ``heatmap`` (``(rows, cols)`` in [0, 1]) as an OME-Zarr group at ``path``, atomically."""
    import zarr

    per_px = (mpp[1], mpp[0]) if mpp else (1.0, 1.0)
    levels = [np.asarray(heatmap, np.float32)]
    while min(levels[-1].shape) >= 2 * _MIN_SIDE:
        levels.append(_mean2(levels[-1]))
    datasets = []
    with atomic_dir(path) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        for k, level in enumerate(levels):
            cell = downsample * 2 ** k  # level-0 px per cell
            array = group.create_array(str(k), shape=level.shape, dtype="float32",
                                       chunks=(min(_CHUNK, level.shape[0]), min(_CHUNK, level.shape[1])))
            array[...] = level
            datasets.append({"path": str(k), "coordinateTransformations": [
                {"type": "scale", "scale": [cell * per_px[0], cell * per_px[1]]},
                {"type": "translation", "translation": [(cell - 1) / 2 * per_px[0], (cell - 1) / 2 * per_px[1]]},
            ]})
        axes = [{"name": a, "type": "space", **({"unit": "micrometer"} if mpp else {})} for a in "yx"]
        group.attrs["ome"] = {"version": "0.5", "multiscales": [{"name": name, "axes": axes,
                                                                  "datasets": datasets}]}
    return Path(path)


def read_heatmap_zarr(path: str | os.PathLike) -> HeatmapZarr:
    """Open a heatmap written by :func:`write_heatmap_zarr` (or any 2-D NGFF 0.5 multiscale image)."""
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(path, mode="r")
        multiscale = group.attrs["ome"]["multiscales"][0]
        levels = [group[d["path"]] for d in multiscale["datasets"]]
        first = {t["type"]: t for t in multiscale["datasets"][0]["coordinateTransformations"]}
    except (FileNotFoundError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not an OME-Zarr image ({type(exc).__name__}: {exc})") from None
    if any(level.ndim != 2 for level in levels):
        raise InputError(f"{path}: expected a 2-D heatmap, got {levels[0].ndim} dimensions")
    scale = tuple(first["scale"]["scale"])
    translate = tuple(first.get("translation", {}).get("translation", (0.0, 0.0)))
    unit = multiscale["axes"][0].get("unit")
    return HeatmapZarr(levels, scale, translate, unit)
