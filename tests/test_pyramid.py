"""The lazy pyramid: laziness, chunking, the direct slice path, threads, memory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import pytest

from napari_lymphmet import open_slide
from napari_lymphmet.wsi import LevelArray


def test_building_the_pyramid_reads_nothing(small_synthetic):
    with open_slide(small_synthetic) as slide:
        pyramid = slide.pyramid()
        assert all(isinstance(level, LevelArray) for level in pyramid)
        assert sum(slide.tile_reads.values()) == 0
        pyramid[0][300:400, 600:700].compute()
        assert slide.tile_reads == {0: 1}


@pytest.mark.parametrize(
    "index",
    [
        np.s_[10:300, 20:700],
        np.s_[5, 10:300],
        np.s_[10:300, 7],
        np.s_[100:200, 100:200, 1],
        np.s_[100:200, 100:200, ::-1],
        np.s_[-50:, -80:],
        np.s_[::7, ::5],
        np.s_[..., 0],
        np.s_[0:0, 5:10],
        np.s_[:, :],
    ],
    ids=repr,
)
def test_direct_slices_equal_the_dask_graph(small_synthetic, index):
    with open_slide(small_synthetic) as slide:
        level = slide.pyramid()[0]
        direct = level[index].compute()
        (via_graph,) = dask.compute(level[index], scheduler="threads")
        assert direct.shape == via_graph.shape == level[index].shape
        np.testing.assert_array_equal(direct, via_graph)
        assert direct.flags.writeable


def test_regions_behave_as_dask_arrays(small_synthetic):
    with open_slide(small_synthetic) as slide:
        level = slide.pyramid()[0]
        region = level[100:400, 200:450]
        expected = slide.read_level_region(0, (200, 100), (250, 300))
        np.testing.assert_array_equal(np.asarray(region), expected)
        assert float(region.mean().compute()) == pytest.approx(expected.mean())
        np.testing.assert_array_equal((region[..., 1].astype(np.int16) - 1).compute(), expected[..., 1] - 1)
        np.testing.assert_array_equal(da.stack([region, region]).compute()[1], expected)
        region[:5, :5] = 0  # an in-place change wins over the slide's pixels
        edited = region.compute()
        assert not edited[:5, :5].any()
        np.testing.assert_array_equal(edited[5:], expected[5:])


def test_parallel_reads_are_consistent(small_synthetic):
    with open_slide(small_synthetic, cache_bytes=2 * 2**20) as slide:
        level = slide.pyramid()[0]
        boxes = [(y, x) for y in range(0, 2000, 190) for x in range(0, 2800, 270)]
        serial = [level[y:y + 200, x:x + 200].compute() for y, x in boxes]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(lambda b: level[b[0]:b[0] + 200, b[1]:b[1] + 200].compute(), boxes))
        for a, b in zip(serial, parallel):
            np.testing.assert_array_equal(a, b)
        assert slide.cache.nbytes <= 2 * 2**20


def test_cache_bound_holds_while_panning(gigapixel_synthetic):
    limit = 16 * 2**20
    with open_slide(gigapixel_synthetic, cache_bytes=limit) as slide:
        level0 = slide.pyramid()[0]
        for i in range(40):
            y, x = (i * 997) % 38_000, (i * 1531) % 38_000
            view = np.asarray(level0[y:y + 1500, x:x + 2000])
            assert view.shape == (1500, 2000, 3)
            assert slide.cache.nbytes <= limit
        assert slide.tile_reads[0] > limit // (512 * 512 * 3)  # it did evict and re-read


def test_huge_selection_stays_lazy(gigapixel_synthetic):
    with open_slide(gigapixel_synthetic) as slide:
        whole = slide.pyramid()[0][:, :]
        assert whole.shape == (40_000, 40_000, 3)
        assert whole.numblocks[:2] == (79, 79)
        assert sum(slide.tile_reads.values()) == 0


def test_tiles_are_cached_on_their_second_read(small_synthetic):
    with open_slide(small_synthetic) as slide:
        level = slide.pyramid()[0]
        first = level[256:512, 512:768].compute()  # one whole tile
        assert slide.tile_reads[0] == 1 and len(slide.cache) == 0
        second = level[256:512, 512:768].compute()
        assert slide.tile_reads[0] == 2 and len(slide.cache) == 1
        third = level[250:300, 600:700].compute()
        assert slide.tile_reads[0] == 3  # another tile (250 < 256), first seen
        level[256:300, 600:700].compute()
        assert slide.tile_reads[0] == 3  # served from the cache
        np.testing.assert_array_equal(first, second)
        first[...] = 0  # results are the caller's own
        np.testing.assert_array_equal(level[256:512, 512:768].compute(), second)
        assert third.shape == (50, 100, 3)


def test_dask_array_fields_the_direct_region_fills_in_are_still_dasks():
    """wsi/pyramid.py builds small regions without Array.__new__, setting what it sets; if dask
    changes that, this fails before a slide read breaks."""
    import inspect

    import dask.array as da

    source = inspect.getsource(da.Array.__new__)
    assigned = {line.split("=")[0].strip() for line in source.splitlines() if line.strip().startswith("self.")
                and "=" in line and "==" not in line}
    assert assigned == {"self.dask", "self._name", "self._chunks", "self._meta"}, assigned
