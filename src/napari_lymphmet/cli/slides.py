"""Commands about one slide and its annotations: info, synth, mask, annotations convert / rasterize."""


from __future__ import annotations

import argparse
import time
from typing import Any

from ..errors import InputError
from ._console import _Progress

__all__ = []


def _info(args: argparse.Namespace) -> dict[str, Any]:
    from ..wsi import open_slide

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


def _synth(args: argparse.Namespace) -> dict[str, Any]:
    from ..synthetic import SynthSpec, write_synthetic_slide

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
    from ..annotations import GEOJSON_SUFFIXES
    from ..wsi import open_slide

    if not args.qupath_bounds or not path.lower().endswith(GEOJSON_SUFFIXES):
        return (0.0, 0.0)
    if not args.slide:
        raise InputError("--qupath-bounds needs --slide to know the bounds")
    with open_slide(args.slide) as slide:
        return tuple(float(v) for v in slide.bounds[:2]) if slide.bounds else (0.0, 0.0)


def _annotations_convert(args: argparse.Namespace) -> dict[str, Any]:
    from ..annotations import read_annotations, summarize, write_annotations

    anns = read_annotations(args.input, offset=_bounds_offset(args, args.input))
    if not anns:
        raise InputError(f"{args.input}: no polygons to convert")
    write_annotations(args.output, anns, offset=_bounds_offset(args, args.output))
    return {"input": args.input, "output": args.output, **summarize(anns, None)}


def _annotations_rasterize(args: argparse.Namespace) -> dict[str, Any]:
    import math

    from ..annotations import check_within, rasterize, read_annotations, summarize
    from ..tissue import save_mask
    from ..wsi import open_slide

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


def _mask(args: argparse.Namespace) -> dict[str, Any]:
    from ..tissue import TissueParams, params_dict, save_mask, tissue_mask
    from ..wsi import open_slide

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
