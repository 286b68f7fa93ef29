"""Measure a model's screening threshold (and its detection threshold) on labelled patches; write them into its card.

    python scripts/calibrate_thresholds.py MODEL FOLDER [--detection]

``lymphmet train`` records the screening threshold itself (from its
validation split); this script gives one to a model trained before it did,
such as a bundled model, scored on its own validation set (``FOLDER``:
``tumor/`` and ``normal/`` patches from slides it never trained on, e.g.
PCam ``valid/``). With ``--detection`` the card's threshold, the one
``predict`` detects lesions at, becomes the lowest at which normal tissue
like the folder's gives at most one false alarm per 10 mm² of the smoothed
heatmap (``napari_lymphmet.inference.lesion_calibration``) instead of Youden's
cut on single patches; Youden's stays in the card's validation figures.
The model file is rewritten with the new card (the weights unchanged); a
bundled model's ONNX export is made again.
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
    parser.add_argument("--detection", action="store_true",
                        help="also set the detection threshold from a false-alarm budget on smoothed normal tissue")
    args = parser.parse_args()

    from napari_lymphmet.model import (BUNDLED_DIR, load_model, load_runner, read_patch_table, resolve_model,
                                       save_model)
    from napari_lymphmet.inference.lesion_calibration import detection_threshold
    from napari_lymphmet.model.metrics import (best_threshold, binary_metrics, normal_score_quantiles,
                                               screening_threshold)
    from napari_lymphmet.model.predict import predict_patches
    from napari_lymphmet.model.runtime import write_onnx_beside
    from skimage.io import imread

    path = resolve_model(args.model)
    table = read_patch_table([args.folder])
    runner, card = load_runner(path)
    batches = (np.stack([imread(p)[..., :3] for p in table.paths[i:i + 256]]) for i in range(0, len(table), 256))
    scores = np.concatenate([predict_patches(runner, card, batch) for batch in batches])
    found = screening_threshold(table.labels, scores) | normal_score_quantiles(table.labels, scores)
    threshold = card.threshold
    if args.detection:
        youden = best_threshold(table.labels, scores)
        found |= detection_threshold(table.labels, scores, cell_mm=card.read_size * card.patch_mpp / 1000)
        found |= {"youden_threshold": youden, "youden": binary_metrics(table.labels, scores, youden)}
        threshold = found["detection_threshold"]
        found |= binary_metrics(table.labels, scores, threshold)  # the card's figures, at the threshold it keeps
    model, card = load_model(path)
    save_model(model, path, replace(card, threshold=threshold, validation={**(card.validation or {}), **found}))
    if path.parent == BUNDLED_DIR:
        write_onnx_beside(path)
    print(json.dumps({"model": str(path), "patches": len(table), "threshold": threshold, **found}))


if __name__ == "__main__":
    main()
