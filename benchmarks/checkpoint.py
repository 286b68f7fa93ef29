"""What a predict checkpoint save costs: the zarr store (bands of rows) against rewriting a whole .npz.

    python benchmarks/checkpoint.py [ROWS COLS]

Default 1040 × 2080 cells: a 200k × 100k px CAMELYON16 slide at a 96 px /
0.972 µm/px model with stride 96 is 520 × 1040 cells; stride 48 doubles
both. Each save after the first writes the rows finished in the last 20 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_lymphmet.inference.run import _Checkpoint  # the private store is what is measured


def main(rows: int = 1040, cols: int = 2080, band: int = 32, saves: int = 20) -> None:
    heatmap = np.random.default_rng(0).random((rows, cols), dtype=np.float32)
    done = np.ones((rows, cols), bool)
    with tempfile.TemporaryDirectory() as tmp:
        store = _Checkpoint(Path(tmp) / "c.zarr", {"model": "m"})
        store.save(heatmap, done, slice(0, rows))
        t = time.perf_counter()
        for i in range(saves):
            r0 = (i * band) % rows
            store.save(heatmap, done, slice(r0, r0 + band))
        zarr_s = (time.perf_counter() - t) / saves
        t = time.perf_counter()
        for _ in range(saves):
            with open(Path(tmp) / "c.npz", "wb") as f:
                np.savez(f, heatmap=heatmap, done=done)
        npz_s = (time.perf_counter() - t) / saves
    print(f"{rows} x {cols} cells, a band of {band} rows per save")
    print(f"zarr band save {zarr_s * 1000:.1f} ms, whole .npz {npz_s * 1000:.1f} ms: ratio {npz_s / zarr_s:.1f}x")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3]))
