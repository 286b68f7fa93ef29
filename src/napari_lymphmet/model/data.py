"""The training and scoring data pipeline: ``tf.data`` over a patch table, as the model card says."""


from __future__ import annotations

import numpy as np

from .augment import _augment
from .card import ModelCard
from .preprocess import HED_FROM_RGB, _reinhard_apply
from .dataset import PatchTable

__all__ = ['make_dataset']


def make_dataset(table: PatchTable, card: ModelCard, *, batch_size: int, training: bool, seed: int = 0):
    """A ``tf.data`` pipeline: parallel decode, resize, stain norm, augmentation, prefetch."""
    from ._tensorflow import import_tensorflow

    tf = import_tensorflow()

    size, stain = card.input_size, card.stain_norm
    hed_sigma, colour_sigma, blur_sigma = card.hed_sigma, card.colour_sigma, card.blur_sigma
    ds = tf.data.Dataset.from_tensor_slices((table.paths.astype(str), table.labels.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(table), seed=seed, reshuffle_each_iteration=True)

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        image = tf.image.resize(image, (size, size), method="area", antialias=True)
        if stain:
            image = tf.numpy_function(lambda x: _reinhard_apply(x[None], stain)[0], [image], tf.float32)
            image.set_shape((size, size, 3))
        return image, label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        counter = tf.data.Dataset.counter(seed * 1_000_003)
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda pair, i: (_augment(pair[0], tf.stack([i, tf.cast(seed, tf.int64)]), hed_sigma, colour_sigma,
                                      blur_sigma), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    if card.input_space == "hed":
        ds = ds.map(lambda image, label: (tf.reshape(tf.reshape(-tf.math.log((image + 1) / 256), [-1, 3])
                                                     @ HED_FROM_RGB, tf.shape(image)), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _image_size(path: str) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return int(image.size[0])
