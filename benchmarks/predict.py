"""Whole-slide inference throughput and memory (issue 8).

In one process: ``predict_slide`` on a large synthetic slide, against
``model.predict``-style inference (``predict_patches``, the same call the
pipeline makes) on the same number of in-memory patches. Their ratio is the
pipeline efficiency: 1.0 means reading costs nothing because it overlaps
compute. Peak RSS is measured in child processes for two slide sizes, to
show it stays flat.

    python benchmarks/predict.py [--sizes 16384 49152]
    python benchmarks/predict.py --geometry camelyon --sizes 32768

``--geometry camelyon`` is real CAMELYON16 geometry: a 0.243 µm/px slide
(levels at 2×, 4×, …) and a model of 256 px patches at 0.243 µm/px with a
128 px input, so every patch is a 256 px box read down to 128 px.
``--geometry 10x`` is the bundled model's: 96 px patches at 0.972 µm/px
(input 96) on the same slide, each a 384 px box read from level 2.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


GEOMETRIES = {  # slide mpp, model patch size and mpp (input: 128 px, at most the patch size)
    "default": (0.25, 128, 0.5),
    "10x": (0.243, 96, 0.972),
    "camelyon": (0.243, 256, 0.243),
}


def _slide(size: int, geometry: str = "default") -> Path:
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    mpp = GEOMETRIES[geometry][0]
    path = Path(tempfile.gettempdir()) / f"lymphmet-bench-{size}-{mpp}.tif"
    if not path.exists():
        print(f"writing {path} (once) ...", file=sys.stderr)
        write_synthetic_slide(path, SynthSpec(width=size, height=size, seed=0, mpp=mpp))
    return path


def _model(geometry: str = "default") -> Path:
    """A small-cnn with a 128 px input, or the patch size if smaller (weights random: speed only)."""
    from napari_lymphmet.model import ModelCard, build_model, save_model

    _, patch, mpp = GEOMETRIES[geometry]
    path = Path(tempfile.gettempdir()) / f"lymphmet-bench-small-cnn-{patch}-{mpp}.keras"
    if not path.exists():
        size = min(128, patch)
        save_model(build_model("small-cnn", input_size=size, weights="none"), path,
                   ModelCard(backbone="small-cnn", input_size=size, patch_size=patch, patch_mpp=mpp,
                             input_space="hed"))
    return path


def run_one(size: int, limit: int | None, geometry: str = "default") -> dict:
    from napari_lymphmet import open_slide
    from napari_lymphmet.inference import grid_for, predict_slide
    from napari_lymphmet.model import load_model, predict_patches
    from napari_lymphmet.tissue import tissue_mask

    model, meta = load_model(_model(geometry))
    with open_slide(_slide(size, geometry)) as slide:
        mask = tissue_mask(slide)
        tissue = mask.mask
        if limit:  # keep the first `limit` tissue cells' rows only
            grid = grid_for(slide, meta)
            rows = int(np.ceil(limit / max(1, grid.cols))) * 4
            cut = int(rows * grid.downsample / mask.downsample)
            tissue = tissue.copy()
            tissue[cut:] = False
        size = meta.input_size
        predict_patches(model, meta, np.zeros((64, size, size, 3), np.uint8))  # warm up
        start = time.perf_counter()
        result = predict_slide(slide, model, meta, tissue_mask=tissue, tissue_downsample=mask.downsample,
                               batch_size=64)
        t_pipeline = time.perf_counter() - start
    n = result.predicted
    batch = np.random.default_rng(0).integers(0, 255, (64, size, size, 3), dtype=np.uint8)
    start = time.perf_counter()
    for _ in range(int(np.ceil(n / 64))):
        predict_patches(model, meta, batch)
    t_model = time.perf_counter() - start
    return {"size": size, "patches": n, "pipeline_pps": n / t_pipeline, "model_pps": n / t_model}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 49152])
    parser.add_argument("--limit", type=int, default=3000, help="patches per slide (0: all)")
    parser.add_argument("--geometry", choices=list(GEOMETRIES), default="default")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.limit or None, args.geometry)))
        return
    _model(args.geometry)
    for size in args.sizes:
        _slide(size, args.geometry)
        out = subprocess.run(["/usr/bin/time", "-v", sys.executable, __file__, "--child", str(size),
                              "--limit", str(args.limit), "--geometry", args.geometry],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 2**20
        print(f"{args.geometry} geometry, {size}² slide, {r['patches']} patches: "
              f"predict {r['pipeline_pps']:.1f} patches/s, "
              f"model on in-memory batches {r['model_pps']:.1f} patches/s → efficiency "
              f"{r['pipeline_pps'] / r['model_pps']:.2f} (target ≥ 0.9); peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
