"""A CAMELYON-size slide end to end with the bundled model: dense against screened (issues 18 and 30).

The slide: synthetic, 100,000 × 200,000 px at 0.243 µm/px (levels at 2×,
4×, …), three metastases, with glass beyond a band so that about 30 % of it
is tissue, as on a CAMELYON16 slide. Written once into the temp folder
(about 10 minutes and 5 GB on 2 cores).

Each run is timed from the slide's opening to its full heatmap (tissue
detection included), in one process, dense first and then screened, with
the model warmed up before either, in the runtime ``predict`` picks (ONNX
Runtime where installed; ``--runtime`` to choose); then the same model
alone on in-memory batches, in that runtime and in Keras. Printed: wall time, cells predicted,
throughput, and what screening changes against dense (lesions detected,
heatmap AUC against the lesion outlines, slide score).

    python benchmarks/camelyon_size.py [--width 100000 --height 200000] [--screen-threshold 0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _slide(width: int, height: int, tissue: float) -> Path:
    from napari_lymphmet.annotations import write_asap_xml
    from napari_lymphmet.synthetic import GLASS, LAYOUT_STEP, SynthSpec, make_layout
    from napari_lymphmet.wsi import write_pyramid_tiff

    path = Path(tempfile.gettempdir()) / f"lymphmet-camelyon-{width}x{height}.tif"
    if path.exists():
        return path
    spec = SynthSpec(width=width, height=height, seed=0, lesions=3, mpp=0.243)
    layout = make_layout(spec)
    on = layout.classes != GLASS
    # Glass below a cut row, chosen so that `tissue` of the slide remains tissue.
    per_row = np.cumsum(on.sum(axis=1)) / on.size
    cut = int(np.searchsorted(per_row, tissue)) + 1
    layout.classes[cut:] = GLASS
    layout.artefacts[cut:] = 0
    layout.lesions = [p for p in layout.lesions if p[:, 1].max() < cut * LAYOUT_STEP]
    print(f"writing {path} (once; {(layout.classes != GLASS).mean():.0%} tissue, "
          f"{len(layout.lesions)} lesions) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    write_pyramid_tiff(path, layout.render, width, height, mpp=spec.mpp, description="camelyon-size synthetic")
    write_asap_xml(path.with_suffix(".xml"), layout.lesions, group="Tumor")
    print(f"written in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return path


def _run(path: Path, model, card, screen) -> tuple[object, float]:
    from napari_lymphmet import open_slide
    from napari_lymphmet.inference import predict_slide
    from napari_lymphmet.tissue import tissue_mask

    start = time.perf_counter()
    with open_slide(path) as slide:
        mask = tissue_mask(slide)
        result = predict_slide(slide, model, card, tissue_mask=mask.mask, tissue_downsample=mask.downsample,
                               screen=screen)
    return result, time.perf_counter() - start


def _figures(result, lesions) -> tuple[set[int], float, float]:
    from scipy import ndimage

    from napari_lymphmet.annotations import rasterize
    from napari_lymphmet.evaluation import roc_auc
    from napari_lymphmet.inference import detect, slide_score

    D = result.grid.downsample
    found = set()
    points = detect(result.heatmap, D)
    for i, lesion in enumerate(lesions):
        near = ndimage.binary_dilation(rasterize([lesion], result.heatmap.shape, downsample=D), iterations=1)
        if any(near[int(y // D), int(x // D)] for _, x, y in points):
            found.add(i)
    tumor = rasterize(lesions, result.heatmap.shape, downsample=D)
    tissue = result.heatmap > 0
    auc = roc_auc(tumor[tissue].astype(int), result.heatmap[tissue]) if tumor[tissue].any() else float("nan")
    return found, auc, slide_score(result.heatmap)


def _rate_alone(model, x: np.ndarray, repeats: int = 50) -> float:
    """Patches/s of ``model`` alone on the in-memory batch ``x``, after one warm-up call."""
    model(x)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    return repeats * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=100_000)
    parser.add_argument("--height", type=int, default=200_000)
    parser.add_argument("--tissue", type=float, default=0.30)
    parser.add_argument("--screen-threshold", type=float, default=None)
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--runtime", choices=("auto", "onnx", "tensorflow"), default="auto")
    args = parser.parse_args()

    from napari_lymphmet.annotations import read_asap_xml
    from napari_lymphmet.inference import ScreenConfig
    from napari_lymphmet.model import load_runner

    path = _slide(args.width, args.height, args.tissue)
    lesions = read_asap_xml(path.with_suffix(".xml"))
    model, card = load_runner(None, runtime=args.runtime)  # as predict loads it
    size = card.input_size
    x = np.random.default_rng(0).normal(0, 1, (64, size, size, 3)).astype(np.float32)
    alone = _rate_alone(model, x)  # also warms it up for the runs
    print(f"runtime {model.name}: the model alone on in-memory batches of 64, {alone:.0f} patches/s", flush=True)
    screen = ScreenConfig() if args.screen_threshold is None else ScreenConfig(threshold=args.screen_threshold)
    runs = {}
    for name, config in (("dense", None), ("screened", screen)):
        if name == "dense" and args.skip_dense:
            continue
        result, seconds = _run(path, model, card, config)
        found, auc, score = _figures(result, lesions)
        runs[name] = result
        print(f"{name:8s} {args.width}×{args.height} px: {result.total} tissue cells, {result.predicted} predicted "
              f"({result.predicted / result.total:.0%}), {result.inferred} inferred; {seconds:.1f} s "
              f"({seconds / 60:.2f} min, {result.predicted / result.seconds:.0f} patches/s, runtime {model.name}); "
              f"lesions detected "
              f"{len(found)}/{len(lesions)}; heatmap AUC {auc:.4f}; slide score {score:.4f}", flush=True)
    # The baseline of issue 30: the same model in Keras alone on in-memory batches (traced once, as
    # model.predict runs it), measured last, as TensorFlow's thread pools stay busy once it is loaded.
    from napari_lymphmet.model import load_model
    from napari_lymphmet.model.runtime import TensorFlowRunner

    keras_alone = _rate_alone(TensorFlowRunner(load_model(None)[0]), x)
    print(f"Keras alone on in-memory batches of 64: {keras_alone:.0f} patches/s; the runtime alone "
          f"{alone / keras_alone:.2f}x that" + "".join(
              f"; {name} predict {r.predicted / r.seconds / keras_alone:.2f}x" for name, r in runs.items()),
          flush=True)
    if "dense" in runs:
        dense, screened = runs["dense"], runs["screened"]
        predicted = screened.heatmap > 0
        diff = np.abs(screened.heatmap - dense.heatmap)[predicted]
        print(f"screened against dense: mean |Δ| {diff.mean():.4f}, max |Δ| {diff.max():.4f} over tissue cells",
              flush=True)


if __name__ == "__main__":
    main()
