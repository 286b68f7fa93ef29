"""Listing a folder of 200 slides for the Slides widget: at once, because slides are opened later.

    python benchmarks/list_slides.py [N]

Writes N small synthetic slides (hard links of one 3000 × 2200 pyramid under
different names) and predictions for half of them, then times
``list_slides`` (names, scores and detection counts: what the table shows
at once) against opening every slide for its mpp, size and thumbnail (what
the widget's background worker does row by row).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of

from napari_lymphmet.workflows import list_slides, slide_facts
from napari_lymphmet.wsi import write_pyramid_tiff


def main(n: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, predictions = root / "slides", root / "predictions"
        folder.mkdir()
        first = folder / "slide_000.tif"
        write_pyramid_tiff(first, lambda x, y, w, h: np.full((h, w, 3), 200, np.uint8), 3000, 2200, tile=256,
                           mpp=0.5, min_size=800)
        for i in range(1, n):
            os.link(first, folder / f"slide_{i:03d}.tif")
        for i in range(0, n, 2):
            out = predictions / f"slide_{i:03d}"
            out.mkdir(parents=True)
            (out / "heatmap.tif").write_bytes(b"")
            (out / "heatmap.json").write_text(json.dumps({"slide": str(folder / f"slide_{i:03d}.tif"),
                                                          "slide_score": i / n, "detections": i % 7}))
        listing = best_of(lambda: list_slides(folder, predictions), runs=3)
        entries = list_slides(folder, predictions)
        start = time.perf_counter()
        for entry in entries:
            slide_facts(entry.path, size=72)
        opening = time.perf_counter() - start
    print(f"{len(entries)} slides, {sum(e.results is not None for e in entries)} with predictions")
    print(f"list_slides: {listing:.3f} s ({listing / len(entries) * 1000:.2f} ms per slide)")
    print(f"opening each for mpp, size and thumbnail: {opening:.2f} s, {opening / listing:.0f}x the listing")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
