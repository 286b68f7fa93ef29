"""The bundled model under stain shift: PatchCamelyon's valid/ split (other slides), as is and re-stained.

A model can look fine on its validation split and be miscalibrated on the
next slide. This scores the bundled model (one pass per patch, as
``lymphmet predict`` does) at its stored threshold on valid/ as is, and
re-stained as the other CAMELYON16 centre would stain it: one Reinhard (LAB
mean and std) transfer for the whole set onto the real tumor_004 (Radboud)
and tumor_073 (Utrecht) patches, random per-"slide" HED stain changes, and
blur. It prints AUC, accuracy, sensitivity and specificity per condition,
and the mean probability, to see calibration drift, in one process.
Given several models, it scores each, then every ensemble of two or more
of them (the mean of their logits, at its own Youden threshold on the
patches as they are), as ``lymphmet ensemble`` would join them.

    python benchmarks/bundled_model.py [--model NAME_OR_FILE ...] [--limit N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from train_camelyon import DATA as CAMELYON, blur, hed_shift, slide_transfer

PCAM = CAMELYON.parent / "pcam"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", nargs="+", default=[None],
                        help=".keras files or bundled names (default: the default); several: their ensemble too")
    parser.add_argument("--limit", type=int, default=None, help="score at most N patches per class")
    args = parser.parse_args()

    from skimage.io import imread

    from napari_lymphmet.model import best_threshold, load_model, predict_patches, read_patch_table

    table = read_patch_table([PCAM / "valid"])
    if args.limit:
        rng = np.random.default_rng(0)
        keep = np.concatenate([rng.permutation(np.nonzero(table.labels == k)[0])[:args.limit] for k in (0, 1)])
        table = table.subset(np.sort(keep))
    images = np.stack([imread(p)[..., :3] for p in table.paths])
    refs = read_patch_table([CAMELYON])
    ref_images = {s: np.stack([imread(p)[..., :3] for p in refs.paths[refs.slides == s]])
                  for s in ("tumor_004", "tumor_073")}
    rng = np.random.default_rng(1)
    groups = np.array_split(rng.permutation(len(images)), 8)  # 8 pretend slides, one stain each

    def per_slide_hed(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        for g in groups:
            out[g] = hed_shift(x[g], np.random.default_rng(int(g[0])), sigma=0.25)
        return out

    conditions = {
        "as is": lambda x: x,
        "re-stained as tumor_004 (Radboud)": slide_transfer(images, ref_images["tumor_004"]),
        "re-stained as tumor_073 (Utrecht)": slide_transfer(images, ref_images["tumor_073"]),
        "HED stain change per slide (0.25)": per_slide_hed,
        "blur sigma 1 px": lambda x: blur(x, 1.0),
    }
    changed = {name: change(images) for name, change in conditions.items()}
    logits = {}  # per model and condition, for the ensemble
    for name in args.model:
        model, card = load_model(name)
        print(f"-- {name or 'the default'}", file=sys.stderr)
        rows = {}
        for condition, x in changed.items():
            scores = np.concatenate([predict_patches(model, card, x[i:i + 256]) for i in range(0, len(x), 256)])
            rows[condition] = _report(condition, table.labels, scores, card.threshold)
            clipped = np.clip(scores, 1e-6, 1 - 1e-6)
            logits.setdefault(condition, []).append(np.log(clipped / (1 - clipped)))
        print(json.dumps({"model": str(name or "default"), "threshold": card.threshold, "conditions": rows}))
    for size in range(2, len(args.model) + 1):  # every ensemble of two or more of them
        for members in itertools.combinations(range(len(args.model)), size):
            names = [str(args.model[i]) for i in members]
            print(f"-- ensemble of {', '.join(names)}", file=sys.stderr)
            mean = {condition: np.mean([values[i] for i in members], axis=0) for condition, values in logits.items()}
            threshold = best_threshold(table.labels, mean["as is"])
            rows = {condition: _report(condition, table.labels, 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(-threshold)))
                    for condition, z in mean.items()}
            print(json.dumps({"ensemble": names, "threshold": round(1 / (1 + np.exp(-threshold)), 4),
                              "conditions": rows}))


def _report(condition: str, labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """AUC, accuracy, sensitivity, specificity at ``threshold`` and the mean probability; one line on stderr."""
    from napari_lymphmet.model import binary_metrics

    metrics = binary_metrics(labels, scores, threshold)
    metrics["mean_probability"] = round(float(scores.mean()), 4)
    print(f"{condition:38s} AUC {metrics['auc']:.3f}  acc {metrics['accuracy']:.3f}  sens {metrics['sensitivity']:.3f}"
          f"  spec {metrics['specificity']:.3f}  mean p {metrics['mean_probability']:.3f}", file=sys.stderr)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


if __name__ == "__main__":
    main()
