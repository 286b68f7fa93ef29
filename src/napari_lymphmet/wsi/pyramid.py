"""Lazy dask arrays over a tile-reading function, one chunk per native tile.

A dask ``compute`` costs about 3 ms of scheduling whatever the graph, more
than decoding a 512 px JPEG tile. Viewers and patch readers mostly take plain
rectangular slices, so :class:`LevelArray` remembers the rectangle a basic
slice selects and computes it by reading the tiles directly. Everything else
(``dask.compute``, arithmetic, ``map_blocks``, distributed) runs through the
ordinary graph, which reads the same tiles.

One deliberate use of dask internals: ``_Region._of_box`` fills in the three
fields ``dask.array.Array.__new__`` sets (``_name``, ``_chunks``, ``_meta``)
instead of calling it, and builds the graph only if dask asks for it. It
never reads them. Measured on the 2-core machine: 1.6 µs a region against
20 µs through ``Array.__new__`` with a one-task graph; two reader threads
each wait for that time under the GIL, and the 1.8× two-thread scaling of
``benchmarks/read_tiles.py`` depends on it. ``tests/test_pyramid.py`` checks
that ``Array.__new__`` still sets exactly those fields, so a dask upgrade
that changes them fails a test instead of a slide read."""


from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

__all__ = ['LevelArray', 'RegionReader', 'TileReader', 'tile_array']

TileReader = Callable[[int, int], np.ndarray]
RegionReader = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1)

# Schedulers that mean "compute it here": the direct read is equivalent.
_LOCAL_SCHEDULERS = {None, "threads", "threading", "sync", "synchronous", "single-threaded"}


def _axis_chunks(length: int, tile: int) -> tuple[int, ...]:
    full, rest = divmod(length, tile)
    return (tile,) * full + ((rest,) if rest else ())


def _writable(read_tile: TileReader, row: int, col: int) -> np.ndarray:
    # Tiles come out of a shared cache read-only; dask hands chunks to users,
    # who may write to them.
    return read_tile(row, col).copy()


def _plain_box(index, shape: tuple[int, ...]):
    """Split a basic index into a ``(y0, y1, x0, x1)`` box and the rest.

    Returns ``None`` for anything but ints and step-1 slices on the two
    spatial axes; the rest is the index to apply to the box's pixels.
    """
    if not isinstance(index, tuple):
        index = (index,)
    if any(i is Ellipsis or i is None for i in index) or len(index) > len(shape):
        return None
    box, rest = [], []
    for axis in (0, 1):
        i = index[axis] if axis < len(index) else slice(None)
        n = shape[axis]
        if isinstance(i, (int, np.integer)) and not isinstance(i, bool):
            j = int(i) + n if i < 0 else int(i)
            if not 0 <= j < n:
                return None
            box += [j, j + 1]
            rest.append(0)
        elif isinstance(i, slice) and i.step in (None, 1):
            start, stop, _ = i.indices(n)
            box += [start, max(start, stop)]
            rest.append(slice(None))
        else:
            return None
    for i in index[2:]:
        if not isinstance(i, (slice, int, np.integer)) or isinstance(i, bool):
            return None
        rest.append(i)
    return tuple(box), tuple(rest)


_SMALL_REGION_PX = 4096 * 4096
_WHOLE_BOX = (slice(None), slice(None))


def _shape_of(index: tuple, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of ``x[index]`` for ``x`` of ``shape``, without allocating ``x``."""
    return np.broadcast_to(np.zeros((), np.uint8), shape)[index].shape


def _read_indexed(read: RegionReader, y0: int, y1: int, x0: int, x1: int, rest: tuple):
    return read(y0, y1, x0, x1)[rest]


_META = {n: np.empty((0,) * n, np.uint8) for n in range(4)}


class _Region(da.Array):
    """A rectangle of a :class:`LevelArray`; ``compute()`` reads it directly.

    Its one-task graph is only built when dask asks for it: a patch loop or
    a viewer computes regions directly, and building a dask array the usual
    way costs as much Python time as the rest of the read, time that
    threads reading in parallel each have to wait for.
    """

    @classmethod
    def _of_box(cls, name: str, read: RegionReader, box: tuple[int, int, int, int], rest: tuple,
                shape: tuple[int, ...]) -> _Region:
        self = object.__new__(cls)
        self._lymphmet_graph = None
        self._name = name
        self._chunks = tuple((n,) for n in shape)
        self._meta = _META[len(shape)]
        self._lymphmet_source = (read, box, rest)
        return self

    @property
    def dask(self):
        graph = self._lymphmet_graph
        if graph is None:
            read, box, rest = self._lymphmet_source
            key = (self.name,) + (0,) * self.ndim
            graph = HighLevelGraph.from_collections(self.name, {key: (_read_indexed, read, *box, rest)},
                                                    dependencies=())
            self._lymphmet_graph = graph
        return graph

    @dask.setter
    def dask(self, graph) -> None:
        # Only in-place changes (``x[...] = v``) replace the graph; after
        # one, reading the slide again would not give these pixels.
        self._lymphmet_graph = graph
        self._lymphmet_source = None

    def compute(self, **kwargs):
        scheduler = kwargs.pop("scheduler", None)
        if kwargs or scheduler not in _LOCAL_SCHEDULERS or self._lymphmet_source is None:
            return super().compute(scheduler=scheduler, **kwargs)
        read, (y0, y1, x0, x1), rest = self._lymphmet_source
        return _read_indexed(read, y0, y1, x0, x1, rest)


class LevelArray(da.Array):
    """One pyramid level: ``(H, W, 3) uint8``, chunked by native tile."""

    def __getitem__(self, index):
        plain = _plain_box(index, self.shape)
        if plain is None:
            return super().__getitem__(index)
        box, rest = plain
        y0, y1, x0, x1 = box
        read = self._lymphmet_read_region
        if (y1 - y0) * (x1 - x0) > _SMALL_REGION_PX:
            # Big selections keep dask's per-tile chunks, so that reductions
            # over them stay parallel and bounded in memory.
            out = super().__getitem__(index)
            graph = out.dask
            out.__class__ = _Region
            out._lymphmet_graph = graph
            out._lymphmet_source = (read, box, rest)
            return out
        # A patch or a screenful: one task, built without dask's slicing
        # machinery, which costs more than the read itself.
        box_shape = (y1 - y0, x1 - x0, 3)
        shape = box_shape if rest == _WHOLE_BOX else _shape_of(rest, box_shape)
        return _Region._of_box(f"{self.name}-region-{y0}-{y1}-{x0}-{x1}-{rest!r}", read, box, rest, shape)


def tile_array(
    read_tile: TileReader,
    shape: tuple[int, int],
    tile_shape: tuple[int, int],
    *,
    name: str,
    read_region: RegionReader,
) -> LevelArray:
    """Build a ``(H, W, 3) uint8`` dask array whose chunk ``(r, c)`` is ``read_tile(r, c)``.

    Nothing is read until a chunk is computed.

    Parameters
    ----------
    read_tile : callable
        ``read_tile(row, col)`` returns the ``(h, w, 3) uint8`` tile, cropped
        at the array's edge.
    shape : (int, int)
        ``(H, W)`` in pixels.
    tile_shape : (int, int)
        ``(th, tw)``; the chunk shape.
    name : str
        Unique dask key prefix; equal names must mean equal pixels.
    read_region : callable
        ``read_region(y0, y1, x0, x1)`` returns a new ``(y1-y0, x1-x0, 3)``
        array of the same pixels; computes plain slices without the scheduler.
    """
    rows = _axis_chunks(shape[0], tile_shape[0])
    cols = _axis_chunks(shape[1], tile_shape[1])
    graph = {
        (name, r, c, 0): (_writable, read_tile, r, c)
        for r in range(len(rows))
        for c in range(len(cols))
    }
    arr = LevelArray(graph, name, (rows, cols, (3,)), dtype=np.uint8,
                     meta=np.empty((0, 0, 0), np.uint8))
    arr._lymphmet_read_region = read_region
    return arr
