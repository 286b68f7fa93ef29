"""The synthetic lymph-node generator: format, determinism, ground truth, texture."""

from __future__ import annotations

import json

import numpy as np
import openslide
import pytest

from napari_lymphmet.annotations import TUMOR, rasterize, read_asap_xml
from napari_lymphmet.cli import main
from napari_lymphmet.synthetic import LAYOUT_STEP, NORMAL, SynthSpec, make_layout, write_synthetic_slide
from napari_lymphmet.synthetic import TUMOR as TUMOR_CLASS

from .conftest import run_main


@pytest.fixture(scope="module")
def cli_slide(tmp_path_factory):
    """The acceptance command: a 16 384 px slide at 0.25 µm/px, seed 1."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("synth") / "s.tif"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["-q", "synth", "-o", str(path), "--size", "16384", "--seed", "1"])
    assert code == 0
    return path, json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.slow
def test_cli_synth_writes_an_openslide_generic_tiff_with_mpp(cli_slide):
    path, summary = cli_slide
    slide = openslide.OpenSlide(path)
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.25)
    assert slide.level_count >= 5 and slide.dimensions == (16384, 16384)
    assert [round(d) for d in slide.level_downsamples] == [2**i for i in range(slide.level_count)]
    assert max(slide.level_dimensions[-1]) <= 1024
    assert summary["slide"] == str(path) and summary["xml"] == str(path.with_suffix(".xml"))
    assert summary["level_count"] == slide.level_count and summary["dimensions"] == [16384, 16384]
    assert summary["lesions"] == 3


@pytest.mark.slow
def test_cli_synth_lesions_lie_in_tissue_and_match_their_stated_area(cli_slide):
    path, summary = cli_slide
    lesions = read_asap_xml(path.with_suffix(".xml"))
    assert len(lesions) == summary["lesions"] and all(a.label == TUMOR for a in lesions)
    area_um2 = sum(a.area for a in lesions) * 0.25**2
    assert area_um2 == pytest.approx(summary["tumor_area_um2"], rel=1e-3)
    # Judge "tissue" from the written pixels: stained (saturated) and not glass.
    slide = openslide.OpenSlide(path)
    level = 3
    ds = slide.level_downsamples[level]
    rgb = np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB"))
    saturation = rgb.max(axis=2).astype(int) - rgb.min(axis=2)
    tumor = rasterize(lesions, saturation.shape, downsample=ds)
    assert tumor.sum() > 100
    assert (saturation[tumor] > 40).mean() > 0.99
    for ann in lesions:
        cols, rows = (ann.exterior / ds).astype(int).T
        assert (saturation[rows, cols] > 40).all()


def test_same_seed_same_pixels_other_seed_other_slide(tmp_path):
    spec = SynthSpec(width=1500, height=1100, seed=3, mpp=0.5)
    a, _ = write_synthetic_slide(tmp_path / "a.tif", spec)
    b, _ = write_synthetic_slide(tmp_path / "b.tif", spec)
    c, _ = write_synthetic_slide(tmp_path / "c.tif", SynthSpec(width=1500, height=1100, seed=4, mpp=0.5))

    def pixels(name):
        s = openslide.OpenSlide(tmp_path / name)
        return np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"))

    assert np.array_equal(pixels("a.tif"), pixels("b.tif"))
    assert (tmp_path / "a.xml").read_bytes() == (tmp_path / "b.xml").read_bytes()
    assert np.abs(pixels("a.tif").astype(int) - pixels("c.tif")).mean() > 10
    assert not np.array_equal(a.classes, c.classes)


def test_render_is_the_same_whatever_the_tiling():
    slide = make_layout(SynthSpec(width=2600, height=2100, seed=5, mpp=0.5))
    whole = slide.render(300, 200, 1500, 1300)  # wider than a texture window
    tiled = np.concatenate([
        np.concatenate([slide.render(x, y, 500, 650) for x in (300, 800, 1300)], axis=1)
        for y in (200, 850)], axis=0)
    assert whole.shape == (1300, 1500, 3)
    np.testing.assert_array_equal(whole, tiled)


def _nuclei(patch: np.ndarray) -> tuple[float, float]:
    """Mean nucleus area (px) and nuclear area fraction, from the hematoxylin channel."""
    from scipy import ndimage
    from skimage.color import rgb2hed

    hema = rgb2hed(patch)[..., 0]
    nuclei = hema > 0.5 * (np.percentile(hema, 99) + np.median(hema))
    labels, n = ndimage.label(nuclei)
    sizes = np.bincount(labels.ravel())[1:]
    return float(sizes[sizes >= 4].mean()), float(nuclei.mean())


def test_tumor_and_normal_patches_differ_in_nuclear_texture_not_only_colour():
    """Tumor nuclei are larger and sparser, even once patch colours are equalised."""
    from scipy import ndimage

    spec = SynthSpec(width=12000, height=12000, seed=2, mpp=0.5, lesions=2, artefacts=())
    slide = make_layout(spec)
    step = LAYOUT_STEP

    def patches(cls, n=8):
        # 256 px patches lying wholly inside one class of the layout.
        deep = ndimage.binary_erosion(slide.classes == cls, iterations=256 // step + 1)
        rows, cols = np.nonzero(deep)
        pick = np.random.default_rng(0).choice(len(rows), n, replace=False)
        return [slide.render(int(c) * step - 128, int(r) * step - 128, 256, 256)
                for r, c in zip(rows[pick], cols[pick])]

    tumor, normal = patches(TUMOR_CLASS), patches(NORMAL)
    common = np.mean([p.reshape(-1, 3).mean(0) for p in tumor + normal], axis=0)

    def equalised(p):  # the same mean colour for every patch
        return np.clip(p + (common - p.reshape(-1, 3).mean(0)), 0, 255).astype(np.uint8)

    for transform in (lambda p: p, equalised):
        t = np.array([_nuclei(transform(p)) for p in tumor])
        n = np.array([_nuclei(transform(p)) for p in normal])
        assert t[:, 0].min() > 1.5 * n[:, 0].max(), (t, n)  # every tumor nucleus bigger
    # Cell-scale texture: within a patch, colour varies far more than between
    # the two classes' mean colours.
    within = np.mean([p.reshape(-1, 3).std(0).mean() for p in tumor + normal])
    between = np.abs(np.mean([p.reshape(-1, 3).mean(0) for p in tumor], 0)
                     - np.mean([p.reshape(-1, 3).mean(0) for p in normal], 0)).mean()
    assert within > 20 and within > between


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--size", "10"], "at least 256"),
     (["--mpp", "0"], "argument --mpp: expected a number > 0"),
     (["--lesions", "-1"], "argument --lesions: expected a whole number ≥ 0")],
)
def test_cli_synth_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    code, summary, err = run_main(capsys, "synth", "-o", str(tmp_path / "x.tif"), *argv)
    assert code == 2 and summary is None
    assert err.strip().startswith("error:") and needle in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_synth_into_a_missing_folder_names_it(tmp_path, capsys):
    code, _, err = run_main(capsys, "synth", "-o", str(tmp_path / "no" / "x.tif"), "--size", "512")
    assert code == 2 and "output folder" in err and str(tmp_path / "no") in err


def test_cli_synth_mask_is_the_true_tissue(tmp_path, capsys):
    from skimage.io import imread

    code, summary, _ = run_main(capsys, "-q", "synth", "-o", str(tmp_path / "m.tif"), "--size", "2048",
                            "--mpp", "0.5", "--mask", str(tmp_path / "m.png"), "--lesions", "1")
    assert code == 0 and summary["mask_downsample"] == LAYOUT_STEP
    mask = imread(tmp_path / "m.png")
    assert mask.shape == (128, 128) and set(np.unique(mask)) == {0, 255}
    assert 0.2 < (mask > 0).mean() < 0.8
    assert mask[64, 64] == 255 and mask[0, 0] == 0  # centre is tissue, corner is glass
