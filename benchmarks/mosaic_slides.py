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
    python benchmarks/mosaic_slides.py --layout large --screen

``--layout large``: six 32 × 32-patch slides (3.9 mm square) with small
metastases (2 × 2 to 3 × 3 patches, 0.19 to 0.28 mm), patches reused
across slides (there are 1,500 normal ones), for screening rather than
accuracy. ``--screen`` predicts every slide a second time with ``--screen``
and prints the share of tissue cells predicted and the lesions found
screened against dense.
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

TUMOR_SLIDES = {"tumor_a": [(2, 2, 3, 3), (9, 10, 4, 4)], "tumor_b": [(3, 9, 2, 3), (10, 3, 3, 4)],
                "tumor_c": [(6, 6, 4, 5)]}
NORMAL_SLIDES = ("normal_a", "normal_b", "normal_c")
UPSAMPLE = 4
LAYOUTS = {  # side in patches, and each tumor slide's (row, col, rows, cols) lesions
    "small": (16, TUMOR_SLIDES),
    "large": (32, {"tumor_a": [(5, 5, 2, 2), (20, 24, 2, 3)], "tumor_b": [(12, 8, 3, 3), (26, 20, 2, 2)],
                   "tumor_c": [(25, 6, 2, 2), (8, 25, 3, 2)]}),
}


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
    parser.add_argument("--out", type=Path, default=None, help="default: lymphmet-mosaic-slides[-large] in temp")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="small")
    parser.add_argument("--screen", action="store_true", help="also predict screened, and compare with dense")
    args = parser.parse_args()
    side, tumor_slides = LAYOUTS[args.layout]
    args.out = args.out or Path(tempfile.gettempdir()) / ("lymphmet-mosaic-slides" +
                                                         ("" if args.layout == "small" else f"-{args.layout}"))

    rng = np.random.default_rng(0)

    def patches(kind: str):
        files = sorted((args.data / "valid" / kind).glob("*.jpg"))
        if args.layout == "small":  # each patch once
            return iter(rng.permutation(files))
        return (p for _ in range(64) for p in rng.permutation(files))  # reused, each time turned at random

    normal, tumor = patches("normal"), patches("tumor")
    slides_dir, truth_dir, out = args.out / "slides", args.out / "truth", args.out / "predict"
    for folder in (slides_dir, truth_dir):
        folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for seed, name in enumerate([*tumor_slides, *NORMAL_SLIDES]):
        path = slides_dir / f"{name}.tif"
        truth[name] = write_mosaic_slide(path, normal, tumor, side=side, lesions=tumor_slides.get(name, []),
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
    infos = {name: json.loads((out / name / "heatmap.json").read_text()) for name in truth}
    scores = {name: info["slide_score"] for name, info in infos.items()}
    tumor_scores = [scores[n] for n in tumor_slides]
    normal_scores = [scores[n] for n in NORMAL_SLIDES]
    per_slide = {s["slide"]: {k: s[k] for k in ("detections", "lesions", "tp", "fp")} for s in summary["per_slide"]}
    print(json.dumps({
        "model": args.model or "(default)",
        "stain": args.stain,
        "smooth": args.smooth or "default",
        "slides": f"{len(truth)} at 0.243 µm/px, {side * PATCH * UPSAMPLE} px square",
        "heatmap_auc": round(heatmap_auc(out, truth), 4),
        "slide_scores": {k: round(v, 4) for k, v in scores.items()},
        # What a tumor-free node with each slide's tissue stays under (95 %); below it a node is negative.
        "node_gates": {k: (info.get("node_gate") or {}).get("gate") for k, info in infos.items()},
        "tumor_slides_rank_first": min(tumor_scores) > max(normal_scores),
        "slide_auc": summary["slide_auc"],
        "lesions": summary["lesions"],
        "lesions_detected": summary["tp"],
        "false_positives_per_slide": round(summary["fp"] / len(truth), 2),
        "froc": round(summary["froc"], 4),
        # The official rule drops the lowest threshold: with no false positive that drops the weakest lesion.
        "froc_all_thresholds": round(summary["froc_all_thresholds"], 4),
        "per_slide": per_slide,
        "lesion_sizes": _sizes(out, truth),
        **(_screened(predict, out, truth_dir, slides_dir, summary) if args.screen else {}),
    }, indent=2))


def _sizes(out: Path, truth: dict[str, list[np.ndarray]]) -> dict:
    """Issue 31's check: each detected lesion's major axis against its truth outline's, and each slide's
    category against the truth's largest lesion.

    Both axes are measured alike: the major axis of the region's ellipse of
    inertia at the heatmap's resolution (``lesions.csv``'s convention), the
    truth outline rasterized onto the heatmap's grid.
    """
    import csv

    from skimage.measure import regionprops

    from napari_lymphmet.annotations import TUMOR, Annotation, rasterize
    from napari_lymphmet.inference import lesion_category

    rows, categories = [], {}
    for name, lesions in truth.items():
        info = json.loads((out / name / "heatmap.json").read_text())
        D, cell_mm = info["downsample"], info["downsample"] * info["mpp"] / 1e3
        shape = tuple(info["shape"])
        found = list(csv.DictReader((out / name / "lesions.csv").open()))
        truth_mm = []
        for square in lesions:
            mask = rasterize([Annotation(square, TUMOR)], shape, downsample=D) > 0
            (region,) = regionprops(mask.astype(np.uint8))
            truth_mm.append(max(region.axis_major_length, 1.0) * cell_mm)
            x0, y0 = square.min(axis=0) - D
            x1, y1 = square.max(axis=0) + D
            hits = [r for r in found if x0 <= float(r["x"]) <= x1 and y0 <= float(r["y"]) <= y1]
            if hits:
                got = max(float(r["major_axis_mm"]) for r in hits)
                rows.append({"slide": name, "truth_mm": round(truth_mm[-1], 3), "detected_mm": round(got, 3),
                             "ratio": round(got / truth_mm[-1], 2),
                             "within": abs(got - truth_mm[-1]) <= max(0.25 * truth_mm[-1], cell_mm)})
        expected = lesion_category(max(truth_mm)) if truth_mm else "negative"
        categories[name] = {"truth": expected, "predicted": info.get("category"),
                            "match": info.get("category") == expected}
    return {"lesions": rows, "all_within_25_percent_or_a_patch": all(r["within"] for r in rows),
            "categories": categories, "all_categories_match": all(c["match"] for c in categories.values())}


def _screened(predict: list[str], dense_out: Path, truth_dir: Path, slides_dir: Path, dense: dict) -> dict:
    """Predict again with --screen: the share of tissue cells predicted, and lesions found against dense."""
    out = dense_out.with_name("predict-screened")
    cohort = lymphmet(*[out.as_posix() if a == dense_out.as_posix() else a for a in predict], "--screen")
    summary = lymphmet("evaluate", "--detections", str(out), "--truth", str(truth_dir), "--slides", str(slides_dir))
    cells = sum(s["patches"] for s in cohort["slides"])
    predicted = sum(s["predicted"] for s in cohort["slides"])
    hits = {s["slide"]: s["tp"] for s in summary["per_slide"]}
    dense_hits = {s["slide"]: s["tp"] for s in dense["per_slide"]}
    return {"screened": {
        "cells_predicted": f"{predicted} of {cells} ({predicted / cells:.0%}; goal ≤ 40 %)",
        "lesions_detected": summary["tp"], "lesions_detected_dense": dense["tp"],
        "slides_losing_a_lesion": sorted(s for s in dense_hits if hits.get(s, 0) < dense_hits[s]),
        "false_positives_per_slide": round(summary["fp"] / len(hits), 2), "froc": round(summary["froc"], 4),
    }}


if __name__ == "__main__":
    main()
