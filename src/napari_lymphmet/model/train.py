"""Training a patch classifier: the options, the phases, early stopping, and the saved card.

TensorFlow is imported inside :func:`train`, never at import. The result
is one ``.keras`` file with its :class:`~napari_lymphmet.model.ModelCard`
inside: how the model sees patches, the decision threshold chosen on
validation data, a training data summary and the validation metrics."""


from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .architectures import BACKBONES, DEFAULT_INPUT, ENSEMBLE_BACKBONE, FROM_SCRATCH, _set_trainable, build_model
from .card import ModelCard, read_card
from .data import _image_size, make_dataset
from ..errors import InputError
from .metrics import best_threshold, binary_metrics, normal_score_quantiles, screening_threshold
from .io import save_model
from .registry import bundled_models, resolve_model
from .preprocess import _reinhard_fit
from .dataset import CLASSES, PatchTable
from .schedule import Plan

__all__ = ["DEFAULT_TIME_LIMIT", "TARGET_STEPS", "Phase", "TrainConfig", "TrainResult", "train", "training_phases"]


TARGET_STEPS = 6000  # optimizer steps a default run aims for (see TrainConfig.for_data)
DEFAULT_TIME_LIMIT = 25.0  # minutes, the CLI's and the Train widget's: a default run ends within the half hour
# A default run's epochs may grow to this many times the data's default where the time limit has room
# (a fast host): longer cosine schedules kept gaining to their end (docs/models.md, the ablation).
GROWTH = 3


@dataclass(frozen=True)
class TrainConfig:
    """Training options; see ``lymphmet train --help``."""

    backbone: str = "efficientnetb0"
    weights: str = "imagenet"  # "imagenet", "none", a weights file, or a model (file or bundled name) to fine-tune
    input_size: int | None = None  # default per backbone (small-cnn: the patch size, at most 128)
    epochs: int | None = None  # default from the data: see schedule_for
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    augment: bool = True
    hed_sigma: float = 0.3  # HED stain augmentation strength
    colour_sigma: float = 1.0  # slide-level colour shifts (Reinhard-like, in YUV)
    blur_sigma: float = 1.0  # largest Gaussian blur, in input pixels (scanner focus)
    stain_norm: str = "none"  # "none" or "reinhard"
    patience: int | None = None  # epochs without a better validation AUC before stopping; default: never stop early
    time_limit: float | None = None  # minutes the run may take; the epochs are fitted to it (see schedule.Plan)
    fine_tune_fraction: float = 0.3  # of the backbone's layers unfrozen in phase 2
    patch_mpp: float | None = None  # mpp of the training patches, when the data does not say
    # Validate, keep and save a moving average of the weights (Polyak averaging) with this momentum, not the
    # last step's; 0: off (the default: on the from-scratch default it changed nothing, 0.935 / 0.866 against
    # 0.937 / 0.863; docs/models.md). Never when fine-tuning a model.
    ema: float = 0.0

    def __post_init__(self) -> None:
        if self.backbone == ENSEMBLE_BACKBONE and self.weights in ("none", "imagenet"):
            raise InputError("an ensemble is made by `lymphmet ensemble` from trained models; to fine-tune one, "
                             "give it as --weights")
        if self.backbone not in (*BACKBONES, ENSEMBLE_BACKBONE):
            raise InputError(f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")
        if self.stain_norm not in ("none", "reinhard"):
            raise InputError(f"stain normalisation must be none or reinhard, got {self.stain_norm!r}")
        if (self.epochs is not None and self.epochs < 1) or self.batch_size < 1:
            raise InputError("epochs and batch size must be at least 1")
        if not 0 <= self.ema < 1:
            raise InputError(f"the weight average's momentum must be within [0, 1), got {self.ema}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise InputError(f"the time limit must be a positive number of minutes, got {self.time_limit}")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file() \
                and self.weights not in bundled_models():
            raise InputError(f"{self.weights}: no such weights file nor bundled model (use --weights imagenet|none, "
                             f"a file, or one of: {', '.join(bundled_models()) or 'no bundled models'})")

    @property
    def size(self) -> int:
        return self.input_size or DEFAULT_INPUT[self.backbone]

    def for_data(self, patches: int, patch_size: int) -> TrainConfig:
        """This config with every "from the data" default filled in, for ``patches`` of ``patch_size`` px.

        - small-cnn's input: the patch size, at most 128 (upsampling adds only work);
        - epochs: about ``TARGET_STEPS`` optimizer steps, between 8 and 200
          epochs, so 39 patches and 20,000 both get a sensible run (a
          ``time_limit`` may shorten them, or lengthen them up to
          ``GROWTH`` times, once the first epoch is timed).

        Early stopping stays off unless ``patience`` is given: the learning
        rate follows a cosine to the end of the run, and the last, small
        steps are where a run gains most (docs/models.md, the ablation).
        """
        size = self.input_size or (min(patch_size, DEFAULT_INPUT["small-cnn"]) if self.backbone in FROM_SCRATCH
                                   else DEFAULT_INPUT[self.backbone])
        steps = max(1, -(-patches // self.batch_size))
        epochs = self.epochs or int(np.clip(-(-TARGET_STEPS // steps), 8, 200))
        return replace(self, input_size=size, epochs=epochs)


@dataclass(frozen=True)
class Phase:
    """One stretch of training: so many epochs at one learning rate.

    ``unfreeze``: ``None`` trains everything; ``False`` only the head (the
    backbone frozen); ``True`` the head and the top of the backbone.
    """

    epochs: int
    learning_rate: float
    unfreeze: bool | None = None


def training_phases(config: TrainConfig, *, fine_tune: bool = False) -> list[Phase]:
    """The phases of a run.

    Fine-tuning a trained model: one phase at a tenth of the rate. From
    scratch: one phase. Pretrained backbone: the head first (a third of the
    epochs), then the top of the backbone at a tenth of the rate, so the
    random head does not wreck the pretrained features.
    """
    if fine_tune:  # a whole trained model (see _parent_model): gently
        return [Phase(config.epochs, config.learning_rate / 10)]
    if config.backbone in FROM_SCRATCH or config.weights == "none":
        return [Phase(config.epochs, config.learning_rate)]
    head = max(1, config.epochs // 3)
    return [Phase(head, config.learning_rate, False), Phase(config.epochs - head, config.learning_rate / 10, True)]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced: the file, its card and the curves."""

    path: Path
    card: ModelCard
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    seconds: float = 0.0
    cancelled: bool = False


# -- training -------------------------------------------------------------------
class _Callback:
    """Progress, cancel, history and the learning-rate plan for ``model.fit`` (made a Keras callback lazily)."""

    @staticmethod
    def make(progress, cancel, history, plan: Plan, epoch_offset: int, epochs_after: int):
        from ._tensorflow import import_keras

        keras = import_keras()

        def total() -> int:
            return epoch_offset + plan.epochs + epochs_after

        class Callback(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.model.optimizer.learning_rate = plan.rate()
                plan.step += 1

            def on_train_batch_end(self, batch, logs=None):
                if progress is not None:
                    progress({"epoch": epoch_offset + self._epoch, "epochs": total(), "batch": batch + 1,
                              "batches": plan.steps_per_epoch, "loss": float((logs or {}).get("loss", np.nan))})
                if cancel is not None and cancel.is_set():
                    self.model.stop_training = True

            def on_train_begin(self, logs=None):
                self._began = time.monotonic()

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch = epoch

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                for key in ("loss", "val_loss", "val_auc", "auc"):
                    if key in logs:
                        history.setdefault(key, []).append(float(logs[key]))
                if progress is not None:
                    progress({"epoch": epoch_offset + epoch + 1, "epochs": total(), "end_of_epoch": True,
                              **{k: float(v) for k, v in logs.items()}})
                now, planned = time.monotonic(), total()
                pace = (now - self._began) / (epoch + 1)  # this phase's mean epoch, validation included
                if plan.refit(pace, now, done=epoch + 1) and progress is not None:
                    progress({"replanned": True, "epochs": total(), "planned": planned, "epoch_seconds": pace})
                if epoch + 1 >= plan.epochs:
                    self.model.stop_training = True

        return Callback()


def train(
    train_table: PatchTable,
    val_table: PatchTable | None,
    output: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    progress: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> TrainResult:
    """Train a classifier and save the best checkpoint to ``output`` (``.keras``).

    Validation (whole held-out slides) drives early stopping on AUC and the
    choice of checkpoint and threshold. Pretrained backbones train their
    head first, then the top of the backbone at a tenth of the rate.
    Setting ``cancel`` stops after the current batch; the best model so far
    (or the current one, before any epoch ended) is still saved.
    """
    from ._tensorflow import import_keras

    keras = import_keras()
    from . import ensemble_layers, equivariant  # noqa: F401  (a parent or checkpoint may be made of them)

    output = Path(output)
    if output.suffix != ".keras":
        raise InputError(f"{output}: a model file must end in .keras")
    if not output.parent.is_dir():
        raise InputError(f"{output}: output folder {output.parent} does not exist")
    if len(np.unique(train_table.labels)) < 2:
        raise InputError("the training data needs both tumor and normal patches")
    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    first = _image_size(train_table.paths[0])
    parent = _parent_model(config.weights)
    if parent is not None:  # fine-tuning keeps the model's architecture, input size and resolution
        parent_path, parent_card = parent
        if train_table.mpp and parent_card.patch_mpp and abs(train_table.mpp / parent_card.patch_mpp - 1) > 0.05:
            raise InputError(f"the patches are at {train_table.mpp:g} µm/px but {parent_path.name} was trained at "
                             f"{parent_card.patch_mpp:g}; export patches at its resolution to fine-tune it")
        config = replace(config, backbone=parent_card.backbone, input_size=parent_card.input_size)
    # Epochs from the data's default, a time limit and one phase: a fast host may use the limit for more.
    may_grow = config.epochs is None and config.time_limit is not None and parent is None
    config = config.for_data(len(train_table), first)
    size = config.size
    keep = parent[1] if parent is not None else None  # what fine-tuning must not change
    card = ModelCard(
        backbone=config.backbone,
        weights=config.weights,
        input_size=size,
        patch_size=keep.patch_size if keep else first,
        patch_mpp=keep.patch_mpp if keep else (train_table.mpp or config.patch_mpp),
        classes=CLASSES,
        hed_sigma=config.hed_sigma if config.augment else 0.0,
        colour_sigma=config.colour_sigma if config.augment else 0.0,
        blur_sigma=config.blur_sigma if config.augment else 0.0,
        # small-cnn sees haematoxylin/eosin/DAB optical densities, which it
        # standardises per patch: a stain's strength then cancels out.
        input_space=keep.input_space if keep else ("hed" if config.backbone in FROM_SCRATCH else "rgb"),
        stain_norm=keep.stain_norm if keep else (_reinhard_fit(train_table.paths, size, seed=config.seed)
                                                 if config.stain_norm == "reinhard" else None),
        extra={"parent": {"model": parent[0].name, "threshold": parent[1].threshold,
                          "validation": parent[1].validation}} if parent is not None else {},
        training={"train": train_table.summary(),
                  "validation": val_table.summary() if val_table is not None and len(val_table) else None,
                  "config": asdict(config)},
    )
    has_val = val_table is not None and len(val_table) > 0 and len(np.unique(val_table.labels)) == 2
    train_ds = make_dataset(train_table, card, batch_size=config.batch_size, training=config.augment,
                            seed=config.seed)
    val_ds = make_dataset(val_table, card, batch_size=config.batch_size, training=False) if has_val else None
    counts = np.bincount(train_table.labels, minlength=2)
    class_weight = {i: float(len(train_table) / (2 * c)) for i, c in enumerate(counts)}

    if parent is None:
        model = build_model(config.backbone, input_size=size, weights=config.weights)
    else:
        model = keras.saving.load_model(parent[0], safe_mode=True, compile=False)
    checkpoint = output.with_name(f".{output.stem}.best.keras")
    monitor, mode = ("val_auc", "max") if has_val else ("loss", "min")
    history: dict[str, list[float]] = {}
    steps = int(np.ceil(len(train_table) / config.batch_size))
    phases = [p for p in training_phases(config, fine_tune=parent is not None) if p.epochs > 0]
    # The limit covers the whole command: leave room for what follows the last epoch (batch-norm
    # statistics, scoring the validation set, saving), about a twentieth of it.
    deadline = (start + 60 * config.time_limit - max(30.0, 3 * config.time_limit)
                if config.time_limit is not None else None)
    epochs_run, best = 0, None
    try:
        for i, phase in enumerate(phases):
            if cancel is not None and cancel.is_set():
                continue
            if phase.unfreeze is not None:
                _set_trainable(model.get_layer("backbone"), phase.unfreeze, config.fine_tune_fraction)
            later = sum(p.epochs for p in phases[i + 1:])
            now = time.monotonic()  # each phase gets its share of the time left, by its planned epochs
            plan = Plan(phase.epochs, steps, phase.learning_rate,
                         deadline=None if deadline is None else now + (deadline - now) * phase.epochs
                         / (phase.epochs + later),
                         most=GROWTH * phase.epochs if may_grow and len(phases) == 1 else None)
            momentum = _average_momentum(config.ema, steps * phase.epochs) if parent is None else 0.0
            # Cosine decay to a twentieth over the phase (schedule.Plan): big steps early, a settled model at the end.
            optimizer = (keras.optimizers.Adam(phase.learning_rate, use_ema=True, ema_momentum=momentum)
                         if momentum else keras.optimizers.Adam(phase.learning_rate))
            model.compile(optimizer=optimizer, loss="binary_crossentropy",
                          metrics=[keras.metrics.AUC(name="auc"), "accuracy"])
            save_best = keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, mode=mode, save_best_only=True,
                                                        initial_value_threshold=best)
            callbacks = [save_best, _Callback.make(progress, cancel, history, plan, epochs_run, later)]
            if momentum:  # the average in the model for validation and the checkpoint, the raw weights to train
                callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
            if has_val and config.patience:  # without validation the training loss is too noisy to stop on
                callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.patience))
            # shuffle=False: the tf.data pipeline shuffles; Keras' own flag would only warn it is ignored.
            fit = model.fit(train_ds, validation_data=val_ds, epochs=plan.most or phase.epochs,
                            class_weight=class_weight, verbose=0, callbacks=callbacks, shuffle=False)
            epochs_run += len(fit.history.get("loss", []))
            best = save_best.best if np.isfinite(save_best.best) else best
        cancelled = cancel is not None and cancel.is_set()
        if checkpoint.exists():
            best_model = keras.saving.load_model(checkpoint, compile=False)
        else:  # cancelled before an epoch ended: keep what there is
            best_model = model
        if config.backbone == "small-cnn":
            # A fine-tune moves the statistics a little from its parent's; 512 patches measure that move
            # as well as 2048 (millions of values per channel) in a quarter of the time.
            _recalibrate_batchnorm(best_model, train_table, card, limit=512 if parent is not None else 2048)
        if has_val:
            scores = best_model.predict(val_ds, verbose=0).ravel()
            threshold = best_threshold(val_table.labels, scores)
            validation = {**binary_metrics(val_table.labels, scores, threshold),
                          **screening_threshold(val_table.labels, scores),
                          **normal_score_quantiles(val_table.labels, scores)}
        else:  # nothing to choose a threshold on: a fine-tuned model keeps its parent's
            threshold, validation = (keep.threshold if keep else 0.5), None
        card = replace(card, threshold=float(threshold), validation=validation, epochs_run=epochs_run,
                       cancelled=cancelled, history=history)
        save_model(best_model, output, card)
    finally:
        checkpoint.unlink(missing_ok=True)
    return TrainResult(output, card, history, epochs_run, time.monotonic() - start, cancelled)


def _average_momentum(momentum: float, steps: int) -> float:
    """The weight average's momentum for a phase of ``steps`` optimizer steps: as configured, but averaging
    over at most a quarter of the phase (a short run would otherwise validate weights it began with)."""
    if momentum <= 0 or steps < 8:
        return 0.0
    return min(momentum, 1 - 4 / steps)


def _recalibrate_batchnorm(model, table: PatchTable, card: ModelCard, *, limit: int = 2048,
                           batch_size: int = 64) -> None:
    """Set every BatchNorm layer's moving statistics to the exact statistics of its input.

    Training sees augmented patches, and few hundred steps leave the moving
    averages far from the un-augmented data met at inference, which skews
    every probability. So, layer by layer in order, the mean and variance of
    each BatchNorm's input over (up to ``limit``) plain training patches
    replace its moving statistics ("precise BN").
    """
    from ._tensorflow import import_keras

    keras = import_keras()

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns:
        return
    if len(table) > limit:
        table = table.subset(np.random.default_rng(0).choice(len(table), limit, replace=False))
    batches = [x for x, _ in make_dataset(table, card, batch_size=batch_size, training=False)]
    for bn in bns:
        probe = keras.Model(model.inputs, bn.input)
        total, total_sq, count = 0.0, 0.0, 0
        for x in batches:
            values = np.asarray(probe(x, training=False), np.float64)
            values = values.reshape(-1, values.shape[-1])
            total = total + values.sum(axis=0)
            total_sq = total_sq + (values**2).sum(axis=0)
            count += len(values)
        mean = total / count
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(np.maximum(total_sq / count - mean**2, 0).astype(np.float32))


def _parent_model(weights: str) -> tuple[Path, ModelCard] | None:
    """The trained model ``weights`` names (a ``.keras`` file or a bundled name), to fine-tune; else ``None``."""
    if weights in ("imagenet", "none") or not (weights in bundled_models() or weights.endswith(".keras")):
        return None
    path = resolve_model(weights)
    return path, read_card(path)
