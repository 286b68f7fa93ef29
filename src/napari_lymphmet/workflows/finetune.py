"""Fine-tune a model on a pathologist's corrections: the correct-and-retrain loop.

Corrections are polygons on a slide: ``tumor`` (missed tumor, or lesions
to keep) and ``exclusion`` ("not tumor": false positives). From them come
patches at the model's own mpp and patch size: tumor patches from tumor
polygons, hard negatives from exclusion polygons. A replay sample keeps the
model from forgetting what it knew: patches of the same slides, away from
every correction, that the model already calls normal, and, for the bundled
model, a sample of its training data when it is on disk (or any labelled
folder given as ``replay``).

A quarter of the replay sample is held out. The model is scored on it
before and after; a new model more than ``margin`` worse there is not saved.
When it holds both classes, training also keeps its best epoch on it and
sets the new model's threshold there.

The CLI (``lymphmet finetune``) and the *Detect metastases* widget both run
:func:`finetune`.
"""

from __future__ import annotations

import hashlib
import math
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

from ..annotations import EXCLUSION, TUMOR, Annotation, read_annotations
from ..errors import InputError

__all__ = ["Corrections", "FinetuneConfig", "FinetuneResult", "bundled_training_data", "correction_patches",
           "finetune"]

@dataclass(frozen=True)
class Corrections:
    """One slide's corrections: ``annotations`` in level-0 px, read from ``source`` (a file) if given."""

    slide: str
    annotations: tuple[Annotation, ...]
    source: str = ""

    @classmethod
    def read(cls, slide: str | os.PathLike, path: str | os.PathLike) -> Corrections:
        """Corrections from an ASAP XML (``_2`` = not tumor) or GeoJSON (``Exclusion`` = not tumor) file."""
        if not Path(slide).is_file():
            raise InputError(f"{slide}: no such slide")
        if not Path(path).is_file():
            raise InputError(f"{path}: no such corrections file")
        return cls(str(slide), tuple(read_annotations(path)), str(path))

    def counts(self) -> dict[str, int]:
        return {"tumor": sum(a.label == TUMOR for a in self.annotations),
                "not_tumor": sum(a.label == EXCLUSION for a in self.annotations)}


@dataclass(frozen=True)
class FinetuneConfig:
    """Options; see ``lymphmet finetune --help``.

    ``margin``: how much lower the new model's accuracy (and AUC, when the
    replay set has both classes) on the held-out replay set may be before it
    is refused. ``few``: fewer correction patches than this in a class get
    a warning.
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
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.epochs, self.batch_size, self.max_per_class, self.replay_data) < 1:
            raise InputError("epochs, batch size and patch counts must be at least 1")
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

    def summary(self) -> dict[str, Any]:
        """The JSON ``lymphmet finetune`` prints."""
        return {"model": str(self.path) if self.path else None, "accepted": self.accepted, "parent": str(self.parent),
                "patches": self.patches, "epochs": self.epochs, "seconds": round(self.seconds, 1),
                "validation": {"before": self.before, "after": self.after,
                               "corrections_held_out": self.held_out}, "corrections": list(self.corrections),
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


def _centres_in(annotations: Sequence[Annotation], xs: np.ndarray, ys: np.ndarray, box: float,
                dimensions: tuple[int, int], *, dilate: float = 0.0) -> np.ndarray:
    """``(N,) bool``: the patches whose centre lies in the polygons (grown by ``dilate`` level-0 px)."""
    from scipy import ndimage

    from ..annotations import rasterize

    out = np.zeros(len(xs), bool)
    if not annotations or not len(xs):
        return out
    d = max(1.0, box / 8)
    shape = (math.ceil(dimensions[1] / d) + 1, math.ceil(dimensions[0] / d) + 1)
    # rasterize fills tumor and cuts exclusions out, so every polygon is drawn as tumor here
    mask = rasterize([Annotation(a.exterior, TUMOR) for a in annotations], shape, downsample=d)
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=max(1, int(round(dilate / d))))
    r = np.clip(((ys + box / 2) / d).astype(int), 0, shape[0] - 1)
    c = np.clip(((xs + box / 2) / d).astype(int), 0, shape[1] - 1)
    return mask[r, c]


def correction_patches(slide, corrections: Corrections, card, config: FinetuneConfig):
    """Plan a slide's patches at the model's mpp and size: ``(tumor, not_tumor, elsewhere)`` plans.

    Tumor patches have their centre in a tumor polygon (less exclusions);
    not-tumor patches in an exclusion polygon. ``elsewhere`` are tissue
    patches at least a patch away from every correction: candidates for the
    replay sample.

    Raises
    ------
    InputError
        No tumor and no exclusion polygons, or none of them on the slide.
    """
    from ..annotations import NORMAL
    from ..patches import PatchSpec, plan_patches
    from ..tissue import tissue_for

    anns = [a for a in corrections.annotations if a.label in (TUMOR, EXCLUSION)]
    name = corrections.source or "corrections"
    if not anns:
        raise InputError(f"{name}: no tumor and no not-tumor (exclusion) polygons to learn from")
    w, h = slide.dimensions
    on_slide = [a for a in anns if a.exterior[:, 0].max() > 0 and a.exterior[:, 1].max() > 0
                and a.exterior[:, 0].min() < w and a.exterior[:, 1].min() < h]
    if not on_slide:
        raise InputError(f"{name}: none of its {len(anns)} polygons lies on {Path(slide.path).name} ({w} × {h} px); "
                         f"is it the right slide?")
    size = card.read_size
    spec = PatchSpec(size=size, stride=max(1, size // 2), mpp=card.patch_mpp if slide.mpp else None,
                     level=None if slide.mpp else 0, min_tissue=0.25, seed=config.seed)
    tissue = tissue_for(slide, None)
    plan = plan_patches(slide, spec, tissue_mask=tissue.mask, tissue_downsample=tissue.downsample,
                        annotations=on_slide)
    exclusions = [a for a in on_slide if a.label == EXCLUSION]
    hard = (plan.labels == NORMAL) & _centres_in(exclusions, plan.x, plan.y, plan.box, slide.dimensions)
    tumor = plan.labels == TUMOR
    away = ~_centres_in(on_slide, plan.x, plan.y, plan.box, slide.dimensions, dilate=plan.box) & ~tumor & ~hard
    rng = np.random.default_rng([config.seed, *Path(slide.path).name.encode()])

    def sample(keep: np.ndarray, n: int):
        idx = np.nonzero(keep)[0]
        if len(idx) > n:
            idx = np.sort(rng.choice(idx, n, replace=False))
        chosen = np.zeros(len(plan), bool)
        chosen[idx] = True
        return plan.take(chosen)

    return (sample(tumor, config.max_per_class), sample(hard, config.max_per_class),
            sample(away, 2 * config.replay_per_slide))


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

    return np.concatenate([np.asarray(model(x, training=False)).ravel()
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


def _model_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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
    from ..model import (BUNDLED_DIR, PatchTable, TrainConfig, load_model, read_patch_table, resolve_model,
                         save_model, train)
    from ..patches import export_patches
    from ..wsi import open_slide

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
        tables, replay_tables, used = [], [], []
        for i, corr in enumerate(corrections):
            with open_slide(corr.slide) as slide:
                tumor, hard, elsewhere = correction_patches(slide, corr, card, config)
                folder = work / f"slide{i}"
                if len(tumor):
                    export_patches([(slide, tumor)], folder / "tumor")
                if len(hard):
                    export_patches([(slide, hard)], folder / "hard")
                if len(elsewhere):
                    export_patches([(slide, elsewhere)], folder / "elsewhere")
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
        replay = _concat(replay_tables)
        rng = np.random.default_rng(config.seed)
        replay_train, replay_val = _hold_out(replay, rng)
        fixes = _concat(tables)
        fixes_train, fixes_val = _hold_out(fixes, rng) if len(fixes) >= 40 else (fixes, None)
        train_table = _concat([fixes_train, replay_train])
        counts["replay"] = len(replay) if replay is not None else 0
        if len(np.unique(train_table.labels)) < 2:
            raise InputError("the corrections and replay give patches of one class only; outline tumor too, or give "
                             "--replay with labelled patches of both classes")
        before = _figures(replay_val, keras_model, card)
        fixed_before = _figures(fixes_val, keras_model, card)
        candidate = work / "candidate.keras"
        # Validation is the held-out replay and corrections together: training keeps its best epoch there
        # and picks the new model's threshold there, as lymphmet train does on validation slides.
        # Fine-tuning on hard negatives of a new stain shifts every score, so the parent's threshold no
        # longer fits; the corrections' own patches are the new stain. One class only: the parent's threshold.
        val_table = _concat([replay_val, fixes_val])
        two_classes = val_table is not None and len(np.unique(val_table.labels)) == 2
        trained = train(train_table, val_table if two_classes else None, candidate,
                        TrainConfig(weights=str(parent), epochs=config.epochs, batch_size=config.batch_size,
                                    learning_rate=config.learning_rate, seed=config.seed),
                        progress=lambda info: report("train", info), cancel=cancel)
        cancelled = trained.cancelled
        new_model, new_card = load_model(candidate)
        report("score", {})
        after = _figures(replay_val, new_model, new_card)
        fixed_after = _figures(fixes_val, new_model, new_card)
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
            extra["parent"] = {"model": parent.name, "id": _model_id(parent), "threshold": card.threshold,
                               "validation": dict(card.validation) if card.validation else None}
            extra["finetune"] = {"corrections": used, "patches": counts, "epochs": trained.epochs_run,
                                 "margin": config.margin, "replay": {"before": before, "after": after},
                                 "corrections_held_out": {"before": fixed_before, "after": fixed_after}}
            path = save_model(new_model, output, replace(new_card, extra=extra))
        return FinetuneResult(path, accepted, parent, counts, trained.epochs_run, time.monotonic() - start, before,
                              after, tuple(notes), cancelled, new_card, tuple(used),
                              {"before": fixed_before, "after": fixed_after})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _concat(tables: list):
    from ..model import PatchTable

    tables = [t for t in tables if t is not None and len(t)]
    if not tables:
        return None
    mpps = {t.mpp for t in tables}
    return PatchTable(np.concatenate([t.paths for t in tables]), np.concatenate([t.labels for t in tables]),
                      np.concatenate([t.slides for t in tables]), mpps.pop() if len(mpps) == 1 else None)
