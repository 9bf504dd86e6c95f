"""The ResBlock's fast paths: the same maths as Keras' layers in fewer full-size passes.

* :func:`modulated_norm`: a norm and the conditioning's scale/shift folded into one multiply-add
  (``x · a + b`` with per-(example, channel) coefficients); :func:`norm_then_modulate` is the
  unfolded form it equals (tests, benchmarks).
* On TensorFlow, training-mode BatchNorm through the fused ``FusedBatchNormV3`` kernel, and
  GroupNorm through :func:`_group_norm` (statistics and ``x · a + b`` with a hand-written one-pass
  backward), which TensorFlow has no kernel for.
* :class:`ReplayedSeed`: a rematerialised block's dropout draws the same mask twice.

Measured in docs/PERFORMANCE.md. No layer is defined here (so nothing to register for ``.keras``
loading): ``layers.ResBlock`` calls these functions on its own sub-layers and variables.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


class ReplayedSeed(keras.random.SeedGenerator):
    """A seed drawn once and returned by every ``next()``: a recomputed dropout draws the same mask.

    It holds a tensor, not a state variable (``SeedGenerator.__init__``, which makes one, is skipped):
    it lives for one call of one block.
    """

    def __init__(self, seed: Any) -> None:  # no super().__init__(): see above
        self._replayed = seed

    def next(self, ordered: bool = True):
        return self._replayed


def modulated_norm(layer: keras.layers.Layer, x, training, update_stats: bool = True, *, scale=None, shift=None):
    """``norm(x) * (1 + scale) + shift`` with one multiply and one add over the whole of ``x``.

    The norm's statistics, its affine (γ, β) and the conditioning's scale and shift all act per
    (example, channel), so they fold into two small coefficient tensors ``a`` and ``b`` of shape
    ``(1 or B, 1, 1, C)`` and the output is ``x * a + b``. Calling the Keras layer and then applying
    the scale and shift makes four full-size passes instead of two, each with its own gradient
    (measured: docs/PERFORMANCE.md). Same weights, same formula as the layer up to rounding.

    Args:
        layer: the block's BatchNormalization or GroupNormalization (channels last); any other layer
            is called as it is.
        x: ``(B, H, W, C)``.
        training: batch statistics (BatchNorm: and a moving-statistics update) when true.
        update_stats: BatchNorm in training only: False skips the moving-statistics update (the
            rematerialised recomputation must not update them twice).
        scale, shift: ``(B, 1, 1, C)`` conditioning, or None.

    Returns:
        The modulated, normalised ``x`` in the layer's compute dtype.
    """
    inputs = ops.cast(x, keras.backend.result_type(x.dtype, "float32"))  # upcast as Keras' norms do
    if _fusable(layer, inputs, training):
        return ops.cast(_fused_batch_norm(layer, inputs, update_stats, scale, shift), layer.compute_dtype)
    if _group_fusable(layer, inputs):
        return ops.cast(_group_norm(layer, inputs, scale, shift), layer.compute_dtype)
    coefficients = _norm_coefficients(layer, inputs, training, update_stats)
    if coefficients is None:  # another norm: the plain path
        return norm_then_modulate(layer, x, training, scale=scale, shift=shift)
    a, b = coefficients
    if scale is not None:
        scale = ops.cast(1.0 + scale, inputs.dtype)
        a, b = a * scale, b * scale
    if shift is not None:
        b = b + ops.cast(shift, inputs.dtype)
    return ops.cast(inputs * a + b, layer.compute_dtype)


def norm_then_modulate(layer: keras.layers.Layer, x, training, *, scale=None, shift=None):
    """The unfolded form of :func:`modulated_norm`: the Keras layer, then ``· (1 + scale) + shift``."""
    outputs = layer(x, training=training)
    outputs = outputs if scale is None else outputs * (1.0 + scale)
    return outputs if shift is None else outputs + shift


def _fusable(layer: keras.layers.Layer, inputs, training) -> bool:
    """BatchNorm with batch statistics on TensorFlow: one fused kernel (``FusedBatchNormV3``) applies."""
    return (bool(training) and keras.backend.backend() == "tensorflow"
            and isinstance(layer, keras.layers.BatchNormalization) and layer.trainable and not layer.renorm
            and not layer.synchronized and layer.axis in (-1, 3) and len(inputs.shape) == 4
            and inputs.dtype == "float32")


def _fused_batch_norm(layer: keras.layers.Layer, inputs, update_stats: bool, scale, shift):
    """Training-mode BatchNorm (+ conditioning) with TensorFlow's fused kernel, forward and backward.

    The fused kernel normalises and applies a per-channel affine in one pass and has a one-op
    gradient; the per-example conditioning folds into one multiply-add after it:
    ``x̂ · γ(1 + scale) + (β(1 + scale) + shift)``. ~25 % less time for the norm's forward and
    backward than the moments-based form at 32×32 and 16×16 (docs/PERFORMANCE.md). The moving
    statistics get Keras' update with the biased batch variance (the kernel returns the unbiased
    one: ``n / (n − 1)`` is undone).
    """
    import tensorflow as tf

    channels = inputs.shape[-1]
    gamma = ops.cast(layer.gamma, "float32") if layer.scale else ops.ones((channels,), "float32")
    beta = ops.cast(layer.beta, "float32") if layer.center else ops.zeros((channels,), "float32")
    conditioned = scale is not None
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=ops.ones_like(gamma) if conditioned else gamma,
        offset=ops.zeros_like(beta) if conditioned else beta,
        mean=tf.zeros((0,)), variance=tf.zeros((0,)), epsilon=layer.epsilon, is_training=True)
    if update_stats:
        count = ops.cast(ops.prod(ops.shape(inputs)[:-1]), "float32")
        variance = variance * ((count - 1.0) / ops.maximum(count, 1.0))  # back to the biased variance
        _update_moving_stats(layer, tf.stop_gradient(mean), tf.stop_gradient(variance))
    if conditioned:
        factor = 1.0 + ops.cast(scale, "float32")
        a, b = gamma * factor, beta * factor
        b = b if shift is None else b + ops.cast(shift, "float32")
        return outputs * a + b
    return outputs if shift is None else outputs + ops.cast(shift, "float32")


def _group_fusable(layer: keras.layers.Layer, inputs) -> bool:
    """GroupNorm on TensorFlow, float32, channels last, static H, W, C: :func:`_group_norm` applies."""
    return (keras.backend.backend() == "tensorflow" and isinstance(layer, keras.layers.GroupNormalization)
            and layer.axis in (-1, 3) and len(inputs.shape) == 4 and None not in inputs.shape[1:]
            and inputs.dtype == "float32")


def _group_norm(layer: keras.layers.Layer, inputs, scale, shift):
    """GroupNorm (+ conditioning) as ``x · a + b`` with a one-pass hand-written gradient (TensorFlow).

    The γ, β and the conditioning fold into per-(example, channel) ``A = γ(1 + scale)`` and
    ``B = β(1 + scale) + shift`` (ordinary autodiff: small tensors); :func:`_group_norm_core` does
    the full-size work: forward = the group statistics (Keras' two-pass mean and variance) and one
    multiply-add; backward = two per-channel sums of ``dy`` and ``dy · x`` and one
    ``dy · p + x · q + s``. TensorFlow's own gradient of the moments-based form makes ~3× as many
    full-size passes (measured: docs/PERFORMANCE.md).
    """
    channels = inputs.shape[-1]
    gamma = ops.cast(layer.gamma, "float32") if layer.scale else ops.ones((channels,), "float32")
    beta = ops.cast(layer.beta, "float32") if layer.center else ops.zeros((channels,), "float32")
    a, b = ops.reshape(gamma, (1, 1, 1, channels)), ops.reshape(beta, (1, 1, 1, channels))
    if scale is not None:
        factor = 1.0 + ops.cast(scale, "float32")
        a, b = a * factor, b * factor
    if shift is not None:
        b = b + ops.cast(shift, "float32")
    return _group_norm_core(inputs, a, b, groups=layer.groups, epsilon=layer.epsilon)


def _group_norm_core(x, a, b, *, groups: int, epsilon: float):
    """``(x − μ) · rsqrt(σ² + ε) · a + b`` with μ, σ² per (example, group); a, b: (1 or B, 1, 1, C)."""
    import tensorflow as tf

    _, height, width, channels = x.shape
    per_group, count = channels // groups, float(height * width * (channels // groups))

    def to_channels(t):  # (B, G) -> (B, 1, 1, C)
        t = tf.broadcast_to(t[:, :, None], tf.concat([tf.shape(t), [per_group]], 0))
        return tf.reshape(t, (-1, 1, 1, channels))

    def group_mean(t):  # (B, C) per-channel sums -> (B, G) group means
        return tf.reduce_sum(tf.reshape(t, (-1, groups, per_group)), -1) / count

    @tf.custom_gradient
    def core(x, a, b):
        mean = to_channels(group_mean(tf.reduce_sum(x, [1, 2])))
        variance = group_mean(tf.reduce_sum(tf.math.squared_difference(x, mean), [1, 2]))
        inv = to_channels(tf.math.rsqrt(variance + epsilon))
        slope = inv * a

        def grad(dy):
            sum_dy = tf.reduce_sum(dy, [1, 2], keepdims=True)  # (B, 1, 1, C)
            sum_dy_xhat = (tf.reduce_sum(dy * x, [1, 2], keepdims=True) - mean * sum_dy) * inv
            a_full = a + tf.zeros_like(sum_dy)  # (B, 1, 1, C)
            m1 = to_channels(group_mean(tf.reshape(a_full * sum_dy, (-1, channels))))  # mean of dy·a
            m2 = to_channels(group_mean(tf.reshape(a_full * sum_dy_xhat, (-1, channels))))  # of dy·a·x̂
            q = -inv * inv * m2
            dx = dy * slope + (x * q + (-mean * q - inv * m1))
            da = sum_dy_xhat if a.shape[0] != 1 else tf.reduce_sum(sum_dy_xhat, 0, keepdims=True)
            db = sum_dy if b.shape[0] != 1 else tf.reduce_sum(sum_dy, 0, keepdims=True)
            return dx, da, db

        return x * slope + (b - mean * slope), grad

    return core(x, a, b)


def _update_moving_stats(layer: keras.layers.Layer, mean, variance) -> None:
    """Keras' BatchNorm update of the moving statistics (as in ``BatchNormalization.call``)."""
    momentum = layer.momentum
    layer.moving_mean.assign(ops.cast(layer.moving_mean, mean.dtype) * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(ops.cast(layer.moving_variance, variance.dtype) * momentum
                                 + variance * (1.0 - momentum))


def _norm_coefficients(layer: keras.layers.Layer, inputs, training, update_stats: bool):
    """``(a, b)`` with ``layer(inputs) == inputs * a + b`` (Keras' own statistics and update), or None."""
    if isinstance(layer, keras.layers.BatchNormalization) and not layer.renorm and layer.axis in (-1, 3):
        if training and layer.trainable:
            mean, variance = ops.moments(inputs, axes=layer._reduction_axes, synchronized=layer.synchronized)
            if update_stats:
                _update_moving_stats(layer, mean, variance)
        else:
            mean = ops.cast(layer.moving_mean, inputs.dtype)
            variance = ops.cast(layer.moving_variance, inputs.dtype)
        a = ops.rsqrt(variance + layer.epsilon)  # (C,)
    elif isinstance(layer, keras.layers.GroupNormalization) and layer.axis in (-1, 3):  # JAX; unknown H, W
        _, height, width, channels = inputs.shape
        groups = layer.groups
        grouped = ops.reshape(inputs, (-1, height, width, groups, channels // groups))
        mean, variance = ops.moments(grouped, axes=(1, 2, 4), keepdims=True)  # (B, 1, 1, G, 1)

        def per_channel(per_group):  # (B, 1, 1, G, 1) -> (B, 1, 1, C)
            return ops.reshape(ops.repeat(per_group, channels // groups, axis=4), (-1, 1, 1, channels))

        a, mean = per_channel(ops.rsqrt(variance + layer.epsilon)), per_channel(mean)
    else:
        return None
    if layer.scale:
        a = a * ops.cast(layer.gamma, inputs.dtype)
    b = -mean * a
    if layer.center:
        b = b + ops.cast(layer.beta, inputs.dtype)
    return a, b
