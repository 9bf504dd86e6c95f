"""Custom Keras layers of the U-Net, each registered so a saved ``.keras`` model loads back.

Every layer stores all its constructor arguments and returns them from ``get_config``, creates its
sub-layers in ``__init__`` (so their weights have stable names) and builds them in ``build``.
Images are channels-last ``(B, H, W, C)``: TensorFlow's CPU kernels are fastest in that layout.

Layers:
    SinusoidalEmbedding: integer timesteps ``(B,)`` -> ``(B, dim)`` sin/cos features.
    ResBlock: norm, swish, conv, conditioning (scale/shift or add), norm, swish, dropout, conv, + skip;
        optionally rematerialised (recomputed in the backward pass to save activation memory). Its
        norm + conditioning runs through the fast paths of ``fast_norm.py`` (same maths, fewer passes).
    AttentionBlock: multi-head self-attention over the ``H*W`` positions, residual.

Example:
    >>> import keras, numpy as np
    >>> emb = SinusoidalEmbedding(8)(np.array([0, 10], "int32"))
    >>> tuple(emb.shape)
    (2, 8)
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import keras
from keras import ops

from ..config import NORMS
from .fast_norm import ReplayedSeed, modulated_norm

PACKAGE = "pokemon_diffusion"


def make_norm(norm: str, groups: int, name: Optional[str] = None) -> keras.layers.Layer:
    """A normalisation layer over the channel axis.

    Args:
        norm: "batch" (BatchNormalization, the seed's choice) or "group" (GroupNormalization).
        groups: number of groups for "group"; must divide the channel count.
        name: layer name.

    Returns:
        An unbuilt Keras layer.

    Raises:
        ValueError: ``norm`` is not one of "batch" | "group".
    """
    if norm == "batch":
        # Keras' defaults (momentum 0.99, epsilon 1e-3): the moving statistics follow the last ~100
        # steps, which matters because they average over all noise levels (docs/MODEL.md)
        return keras.layers.BatchNormalization(name=name)
    if norm == "group":
        return keras.layers.GroupNormalization(groups=groups, epsilon=1e-5, name=name)
    raise ValueError(f"norm: got {norm!r}; allowed: {' | '.join(NORMS)}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class SinusoidalEmbedding(keras.layers.Layer):
    """Transformer-style sinusoidal features of integer timesteps (Vaswani et al. 2017, §3.5).

    ``emb[:, i] = sin(t * f_i)`` and ``emb[:, half + i] = cos(t * f_i)`` with
    ``f_i = exp(-ln(max_period) * i / half)``, ``half = dim // 2`` (the DDPM / ADM convention).
    An odd ``dim`` gets one trailing zero column.

    Args:
        dim: output size (>= 2).
        max_period: the longest period, in timesteps.

    Call:
        inputs: ``(B,)`` integer or float timesteps. Returns ``(B, dim)`` in the layer's compute dtype.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(dim) < 2:
            raise ValueError(f"SinusoidalEmbedding.dim: got {dim!r}; allowed: an integer >= 2")
        if float(max_period) <= 1.0:
            raise ValueError(f"SinusoidalEmbedding.max_period: got {max_period!r}; allowed: a number > 1")
        self.dim = int(dim)
        self.max_period = float(max_period)
        self.half = self.dim // 2
        # a constant, not a weight: nothing to train and nothing to save
        self._freqs = [math.exp(-math.log(self.max_period) * i / self.half) for i in range(self.half)]

    def call(self, inputs):
        # computed in float32 even under mixed precision: t * f reaches 1e3 and float16 would lose
        # the phase (its spacing near 1000 is 0.5)
        t = ops.cast(ops.reshape(inputs, (-1, 1)), "float32")
        args = t * ops.convert_to_tensor([self._freqs], dtype="float32")
        emb = ops.concatenate([ops.sin(args), ops.cos(args)], axis=-1)
        if self.dim % 2:
            emb = ops.pad(emb, [[0, 0], [0, 1]])
        return ops.cast(emb, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"dim": self.dim, "max_period": self.max_period})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResBlock(keras.layers.Layer):
    """A conditioned pre-activation residual block (Ho et al. 2020; Dhariwal & Nichol 2021, §3).

    ``h = conv(swish(norm(x)))``; the conditioning vector ``c`` enters as
    ``norm(h) * (1 + scale) + shift`` with ``[scale, shift] = Dense(c)`` when ``scale_shift``,
    else as ``norm(h) + Dense(c)``; then ``out = skip(x) + conv(dropout(swish(.)))``, where
    ``skip`` is a 1x1 conv when the channel count changes and the identity otherwise.

    Args:
        width: output channels.
        dropout: dropout rate before the second conv (active only when ``training``).
        norm: "batch" | "group".
        norm_groups: groups for GroupNormalization.
        scale_shift: FiLM-style scale and shift (True) or an added bias (False) for the conditioning.
        remat: in training, keep only the block's inputs for the backward pass and recompute the
            rest there (``keras.remat``): less activation memory, one more forward per block. The
            recomputation draws the same dropout mask and does not update BatchNorm's moving
            statistics a second time, so values, gradients and statistics equal those without it.

    Call:
        inputs: ``[x, c]`` with ``x`` of shape ``(B, H, W, C_in)`` and ``c`` of shape ``(B, D)``.
        training: passed to the norms and the dropout.
        Returns ``(B, H, W, width)``.
    """

    def __init__(self, width: int, dropout: float = 0.0, norm: str = "batch", norm_groups: int = 8,
                 scale_shift: bool = True, remat: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(width) < 1:
            raise ValueError(f"ResBlock.width: got {width!r}; allowed: a positive integer")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"ResBlock.dropout: got {dropout!r}; allowed: 0 <= dropout < 1")
        if norm == "group" and int(width) % int(norm_groups):
            raise ValueError(f"ResBlock.norm_groups: got {norm_groups!r}; allowed: a divisor of width {width}")
        self.width = int(width)
        self.dropout = float(dropout)
        self.norm = norm
        self.norm_groups = int(norm_groups)
        self.scale_shift = bool(scale_shift)
        self.remat = bool(remat)
        self.norm1 = make_norm(norm, self.norm_groups, name="norm1")
        # BatchNorm (norm2) removes any per-channel constant, so a bias here would get no gradient
        self.conv1 = keras.layers.Conv2D(self.width, 3, padding="same", use_bias=norm != "batch", name="conv1")
        self.cond_proj = keras.layers.Dense(self.width * (2 if self.scale_shift else 1), name="cond_proj")
        self.norm2 = make_norm(norm, self.norm_groups, name="norm2")
        self.drop = keras.layers.Dropout(self.dropout, name="dropout")
        self.conv2 = keras.layers.Conv2D(self.width, 3, padding="same", name="conv2")
        self.skip: Optional[keras.layers.Layer] = None

    def build(self, input_shape) -> None:
        x_shape, c_shape = input_shape
        in_channels = x_shape[-1]
        if in_channels is None:
            raise ValueError(f"ResBlock: the input's channel axis must be known; got shape {x_shape}")
        self.norm1.build(x_shape)
        self.conv1.build(x_shape)
        h_shape = tuple(x_shape[:-1]) + (self.width,)
        self.cond_proj.build(c_shape)
        self.norm2.build(h_shape)
        self.conv2.build(h_shape)
        if in_channels != self.width:
            # created in build because it depends on the input; build runs again on load with the
            # same shapes, so the weights keep their names
            self.skip = keras.layers.Conv2D(self.width, 1, name="skip")
            self.skip.build(x_shape)

    def call(self, inputs, training=None):
        x, c = inputs
        if not (self.remat and training):
            return self._block(x, c, training)
        # drawn once here, replayed by the forward pass and by its recomputation: the same mask
        seed = ReplayedSeed(self.drop.seed_generator.next()) if self.dropout > 0 else None
        calls = []

        def block(x, c):
            first = not calls  # the forward pass; later calls are the backward pass's recomputation
            calls.append(True)
            return self._block(x, c, True, seed=seed, update_stats=first)

        return keras.remat(block)(x, c)

    def _block(self, x, c, training, seed=None, update_stats: bool = True):
        h = self.conv1(ops.silu(modulated_norm(self.norm1, x, training, update_stats)))
        cond = ops.expand_dims(ops.expand_dims(self.cond_proj(c), 1), 1)  # (B, 1, 1, width or 2*width)
        if self.scale_shift:
            scale, shift = ops.split(cond, 2, axis=-1)
            h = modulated_norm(self.norm2, h, training, update_stats, scale=scale, shift=shift)
        else:
            # added after the norm: before a BatchNorm the Dense's bias would be subtracted again
            h = modulated_norm(self.norm2, h, training, update_stats, shift=cond)
        h = ops.silu(h)
        if seed is None:
            h = self.drop(h, training=training)
        else:
            h = keras.random.dropout(h, self.dropout, seed=seed)
        h = self.conv2(h)
        residual = x if self.skip is None else self.skip(x)
        return residual + h

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0]
        return tuple(x_shape[:-1]) + (self.width,)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"width": self.width, "dropout": self.dropout, "norm": self.norm,
                       "norm_groups": self.norm_groups, "scale_shift": self.scale_shift, "remat": self.remat})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionBlock(keras.layers.Layer):
    """Multi-head self-attention over all spatial positions, with a residual connection.

    ``out = x + proj(attention(qkv(norm(x))))`` where ``qkv`` and ``proj`` are per-pixel Dense
    layers (a 1x1 conv, applied to the last axis: no transpose to channels-first). ``proj`` starts
    at zero, so the block is the identity at initialisation (Dhariwal & Nichol 2021).

    Args:
        num_heads: attention heads; must divide the channel count.
        norm: "batch" | "group".
        norm_groups: groups for GroupNormalization.

    Call:
        inputs: ``(B, H, W, C)``. Returns the same shape.
    """

    def __init__(self, num_heads: int = 1, norm: str = "batch", norm_groups: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_heads) < 1:
            raise ValueError(f"AttentionBlock.num_heads: got {num_heads!r}; allowed: a positive integer")
        self.num_heads = int(num_heads)
        self.norm = norm
        self.norm_groups = int(norm_groups)
        self.norm_layer = make_norm(norm, self.norm_groups, name="norm")
        self.qkv = None
        self.proj = None

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        if channels is None or channels % self.num_heads:
            raise ValueError(f"AttentionBlock: channels {channels} must be divisible by num_heads "
                             f"{self.num_heads}")
        self.channels = int(channels)
        self.norm_layer.build(input_shape)
        self.qkv = keras.layers.Dense(3 * self.channels, name="qkv")
        self.qkv.build(input_shape)
        self.proj = keras.layers.Dense(self.channels, kernel_initializer="zeros", name="proj")
        self.proj.build(tuple(input_shape[:-1]) + (self.channels,))

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        heads, head_dim = self.num_heads, self.channels // self.num_heads
        qkv = self.qkv(self.norm_layer(inputs, training=training))
        # (B, H, W, 3C) -> (3, B, heads, HW, head_dim)
        qkv = ops.reshape(qkv, (batch, height * width, 3, heads, head_dim))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
        q, k, v = qkv[0], qkv[1], qkv[2]
        # plain matmuls (not einsum) so that graph FLOP counters see them
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(head_dim))
        # softmax in float32: float16 logits overflow for large feature maps
        weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), q.dtype)
        out = ops.matmul(weights, v)  # (B, heads, HW, head_dim)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (batch, height, width, self.channels))
        return inputs + self.proj(out)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "norm": self.norm, "norm_groups": self.norm_groups})
        return config
