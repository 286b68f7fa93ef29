"""Predict a cohort: every slide's heatmap, detections and score, one slide at a time.

The CLI (``lymphmet predict``), the demo and the napari widgets all run
slides through :func:`predict_slides`, so they write the same files and
report the same figures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelOutputError
from ..io import check_writable, folder_lock
import numpy as np

from ..inference import (DETECTION_SMOOTHING, NODE_GATE_LEVEL, HeatmapGrid, PredictResult, ScreenConfig, grid_for,
                         model_id, predict_slide, slide_score, write_outputs)
from ..model import load_runner, resolve_model
from ..tissue import MASK_SUFFIXES, find_companion, load_mask, tissue_for
from ..wsi import open_slide

# A slide's result set (overlay, heatmap in two formats, detections, regions) with room to spare.
RESULT_BYTES = 16 * 2**20

__all__ = ["PredictOptions", "SlideFailure", "SlidePrediction", "predict_slides"]

ProgressFactory = Callable[[str], Callable[[int, int], None]]
LiveFactory = Callable[[str, HeatmapGrid], Callable[[np.ndarray], None]]


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: see ``lymphmet predict --help``.

    ``mask`` is a saved mask (one slide) or a folder of masks named after
    the slides; ``None`` detects tissue. ``threshold`` ``None`` takes the
    model's own. ``scheduler`` is a dask address or ``"local"``. ``screen``
    predicts coarse-to-fine (:mod:`napari_lymphmet.inference.screen`); it
    runs in-process only.
    """

    mask: str | os.PathLike | None = None
    stride: int | None = None
    batch_size: int = 64
    threshold: float | None = None
    detect: str = "components"
    smooth: float = DETECTION_SMOOTHING  # patch widths; 0 detects on the raw heatmap
    scheduler: str | None = None
    workers: int = 2
    screen: ScreenConfig | None = None
    tta: int = 1  # views per patch: 1, 4 rotations, 8 rotations and mirrorings
    runtime: str = "auto"  # what runs the model: "auto" (ONNX Runtime where installed), "onnx", "tensorflow"
    node_gate: float = NODE_GATE_LEVEL  # share of simulated tumor-free nodes under the gate; 0: no gate


@dataclass(frozen=True)
class SlidePrediction:
    """One slide's result: the heatmap run and the files written."""

    slide: str
    slide_id: str
    out_dir: Path
    result: PredictResult
    paths: dict[str, str]
    runtime: str = ""  # what ran the model: "onnx" or "tensorflow"

    @property
    def slide_score(self) -> float:
        return slide_score(self.result.heatmap)

    def summary(self) -> dict[str, Any]:
        """The JSON row ``lymphmet predict`` prints for this slide."""
        r = self.result
        return {"slide": self.slide, "grid": [r.grid.rows, r.grid.cols], "downsample": r.grid.downsample,
                "patches": r.total, "predicted": r.predicted, "resumed": r.resumed, "inferred": r.inferred,
                "seconds": round(r.seconds, 2),
                "patches_per_second": round(r.patches_per_second, 1), "runtime": self.runtime,
                "slide_score": round(self.slide_score, 6),
                **self.paths}


@dataclass(frozen=True)
class SlideFailure:
    """A slide that could not be predicted, and why (one line)."""

    slide: str
    slide_id: str
    error: str
    seconds: float


def predict_slides(slides: Sequence[str | os.PathLike], model_path: str | os.PathLike | None, out: str | os.PathLike,
                   options: PredictOptions = PredictOptions(), *, progress: ProgressFactory | None = None,
                   live: LiveFactory | None = None, keep_going: bool = False,
                   cancel: threading.Event | None = None) -> Iterator[SlidePrediction | SlideFailure]:
    """Predict each slide in turn, yielding its result as soon as its files are written.

    ``model_path`` is a ``.keras`` file or a bundled model's name; ``None``
    is the default bundled model. One slide writes into ``out``; several
    into ``out/<slide id>/``. A partial heatmap is checkpointed there, so an
    interrupted run resumes. With ``keep_going``, a slide that cannot be
    read yields a :class:`SlideFailure` and the others go on. Setting
    ``cancel`` stops after the current batch: that slide keeps its
    checkpoint, writes no outputs, and nothing more is yielded.
    ``progress(slide_id)`` and ``live(slide_id, grid)`` make each slide's
    ``(done, total)`` and ``(heatmap)`` callbacks (``live`` runs in-process
    only, not on a cluster).

    Raises
    ------
    InputError
        Bad model, slide, mask or output folder (before any slide is
        predicted where it can be checked up front).
    """
    if len(slides) > 1 and options.mask is not None and not Path(options.mask).is_dir():
        raise InputError(f"{options.mask}: with several slides, --mask must be a folder of masks named after them")
    if options.tta != 1 and options.scheduler:
        raise InputError("--tta runs on this machine only; drop --scheduler, or predict with --tta 1 on the cluster")
    if options.screen is not None and options.scheduler:
        raise InputError("--screen runs on this machine only; drop --scheduler, or predict densely on the cluster")
    model_path = resolve_model(model_path)
    out_root = Path(out)
    if not out_root.parent.is_dir():
        raise InputError(f"{out_root}: output folder {out_root.parent} does not exist")
    with ExitStack() as stack:
        # Before TensorFlow loads: a second run into this folder is refused within a second.
        stack.enter_context(folder_lock(out_root))
        # Before any slide is predicted: a read-only or full folder is found now, not after the work.
        check_writable(out_root, need=RESULT_BYTES * len(slides))
        if len(slides) == 1:
            open_slide(slides[0]).close()  # a missing or broken slide is refused before TensorFlow loads
            if options.mask is not None and not Path(options.mask).is_dir():
                load_mask(options.mask)  # and so is a bad mask
        model, card = load_runner(model_path, runtime=options.runtime)
        key = model_id(model_path)
        threshold = options.threshold if options.threshold is not None else card.threshold
        client = None
        if options.scheduler:
            from ..inference import connect

            client = stack.enter_context(connect(options.scheduler, n_workers=options.workers))
        for path in slides:
            if cancel is not None and cancel.is_set():
                return
            start = time.monotonic()
            try:
                done = _predict_one(path, out_root / Path(path).stem if len(slides) > 1 else out_root, model,
                                    card, options, client=client, key=key, model_path=model_path,
                                    threshold=threshold, progress=progress, live=live, cancel=cancel)
            except ModelOutputError as exc:  # the model's fault: every slide would fail alike
                raise ModelOutputError(f"{model_path}: {exc}") from None
            except InputError as exc:
                if not keep_going:
                    raise
                yield SlideFailure(str(path), Path(path).stem, " ".join(str(exc).split()),
                                   time.monotonic() - start)
                continue
            if done is None:  # cancelled part-way
                return
            yield done


def _predict_one(path: str | os.PathLike, out_dir: Path, model: Any, card: Any, options: PredictOptions, *,
                 client: Any, key: str, model_path: Path, threshold: float,
                 progress: ProgressFactory | None, live: LiveFactory | None,
                 cancel: threading.Event | None) -> SlidePrediction | None:
    with open_slide(path) as slide:
        out_dir.mkdir(parents=True, exist_ok=True)
        tissue = tissue_for(slide, find_companion(path, options.mask, MASK_SUFFIXES))
        meter = progress(slide.slide_id) if progress is not None else None
        run = dict(tissue_mask=tissue.mask, tissue_downsample=tissue.downsample, stride=options.stride,
                   batch_size=options.batch_size, progress=meter)
        if client is not None:
            from ..inference import predict_distributed

            result = predict_distributed(client, slide, str(model_path), card, runtime=options.runtime, **run)
        else:
            # Screening is relative to the detection threshold in use, --threshold's when given.
            screen = replace(options.screen, threshold=options.screen.threshold_for(threshold, card.screen_threshold)) \
                if options.screen is not None else None
            watch = live(slide.slide_id, grid_for(slide, card, stride=options.stride)) if live is not None else None
            result = predict_slide(slide, model, card, model_key=key, cancel=cancel, screen=screen, live=watch,
                                   views=options.tta,
                                   checkpoint=out_dir / ".heatmap.partial.zarr", **run)
            if not result.complete:
                return None
        paths = write_outputs(out_dir, slide, result, model_name=Path(model_path).name,
                              threshold=threshold, method=options.detect, smooth=options.smooth,
                              views=options.tta, runtime=model.name,
                              normal_quantiles=card.normal_score_quantiles, gate_level=options.node_gate)
        return SlidePrediction(slide.path, slide.slide_id, out_dir, result, paths, model.name)
