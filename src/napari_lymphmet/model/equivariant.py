"""Convolutions that commute with the 8 rotations and mirrorings of a patch (the p4m group).

Tissue has no up or left. A plain CNN has to learn each orientation of a
gland from data (or from flips in augmentation, approximately); a p4m
convolution ties each kernel across the 8 turns and mirrorings, so the
network gives the same answer for a patch and its 8 transforms by
construction, with 8 times fewer weights for the same compute (Cohen and
Welling 2016; Veeling et al. 2018, whose P4M-DenseNet is PatchCamelyon's
reference).

Feature maps carry a group axis: channel ``f * 8 + g`` is filter ``f``
seen in orientation ``g``. :class:`P4MConv2D` lifts an image onto the group
(``lifting=True``) or convolves group feature maps; :class:`P4MBatchNorm`
normalises each filter over its 8 orientations together (separate
statistics would break the symmetry); :func:`p4m_cnn` builds the small CNN
of :mod:`.architectures` from them, pooled over space and orientation at
the end. Exact invariance needs square inputs whose side halves evenly at
every pooling (96 → 48 → 24 → 12 → 6 → 3).

Everything here is a registered Keras class, so a model loads in safe mode.
"""

from __future__ import annotations

import numpy as np

from ._tensorflow import import_keras

__all__ = ["GROUP_ORDER", "P4MBatchNorm", "P4MConv2D", "d4_tables", "p4m_cnn", "transform"]

GROUP_ORDER = 8


def transform(array: np.ndarray, element: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Apply group element ``element`` (0–7) to ``array`` over ``axes`` (rows, columns), with NumPy.

    Element ``r + 4 m`` mirrors the columns when ``m`` is 1, then turns by
    ``r`` quarter turns as :func:`numpy.rot90` does. Element 0 is the
    identity.
    """
    turns, mirrored = element % 4, element // 4
    if mirrored:
        array = np.flip(array, axis=axes[1])
    return np.rot90(array, turns, axes=axes)


def d4_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(product, inverse)``: ``product[a, b]`` is the element that acts as ``a`` after ``b``.

    Found from the elements' action on an asymmetric array, so they agree
    with :func:`transform` by construction.
    """
    probe = np.arange(9).reshape(3, 3)
    images = [transform(probe, e) for e in range(GROUP_ORDER)]

    def index(image: np.ndarray) -> int:
        return next(i for i, known in enumerate(images) if np.array_equal(image, known))

    product = np.array([[index(transform(transform(probe, b), a)) for b in range(GROUP_ORDER)]
                        for a in range(GROUP_ORDER)])
    inverse = np.array([int(np.flatnonzero(product[a] == 0)[0]) for a in range(GROUP_ORDER)])
    return product, inverse


_PRODUCT, _INVERSE = d4_tables()
# For output orientation g, input orientation h reads the kernel slice g⁻¹h.
_KERNEL_ORDER = np.array([[_PRODUCT[_INVERSE[g], h] for h in range(GROUP_ORDER)] for g in range(GROUP_ORDER)])

keras = import_keras()


def _turn(kernel, element: int):
    """:func:`transform` on the first two axes of a Keras tensor."""
    from keras import ops

    turns, mirrored = element % 4, element // 4
    if mirrored:
        kernel = ops.flip(kernel, axis=1)
    for _ in range(turns):  # np.rot90 once: swap rows and columns, then flip the rows
        kernel = ops.flip(ops.swapaxes(kernel, 0, 1), axis=0)
    return kernel


@keras.saving.register_keras_serializable(package="lymphmet")
class P4MConv2D(keras.layers.Layer):
    """A 'same' convolution equivariant to the p4m group, no bias.

    Parameters
    ----------
    filters : int
        Filters per orientation; the output has ``8 * filters`` channels.
    kernel_size : int
        Odd, so a turned kernel keeps its centre.
    lifting : bool
        ``True`` for the first layer: the input is an image (any channels),
        not group feature maps.
    """

    def __init__(self, filters: int, kernel_size: int = 3, *, lifting: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.filters, self.kernel_size, self.lifting = int(filters), int(kernel_size), bool(lifting)

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        k = self.kernel_size
        if self.lifting:
            shape = (k, k, channels, self.filters)
        else:
            if channels % GROUP_ORDER:
                raise ValueError(f"group feature maps have a multiple of 8 channels, got {channels}")
            shape = (k, k, channels // GROUP_ORDER, GROUP_ORDER, self.filters)
        fan_in = k * k * (channels if self.lifting else channels)
        self.kernel = self.add_weight(name="kernel", shape=shape,
                                      initializer=keras.initializers.RandomNormal(stddev=float(np.sqrt(2 / fan_in))))

    def full_kernel(self):
        """The ``(k, k, in channels, 8 * filters)`` kernel the convolution uses: every orientation's copy."""
        from keras import ops

        copies = []
        for g in range(GROUP_ORDER):
            if self.lifting:
                copies.append(_turn(self.kernel, g))
            else:
                k, _, cin, _, f = self.kernel.shape
                permuted = ops.take(self.kernel, _KERNEL_ORDER[g], axis=3)
                copies.append(ops.reshape(_turn(permuted, g), (k, k, cin * GROUP_ORDER, f)))
        stacked = ops.stack(copies, axis=-1)  # (k, k, in, filters, 8): channel f * 8 + g
        shape = ops.shape(stacked)
        return ops.reshape(stacked, (shape[0], shape[1], shape[2], self.filters * GROUP_ORDER))

    def call(self, inputs):
        from keras import ops

        return ops.conv(inputs, self.full_kernel(), strides=1, padding="same")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters * GROUP_ORDER)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "lifting": self.lifting}


@keras.saving.register_keras_serializable(package="lymphmet")
class P4MBatchNorm(keras.layers.Layer):
    """Batch normalisation with one mean, variance, scale and shift per filter across its 8 orientations."""

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.norm = keras.layers.BatchNormalization(axis=-2, momentum=self.momentum, epsilon=self.epsilon,
                                                    name="norm")

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        self.norm.build((*input_shape[:-1], channels // GROUP_ORDER, GROUP_ORDER))

    def call(self, inputs, training=None):
        from keras import ops

        shape = ops.shape(inputs)
        grouped = ops.reshape(inputs, (shape[0], shape[1], shape[2], shape[3] // GROUP_ORDER, GROUP_ORDER))
        return ops.reshape(self.norm(grouped, training=training), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def p4m_cnn(size: int = 96, *, filters: tuple[int, ...] = (4, 6, 8, 12, 16), input_space: str = "rgb",
            dropout: float = 0.3):
    """The small CNN with p4m convolutions: invariant to the patch's 8 turns and mirrorings.

    ``filters`` are per orientation: (4, 6, 8, 12, 16) gives the 32–128
    feature maps and the compute of ``small-cnn`` with an eighth of its
    kernel weights. The last feature maps are averaged over space, then
    over orientation, before the sigmoid.
    """
    from keras import layers

    inputs = keras.Input((size, size, 3), name="rgb")
    if input_space == "hed":
        x = layers.LayerNormalization(axis=[1, 2], center=False, scale=False, name="patch_standardise")(inputs)
    else:
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    for i, f in enumerate(filters):
        x = P4MConv2D(f, 3, lifting=i == 0, name=f"p4m_conv{i}")(x)
        x = P4MBatchNorm(name=f"p4m_bn{i}")(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)  # (8 * F,): each filter's 8 orientations, in turn
    x = layers.Reshape((filters[-1], GROUP_ORDER))(x)
    x = layers.GlobalAveragePooling1D(data_format="channels_first", name="orientation_pool")(x)  # over the 8
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="tumor")(x)
    return keras.Model(inputs, outputs, name="lymphmet_p4m_cnn")
