"""Time and peak memory of writing a large synthetic slide (issue 3).

Runs ``lymphmet synth`` under ``/usr/bin/time -v`` in a child process, so the
peak RSS is that of the whole job, and compares its wall time with a
baseline measured here: JPEG-encoding the same number of 512 px tiles of
one rendered tile, which is the least any writer of this pyramid must do.

    python benchmarks/synth_memory.py [--size 50000] [--out /tmp/synth-bench.tif]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or Path(tempfile.gettempdir()) / "synth-bench.tif")

    import imagecodecs

    from napari_lymphmet.synthetic import SynthSpec, make_layout
    from napari_lymphmet.wsi import pyramid_shapes

    layout = make_layout(SynthSpec(4096, 4096, seed=0))
    tile = layout.render(1536, 1536, 512, 512)
    n_tiles = sum(-(-w // 512) * -(-h // 512) for w, h in pyramid_shapes(args.size, args.size))
    sample = min(n_tiles, 400)
    start = time.perf_counter()
    for _ in range(sample):
        imagecodecs.jpeg8_encode(tile, level=90, subsampling="420")
    encode_only = (time.perf_counter() - start) / sample * n_tiles

    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "napari_lymphmet.cli", "-q", "synth",
           "-o", str(out), "--size", str(args.size), "--seed", "0"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", result.stderr).group(1)
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.split(":"))))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"slide {args.size}×{args.size}: {summary['level_count']} levels, "
          f"{out.stat().st_size / 2**20:.0f} MiB")
    print(f"wall {seconds:.1f} s, peak RSS {rss_kb / 2**20:.2f} GiB")
    print(f"single-thread JPEG encode of the same tiles (baseline): {encode_only:.1f} s "
          f"→ synth takes {seconds / encode_only:.2f}× the baseline")
    out.unlink(missing_ok=True)
    out.with_suffix(".xml").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
