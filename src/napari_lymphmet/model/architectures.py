"""The networks: a pretrained-style backbone (EfficientNetB0, MobileNetV3Small) or a small CNN, one sigmoid."""


from __future__ import annotations

import contextlib
import sys

from ..errors import InputError

__all__ = ['BACKBONES', 'DEFAULT_INPUT', 'ENSEMBLE_BACKBONE', 'FROM_SCRATCH', 'build_model']

BACKBONES = ("efficientnetb0", "mobilenetv3small", "small-cnn", "p4m-cnn")
DEFAULT_INPUT = {"efficientnetb0": 224, "mobilenetv3small": 224, "small-cnn": 128, "p4m-cnn": 96}
# Networks built here from scratch, read as HED optical densities standardised per patch.
FROM_SCRATCH = ("small-cnn", "p4m-cnn")
# What a ``lymphmet ensemble`` model's card names as its backbone: made by joining trained models, not built
# here; training can only fine-tune one (``--weights``).
ENSEMBLE_BACKBONE = "ensemble"


# -- building -----------------------------------------------------------------
def _backbone(name: str, size: int, weights: str):
    from ._tensorflow import import_keras

    keras = import_keras()

    w = None if weights == "none" else weights
    try:
        # Keras prints download progress on stdout, which belongs to the CLI's JSON.
        with contextlib.redirect_stdout(sys.stderr):
            return _application(keras, name, size, w)
    except Exception as exc:
        if weights == "imagenet":
            raise InputError(f"cannot get ImageNet weights for {name}: {' '.join(str(exc).split())[:200]}. "
                             f"Offline? Use --weights none, or --weights PATH to a downloaded weights file") from None
        raise InputError(f"{weights}: cannot load as {name} weights ({' '.join(str(exc).split())[:200]})") from None


def _application(keras, name: str, size: int, w: str | None):
    if name == "efficientnetb0":
        return keras.applications.EfficientNetB0(include_top=False, weights=w, input_shape=(size, size, 3),
                                                 pooling="avg", name="backbone")
    return keras.applications.MobileNetV3Small(include_top=False, weights=w, input_shape=(size, size, 3),
                                               pooling="avg", include_preprocessing=True, name="backbone")


def build_model(backbone: str = "efficientnetb0", *, input_size: int | None = None, weights: str = "imagenet",
                dropout: float = 0.3):
    """A binary patch classifier: backbone, global pooling, dropout, one sigmoid.

    Inputs are ``(input_size, input_size, 3)``: RGB in [0, 255] for the
    ImageNet backbones; for ``small-cnn``, HED optical densities (see
    :func:`prepare_batch`), which it standardises per patch and channel
    first (a layer, so it travels with the model). A stain's strength then
    cancels out, and the network has to learn nuclear texture, not colour.
    """
    from ._tensorflow import import_keras

    keras = import_keras()
    from keras import layers

    size = input_size or DEFAULT_INPUT[backbone]
    if backbone == "p4m-cnn":  # the small CNN with rotation- and mirror-tied kernels
        if weights == "imagenet":
            raise InputError("p4m-cnn has no ImageNet weights; use --weights none or a weights file")
        from .equivariant import p4m_cnn

        model = p4m_cnn(size, input_space="hed", dropout=dropout)
        if weights != "none":
            model.load_weights(weights)
        return model
    inputs = keras.Input((size, size, 3), name="rgb")
    if backbone == "small-cnn":
        if weights == "imagenet":
            raise InputError("small-cnn has no ImageNet weights; use --weights none or a weights file")
        x = layers.LayerNormalization(axis=[1, 2], center=False, scale=False, name="patch_standardise")(inputs)
        for i, filters in enumerate((32, 48, 64, 96, 128)):
            # The first convolution strides instead of pooling: full-resolution feature maps cost most of a
            # training step on a CPU, and 1.5-2x more steps fit in the time limit (docs/performance.md).
            x = layers.Conv2D(filters, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False,
                              name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"bn{i}")(x)
            x = layers.ReLU()(x)
            if i:
                x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        x = _backbone(backbone, size, weights)(inputs)  # named "backbone": training unfreezes it by name
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="tumor")(x)
    model = keras.Model(inputs, outputs, name=f"lymphmet_{backbone.replace('-', '_')}")
    if backbone == "small-cnn" and weights not in ("none", "imagenet"):
        model.load_weights(weights)
    return model


def _set_trainable(backbone, unfreeze: bool, fraction: float) -> None:
    """Phase 2 of fine-tuning: unfreeze the top ``fraction`` of layers, BatchNorm kept frozen."""
    backbone.trainable = unfreeze
    if not unfreeze:
        return
    cut = int(len(backbone.layers) * (1 - fraction))
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= cut and layer.__class__.__name__ != "BatchNormalization"
