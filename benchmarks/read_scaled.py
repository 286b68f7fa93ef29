"""``Slide.read_scaled`` at downsample 2 on a single-level 0.243 µm/px JPEG slide, against the fastest full-size path.

    python benchmarks/read_scaled.py

The full-size path reads the doubled region from ``slide.pyramid()[0]``
(the lazy dask level, decoding every tile at full size) and averages 2 × 2
blocks. ``read_scaled`` decodes the JPEG tiles at 1/2 in the DCT domain.
Both start from a cold cache each round (a fresh slide), as a whole-slide
pass does; the ratio and the mean absolute error are printed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from napari_lymphmet.synthetic import SynthSpec, make_layout
from napari_lymphmet.wsi import open_slide, write_pyramid_tiff

SIDE = 6144  # level-0 px of the slide; regions of 1024 × 1024 output px are read across it


def _slide() -> Path:
    path = Path(tempfile.gettempdir()) / f"lymphmet-bench-single-{SIDE}.tif"
    if not path.exists():
        layout = make_layout(SynthSpec(width=SIDE, height=SIDE, seed=2, lesions=2, mpp=0.243))
        write_pyramid_tiff(path, layout.render, SIDE, SIDE, tile=256, mpp=0.243, min_size=10 * SIDE)
    return path


def _full(slide, x: int, y: int, n: int) -> np.ndarray:
    from PIL import Image

    region = np.asarray(slide.pyramid()[0][y:y + 2 * n, x:x + 2 * n])
    return np.asarray(Image.fromarray(region).reduce(2))  # the fastest 2 × 2 area average we know


def main() -> None:
    path, n = _slide(), 1024
    corners = [(x, y) for y in range(0, SIDE - 2 * n + 1, 2 * n) for x in range(0, SIDE - 2 * n + 1, 2 * n)]
    times = {"full": [], "scaled": []}
    errors = []
    for _ in range(3):
        for name in times:
            with open_slide(path) as slide:
                assert slide.level_count == 1
                start = time.perf_counter()
                out = [(_full(slide, x, y, n) if name == "full" else slide.read_scaled((x, y), (n, n), 2.0))
                       for x, y in corners]
                times[name].append(time.perf_counter() - start)
                if name == "scaled":
                    errors = out
                else:
                    reference = out
    mae = np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in zip(errors, reference)])
    full, scaled = min(times["full"]), min(times["scaled"])
    pixels = len(corners) * n * n / 1e6
    print(f"{len(corners)} regions of {n} × {n} px at downsample 2 from a {SIDE}² single-level JPEG slide")
    print(f"pyramid()[0] + 2×2 reduce: {full:.2f} s ({pixels / full:.1f} Mpx/s out)")
    print(f"read_scaled:             {scaled:.2f} s ({pixels / scaled:.1f} Mpx/s out)  → {full / scaled:.2f}× faster")
    print(f"mean absolute error: {mae:.2f} grey levels")


if __name__ == "__main__":
    main()
