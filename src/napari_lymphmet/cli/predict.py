"""Commands over whole slides and cohorts: predict, evaluate, demo."""


from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._console import _Progress

__all__ = []


def _predict(args: argparse.Namespace) -> dict[str, Any]:
    from ..model import DEFAULT_MODEL
    from ..workflows import PredictOptions, predict_slides

    options = PredictOptions(mask=args.mask, stride=args.stride, batch_size=args.batch_size,
                             threshold=args.threshold, detect=args.detect, scheduler=args.scheduler,
                             workers=args.workers)
    results = predict_slides(args.slides, args.model, args.output, options,
                             progress=lambda slide_id: _Progress(f"predict {slide_id}", quiet=args.quiet))
    return {"model": str(args.model or DEFAULT_MODEL), "slides": [r.summary() for r in results]}


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from ..evaluation import evaluate
    from ..figures import save_png

    summary, curve = evaluate(args.detections, args.truth, slides_dir=args.slides, scores_file=args.scores,
                                  mpp=args.mpp)
    png = Path(args.output) if args.output else Path(args.detections) / "froc.png"
    save_png(curve.figure(), png)
    summary["froc_png"] = str(png)
    return summary


def _demo(args: argparse.Namespace) -> dict[str, Any]:
    from ..workflows import run_demo

    def log(text: str) -> None:
        if not args.quiet:
            print(f"demo: {text}", file=sys.stderr, flush=True)

    summary = run_demo(args.output, size=args.size, epochs=args.epochs, seed=args.seed, log=log)
    if args.open:
        from .._napari.demo import open_in_napari

        open_in_napari(summary)
    return summary
