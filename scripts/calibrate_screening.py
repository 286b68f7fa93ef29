"""Measure a model's screening threshold on labelled patches and write it into its card.

    python scripts/calibrate_screening.py MODEL FOLDER

``lymphmet train`` records the threshold itself (from its validation
split); this script gives one to a model trained before it did, such as the
bundled ``lymph-node-10x``, scored on its own validation set
(``FOLDER``: ``tumor/`` and ``normal/`` patches from slides it never
trained on, e.g. PCam ``valid/``). The model file is rewritten with the new
card (the weights unchanged); a bundled model's ONNX export is made again.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("folder")
    args = parser.parse_args()

    from napari_lymphmet.model import (BUNDLED_DIR, load_model, load_runner, read_patch_table, resolve_model,
                                       save_model)
    from napari_lymphmet.model.metrics import screening_threshold
    from napari_lymphmet.model.predict import predict_patches
    from napari_lymphmet.model.runtime import write_onnx_beside
    from skimage.io import imread

    path = resolve_model(args.model)
    table = read_patch_table([args.folder])
    runner, card = load_runner(path)
    batches = (np.stack([imread(p)[..., :3] for p in table.paths[i:i + 256]]) for i in range(0, len(table), 256))
    scores = np.concatenate([predict_patches(runner, card, batch) for batch in batches])
    found = screening_threshold(table.labels, scores)
    model, card = load_model(path)
    save_model(model, path, replace(card, validation={**(card.validation or {}), **found}))
    if path.parent == BUNDLED_DIR:
        write_onnx_beside(path)
    print(json.dumps({"model": str(path), "patches": len(table), **found}))


if __name__ == "__main__":
    main()
