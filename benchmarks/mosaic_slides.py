"""The whole-slide checks of the roadmap on real tissue: slides tiled from PCam valid/ patches, at 40× geometry.

Six pyramidal slides at 0.243 µm/px (CAMELYON16's 40×), each 16 × 16
PatchCamelyon validation patches scaled up 4× (see ``napari_lymphmet.synthetic.mosaic``): three
with metastases (five in all, 2 × 3 to 4 × 5 patches, 0.2 to 0.5 mm), three
tumor-free; no patch is used twice. They are predicted as a user would,
``lymphmet predict SLIDE... -o OUT`` with no ``--model`` (the bundled
default), and scored with ``lymphmet evaluate``. Printed as JSON:

- heatmap AUC: tumor cells against normal cells, over all slides;
- slide scores, and whether every tumor slide ranks above every tumor-free one;
- lesions detected, false-positive detections per slide, lesion FROC.

    python benchmarks/mosaic_slides.py [--stain 1.35 0.7] [--smooth 0] [--model NAME] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from napari_lymphmet.synthetic import write_mosaic_slide

PATCH = 96  # px of a PCam patch
PCAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "patches" / "pcam"
SIDE = 16
TUMOR_SLIDES = {"tumor_a": [(2, 2, 3, 3), (9, 10, 4, 4)], "tumor_b": [(3, 9, 2, 3), (10, 3, 3, 4)],
                "tumor_c": [(6, 6, 4, 5)]}
NORMAL_SLIDES = ("normal_a", "normal_b", "normal_c")
UPSAMPLE = 4


def lymphmet(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"lymphmet {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def heatmap_auc(out: Path, truth: dict[str, list[np.ndarray]]) -> float:
    """AUC of the heatmap's tissue cells (those predicted: above 0), tumor against normal, pooled over the slides."""
    from napari_lymphmet.annotations import TUMOR, Annotation, rasterize
    from napari_lymphmet.inference import read_heatmap
    from napari_lymphmet.model import roc_auc

    scores, labels = [], []
    for name, lesions in truth.items():
        heat, info = read_heatmap(out / name / "heatmap.tif")
        mask = rasterize([Annotation(sq, TUMOR) for sq in lesions], heat.shape, downsample=info["downsample"]) > 0
        keep = heat > 0  # cells off the tissue mask are left at 0, not predicted
        scores.append(heat[keep])
        labels.append(mask[keep])
    return float(roc_auc(np.concatenate(labels).astype(int), np.concatenate(scores)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=PCAM)
    parser.add_argument("--model", default=None, help="a .keras file or bundled name (default: none given)")
    parser.add_argument("--stain", type=float, nargs=2, default=None, metavar=("H", "E"),
                        help="re-stain every slide: haematoxylin and eosin factors")
    parser.add_argument("--smooth", default=None, help="passed to predict (patch widths; 0: detect on the raw heatmap)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lymphmet-mosaic-slides")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    normal = iter(rng.permutation(sorted((args.data / "valid" / "normal").glob("*.jpg"))))
    tumor = iter(rng.permutation(sorted((args.data / "valid" / "tumor").glob("*.jpg"))))
    slides_dir, truth_dir, out = args.out / "slides", args.out / "truth", args.out / "predict"
    for folder in (slides_dir, truth_dir):
        folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for seed, name in enumerate([*TUMOR_SLIDES, *NORMAL_SLIDES]):
        path = slides_dir / f"{name}.tif"
        truth[name] = write_mosaic_slide(path, normal, tumor, side=SIDE, lesions=TUMOR_SLIDES.get(name, []),
                                         seed=seed, upsample=UPSAMPLE, stain=tuple(args.stain) if args.stain else None)
        if truth[name]:
            path.with_suffix(".xml").replace(truth_dir / f"{name}.xml")

    predict = ["predict", *sorted(str(p) for p in slides_dir.glob("*.tif")), "-o", str(out)]
    if args.model:
        predict += ["--model", args.model]
    if args.smooth is not None:
        predict += ["--smooth", args.smooth]
    lymphmet(*predict)
    summary = lymphmet("evaluate", "--detections", str(out), "--truth", str(truth_dir), "--slides", str(slides_dir))
    scores = {name: json.loads((out / name / "heatmap.json").read_text())["slide_score"] for name in truth}
    tumor_scores = [scores[n] for n in TUMOR_SLIDES]
    normal_scores = [scores[n] for n in NORMAL_SLIDES]
    per_slide = {s["slide"]: {k: s[k] for k in ("detections", "lesions", "tp", "fp")} for s in summary["per_slide"]}
    print(json.dumps({
        "model": args.model or "(default)",
        "stain": args.stain,
        "smooth": args.smooth or "default",
        "slides": f"{len(truth)} at 0.243 µm/px, {SIDE * PATCH * UPSAMPLE} px square",
        "heatmap_auc": round(heatmap_auc(out, truth), 4),
        "slide_scores": {k: round(v, 4) for k, v in scores.items()},
        "tumor_slides_rank_first": min(tumor_scores) > max(normal_scores),
        "slide_auc": summary["slide_auc"],
        "lesions": summary["lesions"],
        "lesions_detected": summary["tp"],
        "false_positives_per_slide": round(summary["fp"] / len(truth), 2),
        "froc": round(summary["froc"], 4),
        "per_slide": per_slide,
    }, indent=2))


if __name__ == "__main__":
    main()
