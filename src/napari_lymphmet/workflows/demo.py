"""The whole pipeline on built-in synthetic data: ``lymphmet demo``.

Four synthetic slides (two for training, a test one, and a tumor-free normal
one), their tissue masks, patches from the training slides, a ``small-cnn`` trained from
scratch, heatmaps of the test and normal slides, and the CAMELYON16
evaluation, gathered in one self-contained ``report.html``."""


from __future__ import annotations

import base64
import html
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .predict import PredictOptions, predict_slides

__all__ = ["run_demo"]


def _step(log: Callable[[str], None], text: str) -> float:
    log(text)
    return time.monotonic()


def run_demo(out_dir: str | os.PathLike, *, size: int = 12288, epochs: int = 8, seed: int = 0,
             log: Callable[[str], None] = lambda text: None) -> dict:
    """Run every step into ``out_dir``; returns the summary (metrics and paths)."""
    from ..annotations import rasterize, read_asap_xml
    from ..evaluation import evaluate, roc_auc
    from ..figures import save_png
    from ..inference import slide_score
    from ..model import TrainConfig, read_patch_table, train
    from ..patches import PatchSpec, export_patches, plan_patches
    from ..synthetic import SynthSpec, write_synthetic_slide
    from ..tissue import save_mask, tissue_mask
    from ..wsi import open_slide

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    timings: dict[str, float] = {}

    t = _step(log, "1/6 synthetic slides")
    slides = {}
    # Two training slides of different stains, so the model cannot lean on one.
    for name, offset, lesions in (("train", 1, 4), ("train2", 4, 3), ("test", 2, 3), ("normal", 3, 0)):
        path = out / "slides" / f"{name}.tif"
        path.parent.mkdir(exist_ok=True)
        if not path.exists():
            write_synthetic_slide(path, SynthSpec(width=size, height=size, seed=seed * 10 + offset,
                                                  lesions=lesions, mpp=0.5))
        if lesions == 0:
            path.with_suffix(".xml").unlink(missing_ok=True)  # a normal slide has no annotations
        slides[name] = path
    timings["synth"] = time.monotonic() - t

    t = _step(log, "2/6 tissue masks")
    masks = {}
    for name, path in slides.items():
        with open_slide(path) as slide:
            result = tissue_mask(slide)
        (out / "masks").mkdir(exist_ok=True)
        save_mask(out / "masks" / f"{name}.png", result.mask, downsample=result.downsample, kind="tissue",
                  slide=str(path), mpp=result.mpp)
        masks[name] = result
    timings["masks"] = time.monotonic() - t

    t = _step(log, "3/6 patches from the training slides")
    spec = PatchSpec(size=64, mpp=1.0, stride=48, max_per_class=250, balance=True, seed=seed)
    counts = {"tumor": 0, "normal": 0}
    for name in ("train", "train2"):
        with open_slide(slides[name]) as slide:
            plan = plan_patches(slide, spec, tissue_mask=masks[name].mask,
                                tissue_downsample=masks[name].downsample,
                                annotations=read_asap_xml(slides[name].with_suffix(".xml")))
            exported = export_patches([(slide, plan)], out / "patches")
            counts = {k: counts[k] + v for k, v in exported.counts.items()}
    timings["patches"] = time.monotonic() - t

    t = _step(log, "4/6 training a small CNN (no pretrained weights)")
    model_path = out / "model.keras"
    train(read_patch_table([out / "patches"]), None, model_path,
          TrainConfig(backbone="small-cnn", weights="none", epochs=epochs, input_size=64, batch_size=32,
                      seed=seed))
    timings["train"] = time.monotonic() - t

    t = _step(log, "5/6 predicting the test and normal slides")
    predictions, heat_auc = {}, None
    for done in predict_slides([slides["test"], slides["normal"]], model_path, out / "predictions",
                               PredictOptions(mask=out / "masks")):
        name, result = done.slide_id, done.result
        predictions[name] = {"result": result, **done.paths}
        if name == "test":  # tumor cells against normal tissue cells of the test slide
            from scipy import ndimage

            lesions = read_asap_xml(slides[name].with_suffix(".xml"))
            tumor = rasterize(lesions, result.heatmap.shape, downsample=result.grid.downsample)
            on = result.heatmap > 0
            normal = on & ~ndimage.binary_dilation(tumor, iterations=1)
            heat_auc = roc_auc(np.r_[np.ones((tumor & on).sum()), np.zeros(normal.sum())],
                               np.r_[result.heatmap[tumor & on], result.heatmap[normal]])
    timings["predict"] = time.monotonic() - t

    t = _step(log, "6/6 CAMELYON16 evaluation")
    truth = out / "truth"
    truth.mkdir(exist_ok=True)
    (truth / "test.xml").write_bytes(slides["test"].with_suffix(".xml").read_bytes())
    evaluation, curve = evaluate(out / "predictions", truth, slides_dir=out / "slides")
    save_png(curve.figure(), out / "froc.png")
    timings["evaluate"] = time.monotonic() - t

    test = predictions["test"]["result"]
    summary = {
        "output": str(out),
        "heatmap_auc": heat_auc,
        "froc": evaluation["froc"],
        "froc_all_thresholds": evaluation["froc_all_thresholds"],
        "froc_note": evaluation["froc_note"],
        "sensitivity_at": evaluation["sensitivity_at"],
        "slide_auc": evaluation["slide_auc"],
        "slide_scores": {name: round(slide_score(p["result"].heatmap), 4) for name, p in predictions.items()},
        "lesions": evaluation["lesions"], "tp": evaluation["tp"], "fp": evaluation["fp"],
        "patches": counts,
        "model": str(model_path),
        "heatmap": predictions["test"]["heatmap"], "overlay": predictions["test"]["overlay"],
        "detections": predictions["test"]["detections"], "froc_png": str(out / "froc.png"),
        "slides": {name: str(p) for name, p in slides.items()},
        "masks": {name: str(out / "masks" / f"{name}.png") for name in slides},
        "patches_per_second_predict": round(test.patches_per_second, 1),
        "timings": {k: round(v, 1) for k, v in timings.items()},
        "seconds": round(time.monotonic() - start, 1),
    }
    summary["report"] = str(_write_report(out / "report.html", summary))
    return summary


def _img(path: str | Path, *, name: str, axes: list[int] | None = None) -> str:
    """An embedded PNG; ``axes`` (the plot's box in the picture, px) lets readers point into it."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    box = f' data-axes="{",".join(map(str, axes))}"' if axes else ""
    return f'<img id="{name}" alt="{name}"{box} src="data:image/png;base64,{data}" style="max-width:100%">'


def _write_report(path: Path, summary: dict) -> Path:
    from ..io import atomic_path

    def fmt(v):
        return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))

    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{fmt(v)}</td></tr>" for k, v in [
        ("heatmap AUC (tumor vs normal cells, test slide)", summary["heatmap_auc"]),
        ("FROC (mean sensitivity at 1/4–8 FP per slide, official rule)", summary["froc"]),
        ("FROC over all thresholds", summary["froc_all_thresholds"]),
        ("slide AUC (test vs normal slide)", summary["slide_auc"]),
        ("lesions / hits / false positives", f"{summary['lesions']} / {summary['tp']} / {summary['fp']}"),
        ("training patches (tumor / normal)", f"{summary['patches']['tumor']} / {summary['patches']['normal']}"),
        ("prediction speed", f"{summary['patches_per_second_predict']} patches/s"),
        ("total time", f"{summary['seconds']} s"),
    ])
    axes = json.loads(Path(summary["heatmap"]).with_suffix(".json").read_text()).get("overlay_axes")
    note = f'<p id="froc-note">{html.escape(summary["froc_note"])}</p>' if summary.get("froc_note") else ""
    sens = "".join(f"<td>{fmt(v)}</td>" for v in summary["sensitivity_at"].values())
    heads = "".join(f"<th>{k}</th>" for k in summary["sensitivity_at"])
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>napari-lymphmet demo report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
td,th{{border:1px solid #ccc;padding:4px 8px}}table{{border-collapse:collapse;margin:1em 0}}</style></head>
<body><h1>napari-lymphmet demo</h1>
<p>Synthetic lymph-node slides; a small CNN trained from scratch on one slide's patches, then used on a
test slide with three metastases and a tumor-free slide. Everything here was computed by
<code>lymphmet demo</code>.</p>
<table>{rows}</table>
<h2>Sensitivity at false positives per slide</h2><table><tr>{heads}</tr><tr>{sens}</tr></table>
<h2>Test slide: tumor probability over the slide</h2>{_img(summary['overlay'], name="heatmap", axes=axes)}
<h2>FROC</h2>{note}{_img(summary['froc_png'], name="froc")}
<h2>Summary (JSON)</h2><pre>{html.escape(json.dumps({k: v for k, v in summary.items() if k != 'report'},
                                                         indent=1, default=str))}</pre>
</body></html>"""
    with atomic_path(path) as tmp:
        tmp.write_text(page)
    return path
