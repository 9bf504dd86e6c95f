"""Training pairs of an upsampler (``ModelConfig.low_res``): one degradation, used in both places.

:func:`degrade` is THE low-resolution input of a cascade stage: area-downsample (the mean of each
``factor x factor`` block) to ``low_res``, then bicubic-upsample back to the full size. Training
pairs (:func:`pair_element`, in the ``tf.data`` stream) and sampling (``diffusion/cascade.py``)
both call it, so a stage sees at sampling time exactly the kind of input it was trained on.

Per element, keyed by ``(seed, stream position)`` with stateless ops (so ``--resume`` continues
the same stream): a random crop of ``crop`` pixels (the high-resolution image and its degraded
version cropped at the same place), and the conditioning augmentation of Ho et al. 2021 (cascaded
diffusion): Gaussian noise of standard deviation ``s ~ U[0, aug_max]`` added to the degraded
image, ``s`` given to the model as its ``aug_levels`` input.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from keras import ops

HELD_OUT_AUG_LEVEL = 0.0  # the held-out loss conditions on the clean degraded image
PAIR_DRAW_SALT = 0x5A1F_C0DE  # keeps the pair draws apart from the flips and caption draws of the same seed


def upsample(images: Any, size: int) -> Any:
    """``(B, h, w, C)`` -> bicubic-resized to ``(size, size)``, float32: the way up of :func:`degrade`,
    and what a cascade does to the previous stage's output."""
    return ops.cast(ops.image.resize(ops.cast(images, "float32"), (int(size), int(size)), interpolation="bicubic"),
                    "float32")


def degrade(images: Any, low_res: int) -> Any:
    """``(B, H, H, C)`` -> area-downsampled to ``low_res`` and bicubic-upsampled back (:func:`upsample`).

    ``H`` must be a multiple of ``low_res`` (a config check); float32 in, float32 out.
    """
    images = ops.cast(images, "float32")
    factor = int(images.shape[1]) // int(low_res)
    return upsample(ops.average_pool(images, factor, factor, padding="valid"), int(images.shape[1]))


def condition_inputs(images: Any, low_res: int, aug_level: float) -> List[Any]:
    """An upsampler's extra inputs for clean ``images`` at a fixed augmentation level, without noise:
    what the held-out loss uses (the same every evaluation)."""
    batch = ops.shape(images)[0]
    return [degrade(images, low_res), ops.full((batch,), aug_level, "float32")]


def pair_element(image: Any, index: Any, *, low_res: int, crop: int, aug_max: float, seed: int) -> Tuple[Any, Any, Any]:
    """One stream element ``(H, W, C)`` -> ``(high-res crop, noisy degraded crop, s)`` (TensorFlow ops,
    for ``tf.data``), every draw keyed by ``(seed, index)``."""
    import tensorflow as tf

    key = tf.stack([tf.constant(seed ^ PAIR_DRAW_SALT, tf.int64), tf.cast(index, tf.int64)])
    seeds = tf.random.experimental.stateless_split(key, 3)
    size = int(image.shape[0])
    low = degrade(image[None], low_res)[0]
    if crop < size:
        corner = tf.random.stateless_uniform([2], seeds[0], minval=0, maxval=size - crop + 1, dtype=tf.int32)
        image = tf.slice(image, [corner[0], corner[1], 0], [crop, crop, -1])
        low = tf.slice(low, [corner[0], corner[1], 0], [crop, crop, -1])
    level = tf.random.stateless_uniform([], seeds[1], minval=0.0, maxval=aug_max)
    low = low + level * tf.random.stateless_normal(tf.shape(low), seeds[2])
    return image, low, level
