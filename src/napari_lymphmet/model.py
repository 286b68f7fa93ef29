"""Patch classifiers with Keras: build, train, save with metadata, load safely, predict.

TensorFlow is imported inside the functions that need it, never at import.

A saved model is one ``.keras`` file; besides Keras' own entries its zip
holds ``lymphmet.json``: backbone, input size, the mpp and size of the
patches it was trained on, stain normalisation, class names, the decision
threshold chosen on validation data, a training data summary and the
validation metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path
from .dataset import CLASSES, PatchTable
from .errors import InputError
from .metrics import best_threshold, binary_metrics

__all__ = ["BACKBONES", "METADATA_ENTRY", "TrainConfig", "TrainResult", "build_model", "load_model",
           "predict_patches", "prepare_batch", "read_metadata", "save_model", "score_table", "train"]

BACKBONES = ("efficientnetb0", "mobilenetv3small", "small-cnn")
METADATA_ENTRY = "lymphmet.json"
DEFAULT_INPUT = {"efficientnetb0": 224, "mobilenetv3small": 224, "small-cnn": 128}

# Ruifrok & Johnston's stain vectors (as scikit-image's rgb2hed uses).
_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED).astype(np.float32)


@dataclass(frozen=True)
class TrainConfig:
    """Training options; see ``lymphmet train --help``."""

    backbone: str = "efficientnetb0"
    weights: str = "imagenet"  # "imagenet", "none" or a path
    input_size: int | None = None  # default per backbone
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    augment: bool = True
    hed_sigma: float = 0.3  # HED stain augmentation strength
    colour_sigma: float = 1.0  # slide-level colour shifts (Reinhard-like, in YUV)
    blur_sigma: float = 1.0  # largest Gaussian blur, in input pixels (scanner focus)
    stain_norm: str = "none"  # "none" or "reinhard"
    patience: int = 5
    fine_tune_fraction: float = 0.3  # of the backbone's layers unfrozen in phase 2
    patch_mpp: float | None = None  # mpp of the training patches, when the data does not say

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise InputError(f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")
        if self.stain_norm not in ("none", "reinhard"):
            raise InputError(f"stain normalisation must be none or reinhard, got {self.stain_norm!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError("epochs and batch size must be at least 1")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise InputError(f"{self.weights}: no such weights file (or use --weights imagenet|none)")

    @property
    def size(self) -> int:
        return self.input_size or DEFAULT_INPUT[self.backbone]


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    path: Path
    metadata: dict
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    seconds: float = 0.0
    cancelled: bool = False


# -- building -----------------------------------------------------------------
def _backbone(name: str, size: int, weights: str):
    import keras

    w = None if weights == "none" else weights
    try:
        # Keras prints download progress on stdout, which belongs to the CLI's JSON.
        with contextlib.redirect_stdout(sys.stderr):
            return _application(keras, name, size, w)
    except Exception as exc:
        if weights == "imagenet":
            raise InputError(f"cannot get ImageNet weights for {name}: {' '.join(str(exc).split())[:200]}. "
                             f"Offline? Use --weights none, or --weights PATH to a downloaded weights file") from None
        raise InputError(f"{weights}: cannot load as {name} weights ({' '.join(str(exc).split())[:200]})") from None


def _application(keras, name: str, size: int, w: str | None):
    if name == "efficientnetb0":
        return keras.applications.EfficientNetB0(include_top=False, weights=w, input_shape=(size, size, 3),
                                                 pooling="avg")
    return keras.applications.MobileNetV3Small(include_top=False, weights=w, input_shape=(size, size, 3),
                                               pooling="avg", include_preprocessing=True)


def build_model(backbone: str = "efficientnetb0", *, input_size: int | None = None, weights: str = "imagenet",
                dropout: float = 0.3):
    """A binary patch classifier: backbone, global pooling, dropout, one sigmoid.

    Inputs are ``(input_size, input_size, 3)``: RGB in [0, 255] for the
    ImageNet backbones; for ``small-cnn``, HED optical densities (see
    :func:`prepare_batch`), which it standardises per patch and channel
    first (a layer, so it travels with the model). A stain's strength then
    cancels out, and the network has to learn nuclear texture, not colour.
    """
    import keras
    from keras import layers

    size = input_size or DEFAULT_INPUT[backbone]
    inputs = keras.Input((size, size, 3), name="rgb")
    if backbone == "small-cnn":
        if weights == "imagenet":
            raise InputError("small-cnn has no ImageNet weights; use --weights none or a weights file")
        x = layers.LayerNormalization(axis=[1, 2], center=False, scale=False, name="patch_standardise")(inputs)
        for i, filters in enumerate((32, 48, 64, 96, 128)):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"bn{i}")(x)
            x = layers.ReLU()(x)
            x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        base = _backbone(backbone, size, weights)
        base._name = "backbone"
        x = base(inputs)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="tumor")(x)
    model = keras.Model(inputs, outputs, name=f"lymphmet_{backbone.replace('-', '_')}")
    if backbone == "small-cnn" and weights not in ("none", "imagenet"):
        model.load_weights(weights)
    return model


# -- data -------------------------------------------------------------------------
def _reinhard_fit(paths: np.ndarray, size: int, limit: int = 200, seed: int = 0) -> dict:
    """LAB mean and std over (a sample of) the training patches."""
    from skimage.color import rgb2lab
    from skimage.io import imread

    rng = np.random.default_rng(seed)
    pick = paths if len(paths) <= limit else rng.choice(paths, limit, replace=False)
    labs = [rgb2lab(imread(p)[..., :3]).reshape(-1, 3)[::7] for p in pick]
    lab = np.concatenate(labs)
    return {"method": "reinhard", "mean": lab.mean(0).tolist(), "std": lab.std(0).tolist()}


def _reinhard_apply(batch: np.ndarray, params: dict) -> np.ndarray:
    from skimage.color import lab2rgb, rgb2lab

    mean, std = np.asarray(params["mean"]), np.asarray(params["std"])
    out = np.empty(batch.shape, np.float32)
    for i, image in enumerate(batch):
        lab = rgb2lab(np.clip(image, 0, 255).astype(np.uint8))
        m, s = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0) + 1e-6
        out[i] = np.clip(lab2rgb((lab - m) / s * std + mean) * 255, 0, 255)
    return out


def prepare_batch(batch: np.ndarray, metadata: dict) -> np.ndarray:
    """Turn ``(N, h, w, 3) uint8`` patches into the model's input, as in training.

    Resizes to the model's input size (area averaging) and applies the
    stored stain normalisation.
    """
    import tensorflow as tf

    size = int(metadata["input_size"])
    batch = np.asarray(batch)[..., :3].astype(np.float32)
    if batch.shape[1:3] != (size, size):
        batch = tf.image.resize(batch, (size, size), method="area", antialias=True).numpy()
    stain = metadata.get("stain_norm")
    if stain and stain.get("method") == "reinhard":
        batch = _reinhard_apply(batch, stain)
    if metadata.get("input_space") == "hed":
        batch = (-np.log((batch + 1) / 256) @ _HED_FROM_RGB).astype(np.float32)
    return batch


def _gaussian_blur(image, sigma):
    """Blur an ``(h, w, 3)`` image with a 7-tap Gaussian of width ``sigma`` (a scalar tensor)."""
    import tensorflow as tf

    x = tf.range(-3.0, 4.0)
    taps = tf.exp(-(x**2) / (2 * tf.maximum(sigma, 1e-3) ** 2))
    taps /= tf.reduce_sum(taps)
    kernel = tf.tile((taps[:, None] * taps[None, :])[:, :, None, None], [1, 1, 3, 1])
    padded = tf.pad(image[None], [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def _augment(image, seed_pair, hed_sigma: float, colour_sigma: float = 0.0, blur_sigma: float = 0.0):
    """Flips, 90° turns, HED stain jitter, slide-level colour shifts, blur, and colour jitter.

    Patches of one slide share its stain and scanner, and a model that saw
    few slides learns them as a shortcut. So beside per-stain (HED) jitter,
    each patch gets a Reinhard-like shift, a random contrast and offset per
    YUV channel around its own mean, as a whole slide's colour differs from
    another's, and a random focus blur, as scanners differ in sharpness.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed_pair, 12)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    image = tf.image.stateless_random_flip_up_down(image, seeds[1])
    k = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    if hed_sigma > 0:
        od = -tf.math.log((image + 1.0) / 256.0)
        # Scanners differ per colour channel, labs per stain: jitter both.
        od = od * tf.random.stateless_uniform([1, 1, 3], tf.random.experimental.stateless_split(seeds[3], 1)[0],
                                              1 - hed_sigma / 2, 1 + hed_sigma / 2)
        hed = tf.reshape(od, [-1, 3]) @ _HED_FROM_RGB
        alpha = tf.random.stateless_uniform([1, 3], seeds[3], 1 - hed_sigma, 1 + hed_sigma)
        beta = tf.random.stateless_uniform([1, 3], seeds[4], -hed_sigma / 10, hed_sigma / 10)
        od = (hed * alpha + beta) @ _RGB_FROM_HED
        image = tf.reshape(256.0 * tf.exp(-od) - 1.0, tf.shape(image))
    image = tf.clip_by_value(image, 0, 255) / 255.0
    if colour_sigma > 0:
        yuv = tf.image.rgb_to_yuv(image)
        mean = tf.reduce_mean(yuv, axis=[0, 1], keepdims=True)
        # At strength 1 these span what separates the two CAMELYON16 centres'
        # slides: a U offset of 0.08 and contrast ratios of 0.7 to 1.4.
        spread = tf.constant([0.35, 0.45, 0.45]) * colour_sigma
        scale = tf.random.stateless_uniform([3], seeds[8], 1 - spread, 1 + spread)
        shift = tf.random.stateless_uniform([3], seeds[9], -1.0, 1.0) * tf.constant([0.1, 0.08, 0.08]) * colour_sigma
        image = tf.clip_by_value(tf.image.yuv_to_rgb((yuv - mean) * scale + mean + shift), 0, 1)
    if blur_sigma > 0:
        sigma = tf.random.stateless_uniform([], seeds[10], 0, blur_sigma)
        blurred = _gaussian_blur(image, sigma)
        image = tf.where(tf.random.stateless_uniform([], seeds[11]) < 0.5, blurred, image)
    image = tf.image.stateless_random_brightness(image, 0.1, seeds[5])
    image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seeds[6])
    image = tf.image.stateless_random_saturation(image, 0.8, 1.2, seeds[7])
    image = tf.image.stateless_random_hue(image, 0.04, tf.random.experimental.stateless_split(seeds[7], 1)[0])
    return tf.clip_by_value(image, 0, 1) * 255.0


def make_dataset(table: PatchTable, metadata: dict, *, batch_size: int, training: bool, seed: int = 0):
    """A ``tf.data`` pipeline: parallel decode, resize, stain norm, augmentation, prefetch."""
    import tensorflow as tf

    size = int(metadata["input_size"])
    stain = metadata.get("stain_norm")
    hed_sigma = float(metadata.get("hed_sigma", 0.0))
    colour_sigma = float(metadata.get("colour_sigma", 0.0))
    blur_sigma = float(metadata.get("blur_sigma", 0.0))
    ds = tf.data.Dataset.from_tensor_slices((table.paths.astype(str), table.labels.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(table), seed=seed, reshuffle_each_iteration=True)

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        image = tf.image.resize(image, (size, size), method="area", antialias=True)
        if stain:
            image = tf.numpy_function(lambda x: _reinhard_apply(x[None], stain)[0], [image], tf.float32)
            image.set_shape((size, size, 3))
        return image, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        counter = tf.data.Dataset.counter(seed * 1_000_003)
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda pair, i: (_augment(pair[0], tf.stack([i, tf.cast(seed, tf.int64)]), hed_sigma, colour_sigma,
                                      blur_sigma), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    if metadata.get("input_space") == "hed":
        ds = ds.map(lambda image, label: (tf.reshape(tf.reshape(-tf.math.log((image + 1) / 256), [-1, 3])
                                                     @ _HED_FROM_RGB, tf.shape(image)), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# -- saving and loading --------------------------------------------------------------
def save_model(model, path: str | os.PathLike, metadata: dict) -> Path:
    """Save ``model`` as ``.keras`` with ``lymphmet.json`` inside, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise InputError(f"{path}: a model file must end in .keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_ENTRY, json.dumps(metadata, indent=2, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_metadata(path: str | os.PathLike) -> dict:
    """The ``lymphmet.json`` of a saved model, without loading TensorFlow."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a Keras model (.keras files are zip archives)")
    with zipfile.ZipFile(path) as archive:
        if METADATA_ENTRY not in archive.namelist():
            raise InputError(f"{path}: a Keras model without napari-lymphmet metadata; train it with lymphmet train")
        return json.loads(archive.read(METADATA_ENTRY))


def load_model(path: str | os.PathLike):
    """Load a model in Keras safe mode, with its metadata.

    Returns
    -------
    model : keras.Model
    metadata : dict

    Raises
    ------
    InputError
        Missing, not a model, no metadata, or refused by safe mode (a
        ``Lambda`` layer or other code that would run on load).
    """
    import keras

    metadata = read_metadata(path)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "Lambda" in text or "unsafe" in text.lower():
            raise InputError(f"{path}: refused in safe mode: the model holds code that would run on load "
                             f"(e.g. a Lambda layer). Only use models from sources you trust") from None
        raise InputError(f"{path}: not a valid Keras model ({text[:200]})") from None
    except Exception as exc:
        raise InputError(f"{path}: not a valid Keras model ({' '.join(str(exc).split())[:200]})") from None
    return model, metadata


# -- training -------------------------------------------------------------------
class _Callback:
    """Progress, cancel and history for ``model.fit`` (made a Keras callback lazily)."""

    @staticmethod
    def make(progress, cancel, history, steps_per_epoch, epochs_total, epoch_offset):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if progress is not None:
                    progress({"epoch": epoch_offset + self._epoch, "epochs": epochs_total, "batch": batch + 1,
                              "batches": steps_per_epoch, "loss": float((logs or {}).get("loss", np.nan))})
                if cancel is not None and cancel.is_set():
                    self.model.stop_training = True

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch = epoch

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                for key in ("loss", "val_loss", "val_auc", "auc"):
                    if key in logs:
                        history.setdefault(key, []).append(float(logs[key]))
                if progress is not None:
                    progress({"epoch": epoch_offset + epoch + 1, "epochs": epochs_total, "end_of_epoch": True,
                              **{k: float(v) for k, v in logs.items()}})

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
    import keras

    output = Path(output)
    if output.suffix != ".keras":
        raise InputError(f"{output}: a model file must end in .keras")
    if not output.parent.is_dir():
        raise InputError(f"{output}: output folder {output.parent} does not exist")
    if len(np.unique(train_table.labels)) < 2:
        raise InputError("the training data needs both tumor and normal patches")
    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    size = config.size
    first = _image_size(train_table.paths[0])
    metadata: dict[str, Any] = {
        "format": "napari-lymphmet model 1",
        "backbone": config.backbone,
        "weights": config.weights,
        "input_size": size,
        "patch_size": first,
        "patch_mpp": train_table.mpp or config.patch_mpp,
        "classes": list(CLASSES),
        "hed_sigma": config.hed_sigma if config.augment else 0.0,
        "colour_sigma": config.colour_sigma if config.augment else 0.0,
        "blur_sigma": config.blur_sigma if config.augment else 0.0,
        # small-cnn sees haematoxylin/eosin/DAB optical densities, which it
        # standardises per patch: a stain's strength then cancels out.
        "input_space": "hed" if config.backbone == "small-cnn" else "rgb",
        "stain_norm": _reinhard_fit(train_table.paths, size, seed=config.seed)
        if config.stain_norm == "reinhard" else None,
        "training": {"train": train_table.summary(),
                     "validation": val_table.summary() if val_table is not None and len(val_table) else None,
                     "config": asdict(config)},
    }
    has_val = val_table is not None and len(val_table) > 0 and len(np.unique(val_table.labels)) == 2
    train_ds = make_dataset(train_table, metadata, batch_size=config.batch_size, training=config.augment,
                            seed=config.seed)
    val_ds = make_dataset(val_table, metadata, batch_size=config.batch_size, training=False) if has_val else None
    counts = np.bincount(train_table.labels, minlength=2)
    class_weight = {i: float(len(train_table) / (2 * c)) for i, c in enumerate(counts)}

    model = build_model(config.backbone, input_size=size, weights=config.weights)
    pretrained = config.backbone != "small-cnn" and config.weights != "none"
    checkpoint = output.with_name(f".{output.stem}.best.keras")
    monitor, mode = ("val_auc", "max") if has_val else ("loss", "min")
    history: dict[str, list[float]] = {}
    steps = int(np.ceil(len(train_table) / config.batch_size))
    phases = [(config.epochs, config.learning_rate, None)]
    if pretrained:
        head = max(1, config.epochs // 3)
        phases = [(head, config.learning_rate, False), (config.epochs - head, config.learning_rate / 10, True)]
    epochs_run, best = 0, None
    try:
        for epochs, lr, unfreeze in phases:
            if epochs <= 0 or (cancel is not None and cancel.is_set()):
                continue
            if unfreeze is not None:
                _set_trainable(model.get_layer("backbone"), unfreeze, config.fine_tune_fraction)
            model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy",
                          metrics=[keras.metrics.AUC(name="auc"), "accuracy"])
            save_best = keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, mode=mode, save_best_only=True,
                                                        initial_value_threshold=best)
            callbacks = [save_best, _Callback.make(progress, cancel, history, steps, config.epochs, epochs_run)]
            if has_val:  # without validation the training loss is too noisy to stop on
                callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=config.patience))
            fit = model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=class_weight, verbose=0,
                            callbacks=callbacks)
            epochs_run += len(fit.history.get("loss", []))
            best = save_best.best if np.isfinite(save_best.best) else best
        cancelled = cancel is not None and cancel.is_set()
        if checkpoint.exists():
            best_model = keras.saving.load_model(checkpoint, compile=False)
        else:  # cancelled before an epoch ended: keep what there is
            best_model = model
        if config.backbone == "small-cnn":
            _recalibrate_batchnorm(best_model, train_table, metadata)
        if has_val:
            scores = best_model.predict(val_ds, verbose=0).ravel()
            threshold = best_threshold(val_table.labels, scores)
            metadata["validation"] = binary_metrics(val_table.labels, scores, threshold)
        else:
            threshold = 0.5
            metadata["validation"] = None
        metadata["threshold"] = threshold
        metadata["epochs_run"] = epochs_run
        metadata["cancelled"] = cancelled
        metadata["history"] = history
        save_model(best_model, output, metadata)
    finally:
        checkpoint.unlink(missing_ok=True)
    return TrainResult(output, metadata, history, epochs_run, time.monotonic() - start, cancelled)


def _recalibrate_batchnorm(model, table: PatchTable, metadata: dict, *, limit: int = 2048,
                           batch_size: int = 64) -> None:
    """Set every BatchNorm layer's moving statistics to the exact statistics of its input.

    Training sees augmented patches, and few hundred steps leave the moving
    averages far from the un-augmented data met at inference, which skews
    every probability. So, layer by layer in order, the mean and variance of
    each BatchNorm's input over (up to ``limit``) plain training patches
    replace its moving statistics ("precise BN").
    """
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns:
        return
    if len(table) > limit:
        table = table.subset(np.random.default_rng(0).choice(len(table), limit, replace=False))
    batches = [x for x, _ in make_dataset(table, metadata, batch_size=batch_size, training=False)]
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


def _set_trainable(backbone, unfreeze: bool, fraction: float) -> None:
    """Phase 2 of fine-tuning: unfreeze the top ``fraction`` of layers, BatchNorm kept frozen."""
    backbone.trainable = unfreeze
    if not unfreeze:
        return
    cut = int(len(backbone.layers) * (1 - fraction))
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= cut and layer.__class__.__name__ != "BatchNormalization"


def _image_size(path: str) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return int(image.size[0])


# -- prediction ---------------------------------------------------------------------
def _dihedral_mean(model, x) -> np.ndarray:
    """Mean probability over the 8 rotations and mirrorings of ``(N, s, s, 3)`` inputs.

    Tissue has no up or left, so every view is as valid as the original;
    averaging them steadies the scores of patches whose look (another
    stain, another scanner) the model saw little of in training.
    """
    x = np.asarray(x)
    total = np.zeros(len(x), np.float64)
    for k in range(4):
        turned = np.rot90(x, k, axes=(1, 2))
        for view in (turned, turned[:, :, ::-1]):
            total += np.asarray(model(np.ascontiguousarray(view), training=False), np.float64).ravel()
    return (total / 8).astype(np.float32)


def predict_patches(model, metadata: dict, batch: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Tumor probability, ``(N,) float32``, for ``(N, h, w, 3) uint8`` patches.

    ``tta`` averages the 8 rotations and mirrorings of each patch (8 times
    the work).
    """
    if not len(batch):
        return np.zeros(0, np.float32)
    x = prepare_batch(batch, metadata)
    if tta:
        return _dihedral_mean(model, x)
    return np.asarray(model(x, training=False)).ravel().astype(np.float32)


def score_table(model, metadata: dict, table: PatchTable, *, batch_size: int = 64,
                tta: bool = True) -> dict[str, float]:
    """Metrics on a labelled patch table at the model's stored threshold.

    With ``tta`` (the default: labelled sets are small) each score is the
    mean over the patch's 8 rotations and mirrorings.
    """
    batches = make_dataset(table, metadata, batch_size=batch_size, training=False)
    if tta:
        scores = np.concatenate([_dihedral_mean(model, x) for x, _ in batches])
    else:
        scores = np.asarray(model.predict(batches, verbose=0)).ravel()
    return binary_metrics(table.labels, scores, float(metadata.get("threshold", 0.5)))
