"""Whole-slide inference throughput and memory (issues 8 and 30).

In one process: ``predict_slide`` on a large synthetic slide with the
runtime ``predict`` picks (ONNX Runtime where installed), against the same
model alone on the same number of in-memory, already prepared batches, in
that runtime and in Keras (traced once, as ``model.predict`` runs it).
predict / Keras alone is the speed-up a user sees over a plain Keras loop;
predict / runtime alone is the pipeline's efficiency (1.0: reading costs
nothing because it overlaps compute). Peak RSS is measured in child processes for two slide sizes, to
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


def run_one(size: int, limit: int | None, geometry: str = "default", runtime: str = "auto") -> dict:
    from napari_lymphmet import open_slide
    from napari_lymphmet.inference import grid_for, predict_slide
    from napari_lymphmet.model import load_model, load_runner
    from napari_lymphmet.model.runtime import TensorFlowRunner

    from napari_lymphmet.tissue import tissue_mask

    path = _model(geometry)
    runner, meta = load_runner(path, runtime=runtime)
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
        x = np.random.default_rng(0).normal(0, 1, (64, size, size, 3)).astype(np.float32)  # prepared patches
        runner(x)  # warm up
        start = time.perf_counter()
        result = predict_slide(slide, runner, meta, tissue_mask=tissue, tissue_downsample=mask.downsample,
                               batch_size=64)
        t_pipeline = time.perf_counter() - start
    n = result.predicted
    batches = int(np.ceil(n / 64))

    def alone(model) -> float:
        model(x)
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        return n / (time.perf_counter() - start)

    runtime_pps = alone(runner)
    # The baseline: the same Keras model alone on in-memory batches, traced once (as model.predict runs it).
    # Last: TensorFlow's thread pools stay busy in the process once it is loaded.
    keras_pps = alone(TensorFlowRunner(load_model(path)[0]))
    return {"size": size, "patches": n, "runtime": runner.name, "pipeline_pps": n / t_pipeline,
            "runtime_pps": runtime_pps, "keras_pps": keras_pps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 49152])
    parser.add_argument("--limit", type=int, default=3000, help="patches per slide (0: all)")
    parser.add_argument("--geometry", choices=list(GEOMETRIES), default="default")
    parser.add_argument("--runtime", choices=("auto", "onnx", "tensorflow"), default="auto")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.limit or None, args.geometry, args.runtime)))
        return
    _model(args.geometry)
    for size in args.sizes:
        _slide(size, args.geometry)
        out = subprocess.run(["/usr/bin/time", "-v", sys.executable, __file__, "--child", str(size),
                              "--limit", str(args.limit), "--geometry", args.geometry, "--runtime", args.runtime],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 2**20
        print(f"{args.geometry} geometry, {size}² slide, {r['patches']} patches, runtime {r['runtime']}: "
              f"predict {r['pipeline_pps']:.1f} patches/s; on in-memory batches the runtime alone "
              f"{r['runtime_pps']:.1f}, Keras alone {r['keras_pps']:.1f} patches/s → predict / Keras alone "
              f"{r['pipeline_pps'] / r['keras_pps']:.2f} (target ≥ 2), predict / runtime alone "
              f"{r['pipeline_pps'] / r['runtime_pps']:.2f}; peak RSS {rss:.2f} GiB")


if __name__ == "__main__":
    main()
