"""Tissue detection: synthetic ground truth, real slides, edge cases, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lymphmet import open_slide
from napari_lymphmet.synthetic import LAYOUT_STEP, PEN, SynthSpec, write_synthetic_slide
from napari_lymphmet.tissue import TissueParams, TissueWarning, detect_tissue, load_mask, tissue_mask, working_image

from .conftest import real_slide, run_main


@pytest.fixture(scope="module", params=[11, 12, 13])
def synthetic_with_truth(request, tmp_path_factory):
    """Slides with pen marks, dust and a fold, and the generator's true tissue mask."""
    path = tmp_path_factory.mktemp("tissue") / f"s{request.param}.tif"
    layout, _ = write_synthetic_slide(path, SynthSpec(width=8192, height=6144, seed=request.param, mpp=0.5))
    return path, layout


def _at(mask: np.ndarray, downsample: float, truth_step: int, shape) -> np.ndarray:
    """Resample a layout-scale mask onto the detected mask's grid (nearest, by centre)."""
    rows = ((np.arange(shape[0]) + 0.5) * downsample / truth_step).astype(int).clip(0, mask.shape[0] - 1)
    cols = ((np.arange(shape[1]) + 0.5) * downsample / truth_step).astype(int).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]


def test_synthetic_iou_with_truth_and_pen_left_out(synthetic_with_truth):
    path, layout = synthetic_with_truth
    with open_slide(path) as slide:
        result = tissue_mask(slide)
    assert result.downsample == 16  # 8 µm/px at 0.5 µm/px
    truth = _at(layout.tissue_mask(), result.downsample, LAYOUT_STEP, result.mask.shape)
    iou = (truth & result.mask).sum() / (truth | result.mask).sum()
    assert iou >= 0.95, iou
    pen = _at(layout.artefacts == PEN, result.downsample, LAYOUT_STEP, result.mask.shape)
    assert pen.sum() > 20
    assert not (result.mask & pen).any()


@pytest.mark.parametrize(
    ("name", "tissue_xy", "glass_xy"),
    [
        # Level-0 (x, y) points picked by eye on the thumbnails: stained
        # tissue (epidermis, dermis, tumor nests), then white glass.
        ("CMU-1-Small-Region.svs", [(1236, 1978), (1000, 2700), (1480, 740), (1630, 2370)],
         [(200, 200), (300, 1500), (2000, 2800), (1900, 400)]),
        ("tcga-cr-7395-01a-01-ts1.svs", [(2220, 1850), (1110, 1480), (3330, 1110), (2220, 2960)],
         [(222, 222), (222, 3256), (4144, 300), (2220, 150)]),
    ],
)
def test_real_slides_tissue_in_glass_out(name, tissue_xy, glass_xy):
    with open_slide(real_slide(name)) as slide:
        result = tissue_mask(slide)
    ds = result.downsample
    for x, y in tissue_xy:
        assert result.mask[int(y / ds), int(x / ds)], (x, y)
    for x, y in glass_xy:
        assert not result.mask[int(y / ds), int(x / ds)], (x, y)


def test_all_glass_warns_and_gives_empty_mask_all_tissue_gives_full():
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(242, 2, (400, 500, 3)), 0, 255).astype(np.uint8)
    with pytest.warns(TissueWarning, match="no tissue found"):
        assert not detect_tissue(glass).mask.any()
    with pytest.warns(TissueWarning):
        assert not detect_tissue(np.full((300, 300, 3), 255, np.uint8)).mask.any()
    tissue = np.clip(rng.normal((200, 120, 180), 15, (400, 500, 3)), 0, 255).astype(np.uint8)
    assert detect_tissue(tissue).mask.all()


def test_dark_ink_and_blue_pen_are_rejected_stained_tissue_kept():
    img = np.full((200, 300, 3), 243, np.uint8)
    img[20:180, 20:100] = (200, 120, 180)  # H&E pink-purple
    img[20:180, 120:180] = (30, 30, 35)  # black marker
    img[20:180, 200:280] = (60, 90, 190)  # blue pen
    mask = detect_tissue(img, TissueParams(min_area_px=10)).mask
    assert mask[100, 60] and not mask[100, 150] and not mask[100, 240]
    kept = detect_tissue(img, TissueParams(min_area_px=10, reject_pen=False)).mask
    assert kept[100, 240]


def test_working_image_reads_a_low_level_at_the_target_resolution(gigapixel_synthetic):
    with open_slide(gigapixel_synthetic) as slide:
        rgb, ds = working_image(slide)
        assert ds == 32 and rgb.shape == (1250, 1250, 3)
        assert slide.tile_reads.get(0, 0) == 0 and slide.tile_reads.get(1, 0) == 0
        # No level at 100: level 6 (64×) block-averaged by 2.
        rgb, ds = working_image(slide, TissueParams(downsample=100))
        assert ds == 128 and rgb.shape == (313, 313, 3)


def test_cli_mask_writes_png_sidecar_and_summary(synthetic_with_truth, tmp_path, capsys):
    path, _ = synthetic_with_truth
    out = tmp_path / "mask.png"
    code, summary, err = run_main(capsys, "mask", str(path), "-o", str(out), "--downsample", "32")
    assert code == 0, err
    saved = load_mask(out)
    assert saved.downsample == 32 == summary["downsample"]
    assert list(saved.mask.shape) == summary["shape"] == [192, 256]
    assert saved.info["kind"] == "tissue" and saved.info["parameters"]["downsample"] == 32
    assert summary["tissue_fraction"] == pytest.approx(saved.mask.mean(), abs=1e-6)
    assert 0.2 < summary["tissue_fraction"] < 0.8 and summary["seconds"] >= 0
    assert summary["thresholds"]["saturation"] > 0


def test_cli_mask_fixed_saturation_and_bad_values(synthetic_with_truth, tmp_path, capsys):
    path, _ = synthetic_with_truth
    code, summary, _ = run_main(capsys, "mask", str(path), "-o", str(tmp_path / "m.tif"), "--saturation", "0.07")
    assert code == 0 and summary["thresholds"]["saturation"] == 0.07
    assert load_mask(tmp_path / "m.tif").mask.any()
    code, _, err = run_main(capsys, "mask", str(path), "-o", str(tmp_path / "m.png"), "--saturation", "1.5")
    assert code == 2 and "saturation must be in [0, 1]" in err
    code, _, err = run_main(capsys, "mask", str(path), "-o", str(tmp_path / "m.jpg"))
    assert code == 2 and "a mask must be .png, .tif or .tiff" in err


def test_cli_mask_on_a_blank_slide_warns_not_fails(tmp_path, capsys):
    from napari_lymphmet.wsi import write_pyramid_tiff

    blank = tmp_path / "blank.tif"
    write_pyramid_tiff(blank, lambda x, y, w, h: np.full((h, w, 3), 245, np.uint8), 2048, 2048, mpp=0.5)
    code, summary, err = run_main(capsys, "mask", str(blank), "-o", str(tmp_path / "m.png"))
    assert code == 0 and summary["tissue_fraction"] == 0
    assert "warning:" in err and "no tissue found" in err and "blank.tif" in err


def test_load_mask_errors_name_the_file(tmp_path):
    from napari_lymphmet.errors import InputError
    from napari_lymphmet.tissue import save_mask

    with pytest.raises(InputError, match="no such mask file"):
        load_mask(tmp_path / "nope.png")
    save_mask(tmp_path / "a.png", np.eye(5, dtype=bool), downsample=4)
    (tmp_path / "a.png.json").unlink()
    with pytest.raises(InputError, match="sidecar a.png.json is missing"):
        load_mask(tmp_path / "a.png")
    save_mask(tmp_path / "b.png", np.eye(5, dtype=bool), downsample=4)
    back = load_mask(tmp_path / "b.png")
    assert back.downsample == 4 and np.array_equal(back.mask, np.eye(5, dtype=bool))
