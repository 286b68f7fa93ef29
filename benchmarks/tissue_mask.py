"""Tissue mask speed on a 2.5-gigapixel slide (issue 4).

Generates (once, cached in the temp folder) a 50 000 × 50 000 synthetic
slide, then measures in one process:

- opening it and computing the mask (reads only the 8 µm/px level);
- a preview update after a parameter change, as the widget does it: the
  working image's channels are cached, only the detection reruns;
- baseline: raw ``openslide.read_region`` of the same working level.

    python benchmarks/tissue_mask.py [--size 50000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _timing import best_of


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=50_000)
    args = parser.parse_args()

    import openslide

    from napari_lymphmet import open_slide
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide
    from napari_lymphmet.tissue import TissueParams, detect_tissue, tissue_channels, tissue_mask, working_image

    path = Path(tempfile.gettempdir()) / f"lymphmet-bench-{args.size}.tif"
    if not path.exists():
        print(f"writing {path} (once) ...")
        write_synthetic_slide(path, SynthSpec(width=args.size, height=args.size, seed=0))

    def open_and_mask():
        with open_slide(path) as slide:
            return tissue_mask(slide)

    result = open_and_mask()
    t_mask = best_of(open_and_mask)

    with open_slide(path) as slide:
        rgb, ds = working_image(slide)
        level = slide.best_level_for_downsample(ds)
        mpp = slide.mpp[0] * ds
    channels = tissue_channels(rgb)
    settings = [TissueParams(saturation=s) for s in np.linspace(0.05, 0.3, 10)]
    settings += [TissueParams(median=m, close=c) for m, c in ((3, 1), (7, 3), (9, 4))]
    updates = [best_of(lambda p=p: detect_tissue(channels, p, mpp=mpp, downsample=ds), 3) for p in settings]

    osr = openslide.OpenSlide(path)
    t_raw = best_of(lambda: osr.read_region((0, 0), level, osr.level_dimensions[level]))

    print(f"slide {args.size} × {args.size}; working level {level} ({ds:g}×), mask {result.mask.shape}, "
          f"tissue {result.tissue_fraction:.1%}")
    print(f"open + tissue mask:                 {t_mask * 1000:7.1f} ms  (target < 1000 ms)")
    print(f"raw openslide.read_region of level: {t_raw * 1000:7.1f} ms  → mask/read = {t_mask / t_raw:.2f}×")
    print(f"preview update after a change:      {np.median(updates) * 1000:7.1f} ms median, "
          f"{max(updates) * 1000:.1f} ms worst of {len(updates)} settings (target < 100 ms)")


if __name__ == "__main__":
    main()
