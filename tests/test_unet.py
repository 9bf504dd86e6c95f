"""build_unet: the three-input contract, both norms, attention, zero-init output, saving, FLOPs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.config import ModelConfig
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.model.layers import AttentionBlock, ResBlock
from pokemon_diffusion.model.unet import INPUT_NAMES, build_unet, count_flops, model_summary_line

TEXT_DIM = 12


def tiny(**changes) -> ModelConfig:
    base = dict(image_size=16, base_width=8, channel_mults=(1, 2), num_res_blocks=1, norm_groups=4,
                text_dim=TEXT_DIM, dropout=0.0)
    base.update(changes)
    return ModelConfig(**base)


def inputs_for(config: ModelConfig, batch: int = 2, seed: int = 0, text_zero: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, config.image_size, config.image_size, config.channels)).astype("float32")
    t = rng.integers(0, 1000, size=(batch,)).astype("int32")
    e = np.zeros((batch, config.text_dim), "float32") if text_zero else \
        rng.normal(size=(batch, config.text_dim)).astype("float32")
    return [x, t, e]


def randomise_output_conv(model: keras.Model, seed: int = 0) -> None:
    """The output conv starts at zero; give it values so outputs depend on the rest of the net."""
    rng = np.random.default_rng(seed)
    for w in model.get_layer("out_conv").weights:
        w.assign(rng.normal(scale=0.1, size=w.shape).astype("float32"))


CASES = [
    tiny(norm="batch"),
    tiny(norm="group"),
    tiny(norm="batch", attention_resolutions=(8,)),
    tiny(norm="group", attention_resolutions=(16, 8), num_res_blocks=2),
    tiny(image_size=32, channel_mults=(1, 2, 2), norm="batch", attention_resolutions=(8,)),
    tiny(image_size=32, channel_mults=(1, 2, 2), norm="group", dropout=0.1, channels=1),
]


@pytest.mark.parametrize("config", CASES, ids=lambda c: f"{c.image_size}-{c.norm}-attn{list(c.attention_resolutions)}")
def test_contract_shape_dtype_and_zero_output_at_init(config):
    keras.utils.set_random_seed(0)
    model = build_unet(config)
    assert [t.name for t in model.inputs] == list(INPUT_NAMES)
    assert [str(t.dtype) for t in model.inputs] == ["float32", "int32", "float32"]
    assert model.output_shape == (None, config.image_size, config.image_size, config.channels)
    n_attention = sum(isinstance(layer, AttentionBlock) for layer in model.layers)
    assert (n_attention > 0) == bool(config.attention_resolutions)
    for training in (False, True):
        out = model(inputs_for(config, batch=3), training=training)
        assert out.shape == (3, config.image_size, config.image_size, config.channels)
        assert out.dtype == tf.float32
        # zero-initialised output conv: the untrained net predicts exactly 0
        np.testing.assert_array_equal(out.numpy(), 0.0)
    randomise_output_conv(model)
    out = model(inputs_for(config, batch=3), training=True).numpy()
    assert np.all(np.isfinite(out)) and np.abs(out).max() > 0


def test_block_count_and_norm_follow_the_config():
    config = tiny(channel_mults=(1, 2, 3), image_size=32, num_res_blocks=2, norm="group")
    model = build_unet(config)
    blocks = [layer for layer in model.layers if isinstance(layer, ResBlock)]
    # down: 2 per level (3 levels, the last is the middle); up: 2 per level above the middle
    assert len(blocks) == 2 * 3 + 2 * 2
    assert {b.width for b in blocks} == set(config.widths)
    assert all(isinstance(b.norm1, keras.layers.GroupNormalization) for b in blocks)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers())


def test_time_and_text_change_the_output_and_null_text_is_valid():
    keras.utils.set_random_seed(1)
    config = tiny(norm="group")
    model = build_unet(config)
    randomise_output_conv(model)
    x, t, e = inputs_for(config)
    base = model([x, t, e]).numpy()
    other_t = model([x, (t + 500) % 1000, e]).numpy()
    null = model([x, t, np.zeros_like(e)]).numpy()
    assert np.all(np.isfinite(null))
    assert not np.allclose(base, other_t) and not np.allclose(base, null)


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_keras_round_trip_gives_identical_outputs(tmp_path, norm):
    keras.utils.set_random_seed(2)
    config = tiny(norm=norm, attention_resolutions=(8,), dropout=0.1)
    model = build_unet(config)
    randomise_output_conv(model)
    data = inputs_for(config)
    model(data, training=True)  # moves BatchNorm statistics away from their initial values
    before = model(data, training=False).numpy()
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded(data, training=False).numpy(), before)
    assert [t.name for t in loaded.inputs] == list(INPUT_NAMES)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    # clone_model + set_weights (how an EMA copy is usually made) pairs the same weights
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    assert [w.path for w in clone.weights] == [w.path for w in model.weights]
    np.testing.assert_array_equal(clone(data, training=False).numpy(), before)


def test_every_weight_gets_a_gradient():
    """All trainable variables are connected to the output.

    GroupNorm here: under BatchNorm in training mode, a bias whose every path ends in a BatchNorm
    (e.g. the stem's) gets an exactly zero gradient, which is correct but would hide nothing else.
    The zero-initialised projections are randomised first, or nothing before them gets a gradient.
    """
    keras.utils.set_random_seed(3)
    config = tiny(norm="group", attention_resolutions=(8,), dropout=0.1)
    model = build_unet(config)
    randomise_output_conv(model)
    for layer in model.layers:
        if isinstance(layer, AttentionBlock):
            layer.proj.kernel.assign(np.random.default_rng(4).normal(scale=0.1, size=layer.proj.kernel.shape))
    x, t, e = inputs_for(config, batch=4)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((model([x, t, e], training=True) - x) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    dead = [v.path for v, g in zip(model.trainable_variables, grads)
            if g is None or not np.any(g.numpy()) or not np.all(np.isfinite(g.numpy()))]
    assert dead == []


@pytest.mark.parametrize("policy, norm", [("mixed_bfloat16", "group"), ("mixed_float16", "batch")])
def test_output_is_float32_under_mixed_precision(policy, norm):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_unet(tiny(norm=norm, attention_resolutions=(8,)))
        randomise_output_conv(model)
        out = model(inputs_for(tiny()), training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("stem").compute_dtype == policy.split("_")[1]
    assert out.dtype == tf.float32 and np.all(np.isfinite(out.numpy()))


def test_largest_image_size_builds():
    config = tiny(image_size=128, base_width=4, channel_mults=(1, 1, 2, 2), norm_groups=4)
    model = build_unet(config)
    out = model(inputs_for(config, batch=1))
    assert out.shape == (1, 128, 128, 3)


def test_count_flops_on_a_known_model():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    out = keras.layers.Dense(5, use_bias=False)(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    conv = 2 * 8 * 8 * 3 * 3 * 3 * 4  # a multiply-add is 2 FLOPs
    dense = 2 * 8 * 8 * 4 * 5
    assert count_flops(model, 1) == conv + dense
    assert count_flops(model, 4) == 4 * (conv + dense)


def test_count_flops_of_the_unet_scales_with_batch():
    model = build_unet(tiny(norm="group", attention_resolutions=(8,)))
    one, three = count_flops(model, 1), count_flops(model, 3)
    # the first conv alone: 16*16 pixels, 3x3x3 -> 8 channels
    assert one > 2 * 16 * 16 * 9 * 3 * 8
    assert three == pytest.approx(3 * one, rel=0.02)
    with pytest.raises(ValueError, match="batch_size: got 0"):
        count_flops(model, 0)


def test_summary_line_counts_every_weight():
    model = build_unet(tiny())
    line = model_summary_line(model)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    assert line.startswith(f"{total:,} params (")
    assert "MiB" in line


def test_reference_config_size():
    """The default 32x32 config (widths 32-64-96-128, 2 blocks per level) stays near 2.3 M params."""
    model = build_unet(ModelConfig())
    n = model.count_params()
    assert 2_000_000 < n < 2_600_000


def test_wrong_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="build_unet: got dict; allowed: a ModelConfig"):
        build_unet({"image_size": 16})
    config = tiny()
    model = build_unet(config)
    x, t, _ = inputs_for(config)
    # an embedding from another encoder (wrong size) is refused, naming the input
    with pytest.raises(ValueError, match="text_embeddings"):
        model([x, t, np.zeros((2, TEXT_DIM + 1), "float32")])
