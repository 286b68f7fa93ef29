"""``lymphmet``: the command-line shell over the napari-lymphmet core.

Contract shared by every command: progress and warnings go to stderr; the
last line of stdout is exactly one JSON object summarising the result. Bad
input exits with code 2 and one line, ``error: <file>: <problem>``, on
stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], dict[str, Any]]


def _info(args: argparse.Namespace) -> dict[str, Any]:
    from .slide import open_slide

    with open_slide(args.slide) as slide:
        return {
            "path": slide.path,
            "vendor": slide.vendor,
            "dimensions": list(slide.dimensions),
            "level_count": slide.level_count,
            "level_dimensions": [list(d) for d in slide.level_dimensions],
            "level_downsamples": list(slide.level_downsamples),
            "mpp": list(slide.mpp) if slide.mpp else None,
            "objective_power": slide.objective_power,
            "bounds": list(slide.bounds) if slide.bounds else None,
            "tile_size": [list(slide.tile_shape(i))[::-1] for i in range(slide.level_count)],
            "reader": [slide.level_backend(i) for i in range(slide.level_count)],
            "associated_images": list(slide.associated_images),
        }


class _Progress:
    """A one-line progress meter on stderr, redrawn at most every half second."""

    def __init__(self, label: str, *, quiet: bool) -> None:
        self.label, self.quiet, self._last = label, quiet, 0.0
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < 0.5 and done < total):
            return
        self._last = now
        end = "\n" if done >= total else ""
        print(f"\r{self.label}: {done}/{total} ({100 * done / max(total, 1):.0f}%, "
              f"{now - self._start:.0f} s)", end=end, file=sys.stderr, flush=True)


def _synth(args: argparse.Namespace) -> dict[str, Any]:
    from .synthetic import SynthSpec, write_synthetic_slide

    spec = SynthSpec(width=args.size, height=args.height or args.size, seed=args.seed,
                     lesions=args.lesions, mpp=args.mpp,
                     artefacts=() if args.no_artefacts else ("pen", "dust", "fold"))
    start = time.monotonic()
    _, summary = write_synthetic_slide(args.output, spec, mask_path=args.mask,
                                       progress=_Progress("synth", quiet=args.quiet))
    summary["seconds"] = round(time.monotonic() - start, 2)
    return summary


def _bounds_offset(args: argparse.Namespace, path: str) -> tuple[float, float]:
    """The slide's bounds origin when GeoJSON coordinates are relative to it."""
    from .annotations import GEOJSON_SUFFIXES
    from .slide import open_slide

    if not args.qupath_bounds or not path.lower().endswith(GEOJSON_SUFFIXES):
        return (0.0, 0.0)
    if not args.slide:
        raise InputError("--qupath-bounds needs --slide to know the bounds")
    with open_slide(args.slide) as slide:
        return tuple(float(v) for v in slide.bounds[:2]) if slide.bounds else (0.0, 0.0)


def _annotations_convert(args: argparse.Namespace) -> dict[str, Any]:
    from .annotations import read_annotations, summarize, write_annotations

    anns = read_annotations(args.input, offset=_bounds_offset(args, args.input))
    if not anns:
        raise InputError(f"{args.input}: no polygons to convert")
    write_annotations(args.output, anns, offset=_bounds_offset(args, args.output))
    return {"input": args.input, "output": args.output, **summarize(anns, None)}


def _annotations_rasterize(args: argparse.Namespace) -> dict[str, Any]:
    import math

    from .annotations import check_within, rasterize, read_annotations, summarize
    from .masks import save_mask
    from .slide import open_slide

    with open_slide(args.slide) as slide:
        dims, mpp = slide.dimensions, slide.mpp
        if args.level is not None:
            if not 0 <= args.level < slide.level_count:
                raise InputError(f"{args.slide}: no level {args.level} (it has {slide.level_count})")
            downsample = slide.level_downsamples[args.level]
            w, h = slide.level_dimensions[args.level]
        else:
            downsample = args.downsample
            w, h = math.ceil(dims[0] / downsample), math.ceil(dims[1] / downsample)
        offset = _bounds_offset(args, args.input)
    anns = read_annotations(args.input, offset=offset)
    if not anns:
        raise InputError(f"{args.input}: no polygons to rasterize")
    outside = check_within(anns, dims, source=args.input)
    mask = rasterize(anns, (h, w), downsample=downsample)
    if outside == len(anns) and not mask.any():
        raise InputError(f"{args.input}: none of its {len(anns)} polygons lies on {args.slide}")
    save_mask(args.output, mask, downsample=downsample, kind="tumor", slide=str(args.slide),
              annotations=str(args.input), mpp=[m * downsample for m in mpp] if mpp else None)
    return {"mask": args.output, "sidecar": args.output + ".json", "shape": [h, w],
            "downsample": downsample, "tumor_fraction": round(float(mask.mean()), 6),
            **summarize(anns, mpp)}


def _saturation(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number in [0, 1], got {text!r}") from None


def _mask(args: argparse.Namespace) -> dict[str, Any]:
    from .masks import save_mask
    from .slide import open_slide
    from .tissue import TissueParams, params_dict, tissue_mask

    params = TissueParams(target_mpp=args.mpp, downsample=args.downsample, saturation=args.saturation,
                          dark=args.dark, bright=args.bright, reject_pen=not args.no_pen_filter,
                          median=args.median, close=args.close, fill_holes=not args.no_fill_holes,
                          min_area_um2=args.min_area_um2, min_area_px=args.min_area_px)
    start = time.monotonic()
    with open_slide(args.slide) as slide:
        result = tissue_mask(slide, params)
    seconds = time.monotonic() - start
    save_mask(args.output, result.mask, downsample=result.downsample, kind="tissue", slide=str(args.slide),
              mpp=result.mpp, thresholds=result.thresholds, parameters=params_dict(params))
    return {"mask": args.output, "sidecar": args.output + ".json", "shape": list(result.mask.shape),
            "downsample": result.downsample, "mpp": result.mpp, "thresholds": result.thresholds,
            "tissue_fraction": round(result.tissue_fraction, 6), "seconds": round(seconds, 3)}


def _patches(args: argparse.Namespace) -> dict[str, Any]:
    from contextlib import ExitStack

    from .annotations import GEOJSON_SUFFIXES, XML_SUFFIXES
    from .patches import PatchSpec, companion, export_patches, plan_for_slide
    from .slide import open_slide

    spec = PatchSpec(size=args.size, stride=args.stride, mpp=None if args.level is not None else args.mpp,
                     level=args.level, min_tissue=args.min_tissue, label_rule=args.label_rule,
                     max_per_class=args.max_per_class, balance=args.balance, seed=args.seed, format=args.format)
    if len(args.slides) > 1:
        for given, what in ((args.annotations, "--annotations"), (args.mask, "--mask")):
            if given is not None and not Path(given).is_dir():
                raise InputError(f"{given}: with several slides, {what} must be a folder of files named "
                                 f"after the slides")
    start = time.monotonic()
    plans = []
    with ExitStack() as stack:
        for path in args.slides:
            slide = stack.enter_context(open_slide(path))
            ann = companion(path, args.annotations, XML_SUFFIXES + GEOJSON_SUFFIXES)
            mask = companion(path, args.mask, (".png", ".tif", ".tiff", "_mask.png", "_tissue.png"))
            plan = plan_for_slide(slide, spec, annotations=ann, mask=mask)
            if not args.quiet:
                print(f"{Path(path).name}: {plan.counts()} patches, {plan.uncertain} uncertain skipped, "
                      f"annotations: {ann.name if ann else 'none (all normal)'}", file=sys.stderr)
            plans.append((slide, plan))
        result = export_patches(plans, args.output, fmt=args.format, workers=args.workers,
                                progress=_Progress("patches", quiet=args.quiet))
    seconds = time.monotonic() - start
    return {"output": str(args.output), "csv": str(result.csv), "counts": result.counts,
            "uncertain_skipped": result.uncertain, "written": result.written,
            "already_there": result.skipped_existing, "slides": len(plans),
            "seconds": round(seconds, 2), "patches_per_second": round(result.patches_per_second, 1)}


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from .dataset import read_patch_table, split_by_slide
    from .model import TrainConfig, train

    config = TrainConfig(backbone=args.backbone, weights=args.weights, input_size=args.input_size,
                         epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         seed=args.seed, augment=not args.no_augment, stain_norm=args.stain_norm,
                         patience=args.patience, patch_mpp=args.patch_mpp)
    table = read_patch_table(args.data)
    if args.val:
        train_table, val_table = table, read_patch_table(args.val)
        shared = set(train_table.slides.tolist()) & set(val_table.slides.tolist())
        if shared:
            raise InputError(f"--val shares slides with the training data ({', '.join(sorted(shared)[:5])}); "
                             f"validation must come from other slides")
    else:
        train_table, val_table = split_by_slide(table, fraction=args.val_fraction, seed=args.seed)
        if not len(val_table):
            warnings.warn(f"all patches come from one slide ({table.slides[0]}), so nothing can be held out "
                          f"by slide: training without validation, threshold 0.5", stacklevel=1)
    if config.weights == "imagenet" and config.backbone != "small-cnn":
        from .model import build_model

        build_model(config.backbone, input_size=config.size, weights="imagenet")  # fail fast when offline
    meter = _Progress("train", quiet=args.quiet)

    def progress(state: dict) -> None:
        if state.get("end_of_epoch"):
            if not args.quiet:
                extra = f", val AUC {state['val_auc']:.3f}" if "val_auc" in state else ""
                print(f"\repoch {state['epoch']}/{state['epochs']}: loss {state['loss']:.4f}{extra}",
                      file=sys.stderr, flush=True)
        else:
            meter(state["batch"], state["batches"])

    result = train(train_table, val_table, args.output, config, progress=progress)
    meta = result.metadata
    return {"model": str(result.path), "backbone": config.backbone, "validation": meta.get("validation"),
            "threshold": meta["threshold"], "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1),
            "train": meta["training"]["train"], "val_slides": (meta["training"]["validation"] or {}).get("slides")}


def _score(args: argparse.Namespace) -> dict[str, Any]:
    import math

    from .dataset import read_patch_table
    from .model import load_model, score_table

    model, meta = load_model(args.model)
    metrics = score_table(model, meta, read_patch_table(args.data), tta=args.tta)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _predict(args: argparse.Namespace) -> dict[str, Any]:
    from contextlib import ExitStack

    from .inference import model_id, predict_slide, slide_score, write_outputs
    from .masks import load_mask
    from .model import load_model
    from .patches import companion
    from .slide import open_slide
    from .tissue import tissue_mask

    if len(args.slides) > 1 and args.mask is not None and not Path(args.mask).is_dir():
        raise InputError(f"{args.mask}: with several slides, --mask must be a folder of masks named after them")
    model, metadata = load_model(args.model)
    key = model_id(args.model)
    out_root = Path(args.output)
    if not out_root.parent.is_dir():
        raise InputError(f"{out_root}: output folder {out_root.parent} does not exist")
    client = None
    results = []
    with ExitStack() as stack:
        if args.scheduler:
            from .distributed import connect

            client = stack.enter_context(connect(args.scheduler, n_workers=args.workers))
        for path in args.slides:
            slide = stack.enter_context(open_slide(path))
            out = out_root / slide.slide_id if len(args.slides) > 1 else out_root
            out.mkdir(parents=True, exist_ok=True)
            mask_path = companion(path, args.mask, (".png", ".tif", ".tiff", "_mask.png", "_tissue.png"))
            if mask_path is not None:
                saved = load_mask(mask_path)
                mask, mask_ds = saved.mask, saved.downsample
            else:
                found = tissue_mask(slide)
                mask, mask_ds = found.mask, found.downsample
            meter = _Progress(f"predict {slide.slide_id}", quiet=args.quiet)
            options = dict(tissue_mask=mask, tissue_downsample=mask_ds, stride=args.stride,
                           batch_size=args.batch_size)
            if client is not None:
                from .distributed import predict_distributed

                result = predict_distributed(client, slide, args.model, metadata, progress=meter, **options)
            else:
                result = predict_slide(slide, model, metadata, progress=meter, model_key=key,
                                       checkpoint=out / ".heatmap.partial.npz", **options)
            paths = write_outputs(out, slide, result, model_name=Path(args.model).name,
                                  threshold=args.threshold if args.threshold is not None
                                  else float(metadata.get("threshold", 0.5)), method=args.detect)
            results.append({"slide": slide.path, "grid": [result.grid.rows, result.grid.cols],
                            "downsample": result.grid.downsample, "patches": result.total,
                            "predicted": result.predicted, "resumed": result.resumed,
                            "seconds": round(result.seconds, 2),
                            "patches_per_second": round(result.patches_per_second, 1),
                            "slide_score": round(slide_score(result.heatmap), 6), **paths})
    return {"model": str(args.model), "slides": results}


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from skimage.io import imsave

    from ._io import atomic_path
    from .evaluation import evaluate, froc_plot

    summary, fps, sens = evaluate(args.detections, args.truth, slides_dir=args.slides, scores_file=args.scores,
                                  mpp=args.mpp)
    png = Path(args.output) if args.output else Path(args.detections) / "froc.png"
    with atomic_path(png) as tmp:
        imsave(tmp, froc_plot(fps, sens), check_contrast=False)
    summary["froc_png"] = str(png)
    return summary


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    from .demo import open_in_napari, run_demo

    def log(text: str) -> None:
        if not args.quiet:
            print(f"demo: {text}", file=sys.stderr, flush=True)

    summary = run_demo(args.output, size=args.size, epochs=args.epochs, seed=args.seed, log=log)
    if args.open:
        open_in_napari(summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lymphmet",
        description="Find lymph-node metastases in whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    # -q and --debug also work after the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", parents=[common], help="print a slide's levels, mpp and metadata")
    p.add_argument("slide", help="a whole-slide image in any format OpenSlide reads")
    p.set_defaults(func=_info)

    p = sub.add_parser("synth", parents=[common], help="write a synthetic lymph-node slide with its tumor XML",
                       description="Write a deterministic, H&E-like synthetic lymph-node slide "
                                   "(pyramidal JPEG TIFF) and an ASAP XML of its metastases beside it.")
    p.add_argument("-o", "--output", required=True, help="the slide to write, e.g. slide.tif")
    p.add_argument("--size", type=int, default=20_000, help="width in level-0 px (default 20000)")
    p.add_argument("--height", type=int, default=None, help="height in px (default: --size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lesions", type=int, default=3, help="metastases to place (default 3)")
    p.add_argument("--mpp", type=float, default=0.25, help="µm per level-0 px (default 0.25)")
    p.add_argument("--mask", default=None, help="also write the true tissue mask (PNG, downsample 16)")
    p.add_argument("--no-artefacts", action="store_true", help="no pen mark, dust or fold")
    p.set_defaults(func=_synth)

    p = sub.add_parser("mask", parents=[common], help="detect tissue; write a 0/255 mask PNG + JSON sidecar",
                       description="Detect tissue on a low-resolution level of a slide (HSV saturation, "
                                   "minus ink, pen and debris) and write it as a mask.")
    p.add_argument("slide")
    p.add_argument("-o", "--output", required=True, help="mask file, .png or .tif")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, default=8.0, help="working resolution, µm/px (default 8)")
    res.add_argument("--downsample", type=float, default=None, help="working downsample, level-0 px per mask px")
    p.add_argument("--saturation", type=_saturation, default=None, metavar="auto|S",
                   help="saturation threshold in [0, 1], or auto (Otsu, the default)")
    p.add_argument("--dark", type=int, default=50, help="reject pixels with max(RGB) below this (ink)")
    p.add_argument("--bright", type=int, default=235, help="reject pixels with min(RGB) above this (glass)")
    p.add_argument("--no-pen-filter", action="store_true", help="keep blue/green hues")
    p.add_argument("--median", type=int, default=5, help="majority filter size, mask px (default 5)")
    p.add_argument("--close", type=int, default=2, help="closing radius, mask px (default 2)")
    p.add_argument("--no-fill-holes", action="store_true")
    p.add_argument("--min-area-um2", type=float, default=20_000.0,
                   help="drop objects smaller than this (default 20000 µm²)")
    p.add_argument("--min-area-px", type=int, default=64, help="the same in mask px, for slides without mpp")
    p.set_defaults(func=_mask)

    p = sub.add_parser("patches", parents=[common], help="export labelled training patches (ImageFolder + patches.csv)")
    p.add_argument("slides", nargs="+", metavar="SLIDE")
    p.add_argument("-o", "--output", required=True, help="output folder (tumor/, normal/, patches.csv)")
    p.add_argument("--annotations", help="an XML/GeoJSON, or a folder of them named after the slides")
    p.add_argument("--mask", help="a saved tissue mask, or a folder of them named after the slides "
                                  "(default: detect tissue)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=float, default=0.5, help="patch resolution, µm/px (default 0.5)")
    res.add_argument("--level", type=int, default=None, help="read this level as is (slides without mpp)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--stride", type=int, default=None, help="grid step in patch px (default: --size)")
    p.add_argument("--min-tissue", type=float, default=0.5, help="minimum tissue fraction (default 0.5)")
    p.add_argument("--label-rule", default="center", help="center (default) or fraction:T")
    p.add_argument("--max-per-class", type=int, default=None, help="sample at most N per class and slide")
    p.add_argument("--balance", action="store_true", help="sample normals down to the tumor count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("png", "jpeg"), default="png")
    p.add_argument("--workers", type=int, default=None, help="threads (default: cores + 1)")
    p.set_defaults(func=_patches)

    from .model import BACKBONES

    p = sub.add_parser("train", parents=[common], help="train a tumor/normal patch classifier (.keras)")
    p.add_argument("data", nargs="+", metavar="DATA", help="ImageFolders (tumor/, normal/) or patches.csv files")
    p.add_argument("-o", "--output", required=True, help="model file, e.g. model.keras")
    p.add_argument("--val", nargs="+", default=None, help="validation data from other slides "
                                                          "(default: hold out whole slides of DATA)")
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of patches held out by slide")
    p.add_argument("--backbone", choices=BACKBONES, default="efficientnetb0")
    p.add_argument("--weights", default="imagenet", help="imagenet, none, or a weights file")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--input-size", type=int, default=None, help="model input px (default 224; small-cnn 128)")
    p.add_argument("--patch-mpp", type=float, default=None, help="µm/px of the patches, when no patches.csv says")
    p.add_argument("--stain-norm", choices=("none", "reinhard"), default="none")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--patience", type=int, default=5, help="early stopping patience, epochs")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train)

    p = sub.add_parser("score", parents=[common], help="score a model on a labelled ImageFolder")
    p.add_argument("model")
    p.add_argument("data", nargs="+", metavar="DIR")
    p.add_argument("--no-tta", dest="tta", action="store_false",
                   help="score each patch once, not as the mean over its 8 rotations and mirrorings")
    p.set_defaults(func=_score)

    p = sub.add_parser("predict", parents=[common], help="tumor heatmap, detections and slide score")
    p.add_argument("slides", nargs="+", metavar="SLIDE")
    p.add_argument("--model", required=True, help="a .keras model from lymphmet train")
    p.add_argument("-o", "--output", required=True, help="output folder (one subfolder per slide when several)")
    p.add_argument("--mask", help="a saved tissue mask, or a folder of them named after the slides")
    p.add_argument("--stride", type=int, default=None, help="grid step in patch px (default: the patch size)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threshold", type=float, default=None, help="detection threshold (default: the model's)")
    p.add_argument("--detect", choices=("components", "peaks"), default="components")
    p.add_argument("--scheduler", default=None, help="tcp://host:8786 of a dask cluster, or local")
    p.add_argument("--workers", type=int, default=2, help="worker processes for --scheduler local")
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", parents=[common], help="CAMELYON16 lesion FROC and slide AUC")
    p.add_argument("--detections", required=True, help="folder of <id>/detections.csv (predict's output) or <id>.csv")
    p.add_argument("--truth", required=True, help="folder of <id>.xml; a slide without one is normal")
    p.add_argument("--slides", help="folder of the slides, for dimensions and mpp")
    p.add_argument("--scores", help="slide scores: CSV slide,score or predict's JSON summary "
                                    "(default: from each heatmap.tif)")
    p.add_argument("--mpp", type=float, default=None, help="override the slides' µm/px (default theirs, else 0.243)")
    p.add_argument("-o", "--output", help="FROC plot (default DETECTIONS/froc.png)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("demo", parents=[common], help="the whole pipeline on built-in synthetic slides")
    p.add_argument("-o", "--output", default="lymphmet-demo", help="output folder (default lymphmet-demo)")
    p.add_argument("--size", type=int, default=12288, help="slide side in px at 0.5 µm/px (default 12288)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--open", action="store_true", help="then open the test slide and results in napari")
    p.set_defaults(func=_demo)

    ann = sub.add_parser("annotations", parents=[common], help="convert or rasterize tumor annotations")
    ann_sub = ann.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ann_sub.add_parser("convert", parents=[common], help="ASAP XML <-> QuPath GeoJSON, by file extension")
    p.add_argument("input", help="annotations: .xml (ASAP) or .geojson (QuPath)")
    p.add_argument("output", help="where to write: .xml or .geojson")
    p.add_argument("--slide", help="the slide, for --qupath-bounds")
    p.add_argument("--qupath-bounds", action="store_true",
                   help="GeoJSON coordinates are relative to the slide's bounds (QuPath, e.g. for MRXS)")
    p.set_defaults(func=_annotations_convert)
    p = ann_sub.add_parser("rasterize", parents=[common], help="write a tumor mask (0/255 PNG + JSON sidecar)")
    p.add_argument("input", help="annotations: .xml (ASAP) or .geojson (QuPath)")
    p.add_argument("--slide", required=True, help="the slide they belong to")
    scale = p.add_mutually_exclusive_group(required=True)
    scale.add_argument("--downsample", type=float, help="level-0 px per mask px, e.g. 32")
    scale.add_argument("--level", type=int, help="match this pyramid level's size")
    p.add_argument("-o", "--output", required=True, help="mask file, .png or .tif")
    p.add_argument("--qupath-bounds", action="store_true",
                   help="GeoJSON coordinates are relative to the slide's bounds")
    p.set_defaults(func=_annotations_rasterize)
    return parser


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _finite(value: Any) -> Any:
    """NaN and infinity become null: JSON has no NaN."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {_one_line(message) if isinstance(message, BaseException) else message}",
          file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lymphmet``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    command: Command = args.func
    warnings.showwarning = _show_warning
    try:
        summary = command(args)
    except (InputError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    sys.stdout.write(json.dumps(_finite(summary)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
