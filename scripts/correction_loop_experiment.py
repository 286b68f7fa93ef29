"""One round of the correct-and-retrain loop on real tissue, re-stained as another lab would (issue 21).

Two slides are tiled from real PatchCamelyon validation patches (CAMELYON16
tissue from slides the bundled model never saw, 96 px at 0.972 µm/px, so a
heatmap cell is one patch). Each is 27 × 27 patches of normal node with
three metastases of tumor patches (3 × 3, 4 × 4 and 3 × 4); no patch is
used twice. Both are re-stained alike: haematoxylin × 1.35, eosin × 0.7 in
HED space, as a lab with a stronger haematoxylin and a paler eosin would
stain them.

On slide A the bundled model's ten most confident false-positive
detections are marked *not tumor* (the Detect widget's region outline) and
the three lesions *tumor*. For each ``--epochs`` (0: weights kept) and
``--threshold-from`` (the corrections' peak scores, or held-out patches)
the model is fine-tuned on them (with the default replay of its training
data), and both slides are predicted with the old and each new model, each
at its own threshold. Printed: false-positive detections and lesions found,
before and after, the fine-tuning time, and a threshold sweep on slide B.

    python scripts/correction_loop_experiment.py [--data ../shared/data/patches/pcam] [--epochs 0 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIDE = 27  # patches per slide side
LESIONS = [(4, 4, 3, 3), (14, 18, 4, 4), (20, 6, 3, 4)]  # row, col, rows, cols of tumor patches
STAIN = (1.35, 0.7)  # haematoxylin stronger, eosin paler


def predict(slide_path: Path, model) -> tuple[np.ndarray, float, object]:
    from napari_lymphmet import open_slide
    from napari_lymphmet.inference import predict_slide
    from napari_lymphmet.model import load_model
    from napari_lymphmet.tissue import tissue_mask

    keras_model, card = load_model(model)
    with open_slide(slide_path) as slide:
        t = tissue_mask(slide)
        result = predict_slide(slide, keras_model, card, tissue_mask=t.mask, tissue_downsample=t.downsample)
    return result.heatmap, result.grid.downsample, card


def score(heatmap: np.ndarray, D: float, threshold: float, lesions: list[np.ndarray]) -> dict:
    from scipy import ndimage

    from napari_lymphmet.annotations import TUMOR, Annotation, rasterize
    from napari_lymphmet.inference import DETECTION_SMOOTHING, detect

    # A cell is one patch here (stride = patch size), so the smoothing in cells is in patch widths.
    points = detect(heatmap, D, threshold=threshold, smooth=DETECTION_SMOOTHING)
    found, fps = set(), []
    for p, x, y in points:
        hit = False
        for i, lesion in enumerate(lesions):
            mask = rasterize([Annotation(lesion, TUMOR)], heatmap.shape, downsample=D)
            near = ndimage.binary_dilation(mask, iterations=1)
            if near[int(y // D), int(x // D)]:
                found.add(i)
                hit = True
        if not hit:
            fps.append((p, x, y))
    return {"detections": len(points), "false_positives": len(fps), "lesions_found": len(found), "fp": fps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "patches" / "pcam")
    parser.add_argument("--epochs", type=int, nargs="+", default=[0, 3],
                        help="fine-tunes to run (0: the threshold from the corrections only)")
    parser.add_argument("--threshold-from", nargs="+", default=["corrections", "validation"],
                        choices=("corrections", "validation"))
    parser.add_argument("--replay-patches", type=int, default=400, help="per class from the training data")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lymphmet-correction-loop")
    args = parser.parse_args()

    from napari_lymphmet.annotations import EXCLUSION, TUMOR, Annotation, write_annotations
    from napari_lymphmet.inference import region_around
    from napari_lymphmet.synthetic import write_mosaic_slide
    from napari_lymphmet.workflows import Corrections, FinetuneConfig, finetune

    args.out.mkdir(parents=True, exist_ok=True)
    normal = sorted((args.data / "valid" / "normal").glob("*.jpg"))
    tumor = sorted((args.data / "valid" / "tumor").glob("*.jpg"))
    rng = np.random.default_rng(0)
    normal = [normal[i] for i in rng.permutation(len(normal))]
    tumor = [tumor[i] for i in rng.permutation(len(tumor))]
    half_n, half_t = len(normal) // 2, len(tumor) // 2
    slides = {}
    for name, (ns, ts, seed) in {"A": (normal[:half_n], tumor[:half_t], 1),
                                 "B": (normal[half_n:], tumor[half_t:], 2)}.items():
        path = args.out / f"restained_{name}.tif"
        slides[name] = (path, write_mosaic_slide(path, iter(ns), iter(ts), side=SIDE, lesions=LESIONS, seed=seed,
                                                 stain=STAIN))

    report = {}
    base = {}
    for name, (path, lesions) in slides.items():
        heat, D, card = predict(path, "lymph-node-10x")
        base[name] = (heat, D, card)
        report[f"bundled on {name}"] = {k: v for k, v in score(heat, D, card.threshold, lesions).items() if k != "fp"}
    heat, D, card = base["A"]
    path_a, lesions_a = slides["A"]
    fps = score(heat, D, card.threshold, lesions_a)["fp"][:10]  # the ten most confident
    anns = [Annotation(region_around(heat, D, x, y, threshold=card.threshold), EXCLUSION) for _, x, y in fps]
    anns += [Annotation(lesion, TUMOR) for lesion in lesions_a]
    corrections_file = args.out / "restained_A.corrections.xml"
    write_annotations(corrections_file, anns)
    corrections = [Corrections.read(path_a, corrections_file)]
    models = {"bundled": "lymph-node-10x"}
    for epochs in args.epochs:
        for source in args.threshold_from:
            if epochs == 0 and source == "validation":
                continue  # the bundled model itself
            name = f"tuned {epochs} epochs, threshold from {source}"
            start = time.perf_counter()
            tuned = finetune("lymph-node-10x", corrections, args.out / f"tuned_{epochs}_{source}.keras",
                             FinetuneConfig(epochs=epochs, replay_data=args.replay_patches, threshold_from=source))
            seconds = time.perf_counter() - start
            summary = tuned.summary()
            report[name] = {"accepted": tuned.accepted, "wall_seconds": round(seconds, 1),
                            "threshold": summary["threshold"], "validation": summary["validation"],
                            "warnings": summary["warnings"], "marked_false_positives": len(fps)}
            if tuned.path is None:
                continue
            models[name] = tuned.path
            for slide_name, (path, lesions) in slides.items():
                heat2, D2, card2 = predict(path, tuned.path)
                report[name][f"on {slide_name}"] = {k: v for k, v in score(heat2, D2, card2.threshold, lesions).items()
                                                    if k != "fp"}
    # Ranking apart from calibration: false positives and lesions on B at fixed thresholds.
    path_b, lesions_b = slides["B"]
    for name, model in models.items():
        heat_b, D_b, _ = predict(path_b, model)
        report[f"{name} on B by threshold"] = {
            f"{t:g}": {k: v for k, v in score(heat_b, D_b, t, lesions_b).items() if k in ("false_positives",
                                                                                     "lesions_found")}
            for t in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
