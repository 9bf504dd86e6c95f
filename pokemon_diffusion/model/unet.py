"""The text-conditioned U-Net that predicts the noise (or v) of a noisy image.

``build_unet(ModelConfig)`` returns a functional ``keras.Model`` called as
``model([noisy_images, timesteps, text_embeddings], training=...)``:

- ``noisy_images``: float32 ``(B, H, W, C)``, roughly in [-1, 1];
- ``timesteps``: int32 ``(B,)`` in ``[0, T)``;
- ``text_embeddings``: float32 ``(B, text_dim)``; all zeros is the unconditional (null) input;
- output: float32 ``(B, H, W, C)``, ε or v (see ``NoiseSchedule.epsilon_and_x0``).

An upsampler (``ModelConfig.low_res`` set) is fully convolutional (any H, W divisible by
``2 ** (levels - 1)``: it trains on crops) and takes two more inputs (``UPSAMPLER_INPUTS``):

- ``low_res_images``: float32 ``(B, H, W, C)``, the low-resolution image upsampled back to
  ``(H, W)`` (``data/pairs.py``), concatenated with the noisy image before the stem;
- ``aug_levels``: float32 ``(B,)`` in [0, 1], the conditioning-augmentation noise level of
  ``low_res_images``, embedded like t (a second sinusoid + MLP added to the conditioning).

Layout (keras-io DDIM U-Net, with DDPM/ADM conditioning): a 3x3 stem; per level
``num_res_blocks`` ResBlocks (each followed by self-attention at ``attention_resolutions``) and an
average-pool; the lowest level is the middle; the up path mirrors it with bilinear up-sampling and
one skip concatenated per ResBlock; norm, swish and a zero-initialised 3x3 conv give the output.
See docs/MODEL.md.
"""

from __future__ import annotations

import logging
import math
from typing import Any, List, Sequence

import keras

from ..config import ModelConfig
from ..errors import ConfigError
from .layers import AttentionBlock, ResBlock, SinusoidalEmbedding, make_norm

logger = logging.getLogger(__name__)

INPUT_NAMES = ("noisy_images", "timesteps", "text_embeddings")
UPSAMPLER_INPUTS = ("low_res_images", "aug_levels")  # an upsampler's two more inputs, in this order
AUG_SCALE = 1000.0  # an augmentation level in [0, 1] is embedded as a timestep in [0, 1000]
HEAD_DIM = 32  # channels per attention head (heads = width // 32, at least 1)


def _attention_heads(width: int) -> int:
    heads = max(1, width // HEAD_DIM)
    while width % heads:
        heads -= 1
    return heads


def model_inputs(x_t: Any, t: Any, text: Any, extra: Sequence[Any] = ()) -> List[Any]:
    """THE model's inputs, wherever it is called (train step, held-out loss, sampling loop):
    ``[x_t, t, text]`` plus the extras of an upsampler (``low_res_images, aug_levels``; none for the base)."""
    return [x_t, t, text, *extra]


def _conditioning(config: ModelConfig, timesteps, text, aug_levels=None) -> Any:
    """Time embedding (sinusoid + 2-layer MLP) plus the projected text embedding, then swish.

    The sum goes through swish once here rather than in every block: each ResBlock's Dense then sees
    the same activated vector, as in ADM's ``emb_layers = SiLU -> Linear``.
    """
    emb_dim = 4 * config.base_width
    t = SinusoidalEmbedding(max(32, config.base_width), name="time_sinusoid")(timesteps)
    t = keras.layers.Dense(emb_dim, activation="swish", name="time_mlp_1")(t)
    t = keras.layers.Dense(emb_dim, name="time_mlp_2")(t)
    # a zero (null) text embedding maps to this Dense's bias: a valid "no text" input for guidance
    y = keras.layers.Dense(emb_dim, name="text_proj")(text)
    parts = [t, y]
    if aug_levels is not None:
        a = keras.layers.Rescaling(AUG_SCALE, name="aug_scale")(aug_levels)
        a = SinusoidalEmbedding(max(32, config.base_width), name="aug_sinusoid")(a)
        a = keras.layers.Dense(emb_dim, activation="swish", name="aug_mlp_1")(a)
        parts.append(keras.layers.Dense(emb_dim, name="aug_mlp_2")(a))
    return keras.layers.Activation("swish", name="cond_swish")(keras.layers.Add(name="cond_add")(parts))


def build_unet(config: ModelConfig, *, remat: bool = False) -> keras.Model:
    """Build the U-Net described by ``config`` (see the module docstring for the call contract).

    Args:
        config: a validated :class:`ModelConfig` (image size, widths, depth, norm, attention, text_dim).
        remat: rematerialise every ResBlock in training (``TrainConfig.remat``): the same function and
            weights, less activation memory, ~one more forward pass per step.

    Returns:
        An uncompiled functional ``keras.Model`` named "unet" with inputs named
        "noisy_images", "timesteps", "text_embeddings" (and, for an upsampler, "low_res_images",
        "aug_levels"; named "upsampler") and a float32 output.

    Raises:
        ConfigError: ``config`` is not a ModelConfig.

    Example:
        >>> model = build_unet(ModelConfig(image_size=16, base_width=8, channel_mults=(1, 2)))
        >>> model.output_shape
        (None, 16, 16, 3)
    """
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"build_unet: got {type(config).__name__}; allowed: a ModelConfig "
                          f"(e.g. ModelConfig.from_dict(...) for a dict)")
    size, widths = config.image_size, config.widths
    upsampler = config.low_res is not None
    side = None if upsampler else size  # an upsampler is fully convolutional: it trains on crops
    images = keras.Input((side, side, config.channels), name=INPUT_NAMES[0], dtype="float32")
    timesteps = keras.Input((), name=INPUT_NAMES[1], dtype="int32")
    text = keras.Input((config.text_dim,), name=INPUT_NAMES[2], dtype="float32")
    inputs = [images, timesteps, text]
    if upsampler:
        inputs += [keras.Input((side, side, config.channels), name=UPSAMPLER_INPUTS[0], dtype="float32"),
                   keras.Input((), name=UPSAMPLER_INPUTS[1], dtype="float32")]
    cond = _conditioning(config, timesteps, text, inputs[4] if upsampler else None)

    def res_block(x, width: int, name: str):
        return ResBlock(width, dropout=config.dropout, norm=config.norm, norm_groups=config.norm_groups,
                        remat=remat, name=name)([x, cond])

    def maybe_attention(x, resolution: int, name: str):
        if resolution not in config.attention_resolutions:
            return x
        return AttentionBlock(_attention_heads(x.shape[-1]), norm=config.norm, norm_groups=config.norm_groups,
                              name=name)(x)

    stem_in = keras.layers.Concatenate(name="low_res_concat")([images, inputs[3]]) if upsampler else images
    x = keras.layers.Conv2D(widths[0], 3, padding="same", name="stem")(stem_in)
    skips: List[Any] = []
    last = len(widths) - 1
    # down path; the lowest level is the middle of the U and keeps no skips
    for level, width in enumerate(widths):
        resolution = size // 2 ** level
        for i in range(config.num_res_blocks):
            x = res_block(x, width, f"down{level}_res{i}")
            x = maybe_attention(x, resolution, f"down{level}_attn{i}")
            if level < last:
                skips.append(x)
        if level < last:
            x = keras.layers.AveragePooling2D(2, name=f"down{level}_pool")(x)
    # up path: one skip per ResBlock, in reverse order
    for level in reversed(range(last)):
        width, resolution = widths[level], size // 2 ** level
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}_upsample")(x)
        for i in range(config.num_res_blocks):
            x = keras.layers.Concatenate(name=f"up{level}_concat{i}")([x, skips.pop()])
            x = res_block(x, width, f"up{level}_res{i}")
            x = maybe_attention(x, resolution, f"up{level}_attn{i}")
    x = make_norm(config.norm, config.norm_groups, name="out_norm")(x)
    x = keras.layers.Activation("swish", name="out_swish")(x)
    # zero init: the untrained network predicts 0 (the mean of ε), a calm start for the loss;
    # float32 so the output (and the loss) stay float32 under a mixed-precision policy
    outputs = keras.layers.Conv2D(config.channels, 3, padding="same", kernel_initializer="zeros",
                                  dtype="float32", name="out_conv")(x)
    model = keras.Model(inputs, outputs, name="upsampler" if upsampler else "unet")
    logger.debug("built U-Net %s: %s", config.widths, model_summary_line(model))
    return model


def model_summary_line(model: keras.Model) -> str:
    """One line: parameter counts and the float32 size of all weights.

    Example:
        ``"2,134,531 params (2,131,587 trainable), 8.1 MiB as float32"``
    """
    total = sum(math.prod(w.shape) for w in model.weights)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return f"{total:,} params ({trainable:,} trainable), {total * 4 / 2 ** 20:.1f} MiB as float32"


def count_flops(model: keras.Model, batch_size: int = 1) -> int:
    """Forward-pass floating-point operations of ``model`` for one batch (inference mode).

    Traces ``model(inputs, training=False)`` for fixed input shapes, freezes the graph and sums
    TensorFlow's registered per-op FLOP statistics (``tf.compat.v1.profiler``): a multiply-add
    counts as 2 FLOPs, convolutions and matmuls dominate.

    Args:
        model: a model with fully known input shapes apart from the batch axis.
        batch_size: batch size to count for (>= 1).

    Returns:
        The FLOP count as an int.

    Raises:
        ValueError: ``batch_size`` < 1 or an input shape is not known.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if int(batch_size) < 1:
        raise ValueError(f"count_flops.batch_size: got {batch_size!r}; allowed: an integer >= 1")
    specs = []
    for tensor in model.inputs:
        shape = (int(batch_size),) + tuple(tensor.shape[1:])
        if any(dim is None for dim in shape):
            raise ValueError(f"count_flops: input {tensor.name!r} has unknown shape {tensor.shape}")
        specs.append(tf.TensorSpec(shape, tensor.dtype))
    as_list = isinstance(model.input, (list, tuple))  # call with the structure the model was built with
    forward = tf.function(lambda *xs: model(list(xs) if as_list else xs[0], training=False))
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function(*specs))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    tf_logger = tf.get_logger()
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # the v1 profiler warns that its own helpers are deprecated
    try:
        stats = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    finally:
        tf_logger.setLevel(level)
    return int(stats.total_float_ops)


def mixed_copy(model: keras.Model, config: ModelConfig) -> keras.Model:
    """``model``'s network rebuilt under the ``mixed_bfloat16`` policy (bfloat16 compute, float32
    weights and output) with ``model``'s weights: faster inference where the CPU runs bfloat16
    natively (``hardware.use_mixed_precision``; docs/PERFORMANCE.md). ``model`` is left as it is.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        copy = build_unet(config)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy
