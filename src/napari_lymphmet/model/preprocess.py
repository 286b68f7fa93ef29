"""What turns patches into a model's input, in training and prediction alike: resizing, Reinhard stain
normalisation, optical densities."""


from __future__ import annotations

import numpy as np

from .card import ModelCard

__all__ = ["HED_FROM_RGB", "RGB_FROM_HED", "prepare_batch"]

# Ruifrok & Johnston's stain vectors (as scikit-image's rgb2hed uses).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)
# -log((v + 1) / 256) for each 8-bit value v: the optical density of a channel.
_OPTICAL_DENSITY = (-np.log((np.arange(256, dtype=np.float64) + 1) / 256)).astype(np.float32)


# -- data -------------------------------------------------------------------------
def _reinhard_fit(paths: np.ndarray, size: int, limit: int = 200, seed: int = 0) -> dict:
    """LAB mean and std over (a sample of) the training patches."""
    from skimage.color import rgb2lab
    from skimage.io import imread

    rng = np.random.default_rng(seed)
    pick = paths if len(paths) <= limit else rng.choice(paths, limit, replace=False)
    labs = [rgb2lab(imread(p)[..., :3]).reshape(-1, 3)[::7] for p in pick]
    lab = np.concatenate(labs)
    return {"method": "reinhard", "mean": lab.mean(0).tolist(), "std": lab.std(0).tolist()}


def _reinhard_apply(batch: np.ndarray, params: dict) -> np.ndarray:
    from skimage.color import lab2rgb, rgb2lab

    mean, std = np.asarray(params["mean"]), np.asarray(params["std"])
    out = np.empty(batch.shape, np.float32)
    for i, image in enumerate(batch):
        lab = rgb2lab(np.clip(image, 0, 255).astype(np.uint8))
        m, s = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0) + 1e-6
        out[i] = np.clip(lab2rgb((lab - m) / s * std + mean) * 255, 0, 255)
    return out


def _resize_area(batch: np.ndarray, size: int) -> np.ndarray:
    """``(N, h, w, 3)`` float32 resized to ``(N, size, size, 3)`` by area averaging.

    A whole-number shrink is a block mean in numpy (TensorFlow's area
    resize gives the same numbers), so scoring with ONNX Runtime never
    loads TensorFlow; any other factor goes through ``tf.image.resize``.
    """
    n, h, w, c = batch.shape
    if h == w and h > size and h % size == 0:
        f = h // size
        return batch.reshape(n, size, f, size, f, c).mean(axis=(2, 4), dtype=np.float32)
    from ._tensorflow import import_tensorflow

    tf = import_tensorflow()
    return tf.image.resize(batch, (size, size), method="area", antialias=True).numpy()


def prepare_batch(batch: np.ndarray, card: ModelCard) -> np.ndarray:
    """Turn ``(N, h, w, 3) uint8`` patches into the model's input, as in training.

    Resizes to the model's input size (area averaging) and applies the
    stored stain normalisation.
    """
    size = card.input_size
    batch = np.asarray(batch)[..., :3]
    stain = card.stain_norm
    reinhard = bool(stain and stain.get("method") == "reinhard")
    if batch.dtype == np.uint8 and batch.shape[1:3] == (size, size) and not reinhard and card.input_space == "hed":
        # Whole-slide inference's case: 256 optical densities looked up, not 3 logarithms a pixel
        # (2.5 times faster, and this runs for every patch of a slide).
        return _OPTICAL_DENSITY[batch] @ HED_FROM_RGB
    batch = batch.astype(np.float32)
    if batch.shape[1:3] != (size, size):
        batch = _resize_area(batch, size)
    if reinhard:
        batch = _reinhard_apply(batch, stain)
    if card.input_space == "hed":
        batch = (-np.log((batch + 1) / 256) @ HED_FROM_RGB).astype(np.float32)
    return batch
