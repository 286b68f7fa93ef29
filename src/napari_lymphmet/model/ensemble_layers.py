"""The layers an ensemble is made of (:mod:`.ensemble`), apart so that loading a model registers them
without importing the code that builds and saves one.

Both are registered Keras classes, so an ensemble loads in safe mode.
"""

from __future__ import annotations

from ._tensorflow import import_keras
from .preprocess import HED_FROM_RGB

__all__ = ["MeanLogit", "OpticalDensity"]

keras = import_keras()


@keras.saving.register_keras_serializable(package="lymphmet")
class OpticalDensity(keras.layers.Layer):
    """``(N, h, w, 3)`` RGB in [0, 255] to haematoxylin/eosin/DAB optical densities, as ``prepare_batch``
    gives a model whose card says ``input_space: hed``."""

    def call(self, rgb):
        ops = keras.ops
        density = -ops.log((ops.cast(rgb, "float32") + 1.0) / 256.0)
        return ops.matmul(density, ops.convert_to_tensor(HED_FROM_RGB))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="lymphmet")
class MeanLogit(keras.layers.Layer):
    """The sigmoid of the mean logit of several ``(N, 1)`` probabilities."""

    def call(self, probabilities):
        ops = keras.ops
        eps = 1e-7
        logits = [ops.log(ops.clip(p, eps, 1 - eps)) - ops.log(ops.clip(1 - p, eps, 1 - eps)) for p in probabilities]
        return ops.sigmoid(sum(logits) / len(logits))

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]
