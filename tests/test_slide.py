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


@pytest.fixture(scope="module")
def single_level_jpeg(tmp_path_factory):
    """A 0.243 µm/px JPEG-tiled slide of synthetic H&E tissue with no level but level 0."""
    from napari_lymphmet.synthetic import SynthSpec, make_layout
    from napari_lymphmet.wsi import write_pyramid_tiff

    path = tmp_path_factory.mktemp("single") / "single.tif"
    layout = make_layout(SynthSpec(width=3000, height=2000, seed=5, lesions=1, mpp=0.243))
    write_pyramid_tiff(path, layout.render, 3000, 2000, tile=256, mpp=0.243, min_size=10_000)
    return path


def test_read_scaled_at_a_stored_level_is_that_level_pixel_for_pixel(small_synthetic):
    with open_slide(small_synthetic) as slide:
        for level, ds in enumerate(slide.level_downsamples):
            x, y = 256 * int(ds), 128 * int(ds)
            np.testing.assert_array_equal(slide.read_scaled((x, y), (300, 200), ds),
                                          slide.read_level_region(level, (256, 128), (300, 200)))


@pytest.mark.parametrize("downsample", [2.0, 4.0, 3.0, 1.5, 8.0])
def test_read_scaled_between_levels_matches_full_decode_and_area_resize(single_level_jpeg, downsample):
    """Reduced-scale JPEG decoding against full-size pixels averaged over each output pixel's footprint."""
    from PIL import Image

    with open_slide(single_level_jpeg) as slide:
        assert slide.level_count == 1
        w, h = 200, 150
        x, y = 333.0, 271.0
        got = slide.read_scaled((x, y), (w, h), downsample)
        assert got.shape == (h, w, 3) and got.dtype == np.uint8
        full = np.asarray(slide.pyramid()[0][int(y):int(y) + int(np.ceil(h * downsample)),
                                             int(x):int(x) + int(np.ceil(w * downsample))])
        reference = np.asarray(Image.fromarray(full).resize((w, h), Image.Resampling.BOX,
                                                              box=(0, 0, w * downsample, h * downsample)))
        mae = np.abs(got.astype(float) - reference).mean(axis=(0, 1))
        assert (mae <= 2.0).all(), mae
        if downsample >= 2:
            assert slide.tiles.scale_for(0, downsample) >= 2  # it decoded at reduced scale


@pytest.mark.parametrize("name", NAMES)
def test_read_scaled_on_every_real_slide(name):
    """Real files at 2.5×: JPEG (scaled decoding where the tiles allow) and JPEG 2000 alike.

    The reference reads the same stored level at full size and averages it
    exactly over each output pixel's footprint.
    """
    from napari_lymphmet.wsi.scaled import area_resize

    with open_slide(real_slide(name)) as slide:
        w0, h0 = slide.dimensions
        size = (max(2, int(w0 / 5)), max(2, int(h0 / 5)))
        got = slide.read_scaled((0, 0), size, 2.5)
        level = slide.best_level_for_downsample(2.5)
        scale = 2.5 / slide.level_downsamples[level]
        full = slide.read_level_region(level, (0, 0), (int(np.ceil(size[0] * scale)), int(np.ceil(size[1] * scale))))
        reference = area_resize(full, size, (0.0, 0.0), scale).astype(float)
        assert got.shape == reference.shape
        assert np.abs(got - reference).mean() <= 2.0


def test_area_resize_is_the_exact_area_average():
    """At 2.5 = 5 / 2: each pixel repeated 2 × 2, then 5 × 5 block means; and at a half-pixel offset."""
    from napari_lymphmet.wsi.scaled import area_resize

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    exact = image.astype(float).repeat(2, 0).repeat(2, 1).reshape(40, 5, 48, 5, 3).mean(axis=(1, 3))
    assert np.abs(area_resize(image, (48, 40), (0.0, 0.0), 2.5) - exact).max() <= 0.5
    doubled = image.astype(float).repeat(2, 0).repeat(2, 1)
    # Offset 0.5, scale 2: output px j covers [0.5 + 2j, 2.5 + 2j), i.e. doubled px [1 + 4j, 5 + 4j).
    exact = doubled[1:1 + 4 * 48, 1:1 + 4 * 58].reshape(48, 4, 58, 4, 3).mean(axis=(1, 3))
    assert np.abs(area_resize(image, (58, 48), (0.5, 0.5), 2.0) - exact).max() <= 0.5
