"""Commands over whole slides and cohorts: predict, stage, evaluate, demo."""


from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._console import _Events, _LiveCells, _Progress

__all__ = []


def _predict(args: argparse.Namespace) -> dict[str, Any]:
    from ..errors import InputError
    from ..model import DEFAULT_MODEL
    from ..workflows import PredictOptions, SlideFailure, cohort_row, predict_slides, write_cohort
    from ..wsi import find_slides

    from ..inference import ScreenConfig

    if args.screen_threshold is not None and not args.screen:
        raise InputError("--screen-threshold needs --screen")
    screen = None
    if args.screen:
        try:
            screen = ScreenConfig() if args.screen_threshold is None else ScreenConfig(threshold=args.screen_threshold)
        except ValueError as exc:
            raise InputError(f"--screen-threshold: {exc}") from None
    options = PredictOptions(mask=args.mask, stride=args.stride, batch_size=args.batch_size,
                             threshold=args.threshold, detect=args.detect, scheduler=args.scheduler,
                             workers=args.workers, screen=screen, tta=args.tta,
                             runtime=args.runtime)
    if args.smooth is not None:
        options = replace(options, smooth=args.smooth)
    if args.node_gate is not None:
        options = replace(options, node_gate=args.node_gate)
    skipped: list = []
    slides = find_slides(args.slides, skipped=skipped)
    for path, reason in skipped if not args.quiet else ():
        print(f"skipped: {path}: {reason}", file=sys.stderr, flush=True)
    if not slides:
        raise InputError(f"{', '.join(args.slides)}: no slide files found")
    rows, done, failed = [], [], []
    live = _LiveCells if args.events else None
    for result in predict_slides(slides, args.model, args.output, options, keep_going=True, live=live,
                                 progress=lambda slide_id: _Progress(f"predict {slide_id}", quiet=args.quiet)):
        rows.append(cohort_row(result))
        if isinstance(result, SlideFailure):  # reported, and the next slide goes on
            if len(slides) > 1:  # one slide's failure is the error line itself
                print(f"warning: {result.error}", file=sys.stderr, flush=True)
            failed.append({"slide": result.slide, "error": result.error})
            _Events.emit("slide", slide=result.slide, error=result.error)
        else:
            done.append(result.summary())
            _Events.emit("slide", slide=result.slide, folder=str(result.out_dir))
    Path(args.output).mkdir(exist_ok=True)
    cohort = write_cohort(args.output, rows)
    if not done:  # exit 2 only when nothing could be predicted
        raise InputError(failed[0]["error"] if len(failed) == 1 else
                         f"none of the {len(failed)} slides could be predicted; see {cohort['slides_csv']}")
    return {"model": str(args.model or DEFAULT_MODEL), "slides": done, "failed": failed,
            "skipped": [{"path": str(path), "reason": reason} for path, reason in skipped], **cohort}


def _stage(args: argparse.Namespace) -> dict[str, Any]:
    from ..workflows import agreement, read_node_categories, stage_patients, write_stages

    categories = read_node_categories(args.predictions)
    stages = stage_patients(categories, args.patients)
    scores = agreement(stages, categories, stage_truth=args.truth, node_truth=args.node_truth)  # before writing
    path = write_stages(args.output, stages)
    return {"stages_csv": str(path), "patients": {s.patient: s.stage for s in stages}, **scores}


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
