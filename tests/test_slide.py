"""Slide metadata, pixels against OpenSlide, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import openslide
import pytest
import tifffile

import napari_lymphmet
from napari_lymphmet import SlideError, SlideReadError, open_slide
from napari_lymphmet.wsi import TileCache

from .conftest import BAD_INPUTS, make_bad_input, real_slide

# name, vendor, level dimensions, mpp, associated images
REAL_SLIDES = [
    ("CMU-1-Small-Region.svs", "aperio", [(2220, 2967)], (0.499, 0.499), {"label", "macro", "thumbnail"}),
    ("tcga-cr-7395-01a-01-ts1.svs", "aperio", [(4443, 3567), (2221, 1783)], None, {"thumbnail"}),
    ("openslide-small.svs", "aperio", [(16, 16)], (0.499, 0.499), {"thumbnail"}),
    ("openslide-boxes.tiff", "generic-tiff", [(300, 250), (150, 125), (75, 62), (37, 31)],
     (352.77777983377013, 352.77777983377013), set()),
]
NAMES = [case[0] for case in REAL_SLIDES]


def openslide_rgb(osr: openslide.OpenSlide, location, level, size) -> np.ndarray:
    """OpenSlide's pixels, straight alpha composited onto white (independent of the package)."""
    rgba = np.asarray(osr.read_region(location, level, size)).astype(np.float64)
    a = rgba[..., 3:] / 255.0
    return np.round(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)


@pytest.mark.parametrize(("name", "vendor", "dims", "mpp", "associated"), REAL_SLIDES, ids=NAMES)
def test_metadata_matches_openslide(name, vendor, dims, mpp, associated):
    with open_slide(real_slide(name)) as slide:
        assert slide.vendor == vendor
        assert [tuple(d) for d in slide.level_dimensions] == dims
        assert slide.dimensions == dims[0]
        assert slide.level_count == len(dims)
        assert slide.mpp == (pytest.approx(mpp) if mpp else None)
        assert set(slide.associated_images) == associated
        assert slide.level_downsamples[0] == 1.0


def test_top_level_export():
    assert napari_lymphmet.open_slide is open_slide


def _level_pages(path):
    """Native pixels of each tiled page, as an independent reference."""
    with tifffile.TiffFile(path) as tif:
        return {(p.imagelength, p.imagewidth): p for p in tif.pages if p.is_tiled}


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "openslide"])
@pytest.mark.parametrize("name", NAMES)
def test_pyramid_chunks_equal_openslide(name, direct):
    path = real_slide(name)
    osr = openslide.OpenSlide(str(path))
    rng = np.random.default_rng(7)
    with open_slide(path, direct=direct) as slide, tifffile.TiffFile(path) as tif:
        pages = {(p.imagelength, p.imagewidth): p for p in tif.pages if p.is_tiled}
        for level, arr in enumerate(slide.pyramid()):
            ds = slide.level_downsamples[level]
            th, tw = slide.tile_shape(level)
            assert arr.shape == (*slide.level_dimensions[level][::-1], 3)
            assert arr.dtype == np.uint8
            assert arr.chunksize[:2] == (min(th, arr.shape[0]), min(tw, arr.shape[1]))
            nrows, ncols = len(arr.chunks[0]), len(arr.chunks[1])
            cells = {(0, 0), (nrows - 1, ncols - 1)}
            cells |= {(int(rng.integers(nrows)), int(rng.integers(ncols))) for _ in range(4)}
            for r, c in sorted(cells):
                y, x = sum(arr.chunks[0][:r]), sum(arr.chunks[1][:c])
                h, w = arr.chunks[0][r], arr.chunks[1][c]
                got = arr.blocks[r, c].compute()
                exact = (x * ds).is_integer() and (y * ds).is_integer()
                if exact or not direct:
                    # OpenSlide addresses this level's own grid only where
                    # x·downsample is whole; elsewhere it resamples.
                    want = openslide_rgb(osr, (round(x * ds), round(y * ds)), level, (w, h))
                else:
                    want = pages[arr.shape[:2]].asarray()[y:y + h, x:x + w]
                np.testing.assert_array_equal(got, want, err_msg=f"{name} level {level} chunk {r},{c}")


def test_direct_and_openslide_pixels_agree_on_synthetic(small_synthetic):
    with open_slide(small_synthetic) as fast, open_slide(small_synthetic, direct=False) as ref:
        assert fast.level_backend(0) == "tiff" and ref.level_backend(0) == "openslide"
        for level in range(fast.level_count):
            a, b = fast.pyramid()[level], ref.pyramid()[level]
            np.testing.assert_array_equal(a[100:700, 50:900].compute(), b[100:700, 50:900].compute())


def test_synthetic_slide_has_mpp_and_levels(small_synthetic):
    with open_slide(small_synthetic) as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.mpp == pytest.approx((0.5, 0.5))
        assert slide.level_dimensions == ((3000, 2200), (1500, 1100), (750, 550))
        assert slide.tile_shape(0) == (256, 256)


def test_read_region_composites_outside_onto_white(small_synthetic):
    with open_slide(small_synthetic) as slide:
        w, h = slide.dimensions
        region = slide.read_region((w - 10, h - 10), 0, (30, 20))
        assert region.shape == (20, 30, 3) and region.dtype == np.uint8
        assert (region[10:, :] == 255).all() and (region[:, 10:] == 255).all()
        assert (region[:10, :10] != 255).any()


def test_read_level_region_matches_read_region(small_synthetic):
    with open_slide(small_synthetic) as slide:
        np.testing.assert_array_equal(
            slide.read_level_region(1, (300, 200), (400, 300)),
            slide.read_region((600, 400), 1, (400, 300)),
        )


def test_thumbnail_fits_and_keeps_aspect(small_synthetic):
    with open_slide(small_synthetic) as slide:
        thumb = slide.thumbnail(500)
        assert thumb.shape == (367, 500, 3)
        assert thumb.std() > 10


def test_associated_image_rgb():
    with open_slide(real_slide("CMU-1-Small-Region.svs")) as slide:
        label = slide.associated_image("label")
        assert label.ndim == 3 and label.shape[2] == 3 and label.dtype == np.uint8
        with pytest.raises(KeyError, match="no associated image"):
            slide.associated_image("nope")


def test_reads_after_close_raise(small_synthetic):
    with open_slide(small_synthetic) as slide:
        arr = slide.pyramid()[0]
    with pytest.raises(SlideReadError):
        arr[:10, :10].compute()


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_clear_error(tmp_path, small_synthetic, case):
    path = make_bad_input(tmp_path, case, small_synthetic)
    with pytest.raises(SlideError) as info:
        open_slide(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_corrupt_tile_raises_with_file_and_region(tmp_path, small_synthetic):
    path = tmp_path / "corrupt.tif"
    shutil.copy(small_synthetic, path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\x00" * count)
    with open_slide(path) as slide:
        arr = slide.pyramid()[0]
        arr[:256, :256].compute()  # other tiles still read
        with pytest.raises(SlideReadError, match=r"corrupt\.tif: cannot read level 0 region x=1280 y=0"):
            arr[:256, 1280:1536].compute()
        with pytest.raises(SlideReadError):
            arr.blocks[0, 5].compute(scheduler="threads")


def test_cache_is_lru_and_byte_bounded():
    cache = TileCache(max_bytes=3000)
    tiles = {k: np.full(1000, k, np.uint8) for k in range(4)}
    for k in range(3):
        cache.put(k, tiles[k])
    assert cache.get(0) is not None  # 0 is now most recent
    cache.put(3, tiles[3])
    assert cache.get(1) is None and cache.get(0) is not None
    assert cache.nbytes == 3000 and len(cache) == 3
    cache.put(9, np.zeros(5000, np.uint8))  # larger than the bound: not cached
    assert cache.get(9) is None and cache.nbytes <= 3000
    with pytest.raises(ValueError, match="read-only"):
        cache.get(3)[0] = 1  # shared between callers


def test_the_old_module_path_still_opens_slides_with_a_deprecation_warning():
    import importlib
    import sys

    import napari_lymphmet

    sys.modules.pop("napari_lymphmet.slide", None)
    with pytest.warns(DeprecationWarning, match="napari_lymphmet.slide is deprecated"):
        old = importlib.import_module("napari_lymphmet.slide")
    assert old.open_slide is napari_lymphmet.open_slide and old.Slide is napari_lymphmet.Slide
