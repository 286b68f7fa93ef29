"""Patch export: labels against the generator's truth, pixels against OpenSlide, resume."""

from __future__ import annotations

import csv
import threading

import numpy as np
import openslide
import pytest
from skimage.io import imread

from napari_lymphmet import open_slide
from napari_lymphmet.annotations import TUMOR
from napari_lymphmet.patches import PatchSpec, export_patches, plan_for_slide
from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

from .conftest import real_slide, run_main


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A 0.25 µm/px synthetic node with lesions big enough for many tumor patches."""
    folder = tmp_path_factory.mktemp("patches")
    path = folder / "node_a.tif"
    layout, _ = write_synthetic_slide(path, SynthSpec(width=12288, height=9216, seed=21, lesions=3, mpp=0.25))
    return path, layout


def _centres_in(polygons, x, y, box, size):
    """Truth at patch resolution: is each patch pixel's centre inside a lesion (even-odd)?"""
    scale = box / size
    cy, cx = np.mgrid[0:size, 0:size].astype(float) + 0.5
    px, py = x + cx * scale, y + cy * scale
    hit = np.zeros((size, size), bool)
    for poly in polygons:
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        inside = np.zeros((size, size), bool)
        for a, b, c, d in zip(x0, y0, x1, y1):
            crosses = (b <= py) != (d <= py)
            with np.errstate(divide="ignore", invalid="ignore"):
                at = a + (py - b) / (d - b) * (c - a)
            inside ^= crosses & (px < at)
        hit |= inside
    return hit


@pytest.mark.parametrize("rule", ["center", "fraction:0.5"])
def test_every_label_agrees_with_the_generator_truth(node, rule, tmp_path):
    path, layout = node
    spec = PatchSpec(size=128, mpp=0.5, label_rule=rule, min_tissue=0.5)
    with open_slide(path) as slide:
        plan = plan_for_slide(slide, spec, annotations=path.with_suffix(".xml"))
    assert plan.counts()[TUMOR] >= 10 and plan.counts()["normal"] >= 50
    assert plan.uncertain > 0  # border patches that neither rule can call
    border = 0
    for i in range(len(plan)):
        x, y = int(plan.x[i]), int(plan.y[i])
        near = [p for p in layout.lesions
                if p[:, 0].min() < x + plan.box and p[:, 0].max() > x
                and p[:, 1].min() < y + plan.box and p[:, 1].max() > y]
        truth = _centres_in(near, x, y, plan.box, spec.size) if near else np.zeros((128, 128), bool)
        if rule == "center":
            expected = TUMOR if truth[48:80, 48:80].any() else ("normal" if not truth.any() else None)
        else:
            expected = TUMOR if truth.mean() >= 0.5 else ("normal" if not truth.any() else None)
        assert plan.labels[i] == expected, (i, x, y, truth.mean())
        assert plan.tumor_fraction[i] == pytest.approx(truth.mean())
        border += 0 < truth.mean() < 1
    assert border >= 3  # straddling patches were decided, not avoided


def test_csv_rows_reread_through_openslide_give_the_exported_pixels(node, tmp_path, capsys):
    path, _ = node
    code, summary, err = run_main(capsys, "patches", str(path), "-o", str(tmp_path / "out"),
                                  "--annotations", str(path.with_suffix(".xml")), "--size", "128")
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "out" / "patches.csv")))
    assert len(rows) == summary["counts"]["tumor"] + summary["counts"]["normal"] == summary["written"]
    assert summary["patches_per_second"] > 0 and summary["uncertain_skipped"] > 0
    osr = openslide.OpenSlide(path)
    rng = np.random.default_rng(0)
    tumor_rows = [r for r in rows if r["label"] == TUMOR]
    for row in [rows[i] for i in rng.choice(len(rows), 12, replace=False)] + tumor_rows[:4]:
        assert row["slide_id"] == "node_a" and row["mpp"] == "0.5" and row["read_level"] == "1"
        png = imread(tmp_path / "out" / row["file"])
        region = np.asarray(osr.read_region((int(row["x"]), int(row["y"])), 1, (128, 128)).convert("RGB"))
        np.testing.assert_array_equal(png, region)
        assert row["file"] == f"{row['label']}/node_a_{row['x']}_{row['y']}_0.5mpp.png"


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_interrupted_export_resumes_to_exactly_the_uninterrupted_result(node, tmp_path, monkeypatch):
    path, _ = node
    spec = PatchSpec(size=128, mpp=0.5)
    with open_slide(path) as slide:
        plan = plan_for_slide(slide, spec, annotations=path.with_suffix(".xml"))
        export_patches([(slide, plan)], tmp_path / "whole")

        # 1. Cancel from the progress callback.
        cancel = threading.Event()
        result = export_patches([(slide, plan)], tmp_path / "resumed", workers=2,
                                progress=lambda done, total: done > 40 and cancel.set(), cancel=cancel)
        assert not result.complete and 0 < result.written < len(plan)
        partial_csv = list(csv.DictReader(open(tmp_path / "resumed" / "patches.csv")))
        assert len(partial_csv) == len(list((tmp_path / "resumed").rglob("*.png")))

        # 2. A crash mid-write: the encoder dies on the 30th patch.
        import napari_lymphmet.patches.export as patches_module

        real_encode, calls = patches_module._encode, []

        def dying(patch, fmt):
            calls.append(1)
            if len(calls) == 30:
                raise RuntimeError("disk full")
            return real_encode(patch, fmt)

        monkeypatch.setattr(patches_module, "_encode", dying)
        with pytest.raises(RuntimeError, match="disk full"):
            export_patches([(slide, plan)], tmp_path / "resumed", workers=2)
        monkeypatch.setattr(patches_module, "_encode", real_encode)
        assert not list((tmp_path / "resumed").rglob(".*partial*"))

        result = export_patches([(slide, plan)], tmp_path / "resumed")
        assert result.complete and result.skipped_existing > 40
    assert _files(tmp_path / "resumed") == _files(tmp_path / "whole")


def test_several_slides_find_their_annotations_and_unannotated_is_all_normal(node, tmp_path, capsys):
    path, _ = node
    other = tmp_path / "slides" / "normal_1.tif"
    other.parent.mkdir()
    write_synthetic_slide(other, SynthSpec(width=4096, height=3072, seed=5, lesions=0, mpp=0.25))
    other.with_suffix(".xml").unlink()
    ann_dir = tmp_path / "ann"
    ann_dir.mkdir()
    (ann_dir / "node_a.xml").write_bytes(path.with_suffix(".xml").read_bytes())
    code, summary, err = run_main(capsys, "patches", str(path), str(other), "-o", str(tmp_path / "out"),
                                  "--annotations", str(ann_dir), "--size", "128", "--max-per-class", "20",
                                  "--seed", "3")
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "out" / "patches.csv")))
    by_slide = {s: [r for r in rows if r["slide_id"] == s] for s in ("node_a", "normal_1")}
    assert {r["label"] for r in by_slide["normal_1"]} == {"normal"}
    assert 0 < len([r for r in by_slide["node_a"] if r["label"] == TUMOR]) <= 20
    assert len(by_slide["normal_1"]) == 20
    # The same seed samples the same patches; another seed, others.
    code, _, _ = run_main(capsys, "patches", str(path), str(other), "-o", str(tmp_path / "again"),
                          "--annotations", str(ann_dir), "--size", "128", "--max-per-class", "20", "--seed", "3")
    assert (tmp_path / "again" / "patches.csv").read_text() == (tmp_path / "out" / "patches.csv").read_text()
    code, _, _ = run_main(capsys, "patches", str(path), str(other), "-o", str(tmp_path / "other"),
                          "--annotations", str(ann_dir), "--size", "128", "--max-per-class", "20", "--seed", "4")
    assert (tmp_path / "other" / "patches.csv").read_text() != (tmp_path / "out" / "patches.csv").read_text()


def test_level_for_slides_without_mpp_and_jpeg(tmp_path, capsys):
    path = real_slide("tcga-cr-7395-01a-01-ts1.svs")
    code, summary, err = run_main(capsys, "patches", str(path), "-o", str(tmp_path / "o"), "--level", "0",
                                  "--size", "256", "--format", "jpeg", "--max-per-class", "10")
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "o" / "patches.csv")))
    assert len(rows) == 10 and all(r["file"].endswith("_L0.jpg") and r["mpp"] == "" for r in rows)
    code, _, err = run_main(capsys, "patches", str(path), "-o", str(tmp_path / "p"))
    assert code == 2 and "has no mpp; give a level" in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["--label-rule", "majority"], "label rule must be"),
    (["--label-rule", "fraction:2"], "label rule must be"),
    (["--mpp", "0.1"], "coarser than the requested 0.1"),
    (["--min-tissue", "3"], "argument --min-tissue: expected a number ≥ 0 and ≤ 1"),
])
def test_bad_options_exit_2(node, tmp_path, capsys, argv, needle):
    path, _ = node
    code, _, err = run_main(capsys, "patches", str(path), "-o", str(tmp_path / "o"), *argv)
    assert code == 2 and needle in err, err
