"""Running inference on a dask.distributed cluster.

Tasks are batches of heatmap cells. Each worker opens the slide and loads
the model once, keeping them for later tasks, so only cell coordinates and
probabilities cross the network. The heatmap is assembled on the client
and equals an in-process run (up to float rounding of batch composition)."""


from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import InputError
from ..model import ModelCard
from .grid import _read_batch, _tissue_cells, batches_of, grid_for
from .run import PredictResult

__all__ = ['connect', 'predict_distributed']

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


@contextmanager
def connect(scheduler: str, *, n_workers: int = 2) -> Iterator[Any]:
    """A ``Client`` for ``tcp://host:port``, or for a new ``LocalCluster`` when ``local``, as a context.

    Leaving it closes the client and, for ``local``, the cluster's worker
    processes too (a client does not own a cluster object handed to it).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'napari-lymphmet[distributed]'") from None
    if scheduler == "local":
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as exc:
        raise InputError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None
    with client:
        yield client


def _worker_state(slide_path: str, model_path: str, runtime: str):
    """The slide and model a worker keeps between tasks."""
    from ..model import load_runner
    from ..wsi import open_slide

    with _LOCK:
        key = (slide_path, model_path, runtime)
        if key not in _CACHE:
            # As many ONNX Runtime threads as the worker has: several workers on one machine would
            # otherwise each take every core.
            _CACHE[key] = (open_slide(slide_path), *load_runner(model_path, runtime=runtime,
                                                                threads=_worker_threads()))
        return _CACHE[key]


def _worker_threads() -> int | None:
    """The dask worker's own thread count, or None outside a worker."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _predict_cells(slide_path: str, model_path: str, cells: np.ndarray, stride: int | None,
                   runtime: str = "auto") -> np.ndarray:
    from ..model import predict_patches

    slide, model, card = _worker_state(slide_path, model_path, runtime)
    grid = grid_for(slide, card, stride=stride)
    return predict_patches(model, card, _read_batch(slide, grid, cells))


def predict_distributed(client, slide, model_path: str, card: ModelCard, *, tissue_mask: np.ndarray,
                        tissue_downsample: float, stride: int | None = None, batch_size: int = 64,
                        min_tissue: float = 0.05, progress=None, runtime: str = "auto") -> PredictResult:
    """Predict ``slide`` with batches of cells as tasks on ``client``'s cluster; each worker loads the
    model in ``runtime`` (see :func:`~napari_lymphmet.model.load_runner`) once."""
    from distributed import as_completed

    start = time.monotonic()
    grid = grid_for(slide, card, stride=stride)
    cells = _tissue_cells(grid, np.asarray(tissue_mask, bool), tissue_downsample, min_tissue)
    heatmap = np.zeros((grid.rows, grid.cols), np.float32)
    batches = list(batches_of(cells, batch_size))
    futures = {client.submit(_predict_cells, slide.path, str(model_path), b, stride, runtime, pure=False): b
               for b in batches}
    done = 0
    for future in as_completed(futures):
        b = futures[future]
        heatmap[b[:, 0], b[:, 1]] = future.result()
        done += len(b)
        if progress is not None:
            progress(done, len(cells))
    return PredictResult(heatmap, grid, len(cells), 0, len(cells), time.monotonic() - start, True)
