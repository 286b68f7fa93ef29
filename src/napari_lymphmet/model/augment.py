"""Training-time augmentation in TensorFlow: flips and turns, HED stain jitter, slide-level colour, focus blur."""


from __future__ import annotations


from .preprocess import HED_FROM_RGB as _HED_FROM_RGB
from .preprocess import RGB_FROM_HED as _RGB_FROM_HED

__all__: list[str] = []  # used by the data pipeline only


def _gaussian_blur(image, sigma):
    """Blur an ``(h, w, 3)`` image with a 7-tap Gaussian of width ``sigma`` (a scalar tensor)."""
    from ._tensorflow import import_tensorflow

    tf = import_tensorflow()

    x = tf.range(-3.0, 4.0)
    taps = tf.exp(-(x**2) / (2 * tf.maximum(sigma, 1e-3) ** 2))
    taps /= tf.reduce_sum(taps)
    kernel = tf.tile((taps[:, None] * taps[None, :])[:, :, None, None], [1, 1, 3, 1])
    padded = tf.pad(image[None], [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def _augment(image, seed_pair, hed_sigma: float, colour_sigma: float = 0.0, blur_sigma: float = 0.0):
    """Flips, 90° turns, HED stain jitter, slide-level colour shifts, blur, and colour jitter.

    Patches of one slide share its stain and scanner, and a model that saw
    few slides learns them as a shortcut. So beside per-stain (HED) jitter,
    each patch gets a Reinhard-like shift, a random contrast and offset per
    YUV channel around its own mean, as a whole slide's colour differs from
    another's, and a random focus blur, as scanners differ in sharpness.
    """
    from ._tensorflow import import_tensorflow

    tf = import_tensorflow()

    seeds = tf.random.experimental.stateless_split(seed_pair, 12)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    image = tf.image.stateless_random_flip_up_down(image, seeds[1])
    k = tf.random.stateless_uniform([], seeds[2], 0, 4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    if hed_sigma > 0:
        od = -tf.math.log((image + 1.0) / 256.0)
        # Scanners differ per colour channel, labs per stain: jitter both.
        od = od * tf.random.stateless_uniform([1, 1, 3], tf.random.experimental.stateless_split(seeds[3], 1)[0],
                                              1 - hed_sigma / 2, 1 + hed_sigma / 2)
        hed = tf.reshape(od, [-1, 3]) @ _HED_FROM_RGB
        alpha = tf.random.stateless_uniform([1, 3], seeds[3], 1 - hed_sigma, 1 + hed_sigma)
        beta = tf.random.stateless_uniform([1, 3], seeds[4], -hed_sigma / 10, hed_sigma / 10)
        od = (hed * alpha + beta) @ _RGB_FROM_HED
        image = tf.reshape(256.0 * tf.exp(-od) - 1.0, tf.shape(image))
    image = tf.clip_by_value(image, 0, 255) / 255.0
    if colour_sigma > 0:
        yuv = tf.image.rgb_to_yuv(image)
        mean = tf.reduce_mean(yuv, axis=[0, 1], keepdims=True)
        # At strength 1 these span what separates the two CAMELYON16 centres'
        # slides: a U offset of 0.08 and contrast ratios of 0.7 to 1.4.
        spread = tf.constant([0.35, 0.45, 0.45]) * colour_sigma
        scale = tf.random.stateless_uniform([3], seeds[8], 1 - spread, 1 + spread)
        shift = tf.random.stateless_uniform([3], seeds[9], -1.0, 1.0) * tf.constant([0.1, 0.08, 0.08]) * colour_sigma
        image = tf.clip_by_value(tf.image.yuv_to_rgb((yuv - mean) * scale + mean + shift), 0, 1)
    if blur_sigma > 0:
        sigma = tf.random.stateless_uniform([], seeds[10], 0, blur_sigma)
        blurred = _gaussian_blur(image, sigma)
        image = tf.where(tf.random.stateless_uniform([], seeds[11]) < 0.5, blurred, image)
    image = tf.image.stateless_random_brightness(image, 0.1, seeds[5])
    image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seeds[6])
    image = tf.image.stateless_random_saturation(image, 0.8, 1.2, seeds[7])
    image = tf.image.stateless_random_hue(image, 0.04, tf.random.experimental.stateless_split(seeds[7], 1)[0])
    return tf.clip_by_value(image, 0, 1) * 255.0
