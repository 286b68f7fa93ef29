"""Commands that make and use training data: patches, train, score."""


from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from ._console import _cancel_on_signal, _Events, _Progress

__all__ = []


def _patches(args: argparse.Namespace) -> dict[str, Any]:
    from contextlib import ExitStack

    from ..annotations import GEOJSON_SUFFIXES, XML_SUFFIXES
    from ..patches import PatchSpec, export_patches, plan_for_slide
    from ..tissue import MASK_SUFFIXES, find_companion
    from ..wsi import open_slide

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
            ann = find_companion(path, args.annotations, XML_SUFFIXES + GEOJSON_SUFFIXES)
            mask = find_companion(path, args.mask, MASK_SUFFIXES)
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


def _time_limit(minutes: float | None, epochs: int | None) -> float | None:
    """``--time-limit``: as given (0: none); by default 25 minutes, unless the epochs were given."""
    if minutes is None:
        from ..model.train import DEFAULT_TIME_LIMIT

        return None if epochs is not None else DEFAULT_TIME_LIMIT
    return minutes or None


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from ..model import TrainConfig, read_patch_table, split_by_slide, train, why_no_split

    config = TrainConfig(backbone=args.backbone, weights=args.weights, input_size=args.input_size,
                         epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         seed=args.seed, augment=not args.no_augment, stain_norm=args.stain_norm,
                         patience=args.patience, patch_mpp=args.patch_mpp, ema=args.ema,
                         time_limit=_time_limit(args.time_limit, args.epochs))
    table = read_patch_table(args.data)
    if args.val:
        train_table, val_table = table, read_patch_table(args.val)
        shared = (set(train_table.slides.tolist()) & set(val_table.slides.tolist())) - {""}
        if shared:
            raise InputError(f"--val shares slides with the training data ({', '.join(sorted(shared)[:5])}); "
                             f"validation must come from other slides")
    else:
        train_table, val_table = split_by_slide(table, fraction=args.val_fraction, seed=args.seed)
        if not len(val_table):
            warnings.warn(why_no_split(table) + ": training without validation, threshold 0.5; give --val "
                          "with patches from other slides", stacklevel=1)
    if config.weights == "imagenet" and config.backbone not in ("small-cnn", "p4m-cnn"):
        from ..model import build_model

        build_model(config.backbone, input_size=config.size, weights="imagenet")  # fail fast when offline
    meter = _Progress("train", quiet=args.quiet)

    def progress(state: dict) -> None:
        if state.get("replanned"):
            _Events.emit("plan", epochs=state["epochs"], planned=state["planned"],
                         epoch_seconds=round(state["epoch_seconds"], 1))
            if not args.quiet and not _Events.enabled:
                epochs, planned, longer = state["epochs"], state["planned"], state["epochs"] > state["planned"]
                print(f"\rtrain: {epochs} epochs fit in {config.time_limit:g} min where {planned} were planned "
                      if longer else f"\rtrain: {epochs} of {planned} epochs fit in {config.time_limit:g} min ",
                      f"(an epoch takes {state['epoch_seconds'] / 60:.1f} min); the learning rate follows the "
                      f"{'longer' if longer else 'shorter'} plan", sep="", file=sys.stderr, flush=True)
        elif state.get("end_of_epoch"):
            _Events.emit("epoch", **{k: v for k, v in state.items() if k != "end_of_epoch"})
            if not args.quiet and not _Events.enabled:
                extra = f", val AUC {state['val_auc']:.3f}" if "val_auc" in state else ""
                print(f"\repoch {state['epoch']}/{state['epochs']}: loss {state['loss']:.4f}{extra}",
                      file=sys.stderr, flush=True)
        else:  # over the whole run, so the meter and a front end's bar reach 100 % once
            meter(state["epoch"] * state["batches"] + state["batch"], state["epochs"] * state["batches"])

    with _cancel_on_signal() as cancel:  # Ctrl-C, SIGTERM: stop after this batch, keep the best model so far
        result = train(train_table, val_table, args.output, config, progress=progress, cancel=cancel)
    meta = result.card.to_dict()
    return {"model": str(result.path), "backbone": config.backbone, "validation": meta.get("validation"),
            "threshold": meta["threshold"], "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1),
            "train": meta["training"]["train"], "val_slides": (meta["training"]["validation"] or {}).get("slides"),
            "cancelled": result.cancelled}


def _models(args: argparse.Namespace) -> dict[str, Any]:
    from ..model import available_runtime, describe_models

    listing = describe_models()
    return {"default": listing["default"], "runtime": available_runtime(), "models": listing["models"]}


def _score(args: argparse.Namespace) -> dict[str, Any]:
    import math

    from ..model import load_model, read_patch_table, score_table

    table = read_patch_table(args.data)  # bad patches are refused before TensorFlow loads
    model, meta = load_model(args.model)
    metrics = score_table(model, meta, table, tta=args.tta)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _ensemble(args: argparse.Namespace) -> dict[str, Any]:
    from ..model import read_patch_table

    if len(args.models) < 2:
        raise InputError("an ensemble needs at least two models")
    output = Path(args.output)
    if output.suffix != ".keras" or not output.parent.is_dir():
        raise InputError(f"{output}: give a .keras file in an existing folder")
    table = read_patch_table(args.val)  # bad patches are refused before TensorFlow loads
    from ..model.ensemble import save_ensemble

    card = save_ensemble(args.models, table, output).to_dict()
    return {"model": str(output), "members": [m["model"] for m in card["training"]["members"]],
            "threshold": card["threshold"], "validation": card["validation"],
            "members_validation": [m["validation"] for m in card["training"]["members"]]}


def _finetune(args: argparse.Namespace) -> dict[str, Any] | tuple[dict[str, Any], int]:
    from ..workflows import Corrections, FinetuneConfig, finetune

    if len(args.slide) != len(args.corrections):
        raise InputError(f"give one --corrections per --slide (got {len(args.slide)} slides and "
                         f"{len(args.corrections)} corrections files)")
    for path in args.replay:
        if not Path(path).is_dir():
            raise InputError(f"{path}: no such replay folder")
    corrections = [Corrections.read(slide, path) for slide, path in zip(args.slide, args.corrections)]
    config = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, margin=args.margin,
                            replay=tuple(args.replay), max_per_class=args.max_patches,
                            replay_data=args.replay_patches, threshold_from=args.threshold_from)
    if args.smooth is not None:
        config = replace(config, smooth=args.smooth)
    meter = _Progress("finetune", quiet=args.quiet)

    def progress(stage: str, state: dict) -> None:
        if stage == "train" and not state.get("end_of_epoch"):
            meter(state["batch"] + (state["epoch"]) * state["batches"], state["batches"] * state["epochs"])

    with _cancel_on_signal() as cancel:
        result = finetune(args.model, corrections, args.output, config, progress=progress, cancel=cancel)
    for text in result.warnings:
        print(f"warning: {text}", file=sys.stderr, flush=True)
    summary = result.summary()
    return summary if result.accepted else (summary, 1)
