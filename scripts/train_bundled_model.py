"""The from-scratch default, timed: seeded, with `lymphmet train` and no tuning flags (issue 29's 30-minute row).

    python scripts/train_bundled_model.py [--data ../shared/data/patches/pcam] [--out DIR] [--install]

Trains a ``small-cnn`` on PatchCamelyon's ``train/`` split (96 px, 0.972 µm/px)
with ``valid/`` (other slides) for the best epoch and the threshold, using the
recipe's defaults only (no tuning flags: 25 minutes, the epochs fitted to them
on the first one's pace), then scores it on ``valid/`` with and
without test-time augmentation and prints one JSON object with the figures and
the time. It made the bundled ``lymph-node-10x`` until 2026-12-07; today's comes
from ``scripts/pcam_recipes.py hed hed-blur --install lymph-node-10x-hed`` (docs/models.md is its
card). ``--install`` copies this script's model into the package in its place.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "lymph-node-10x"
RECIPE = ["--backbone", "small-cnn", "--weights", "none", "--patch-mpp", "0.972", "--seed", "0"]


def lymphmet(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "-q", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"lymphmet {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "patches" / "pcam")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--install", action="store_true", help="copy the model into the package")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / f"{NAME}.keras"
    start = time.monotonic()
    trained = lymphmet("train", str(args.data / "train"), "--val", str(args.data / "valid"), "-o", str(model),
                       *RECIPE)
    minutes = (time.monotonic() - start) / 60
    report = {"model": str(model), "train_minutes": round(minutes, 1), "epochs_run": trained["epochs_run"],
              "threshold": trained["threshold"], "validation": trained["validation"],
              "score_valid": lymphmet("score", str(model), str(args.data / "valid")),
              "score_valid_no_tta": lymphmet("score", str(model), str(args.data / "valid"), "--no-tta"),
              "file_bytes": model.stat().st_size}
    if args.install:
        target = ROOT / "src" / "napari_lymphmet" / "models" / model.name
        shutil.copyfile(model, target)
        report["installed"] = str(target)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
