"""Cross-slide checks of the CNN trained on the real CAMELYON16 patches (issue 7).

The 39 shared patches come from two slides, and every tumor patch from one
(tumor_073), so a leave-one-slide-out AUC cannot be computed on them. This
script measures what can be measured honestly, in one process:

1. Leave tumor_004 out: train on tumor_073 only; report specificity and the
   score range on tumor_004's normals (another slide, another stain).
2. Stain shift: 4-fold cross-validation on tumor_073, scoring each held-out
   fold three ways: under 8 random HED stain perturbations; re-stained as
   tumor_004 (the other centre: one LAB mean/std transfer for the whole
   slide, fitted between the two slides' normal patches), as if these
   tumors came from a Radboud slide; and re-stained and blurred (another
   scanner's focus). AUC and accuracy at 0.5 (the threshold a model trained
   without validation slides keeps), each score once and as the mean over
   8 rotations and mirrorings (``lymphmet score``'s default), and the same
   for a colour-statistics logistic regression baseline (mean and std per
   RGB channel).
3. The final model: trained on all 39 patches with the default recipe.

    python benchmarks/train_camelyon.py [--epochs 200] [--checks 1 2 3]
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
    from napari_lymphmet.model.preprocess import HED_FROM_RGB, RGB_FROM_HED

    od = -np.log((images.astype(np.float32) + 1) / 256)
    hed = od.reshape(-1, 3) @ HED_FROM_RGB
    hed = hed * rng.uniform(1 - sigma, 1 + sigma, 3) + rng.uniform(-sigma / 10, sigma / 10, 3)
    rgb = 256 * np.exp(-(hed @ RGB_FROM_HED)) - 1
    return np.clip(rgb.reshape(images.shape), 0, 255).astype(np.uint8)


def slide_transfer(source: np.ndarray, target: np.ndarray):
    """One Reinhard (LAB mean and std) transfer from ``source``'s slide to ``target``'s, for whole batches."""
    from skimage.color import lab2rgb, rgb2lab

    def stats(images):
        lab = np.concatenate([rgb2lab(im).reshape(-1, 3) for im in images])
        return lab.mean(0), lab.std(0)

    (ms, ss), (mt, st) = stats(source), stats(target)

    def apply(images: np.ndarray) -> np.ndarray:
        return np.stack([np.clip(lab2rgb((rgb2lab(im) - ms) / ss * st + mt) * 255, 0, 255).astype(np.uint8)
                         for im in images])

    return apply


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return np.stack([np.clip(ndimage.gaussian_filter(im.astype(np.float32), (sigma, sigma, 0)), 0, 255)
                     .astype(np.uint8) for im in images])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--checks", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()

    from skimage.io import imread

    from napari_lymphmet.evaluation import binary_metrics
    from napari_lymphmet.model import TrainConfig, load_model, predict_patches, read_patch_table, train

    table = read_patch_table([DATA])
    images = np.stack([imread(p)[..., :3] for p in table.paths])
    config = TrainConfig(backbone="small-cnn", weights="none", epochs=args.epochs, batch_size=16, patch_mpp=0.243)
    tmp = Path("/tmp/lymphmet-bench-models")
    tmp.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    is_073 = table.slides == "tumor_073"
    other = ~is_073

    if 1 in args.checks:  # leave tumor_004 out
        start = time.monotonic()
        train(table.subset(is_073), None, tmp / "no004.keras", config)
        model, meta = load_model(tmp / "no004.keras")
        scores = predict_patches(model, meta, images[other])
        print(f"[1] trained on tumor_073 only ({time.monotonic() - start:.0f} s): tumor_004 normals "
              f"specificity {np.mean(scores < meta.threshold):.2f} at threshold {meta.threshold:.2f}, "
              f"scores {scores.min():.3f}..{scores.max():.3f}")

    if 2 in args.checks:  # folds of tumor_073 under stain shifts
        restain = slide_transfer(images[is_073 & (table.labels == 0)], images[other])
        idx = np.flatnonzero(is_073)
        folds = np.array_split(rng.permutation(idx), args.folds)
        fold_scores: dict[tuple[str, str], list[np.ndarray]] = {}
        truth = []
        for k, test in enumerate(folds):
            fit_idx = np.setdiff1d(np.arange(len(table)), test)
            train(table.subset(np.isin(np.arange(len(table)), fit_idx)), None, tmp / f"fold{k}.keras", config)
            model, meta = load_model(tmp / f"fold{k}.keras")
            lr = LogisticRegression().fit(colour_stats(images[fit_idx]), table.labels[fit_idx])
            restained = restain(images[test])
            views = {"HED shifts": np.concatenate([hed_shift(images[test], rng) for _ in range(8)]),
                     "re-stained as tumor_004": restained,
                     "re-stained and blurred": blur(restained, 1.0)}
            for name, x in views.items():
                for scorer, s in (("small-cnn", predict_patches(model, meta, x)),
                                  ("small-cnn, 8 views", predict_patches(model, meta, x, tta=True)),
                                  ("colour logreg", lr.predict_proba(colour_stats(x))[:, 1])):
                    fold_scores.setdefault((name, scorer), []).append(s)
            truth.append(table.labels[test])
        truth_once = np.concatenate(truth)
        print(f"[2] {args.folds}-fold on tumor_073 (n={len(truth_once)}; HED shifts: 8 per patch); "
              f"AUC, accuracy at 0.5, sensitivity, specificity:")
        for (view, scorer), parts in fold_scores.items():
            s = np.concatenate(parts)
            # HED shifts hold 8 shifted copies of each fold, in fold order.
            y = np.concatenate([np.tile(t, 8) for t in truth]) if view == "HED shifts" else truth_once
            m = binary_metrics(y, s, 0.5)
            print(f"    {view:<26}{scorer:<20}AUC {m['auc']:.3f}  acc {m['accuracy']:.3f}  "
                  f"sens {m['sensitivity']:.2f}  spec {m['specificity']:.2f}")

    if 3 in args.checks:  # the final recipe on everything
        start = time.monotonic()
        result = train(table, None, tmp / "all.keras", config)
        print(f"[3] all 39 patches: {result.epochs_run} epochs in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
