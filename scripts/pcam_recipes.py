"""Train and compare patch-classifier recipes on PatchCamelyon, resumably, on CPU.

    python scripts/pcam_recipes.py RECIPE [--work DIR] [--data ../shared/data/patches/pcam] [--epochs N]

The ablation behind the bundled model (issue 29, docs/models.md). Every
recipe trains on ``train/`` and is validated on ``valid/`` (other slides),
the same seed, the same number of epochs. The patches are decoded once into
memory (19,171 × 96 × 96 × 3 bytes, 0.5 GB) so an epoch costs only the
network; augmentation is numpy on each batch.

Each epoch ends with a checkpoint in ``--work/RECIPE/`` (default ``.recipes/``, ignored by git):
a rerun of the same command resumes after the last finished epoch. One JSON
line per epoch goes to ``log.jsonl`` there (loss, validation AUC and
accuracy at Youden's threshold, seconds); ``result.json`` holds the best
epoch scored once and with the 8 dihedral views averaged, and ``best.keras``
is that epoch's model with a napari-lymphmet card (``--install NAME`` copies it
into the package as the bundled model NAME, gives it its screening
threshold and writes its ONNX export: ``python scripts/pcam_recipes.py rgb-std
--install lymph-node-10x-fast`` made the default's first member, 16 epochs
of about 80 s each on 2026-12-07's second host, 23 minutes; docs/models.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Recipe:
    """One row of the ablation table."""

    input_space: str = "rgb"  # "rgb" (scaled to [0, 1]) or "hed" (per-patch standardised optical densities)
    filters: tuple[int, ...] = (32, 48, 64, 96, 128)
    convs_per_block: int = 1
    colour: float = 1.0  # strength of brightness/contrast/saturation/hue jitter (0: off)
    stain: float = 0.0  # HED stain jitter sigma (0: off)
    dihedral: bool = True  # random flips and 90° turns
    epochs: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    dropout: float = 0.3
    network: str = "cnn"  # "cnn" (plain convolutions) or "p4m" (kernels tied across the 8 turns and mirrorings)
    blur: float = 0.0  # focus blur: half the patches get a Gaussian of sigma up to this many px (0: off)
    start: str | None = None  # continue from this recipe's best epoch (a fine-tune) instead of fresh weights
    stem_stride: int = 1  # 2: the first convolution strides instead of pooling (small-cnn's stem since 2026-12-07)
    standardise: bool = False  # RGB input standardised per patch and channel, as HED input always is
    teacher: str | None = None  # distil: a bundled model (or file) whose 8-view mean on each train/ patch ...
    teacher_weight: float = 0.0  # ... makes this share of the target, the hard label the rest
    ema: float = 0.0  # validate and keep an exponential moving average of the weights (0: off; e.g. 0.998)
    centre: bool = False  # the head also reads the last feature map's centre cell (the labelled 32 px)
    teacher_scale: bool = False  # distil: fold into the head the logit map that gives the teacher's scale


RECIPES = {
    "rgb": Recipe(),
    "rgb-noaug": Recipe(colour=0.0, dihedral=False),
    "rgb-nocolour": Recipe(colour=0.0),
    "rgb-stain": Recipe(stain=0.2),
    # An ensemble partner for the HED default: RGB input (networks that read the patch differently err
    # differently), with the two things the plain "rgb" row lacked, HED stain jitter (it collapsed on
    # Utrecht's stain) and focus blur (it lost sensitivity on blurred tissue); the strided stem trains in
    # two thirds of the time.
    "rgb-robust": Recipe(stain=0.2, blur=1.5, stem_stride=2),
    # "rgb-robust" still collapsed on Utrecht's stain (AUC 0.737), so the jitter is not what makes the HED
    # model robust: its per-patch standardisation is. The same on RGB.
    "rgb-std": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True),
    # One network with the pair's figures at one network's speed: rgb-std's network and recipe, its targets
    # half the hard label and half the default pair's 8-view mean on the same patch (distillation; the
    # teacher's view of PCam's noisy centre-32-px labels), validated on a moving average of its weights.
    "rgb-std-distil": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True, teacher="lymph-node-10x-pair",
                             teacher_weight=0.5, ema=0.998),
    # A PCam label says whether the central 32 × 32 px hold tumor, yet global average pooling weighs the
    # whole 96 px alike. The last feature map is 3 × 3 cells, its centre cell the labelled centre: the head
    # reads it beside the mean (its receptive field still spans the context).
    "rgb-std-centre": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True, centre=True),
    # rgb-std-distil's half-and-half targets moved its scale up (Youden's threshold 0.653 against the pair's
    # 0.371) and lost the smallest lesions on whole slides: the teacher's probabilities alone as targets.
    "rgb-std-soft": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True, teacher="lymph-node-10x-pair",
                           teacher_weight=1.0, ema=0.998),
    "rgb-std-distil-centre": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True, teacher="lymph-node-10x-pair",
                                    teacher_weight=0.5, ema=0.998, centre=True),
    # rgb-std-distil's twin on the other input space (optical densities, as the pair's second member reads
    # them; the strided stem so it trains in rgb-std's time): two students that read a patch differently,
    # joined by `lymphmet ensemble`, for the pair's diversity at the students' patch figures.
    "hed-std-distil": Recipe(input_space="hed", stain=0.2, blur=1.5, stem_stride=2, teacher="lymph-node-10x-pair",
                             teacher_weight=0.5, ema=0.998, teacher_scale=True),
    # rgb-std-distil trained alike (copy its folder to resume from its epochs), its logits then mapped onto
    # the teacher's scale: detection reads a smoothed map, whose heights depend on the scale (a 2 x 2-patch
    # lesion peaked under rgb-std-distil's Youden threshold, 0.653).
    "rgb-std-distil-scaled": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True, teacher="lymph-node-10x-pair",
                                    teacher_weight=0.5, ema=0.998, teacher_scale=True),
    # Born again: rgb-std-distil-scaled's own network and recipe taught by its 8-view mean (0.950 on valid/,
    # against the pair's 0.947), over a longer cosine (every long curve here peaked in its last third). Its
    # teacher was the default of its day (rgb-std-distil-scaled); it is the default since 2026-12-08.
    "rgb-std-distil2": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True, teacher="lymph-node-10x",
                              teacher_weight=0.5, ema=0.998, teacher_scale=True, epochs=24),
    # A third generation: the same, taught by rgb-std-distil2 (the default since 2026-12-08; 8 views 0.953).
    # Better on patches (0.9525), not on the mosaics (more false positives on the large layout): not kept.
    "rgb-std-distil3": Recipe(stain=0.2, blur=1.5, stem_stride=2, standardise=True, teacher="lymph-node-10x",
                              teacher_weight=0.5, ema=0.998, teacher_scale=True, epochs=24),
    "hed": Recipe(input_space="hed"),
    "rgb-wide": Recipe(filters=(32, 64, 96, 128, 192)),
    "rgb-deep": Recipe(convs_per_block=2, filters=(24, 32, 48, 64, 96)),
    # "hed" lost sensitivity on blurred patches (no focus-blur augmentation): 3 epochs more, at a fifth of the
    # rate, with it.
    "hed-blur": Recipe(input_space="hed", blur=1.5, epochs=3, learning_rate=2e-4, start="hed"),
    # The same 32-128 feature maps and compute as "hed", as 4-16 filters in each of 8 orientations, on the
    # winning input space.
    "p4m": Recipe(network="p4m", input_space="hed", filters=(4, 6, 8, 12, 16)),
}


# -- data ---------------------------------------------------------------------------
def load_split(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 96, 96, 3) uint8`` patches and ``(N,)`` labels (1 tumor) of a PCam split folder."""
    import simplejpeg

    files = [(p, label) for label, name in ((0, "normal"), (1, "tumor"))
             for p in sorted((folder / name).glob("*.jpg"))]
    images = np.stack([simplejpeg.decode_jpeg(p.read_bytes(), colorspace="RGB") for p, _ in files])
    return images, np.array([label for _, label in files], np.float32)


def cached_split(folder: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    cache.mkdir(parents=True, exist_ok=True)
    file = cache / f"{folder.parent.name}-{folder.name}.npz"
    if not file.exists():
        images, labels = load_split(folder)
        np.savez(file, images=images, labels=labels)
    data = np.load(file)
    return data["images"], data["labels"]


def teacher_scores(teacher: str, images: np.ndarray, cache: Path) -> np.ndarray:
    """``(N,)`` the teacher's probability for each patch, the mean over its 8 dihedral views, cached by the
    teacher file's SHA-256 (ONNX Runtime where it can, as ``lymphmet predict`` runs it)."""
    import hashlib

    from napari_lymphmet.model.preprocess import prepare_batch
    from napari_lymphmet.model.registry import resolve_model
    from napari_lymphmet.model.runtime import load_runner

    path = resolve_model(teacher)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    file = cache / f"teacher-{path.stem}-{sha}-{len(images)}.npy"
    if file.exists():
        return np.load(file)
    runner, card = load_runner(path)
    out = np.zeros(len(images))
    for start in range(0, len(images), 256):
        chunk = images[start:start + 256]
        for k in range(8):
            out[start:start + 256] += np.asarray(runner(prepare_batch(dihedral(chunk, np.full(len(chunk), k)),
                                                                      card))).ravel()
    out /= 8
    np.save(file, out)
    return out


def dihedral(batch: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Each image of ``(N, h, w, c)`` turned by ``k % 4`` quarter turns, mirrored when ``k >= 4``."""
    out = np.empty_like(batch)
    for i, (image, t) in enumerate(zip(batch, k)):
        image = np.rot90(image, t % 4)
        out[i] = image[:, ::-1] if t >= 4 else image
    return out


def augment(batch: np.ndarray, rng: np.random.Generator, recipe: Recipe) -> np.ndarray:
    """Float32 ``(N, h, w, 3)`` in [0, 255]: dihedral turns, then stain and colour jitter per patch."""
    n = len(batch)
    if recipe.dihedral:
        batch = dihedral(batch, rng.integers(0, 8, n))
    x = batch.astype(np.float32)
    if recipe.stain > 0:
        from napari_lymphmet.model.preprocess import HED_FROM_RGB, RGB_FROM_HED

        od = -np.log((x + 1) / 256) @ HED_FROM_RGB
        od = od * rng.uniform(1 - recipe.stain, 1 + recipe.stain, (n, 1, 1, 3)) \
            + rng.uniform(-recipe.stain / 10, recipe.stain / 10, (n, 1, 1, 3))
        x = np.clip(256 * np.exp(-(od @ RGB_FROM_HED)) - 1, 0, 255)
    if recipe.colour > 0:
        s = recipe.colour
        grey = x.mean(axis=3, keepdims=True)
        x = grey + (x - grey) * rng.uniform(1 - 0.25 * s, 1 + 0.25 * s, (n, 1, 1, 1))  # saturation
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = mean + (x - mean) * rng.uniform(1 - 0.2 * s, 1 + 0.2 * s, (n, 1, 1, 1))  # contrast
        x = x + rng.uniform(-25 * s, 25 * s, (n, 1, 1, 1))  # brightness
        x = x + rng.uniform(-10 * s, 10 * s, (n, 1, 1, 3))  # a colour cast per channel (hue, roughly)
        x = np.clip(x, 0, 255)
    if recipe.blur > 0:
        from scipy import ndimage

        for i in np.nonzero(rng.random(n) < 0.5)[0]:
            sigma = rng.uniform(0, recipe.blur)
            x[i] = ndimage.gaussian_filter(x[i], (sigma, sigma, 0))
    return x


def model_input(x: np.ndarray, recipe: Recipe) -> np.ndarray:
    """What the network takes: RGB in [0, 255], or HED optical densities (the product's ``prepare_batch``)."""
    if recipe.input_space == "hed":
        from napari_lymphmet.model.preprocess import HED_FROM_RGB

        return (-np.log((x + 1) / 256) @ HED_FROM_RGB).astype(np.float32)
    return x.astype(np.float32)


# -- the network --------------------------------------------------------------------
def build(recipe: Recipe, size: int = 96):
    """The small CNN, with standard Keras layers only, or its p4m twin (registered layers); both load in
    safe mode."""
    import keras
    from keras import layers

    if recipe.network == "p4m":
        from napari_lymphmet.model.equivariant import p4m_cnn

        return p4m_cnn(size, filters=recipe.filters, input_space=recipe.input_space, dropout=recipe.dropout)

    inputs = keras.Input((size, size, 3), name="rgb")
    if recipe.input_space == "hed" or recipe.standardise:
        x = layers.LayerNormalization(axis=[1, 2], center=False, scale=False, name="patch_standardise")(inputs)
    else:
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    for i, filters in enumerate(recipe.filters):
        for j in range(recipe.convs_per_block):
            stride = recipe.stem_stride if i == j == 0 else 1
            x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"conv{i}_{j}")(x)
            x = layers.BatchNormalization(name=f"bn{i}_{j}")(x)
            x = layers.ReLU()(x)
        if i or recipe.stem_stride == 1:
            x = layers.MaxPooling2D()(x)
    pooled = layers.GlobalAveragePooling2D()(x)
    if recipe.centre:
        height, width = x.shape[1], x.shape[2]
        crop = ((height - max(height // 3, 1)) // 2, (width - max(width // 3, 1)) // 2)
        centre = layers.GlobalAveragePooling2D(name="centre_pool")(layers.Cropping2D(crop, name="centre")(x))
        pooled = layers.Concatenate(name="mean_and_centre")([pooled, centre])
    x = layers.Dropout(recipe.dropout)(pooled)
    outputs = layers.Dense(1, activation="sigmoid", name="tumor")(x)
    return keras.Model(inputs, outputs, name="lymphmet_small_cnn")


def predict(model, images: np.ndarray, recipe: Recipe, *, tta: bool = False, batch: int = 256) -> np.ndarray:
    views = range(8) if tta else range(1)
    out = np.zeros(len(images))
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        for k in views:
            view = dihedral(chunk, np.full(len(chunk), k)) if k else chunk
            out[start:start + batch] += model(model_input(view.astype(np.float32), recipe), training=False
                                              ).numpy().ravel()
    return out / len(views)


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> dict:
    from napari_lymphmet.model.metrics import best_threshold, binary_metrics

    threshold = best_threshold(labels, scores) if threshold is None else threshold
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in binary_metrics(labels, scores,
                                                                                       threshold).items()}


# -- the run ------------------------------------------------------------------------
def run(name: str, recipe: Recipe, data: Path, work: Path) -> dict:
    import keras

    if recipe.network == "p4m":
        import napari_lymphmet.model.equivariant  # noqa: F401  (registers the layers a checkpoint is made of)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = cached_split(data / "train", work / "cache")
    val_x, val_y = cached_split(data / "valid", work / "cache")
    log = folder / "log.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    steps = len(train_x) // recipe.batch_size
    keras.utils.set_random_seed(0)
    if done and (folder / "last.keras").exists():
        model = keras.saving.load_model(folder / "last.keras", compile=True)
    else:
        done = []
        if recipe.start:  # a fine-tune: the other recipe's best weights, a fresh optimizer
            model = keras.saving.load_model(work / recipe.start / "best-weights.keras", compile=False)
        else:
            model = build(recipe)
        schedule = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, recipe.epochs * steps, alpha=0.02)
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay),
                      loss="binary_crossentropy")
    class_weight = len(train_y) / (2 * np.bincount(train_y.astype(int)))
    target_y, soft = train_y, None
    if recipe.teacher:
        soft = teacher_scores(recipe.teacher, train_x, work / "cache")
        target_y = ((1 - recipe.teacher_weight) * train_y + recipe.teacher_weight * soft).astype(np.float32)
    ema = _MovingAverage(model, recipe.ema, folder / "ema.npz") if recipe.ema else None
    for epoch in range(len(done), recipe.epochs):
        start = time.monotonic()
        rng = np.random.default_rng(1000 + epoch)
        order = rng.permutation(len(train_x))
        losses = []
        for step in range(steps):
            pick = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            x = model_input(augment(train_x[pick], rng, recipe), recipe)
            weight = class_weight[train_y[pick].astype(int)]
            losses.append(float(model.train_on_batch(x, target_y[pick], sample_weight=weight)))
            if ema:
                ema.update()
        if ema:
            ema.swap()  # validate (and keep) the averaged weights; the optimizer's stay in last.keras
            model.save(folder / "average.keras")
        scores = predict(model, val_x, recipe)
        row = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4), **metrics(val_y, scores),
               "seconds": round(time.monotonic() - start, 1)}
        kept = folder / ("average.keras" if ema else "last.keras")
        if ema:
            ema.swap()
            ema.save()
        model.save(folder / "last.tmp.keras")
        os.replace(folder / "last.tmp.keras", folder / "last.keras")
        if not done or row["auc"] > max(r["auc"] for r in done):
            shutil.copyfile(kept, folder / "best-weights.keras")
        done.append(row)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({"recipe": name, **row}), flush=True)
    best_row = max(done, key=lambda r: r["auc"])
    model = keras.saving.load_model(folder / "best-weights.keras", compile=False)
    scale = _match_teacher_scale(model, train_x, soft, recipe) if recipe.teacher_scale else None
    once = predict(model, val_x, recipe)
    eight = predict(model, val_x, recipe, tta=True)
    rate = _patches_per_second(model, val_x[:512], recipe)
    result = {"recipe": name, "config": recipe.__dict__ | {"filters": list(recipe.filters)},
              "best_epoch": best_row["epoch"], "epochs": len(done), "weights": int(model.count_params()),
              "valid_once": metrics(val_y, once), "valid_tta8": metrics(val_y, eight),
              "patches_per_second": rate, "train_minutes": round(sum(r["seconds"] for r in done) / 60, 1),
              **({"teacher_scale": scale} if scale else {})}
    _save_with_card(model, recipe, result, folder / "best.keras", threshold=result["valid_once"]["threshold"])
    (folder / "result.json").write_text(json.dumps(result, indent=2))
    return result


class _MovingAverage:
    """An exponential moving average of a model's trainable weights, kept in numpy beside the checkpoint."""

    def __init__(self, model, decay: float, file: Path) -> None:
        self.model, self.decay, self.file = model, decay, file
        self.weights = model.trainable_weights
        if file.exists():
            stored = np.load(file)
            self.average = [stored[f"w{i}"] for i in range(len(self.weights))]
        else:
            self.average = [np.array(w.numpy()) for w in self.weights]

    def update(self) -> None:
        for a, w in zip(self.average, self.weights):
            a *= self.decay
            a += (1 - self.decay) * w.numpy()

    def swap(self) -> None:
        """Exchange the model's weights and the average (twice: as before)."""
        for i, w in enumerate(self.weights):
            current = np.array(w.numpy())
            w.assign(self.average[i])
            self.average[i] = current

    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp.npz")
        np.savez(tmp, **{f"w{i}": a for i, a in enumerate(self.average)})
        os.replace(tmp, self.file)


def _match_teacher_scale(model, images: np.ndarray, teacher: np.ndarray, recipe: Recipe) -> dict:
    """Fold ``a * logit + c`` into the sigmoid head so that the student's logits on ``images`` have the
    teacher's mean and spread (moments, not a regression, which would shrink them by the two's disagreement).
    Monotonic: AUC is unchanged; the threshold and the smoothed map's heights take the teacher's scale."""
    from scipy.special import logit

    student, target = (logit(np.clip(p, 1e-6, 1 - 1e-6)) for p in (predict(model, images, recipe), teacher))
    slope = float(target.std() / student.std())
    intercept = float(target.mean() - slope * student.mean())
    head = model.get_layer("tumor")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * slope, bias * slope + intercept])
    return {"slope": round(slope, 4), "intercept": round(intercept, 4)}


def _patches_per_second(model, images: np.ndarray, recipe: Recipe) -> float:
    x = model_input(images.astype(np.float32), recipe)
    model.predict(x[:64], verbose=0)
    start = time.monotonic()
    model.predict(x, batch_size=64, verbose=0)
    return round(len(x) / (time.monotonic() - start), 1)


def _save_with_card(model, recipe: Recipe, result: dict, path: Path, *, threshold: float) -> None:
    from napari_lymphmet.model.card import ModelCard
    from napari_lymphmet.model.io import save_model

    card = ModelCard(backbone="p4m-cnn" if recipe.network == "p4m" else "small-cnn", input_size=96, patch_size=96,
                     patch_mpp=0.972, threshold=float(threshold),
                     input_space=recipe.input_space, hed_sigma=recipe.stain, colour_sigma=recipe.colour,
                     weights="none", validation=result["valid_once"], epochs_run=result["epochs"],
                     training={"recipe": f"scripts/pcam_recipes.py {result['recipe']}", "config": result["config"],
                               "train": "PatchCamelyon train/ (19,171 patches)",
                               "validation": "PatchCamelyon valid/ (2,907 patches, other slides)"},
                     extra={"valid_tta8": result["valid_tta8"], "patches_per_second": result["patches_per_second"]})
    save_model(model, path, card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", choices=sorted(RECIPES))
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "patches" / "pcam")
    # Ignored by git, beside the checkout: checkpoints outlive a session, never enter a commit.
    parser.add_argument("--work", type=Path, default=ROOT / ".recipes")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (a quick look)")
    parser.add_argument("--install", metavar="NAME", default=None,
                        help="copy the last recipe's best.keras into the package as this bundled model")
    args = parser.parse_args()
    for name in args.recipes:
        recipe = RECIPES[name] if args.epochs is None else replace(RECIPES[name], epochs=args.epochs)
        result = run(name, recipe, args.data, args.work)
        print(json.dumps(result), flush=True)
    if args.install:
        target = ROOT / "src" / "napari_lymphmet" / "models" / f"{args.install}.keras"
        shutil.copyfile(args.work / args.recipes[-1] / "best.keras", target)
        # The screening and detection thresholds come from the same validation scores; calibrating also writes
        # the ONNX export.
        subprocess.run([sys.executable, str(ROOT / "scripts" / "calibrate_thresholds.py"), args.install,
                        str(args.data / "valid"), "--detection"], check=True)
        print(f"installed {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
