"""``lymphmet finetune``: corrections in, a new model version out, and the guard rails."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_lymphmet.annotations import EXCLUSION, TUMOR, Annotation, read_asap_xml, write_annotations

from .conftest import run_main

pytestmark = pytest.mark.tf


def _square(x: float, y: float, side: float) -> np.ndarray:
    return np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side]], np.float64)


@pytest.fixture(scope="module")
def corrections(synthetic_model, tmp_path_factory):
    """The test slide's lesions as tumor, and a square of normal node as not tumor, as ASAP XML and GeoJSON."""
    _, slide_path = synthetic_model
    root = tmp_path_factory.mktemp("corrections")
    lesions = read_asap_xml(slide_path.with_suffix(".xml"))
    anns = [Annotation(a.exterior, TUMOR) for a in lesions]
    x, y = lesions[0].exterior.min(axis=0)
    anns.append(Annotation(_square(max(0.0, x - 1400), y, 700), EXCLUSION))
    xml, geojson = root / "corrections.xml", root / "corrections.geojson"
    write_annotations(xml, anns)
    write_annotations(geojson, anns[1:])  # another set of polygons, QuPath's format
    return slide_path, xml, geojson


def test_finetune_a_bundled_model_on_xml_and_geojson_corrections(corrections, tmp_path, capsys):
    from napari_lymphmet.model import bundled_models, load_model

    slide_path, xml, geojson = corrections
    out = tmp_path / "tuned.keras"
    code, summary, err = run_main(capsys, "finetune", "lymph-node-10x", "--slide", str(slide_path),
                                  "--corrections", str(xml), "--slide", str(slide_path), "--corrections",
                                  str(geojson), "-o", str(out), "--epochs", "1", "--margin", "0.5",
                                  "--max-patches", "80", "--replay-patches", "50")
    # (A wide margin: synthetic tissue is far from the PatchCamelyon replay; the guard itself is tested below.)
    assert code == 0, err
    assert "warning: __array__" not in err  # Keras' NumPy 2 notice is not the user's business
    assert summary["accepted"] and summary["model"] == str(out) and summary["epochs"] == 1
    patches = summary["patches"]
    assert patches["tumor"] > 0 and patches["not_tumor"] > 0 and patches["replay"] > 0
    assert summary["seconds"] > 0
    before, after = summary["validation"]["before"], summary["validation"]["after"]
    assert {"accuracy", "patches"} <= set(before) and before["patches"] == after["patches"] > 0
    assert [c["file"] for c in summary["corrections"]] == [str(xml), str(geojson)]
    model, card = load_model(out)  # Keras safe mode
    assert card.extra["parent"]["model"] == "lymph-node-10x.keras"
    assert card.extra["finetune"]["corrections"][1]["file"] == str(geojson)
    assert card.extra["finetune"]["replay"]["before"] == before
    parent = load_model("lymph-node-10x")[1]
    assert (card.input_size, card.patch_mpp, card.input_space) == (parent.input_size, parent.patch_mpp,
                                                                   parent.input_space)
    # Both classes held out (replay of PatchCamelyon, corrections): the validation threshold is chosen there;
    # the detection threshold keeps every outlined lesion and sits above the false positives under them.
    assert card.validation is not None
    threshold = summary["threshold"]
    assert threshold["source"] == "corrections" and card.threshold == pytest.approx(threshold["threshold"])
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in card.extra["finetune"]["threshold"].items()} \
        == threshold
    assert min(threshold["lesion_peaks"]) >= card.threshold
    assert all(p < card.threshold for p in threshold["false_positive_peaks"] if p < min(threshold["lesion_peaks"]))
    # The bundled model is never overwritten.
    bundled = bundled_models()["lymph-node-10x"]
    stamp = bundled.stat().st_mtime_ns
    code, _, err = run_main(capsys, "finetune", "lymph-node-10x", "--slide", str(slide_path), "--corrections",
                            str(xml), "-o", str(bundled), "--epochs", "1")
    assert code == 2 and "refusing to overwrite the bundled model" in err and bundled.stat().st_mtime_ns == stamp


def test_zero_epochs_keeps_the_weights_and_its_threshold_drops_the_marked_false_positives(synthetic_model,
                                                                                          tmp_path, capsys):
    """Outline the lesions and every false-positive detection; --epochs 0: the same heatmap, fewer detections."""
    from scipy import ndimage

    from napari_lymphmet import open_slide
    from napari_lymphmet.annotations import rasterize
    from napari_lymphmet.inference import detect, predict_slide, region_around
    from napari_lymphmet.model import load_model
    from napari_lymphmet.tissue import tissue_mask

    model_path, slide_path = synthetic_model
    parent, parent_card = load_model(model_path)
    with open_slide(slide_path) as slide:
        found = tissue_mask(slide)
        result = predict_slide(slide, parent, parent_card, tissue_mask=found.mask, tissue_downsample=found.downsample)
    heatmap, D = result.heatmap, result.grid.downsample
    lesions = read_asap_xml(slide_path.with_suffix(".xml"))
    masks = [ndimage.binary_dilation(rasterize([a], heatmap.shape, downsample=D), iterations=1) for a in lesions]

    def split(points):
        hits = [any(m[int(y // D), int(x // D)] for _, x, y in points) for m in masks]
        fps = [(x, y) for _, x, y in points if not any(m[int(y // D), int(x // D)] for m in masks)]
        return hits, fps

    # On the raw heatmap (--smooth 0 here and in finetune): the synthetic pen and dust are one-cell false alarms.
    hits, fps = split(detect(heatmap, D, threshold=parent_card.threshold))
    assert all(hits) and fps  # the synthetic model finds the lesions, and some pen, dust or folds
    anns = [Annotation(a.exterior, TUMOR) for a in lesions]
    anns += [Annotation(region_around(heatmap, D, x, y, threshold=parent_card.threshold), EXCLUSION) for x, y in fps]
    write_annotations(tmp_path / "corrections.xml", anns)
    out = tmp_path / "recalibrated.keras"
    code, summary, err = run_main(capsys, "finetune", str(model_path), "--slide", str(slide_path), "--corrections",
                                  str(tmp_path / "corrections.xml"), "-o", str(out), "--epochs", "0",
                                  "--smooth", "0")
    assert code == 0 and summary["accepted"] and summary["epochs"] == 0, err
    assert summary["validation"]["before"] == summary["validation"]["after"]  # the same weights
    tuned, card = load_model(out)
    x = np.random.default_rng(0).random((4, card.input_size, card.input_size, 3)).astype("float32")
    assert np.allclose(np.asarray(parent(x)), np.asarray(tuned(x)))
    threshold = summary["threshold"]
    assert threshold["source"] == "corrections" and card.threshold == pytest.approx(threshold["threshold"])
    assert len(threshold["lesion_peaks"]) == len(lesions) and len(threshold["false_positive_peaks"]) == len(fps)
    assert card.threshold > parent_card.threshold and card.extra["parent"]["threshold"] == parent_card.threshold
    # What the pathologist sees at the new threshold: every lesion, and only the outlines it could not drop.
    hits, left = split(detect(heatmap, D, threshold=card.threshold))
    assert all(hits) and len(left) <= threshold["kept_false_positives"] < len(fps), (len(left), len(fps))


THRESHOLDS = {  # case -> (lesion peaks, false-positive peaks, fallback, (low, high) the threshold lies in, kept)
    "gap between them": ((0.99, 0.97), (0.9, 0.6), 0.4, (0.9, 0.97), 0),
    "a false positive above a lesion": ((0.8, 0.99), (0.95, 0.5), 0.4, (0.5, 0.8), 1),
    "no false positives, threshold low enough": ((0.9,), (), 0.4, (0.4, 0.4), 0),
    "no false positives, a lesion under it": ((0.3,), (), 0.5, (0.0, 0.3), 0),
    "no lesion marked": ((), (0.95,), 0.4, (0.4, 0.4), 1),
    "outlines off the slide are ignored": ((0.99, float("nan")), (float("nan"), 0.7), 0.4, (0.7, 0.99), 0),
    # Half a logit of room under the faintest lesion beats dropping a false positive just under it.
    "a false positive just under the faintest lesion": ((0.98,), (0.975, 0.5), 0.4, (0.95, 0.975), 1),
}


@pytest.mark.parametrize("case", list(THRESHOLDS))
def test_corrections_threshold_keeps_every_lesion_and_drops_what_it_can(case):
    from napari_lymphmet.workflows import corrections_threshold

    lesions, fps, fallback, (low, high), kept = THRESHOLDS[case]
    chosen = corrections_threshold(lesions, fps, fallback)
    assert low <= chosen.threshold <= high and (low < chosen.threshold or low == high)
    assert chosen.kept == kept
    assert chosen.source == ("corrections" if any(np.isfinite(lesions)) else "validation")


def test_a_model_worse_on_the_replay_set_is_refused_and_not_written(corrections, synthetic_model, tmp_path,
                                                                     capsys):
    model_path, _ = synthetic_model
    slide_path, xml, _ = corrections
    out = tmp_path / "strict.keras"
    code, summary, err = run_main(capsys, "finetune", str(model_path), "--slide", str(slide_path), "--corrections",
                                  str(xml), "-o", str(out), "--epochs", "1", "--margin", "0", "--max-patches", "80")
    before, after = summary["validation"]["before"], summary["validation"]["after"]
    assert before["patches"] == after["patches"] > 0  # the same-slide replay, held out
    if after["accuracy"] < before["accuracy"]:  # any drop is too much at margin 0
        assert code == 1 and not summary["accepted"] and summary["model"] is None and not out.exists()
        assert "worse on the held-out replay set" in err and f"kept {model_path.name}" in err
    else:
        assert code == 0 and summary["accepted"] and out.exists()


def _points_only(path):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [100, 100]},
         "properties": {"classification": {"name": "Tumor"}}}]}))
    return path


BAD = {  # case -> (corrections file maker, slide override, words of the error)
    "polygons off the slide": (lambda p: write_annotations(p / "far.xml", [Annotation(_square(1e7, 1e7, 500),
                                                                                      EXCLUSION)]) or p / "far.xml",
                               None, "lies on"),
    "no tumor and no exclusion": (lambda p: _points_only(p / "points.geojson"), None, "no tumor and no not-tumor"),
    "missing slide": (lambda p: write_annotations(p / "ok.xml", [Annotation(_square(0, 0, 500), TUMOR)])
                      or p / "ok.xml", "missing.tif", "no such slide"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_finetune_bad_input_is_one_error_line_and_exit_2(case, synthetic_model, tmp_path, capsys):
    model_path, slide_path = synthetic_model
    make, slide, words = BAD[case]
    corrections = make(tmp_path)
    slide = str(tmp_path / slide) if slide else str(slide_path)
    code, summary, err = run_main(capsys, "finetune", str(model_path), "--slide", slide, "--corrections",
                                  str(corrections), "-o", str(tmp_path / "new.keras"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and summary is None and len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in err and not (tmp_path / "new.keras").exists()
