"""Patch export throughput (issue 6) against the seed project's method.

The seed cut patches with a single-threaded ``DeepZoomGenerator.get_tile``
loop and saved each with PIL's PNG encoder. Both run here, in one process,
over the same grid of 256 px level-0 tissue patches of a large synthetic
slide (generated once into the temp folder), each into an empty folder.

    python benchmarks/patches.py [--size 30000] [--patches 1500]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=30_000)
    parser.add_argument("--patches", type=int, default=1500)
    args = parser.parse_args()

    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    from napari_lymphmet import open_slide
    from napari_lymphmet.patches import PatchSpec, export_patches, plan_for_slide
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    tmp = Path(tempfile.gettempdir())
    path = tmp / f"lymphmet-bench-{args.size}.tif"
    if not path.exists():
        print(f"writing {path} (once) ...")
        write_synthetic_slide(path, SynthSpec(width=args.size, height=args.size, seed=0))

    with open_slide(path) as slide:
        plan = plan_for_slide(slide, PatchSpec(size=256, mpp=0.25, min_tissue=0.5),
                              annotations=path.with_suffix(".xml"))
    keep = np.arange(min(args.patches, len(plan)))
    for name in ("x", "y", "labels", "tissue_fraction", "tumor_fraction"):
        setattr(plan, name, getattr(plan, name)[keep])
    n = len(plan)

    seed_dir = tmp / "lymphmet-bench-seed"
    shutil.rmtree(seed_dir, ignore_errors=True)
    seed_dir.mkdir()
    osr = openslide.OpenSlide(path)
    dz = DeepZoomGenerator(osr, tile_size=256, overlap=0, limit_bounds=False)
    level = dz.level_count - 1
    start = time.perf_counter()
    for x, y in zip(plan.x, plan.y):
        dz.get_tile(level, (int(x) // 256, int(y) // 256)).save(seed_dir / f"{x}_{y}.png")
    t_seed = time.perf_counter() - start

    results = {}
    for fmt in ("png", "jpeg"):
        out = tmp / f"lymphmet-bench-patches-{fmt}"
        shutil.rmtree(out, ignore_errors=True)
        with open_slide(path) as slide:
            start = time.perf_counter()
            export_patches([(slide, plan)], out, fmt=fmt)
            results[fmt] = time.perf_counter() - start
    seed_mb = sum(p.stat().st_size for p in seed_dir.iterdir()) / 2**20
    ours_mb = sum(p.stat().st_size for p in (tmp / "lymphmet-bench-patches-png").rglob("*.png")) / 2**20

    print(f"{n} tissue patches of 256 px at level 0 of a {args.size}² synthetic slide")
    print(f"seed: DeepZoom get_tile + PIL PNG, 1 thread: {n / t_seed:7.1f} patches/s  ({seed_mb:.0f} MiB)")
    print(f"export_patches, PNG (zlib 1), threads:     {n / results['png']:7.1f} patches/s  ({ours_mb:.0f} MiB)"
          f"  → {t_seed / results['png']:.2f}× the seed (target ≥ 4×)")
    print(f"export_patches, JPEG q95, threads:         {n / results['jpeg']:7.1f} patches/s"
          f"  → {t_seed / results['jpeg']:.2f}× the seed")


if __name__ == "__main__":
    main()
