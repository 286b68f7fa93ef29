"""Fine-tune a model on a pathologist's corrections: the correct-and-retrain loop.

Corrections (:mod:`.corrections`) are polygons on a slide: ``tumor``
(missed tumor, or lesions to keep) and ``exclusion`` ("not tumor": false
positives). From them come patches at the model's own mpp and patch size:
tumor patches from tumor polygons, hard negatives from exclusion polygons.
A replay sample keeps the model from forgetting what it knew: patches of
the same slides, away from every correction, that the model already calls
normal, and, for the bundled model, a sample of its training data when it
is on disk (or any labelled folder given as ``replay``).

A quarter of the replay sample is held out. The model is scored on it
before and after; a new model more than ``margin`` worse there is not saved.
When it holds both classes, training also keeps its best epoch on it and
sets the model's validation threshold there. The detection threshold the new
model ships with is then read off the corrections themselves (the marked
lesions' and false positives' peak heatmap values,
:func:`.corrections_threshold`): a new lab's stain shifts scores more than
ten outlines can retrain away (docs/performance.md).
``epochs=0`` does only that: the parent's weights with a threshold for
these slides, in seconds.

The CLI (``lymphmet finetune``) and the *Detect metastases* widget both run
:func:`finetune`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import EXCLUSION, TUMOR
from ..errors import InputError
from ..inference.detect import DETECTION_SMOOTHING
from .corrections import Corrections, correction_patches, corrections_threshold, region_peaks

__all__ = ["FinetuneConfig", "FinetuneResult", "bundled_training_data", "finetune"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Options; see ``lymphmet finetune --help``.

    ``epochs``: 0 keeps the parent's weights and only sets the threshold.
    ``margin``: how much lower the new model's accuracy (at its validation
    threshold) and AUC, when the replay set has both classes, on the
    held-out replay set may be before it is refused. ``few``: fewer
    correction patches than this in a class get a warning.
    ``threshold_from``: ``"corrections"`` (the marked regions' peak scores;
    at least ``lesion_margin`` logits under the faintest marked lesion) or
    ``"validation"`` (the held-out patches, as ``lymphmet train`` does).
    ``smooth``: the detection smoothing (patch widths) the threshold is for,
    as ``lymphmet predict --smooth`` and the Detect widget use it.
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-2  # fine-tuning trains at a tenth of it (see model.training_phases)
    max_per_class: int = 400  # correction patches per class and slide
    replay_per_slide: int = 200  # same-slide patches the model and the corrections agree on
    replay_data: int = 400  # labelled patches per class from replay folders (or the bundled model's data)
    replay: tuple[str, ...] = ()
    margin: float = 0.03
    few: int = 20
    threshold_from: str = "corrections"
    lesion_margin: float = 0.5
    smooth: float = DETECTION_SMOOTHING
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or min(self.batch_size, self.max_per_class, self.replay_data) < 1:
            raise InputError("epochs must be at least 0, batch size and patch counts at least 1")
        if self.threshold_from not in ("corrections", "validation"):
            raise InputError(f"threshold must come from corrections or validation, not {self.threshold_from!r}")
        if not self.smooth >= 0:
            raise InputError(f"smoothing must be at least 0 patch widths, got {self.smooth}")
        if not 0 <= self.margin <= 1:
            raise InputError(f"margin must be within [0, 1], got {self.margin}")


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` did. ``path`` is ``None`` when the new model was refused (or cancelled)."""

    path: Path | None
    accepted: bool
    parent: Path
    patches: dict[str, int]
    epochs: int
    seconds: float
    before: dict[str, float]
    after: dict[str, float]
    warnings: tuple[str, ...] = ()
    cancelled: bool = False
    card: Any = None
    corrections: tuple[dict, ...] = field(default_factory=tuple)
    held_out: dict[str, dict[str, float]] = field(default_factory=dict)  # the corrections' held-out quarter
    threshold: dict[str, Any] = field(default_factory=dict)  # CorrectionsThreshold.as_dict(), and the validation one

    def summary(self) -> dict[str, Any]:
        """The JSON ``lymphmet finetune`` prints."""
        return {"model": str(self.path) if self.path else None, "accepted": self.accepted, "parent": str(self.parent),
                "patches": self.patches, "epochs": self.epochs, "seconds": round(self.seconds, 1),
                "validation": {"before": self.before, "after": self.after,
                               "corrections_held_out": self.held_out}, "threshold": self.threshold,
                "corrections": list(self.corrections),
                "warnings": list(self.warnings), "cancelled": self.cancelled}


def bundled_training_data() -> Path | None:
    """The bundled model's training patches (PatchCamelyon ``train/``), if they are on disk.

    Looked for under ``$LYMPHMET_DATA`` and the ``shared/data`` folder
    beside a source checkout, where ``scripts/train_bundled_model.py`` reads
    them.
    """
    roots = [Path(os.environ["LYMPHMET_DATA"])] if os.environ.get("LYMPHMET_DATA") else []
    roots.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    for root in roots:
        folder = root / "patches" / "pcam" / "train"
        if (folder / "tumor").is_dir() and (folder / "normal").is_dir():
            return folder
    return None


def _check_output(output: Path, parent: Path) -> None:
    from ..model import bundled_models

    if output.suffix != ".keras":
        raise InputError(f"{output}: a model file must end in .keras")
    if not output.parent.is_dir():
        raise InputError(f"{output}: output folder {output.parent} does not exist")
    target = output.resolve()
    for name, path in bundled_models().items():
        if target == path.resolve():
            raise InputError(f"{output}: refusing to overwrite the bundled model {name}; choose another -o")
    if target == parent.resolve():
        raise InputError(f"{output}: this is the model being fine-tuned; write the new version to another file")


def _folder_sample(folder: Path, per_class: int, seed: int):
    from ..model import read_patch_table

    table = read_patch_table([folder])
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(table), bool)
    for label in (0, 1):
        idx = np.nonzero(table.labels == label)[0]
        keep[rng.choice(idx, min(per_class, len(idx)), replace=False)] = True
    return table.subset(keep)


def _scores(model, card, table) -> np.ndarray:
    from ..model import make_dataset
    from ..model.predict import predict_prepared

    return np.concatenate([predict_prepared(model, x)
                           for x, _ in make_dataset(table, card, batch_size=64, training=False)])


def _hold_out(table, rng: np.random.Generator, fraction: float = 0.25) -> tuple[Any, Any]:
    """``(rest, held out)``: a random ``fraction`` of ``table`` held out (``None`` for an empty part)."""
    if table is None or not len(table):
        return None, None
    held = rng.random(len(table)) < fraction
    return (table.subset(~held) if (~held).any() else None), (table.subset(held) if held.any() else None)


def _figures(table, model, card) -> dict[str, float]:
    """Accuracy at the card's threshold (and AUC with both classes) on a labelled table; ``{}`` for none."""
    from ..evaluation import roc_auc

    if table is None or not len(table):
        return {}
    labels, scores, threshold = table.labels, _scores(model, card, table), card.threshold
    out = {"accuracy": round(float(np.mean((scores >= threshold) == (labels == 1))), 4), "patches": int(len(labels))}
    if len(np.unique(labels)) == 2:
        out["auc"] = round(float(roc_auc(labels, scores)), 4)
    return out


def finetune(model: str | os.PathLike | None, corrections: Sequence[Corrections], output: str | os.PathLike,
             config: FinetuneConfig = FinetuneConfig(), *, progress: Callable[[str, dict], None] | None = None,
             cancel: threading.Event | None = None) -> FinetuneResult:
    """Fine-tune ``model`` (a file or a bundled name) on corrections; write the new version to ``output``.

    ``progress(stage, info)`` is called with stage ``"patches"``
    (``done``/``total``), ``"train"`` (the training callback's dict) and
    ``"score"``. Setting ``cancel`` stops at the next batch; nothing is saved.

    Raises
    ------
    InputError
        A bad model, slide, corrections file or output; no patches of a class.
    """
    from ..inference import model_id
    from ..model import BUNDLED_DIR, PatchTable, load_model, resolve_model, save_model

    start = time.monotonic()
    parent = resolve_model(model)
    output = Path(output)
    _check_output(output, parent)
    if not corrections:
        raise InputError("no corrections given")
    keras_model, card = load_model(parent)
    notes: list[str] = []
    report = progress or (lambda stage, info: None)
    work = Path(tempfile.mkdtemp(prefix=".lymphmet-finetune-", dir=output.parent))
    try:
        tables, replay_tables, used = _gather(corrections, keras_model, card, config, work, report)
        folders = [Path(p) for p in config.replay]
        if not folders and parent.parent.resolve() == BUNDLED_DIR.resolve() and bundled_training_data() is not None:
            folders = [bundled_training_data()]
        for folder in folders:
            replay_tables.append(_folder_sample(folder, config.replay_data, config.seed))
        counts = {"tumor": sum(int(t.labels.sum()) for t in tables),
                  "not_tumor": sum(int((t.labels == 0).sum()) for t in tables)}
        if counts["tumor"] + counts["not_tumor"] == 0:
            raise InputError("the corrections hold no patches on tissue at the model's resolution; outline larger "
                             "areas")
        for label, n in counts.items():
            if n < config.few:
                notes.append(f"only {n} {label.replace('_', '-')} patches come from the corrections; "
                             f"outline more (at least {config.few}) for a reliable change")
        replay = PatchTable.concat(replay_tables)
        rng = np.random.default_rng(config.seed)
        replay_train, replay_val = _hold_out(replay, rng)
        fixes = PatchTable.concat(tables)
        fixes_train, fixes_val = _hold_out(fixes, rng) if len(fixes) >= 40 else (fixes, None)
        train_table = PatchTable.concat([fixes_train, replay_train])
        counts["replay"] = len(replay) if replay is not None else 0
        if config.epochs and len(np.unique(train_table.labels)) < 2:
            raise InputError("the corrections and replay give patches of one class only; outline tumor too, or give "
                             "--replay with labelled patches of both classes")
        before = _figures(replay_val, keras_model, card)
        fixed_before = _figures(fixes_val, keras_model, card)
        if config.epochs:
            trained = _train(parent, train_table, PatchTable.concat([replay_val, fixes_val]),
                             work / "candidate.keras", config, report, cancel)
            new_model, new_card = load_model(trained.path)
            epochs_run, cancelled = trained.epochs_run, trained.cancelled
        else:  # a threshold for these slides on the parent's weights
            new_model, new_card, epochs_run, cancelled = keras_model, card, 0, False
        report("score", {})
        if config.epochs:
            after, fixed_after = _figures(replay_val, new_model, new_card), _figures(fixes_val, new_model, new_card)
        else:  # the same weights: nothing to score again
            after, fixed_after = before, fixed_before
        chosen = corrections_threshold(*_peaks(corrections, new_model, new_card, config.smooth), new_card.threshold,
                                       lesion_margin=config.lesion_margin)
        threshold = {"validation": round(float(new_card.threshold), 6), **chosen.as_dict()}
        if config.threshold_from == "validation":
            threshold.update(threshold=threshold["validation"], source="validation")
        elif chosen.source != "corrections":
            notes.append("no lesion is outlined as tumor, so nothing shows how high a threshold is safe; kept the "
                         "validation threshold")
        elif chosen.kept:
            notes.append(f"{chosen.kept} marked false positive(s) still reach the threshold: they score above, or "
                         f"within {config.lesion_margin:g} logit of, the faintest marked lesion, and lesions come "
                         "first")
        worse = [k for k in ("accuracy", "auc") if k in before and k in after
                 and after[k] < before[k] - config.margin]
        accepted = not worse and not cancelled
        if worse:
            notes.append("the fine-tuned model is worse on the held-out replay set ("
                         + ", ".join(f"{k} {before[k]:.3f} → {after[k]:.3f}" for k in worse)
                         + f", margin {config.margin:g}); kept {parent.name}, saved nothing")
        elif replay_val is None:
            notes.append("no replay set to check the new model against (give --replay)")
        path = None
        if accepted:
            extra = dict(new_card.extra)
            extra["parent"] = {"model": parent.name, "id": model_id(parent), "threshold": card.threshold,
                               "validation": dict(card.validation) if card.validation else None}
            extra["finetune"] = {"corrections": used, "patches": counts, "epochs": epochs_run,
                                 "margin": config.margin, "replay": {"before": before, "after": after},
                                 "corrections_held_out": {"before": fixed_before, "after": fixed_after},
                                 "threshold": threshold}
            new_card = replace(new_card, threshold=float(threshold["threshold"]), extra=extra)
            path = save_model(new_model, output, new_card)
        return FinetuneResult(path, accepted, parent, counts, epochs_run, time.monotonic() - start, before,
                              after, tuple(notes), cancelled, new_card, tuple(used),
                              {"before": fixed_before, "after": fixed_after}, threshold)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _gather(corrections: Sequence[Corrections], keras_model, card, config: FinetuneConfig, work: Path,
            report: Callable[[str, dict], None]):
    """Export every slide's correction patches: ``(tables, replay tables, per-slide facts)``."""
    from ..model import PatchTable, read_patch_table
    from ..patches import export_patches
    from ..wsi import open_slide

    tables, replay_tables, used = [], [], []
    for i, corr in enumerate(corrections):
        folder = work / f"slide{i}"
        with open_slide(corr.slide) as slide:
            tumor, hard, elsewhere = correction_patches(slide, corr, card, per_class=config.max_per_class,
                                                        elsewhere=2 * config.replay_per_slide, seed=config.seed)
            for part, plan in (("tumor", tumor), ("hard", hard), ("elsewhere", elsewhere)):
                if len(plan):
                    export_patches([(slide, plan)], folder / part)
        report("patches", {"done": i + 1, "total": len(corrections)})
        for part in ("tumor", "hard"):
            if (folder / part / "patches.csv").exists():
                tables.append(read_patch_table([folder / part]))
        if (folder / "elsewhere" / "patches.csv").exists():
            # Replay: patches away from the corrections that the model already calls normal.
            candidates = read_patch_table([folder / "elsewhere"])
            agree = _scores(keras_model, card, candidates) < card.threshold
            idx = np.nonzero(agree)[0][:config.replay_per_slide]
            if len(idx):
                sample = candidates.subset(idx)
                replay_tables.append(PatchTable(sample.paths, np.zeros(len(idx), np.int64), sample.slides,
                                                sample.mpp))
        used.append({"slide": Path(corr.slide).name, "file": corr.source, **corr.counts(),
                     "tumor_patches": len(tumor), "not_tumor_patches": len(hard)})
    return tables, replay_tables, used


def _peaks(corrections: Sequence[Corrections], model, card, smooth: float) -> tuple[list[float], list[float]]:
    """``(lesion peaks, false-positive peaks)``: each outline's highest detection-map value under ``model``."""
    from ..wsi import open_slide

    lesions: list[float] = []
    false_positives: list[float] = []
    for corr in corrections:
        with open_slide(corr.slide) as slide:
            for label, peaks in ((TUMOR, lesions), (EXCLUSION, false_positives)):
                polygons = [a for a in corr.annotations if a.label == label]
                peaks.extend(region_peaks(slide, model, card, polygons, smooth=smooth).tolist())
    return lesions, false_positives


def _train(parent: Path, train_table, val_table, candidate: Path, config: FinetuneConfig, report, cancel):
    """Fine-tune ``parent`` from its weights; the held-out replay and corrections are its validation.

    Training keeps its best epoch there and picks the validation threshold
    there, as ``lymphmet train`` does on validation slides. One class only:
    the parent's threshold.
    """
    from ..model import TrainConfig, train

    two_classes = val_table is not None and len(np.unique(val_table.labels)) == 2
    return train(train_table, val_table if two_classes else None, candidate,
                 TrainConfig(weights=str(parent), epochs=config.epochs, batch_size=config.batch_size,
                             learning_rate=config.learning_rate, seed=config.seed),
                 progress=lambda info: report("train", info), cancel=cancel)
