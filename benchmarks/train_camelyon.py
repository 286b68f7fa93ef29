"""Cross-slide checks of the CNN trained on the real CAMELYON16 patches (issue 7).

The 39 shared patches come from two slides, and every tumor patch from one
(tumor_073), so a leave-one-slide-out AUC cannot be computed on them. This
script measures what can be measured honestly, in one process:

1. Leave tumor_004 out: train on tumor_073 only; report specificity and the
   score range on tumor_004's normals (another slide, another stain).
2. Stain shift: 4-fold cross-validation on tumor_073, scoring each held-out
   fold under 8 random HED stain perturbations (other labs and scanners),
   plus tumor_004's normals. AUC and accuracy at the threshold chosen on the
   training folds, and the same for a colour-statistics logistic regression
   baseline (mean and std per RGB channel).
3. The final model: trained on all 39 patches with the default recipe.

    python benchmarks/train_camelyon.py [--epochs 40]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "patches" / "camelyon16"


def colour_stats(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1, 3).astype(np.float32)
    return np.concatenate([flat.mean(1), flat.std(1)], axis=1)


class LogisticRegression:
    """Plain L2-regularised logistic regression on standardised features."""

    def fit(self, x: np.ndarray, y: np.ndarray, steps: int = 3000, lam: float = 1e-2):
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-9
        z = (x - self.mu) / self.sd
        self.w, self.b = np.zeros(z.shape[1]), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(z @ self.w + self.b)))
            self.w -= 0.1 * (z.T @ (p - y) / len(y) + lam * self.w)
            self.b -= 0.1 * float(np.mean(p - y))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(((x - self.mu) / self.sd) @ self.w + self.b)))
        return np.column_stack([1 - p, p])


def hed_shift(images: np.ndarray, rng: np.random.Generator, sigma: float = 0.25) -> np.ndarray:
    from napari_lymphmet.model import _HED_FROM_RGB, _RGB_FROM_HED

    od = -np.log((images.astype(np.float32) + 1) / 256)
    hed = od.reshape(-1, 3) @ _HED_FROM_RGB
    hed = hed * rng.uniform(1 - sigma, 1 + sigma, 3) + rng.uniform(-sigma / 10, sigma / 10, 3)
    rgb = 256 * np.exp(-(hed @ _RGB_FROM_HED)) - 1
    return np.clip(rgb.reshape(images.shape), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args()

    from skimage.io import imread

    from napari_lymphmet.dataset import read_patch_table
    from napari_lymphmet.metrics import best_threshold, binary_metrics
    from napari_lymphmet.model import TrainConfig, load_model, predict_patches, train

    table = read_patch_table([DATA])
    images = np.stack([imread(p)[..., :3] for p in table.paths])
    config = TrainConfig(backbone="small-cnn", weights="none", epochs=args.epochs, batch_size=16, patch_mpp=0.243)
    tmp = Path("/tmp/lymphmet-bench-models")
    tmp.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    is_073 = table.slides == "tumor_073"
    other = ~is_073

    # 1. Leave tumor_004 out.
    start = time.monotonic()
    result = train(table.subset(is_073), None, tmp / "no004.keras", config)
    model, meta = load_model(tmp / "no004.keras")
    scores = predict_patches(model, meta, images[other])
    print(f"[1] trained on tumor_073 only ({time.monotonic() - start:.0f} s): tumor_004 normals "
          f"specificity {np.mean(scores < meta['threshold']):.2f} at threshold {meta['threshold']:.2f}, "
          f"scores {scores.min():.3f}..{scores.max():.3f}")

    # 2. Folds of tumor_073 under stain shifts.
    idx = np.flatnonzero(is_073)
    folds = np.array_split(rng.permutation(idx), args.folds)
    cnn_s, lr_s, truth, cnn_t, lr_t = [], [], [], [], []
    for k, test in enumerate(folds):
        fit_idx = np.setdiff1d(np.flatnonzero(np.ones(len(table), bool)), test)
        train(table.subset(np.isin(np.arange(len(table)), fit_idx)), None, tmp / f"fold{k}.keras", config)
        model, meta = load_model(tmp / f"fold{k}.keras")
        fit_scores = predict_patches(model, meta, images[fit_idx])
        threshold = best_threshold(table.labels[fit_idx], fit_scores)
        lr = LogisticRegression().fit(colour_stats(images[fit_idx]), table.labels[fit_idx])
        lr_threshold = best_threshold(table.labels[fit_idx], lr.predict_proba(colour_stats(images[fit_idx]))[:, 1])
        for _ in range(8):
            shifted = hed_shift(images[test], rng)
            cnn_s.append(predict_patches(model, meta, shifted))
            lr_s.append(lr.predict_proba(colour_stats(shifted))[:, 1])
            truth.append(table.labels[test])
            cnn_t.append(np.full(len(test), threshold))
            lr_t.append(np.full(len(test), lr_threshold))
    truth, cnn_s, lr_s = np.concatenate(truth), np.concatenate(cnn_s), np.concatenate(lr_s)
    cnn_t, lr_t = np.concatenate(cnn_t), np.concatenate(lr_t)
    cnn = binary_metrics(truth, cnn_s)
    lr = binary_metrics(truth, lr_s)
    print(f"[2] {args.folds}-fold on tumor_073, each test fold under 8 HED stain shifts (n={len(truth)}):")
    print(f"    small-cnn:           AUC {cnn['auc']:.3f}, accuracy {np.mean((cnn_s >= cnn_t) == truth):.3f} "
          f"(training-fold threshold), {cnn['accuracy']:.3f} at 0.5")
    print(f"    colour-stats logreg: AUC {lr['auc']:.3f}, accuracy {np.mean((lr_s >= lr_t) == truth):.3f} "
          f"(training-fold threshold), {lr['accuracy']:.3f} at 0.5")

    # 3. The final recipe on everything.
    start = time.monotonic()
    result = train(table, None, tmp / "all.keras", config)
    print(f"[3] all 39 patches: {result.epochs_run} epochs in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
