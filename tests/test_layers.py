"""Custom layer tests, the keras-hub way: one helper runs the same checks on every layer."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.model.fast_norm import modulated_norm, norm_then_modulate
from pokemon_diffusion.model.layers import AttentionBlock, ResBlock, SinusoidalEmbedding, make_norm


def _as_list(data):
    return list(data) if isinstance(data, (list, tuple)) else [data]


def _wrap(layer, input_data):
    """A functional model around ``layer`` with one Input per input array."""
    inputs = [keras.Input(a.shape[1:], dtype=str(a.dtype), batch_size=None) for a in _as_list(input_data)]
    if not isinstance(input_data, (list, tuple)):
        inputs = inputs[0]
    return keras.Model(inputs, layer(inputs))


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape, tmp_path,
                   expected_num_trainable_weights=None):
    """Check one layer: output shape, get_config/from_config, ``.keras`` round trip, fit steps.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: a NumPy array, or a list of arrays for multi-input layers.
        expected_output_shape: the full output shape for ``input_data``.
        tmp_path: pytest's temporary folder for the ``.keras`` file.
        expected_num_trainable_weights: checked when given.
    """
    keras.utils.set_random_seed(0)
    layer = layer_cls(**init_kwargs)
    # 1. output shape (eager call) and the symbolic shape agree
    output = np.asarray(layer(input_data))
    assert output.shape == expected_output_shape
    assert np.all(np.isfinite(output))
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights

    # 2. config round trip: every constructor argument is stored and restored
    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert config[key] == value, key
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone(input_data)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(input_data)), output, rtol=1e-6, atol=1e-6)

    # 3. a whole model around the layer saves to .keras and loads back with the same outputs
    model = _wrap(layer_cls(**init_kwargs), input_data)
    before = np.asarray(model(input_data, training=False))
    path = tmp_path / f"{layer_cls.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(np.asarray(loaded(input_data, training=False)), before, rtol=1e-6, atol=1e-6)

    # 4. training: fit runs, the loss is finite and every trainable weight moves (two steps, since a
    # zero-initialised projection passes no gradient to the weights before it on the first step)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    start = [w.numpy() for w in model.trainable_weights]
    target = np.random.default_rng(123).normal(size=expected_output_shape).astype("float32")
    with warnings.catch_warnings():  # a layer without weights (the sinusoid) still has to fit
        warnings.filterwarnings("ignore", "The model does not have any trainable weights")
        history = model.fit(input_data, target, batch_size=expected_output_shape[0], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for w, w0 in zip(model.trainable_weights, start):
        assert not np.allclose(w.numpy(), w0), f"{w.path} did not change in training"


RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 8, 8, 8)).astype("float32")
C = RNG.normal(size=(2, 12)).astype("float32")
T = np.array([0, 999], "int32")


def test_sinusoidal_embedding_layer(tmp_path):
    run_layer_test(SinusoidalEmbedding, {"dim": 16, "max_period": 10_000.0}, T, (2, 16), tmp_path,
                   expected_num_trainable_weights=0)


@pytest.mark.parametrize("kwargs, channels", [
    ({"width": 8, "dropout": 0.0, "norm": "batch", "norm_groups": 8, "scale_shift": True}, 8),
    ({"width": 16, "dropout": 0.2, "norm": "group", "norm_groups": 4, "scale_shift": False}, 8),
])
def test_res_block_layer(tmp_path, kwargs, channels):
    # norm1 (2) + conv1 (1 with BatchNorm after it, else 2) + cond_proj (2) + norm2 (2) + conv2 (2)
    # [+ skip (2)]
    n_weights = 9 + (kwargs["norm"] != "batch") + 2 * (kwargs["width"] != channels)
    run_layer_test(ResBlock, kwargs, [X[..., :channels], C], (2, 8, 8, kwargs["width"]), tmp_path,
                   expected_num_trainable_weights=n_weights)


@pytest.mark.parametrize("kwargs", [{"num_heads": 2, "norm": "group", "norm_groups": 4},
                                    {"num_heads": 1, "norm": "batch", "norm_groups": 8}])
def test_attention_block_layer(tmp_path, kwargs):
    run_layer_test(AttentionBlock, kwargs, X, X.shape, tmp_path, expected_num_trainable_weights=6)


# --- behaviour -----------------------------------------------------------------------------------

def _numpy_sinusoid(t, dim, max_period=10_000.0):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / half)
    args = t.astype(np.float64)[:, None] * freqs[None]
    emb = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    return np.pad(emb, [(0, 0), (0, dim % 2)])


@pytest.mark.parametrize("dim", [2, 7, 32])
def test_sinusoidal_embedding_matches_numpy_formula(dim):
    t = np.array([0, 1, 17, 500, 999], "int32")
    out = np.asarray(SinusoidalEmbedding(dim)(t))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _numpy_sinusoid(t, dim), atol=2e-4)
    # t = 0: sin part 0, cos part 1
    np.testing.assert_array_equal(out[0, : dim // 2], 0.0)
    np.testing.assert_array_equal(out[0, dim // 2: 2 * (dim // 2)], 1.0)


def test_sinusoidal_embedding_is_float32_inside_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = SinusoidalEmbedding(16)
        out = layer(np.array([999], "int32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert layer.compute_dtype == "bfloat16" and "bfloat16" in str(out.dtype)
    # computed in float32 first: only the final rounding to bfloat16 (8 bits of mantissa) remains
    np.testing.assert_allclose(np.asarray(out, dtype=np.float32), _numpy_sinusoid(np.array([999]), 16), atol=8e-3)


def test_res_block_uses_the_conditioning():
    keras.utils.set_random_seed(1)
    block = ResBlock(8, norm="group", norm_groups=4)
    a = np.asarray(block([X, C]))
    b = np.asarray(block([X, np.zeros_like(C)]))  # the null embedding is a valid input
    assert np.all(np.isfinite(b)) and not np.allclose(a, b)
    assert block.skip is None  # same width in and out: identity skip, no extra conv


def test_res_block_dropout_only_in_training():
    keras.utils.set_random_seed(2)
    block = ResBlock(8, dropout=0.5, norm="group", norm_groups=4)
    eval_1, eval_2 = (np.asarray(block([X, C], training=False)) for _ in range(2))
    np.testing.assert_array_equal(eval_1, eval_2)
    train_1, train_2 = (np.asarray(block([X, C], training=True)) for _ in range(2))
    assert not np.allclose(train_1, train_2)


def test_batch_norm_block_updates_moving_statistics_only_in_training():
    block = ResBlock(8, norm="batch")
    block([X, C], training=False)
    mean = block.norm1.moving_mean.numpy()
    block([X, C], training=False)
    np.testing.assert_array_equal(block.norm1.moving_mean.numpy(), mean)
    block([X + 3.0, C], training=True)
    assert not np.allclose(block.norm1.moving_mean.numpy(), mean)


def test_attention_block_is_identity_at_init_and_permutation_equivariant():
    keras.utils.set_random_seed(3)
    block = AttentionBlock(num_heads=2, norm="group", norm_groups=4)
    np.testing.assert_allclose(np.asarray(block(X)), X, atol=1e-6)  # zero-initialised projection
    block.proj.kernel.assign(np.random.default_rng(3).normal(size=(8, 8)).astype("float32"))
    # no positional encoding: shuffling the pixels shuffles the output the same way
    perm = np.random.default_rng(4).permutation(64)
    shuffled = X.reshape(2, 64, 8)[:, perm].reshape(X.shape)
    out = np.asarray(block(X)).reshape(2, 64, 8)[:, perm].reshape(X.shape)
    assert not np.allclose(out, X, atol=1e-3)
    np.testing.assert_allclose(np.asarray(block(shuffled)), out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make, message", [
    (lambda: SinusoidalEmbedding(1), "SinusoidalEmbedding.dim: got 1"),
    (lambda: SinusoidalEmbedding(8, max_period=1.0), "max_period: got 1.0"),
    (lambda: ResBlock(0), "ResBlock.width: got 0"),
    (lambda: ResBlock(8, dropout=1.0), "ResBlock.dropout: got 1.0"),
    (lambda: ResBlock(10, norm="group", norm_groups=4), "a divisor of width 10"),
    (lambda: AttentionBlock(0), "num_heads: got 0"),
    (lambda: AttentionBlock(3)(X), "divisible by num_heads 3"),
    (lambda: make_norm("layer", 8), "got 'layer'; allowed: batch | group"),
])
def test_bad_arguments_name_the_value_and_what_is_allowed(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("|", r"\|")):
        make()


def _loss_and_grads(block, x, c):
    @tf.function(autograph=False)
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(block([x, c], training=True)))
        return loss, tape.gradient(loss, [x] + block.trainable_variables)
    return step()


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_remat_block_computes_the_same_values_gradients_and_statistics(norm):
    # remat only changes what is kept for the backward pass: the recomputation must draw the same
    # dropout mask and must not update BatchNorm's moving statistics a second time
    keras.utils.set_random_seed(3)
    plain = ResBlock(16, dropout=0.3, norm=norm, norm_groups=4)
    remat = ResBlock(16, dropout=0.3, norm=norm, norm_groups=4, remat=True)
    x, c = tf.constant(X), tf.constant(C)
    plain([x, c]), remat([x, c])
    for a, b in zip(plain.variables, remat.variables):
        b.assign(a)
    loss_a, grads_a = _loss_and_grads(plain, x, c)
    loss_b, grads_b = _loss_and_grads(remat, x, c)
    assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-6)
    for ga, gb in zip(grads_a, grads_b):
        np.testing.assert_allclose(gb.numpy(), ga.numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(plain.variables, remat.variables):  # moving statistics and seed states included
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)
    assert ResBlock.from_config(remat.get_config()).remat
    np.testing.assert_array_equal(remat([x, c], training=False).numpy(), plain([x, c], training=False).numpy())


def _norm_pair(kind, shape, rng):
    """Two built norm layers of ``kind`` with the same random (positive where needed) weights."""
    a, b = make_norm(kind, 4), make_norm(kind, 4)
    a.build(shape)
    b.build(shape)
    for wa, wb in zip(a.weights, b.weights):
        value = (rng.normal(size=wa.shape) ** 2 + 0.5).astype("float32")
        wa.assign(value)
        wb.assign(value)
    return a, b


@pytest.mark.parametrize("kind", ["batch", "group"])
@pytest.mark.parametrize("training", [True, False])
def test_modulated_norm_equals_the_layer_then_scale_and_shift(kind, training):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 8, 8, 16)) * 3 + 1).astype("float32")
    scale = (rng.normal(size=(4, 1, 1, 16)) * 0.3).astype("float32")
    shift = rng.normal(size=(4, 1, 1, 16)).astype("float32")
    keras_norm, ours = _norm_pair(kind, x.shape, rng)
    want = np.asarray(keras_norm(x, training=training)) * (1 + scale) + shift
    got = np.asarray(modulated_norm(ours, tf.constant(x), training, scale=scale, shift=shift))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    # the same moving statistics afterwards (BatchNorm updates them in training only; the fused
    # kernel's batch statistics differ from Keras' moments in the last bit)
    for wa, wb in zip(keras_norm.weights, ours.weights):
        np.testing.assert_allclose(wb.numpy(), wa.numpy(), rtol=1e-6, atol=1e-7)
    # no conditioning: the layer's own output (exactly, where no fused kernel is used)
    got, want = modulated_norm(ours, tf.constant(x), training), keras_norm(x, training=training)
    if (kind == "batch" and training) or kind == "group":  # fused kernel / _group_norm on TensorFlow
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=2e-5)
    else:
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("kind", ["batch", "group"])
@pytest.mark.parametrize("conditioning", ["none", "shift", "scale_shift"])
def test_fast_norms_have_the_gradients_of_the_layer_then_scale_and_shift(kind, conditioning):
    # batch: TensorFlow's fused kernel; group: _group_norm's hand-written one-pass gradient
    rng = np.random.default_rng(2)
    x = tf.constant((rng.normal(size=(4, 8, 8, 16)) * 3 + 1).astype("float32"))
    scale = tf.constant((rng.normal(size=(4, 1, 1, 16)) * 0.3).astype("float32"))
    shift = tf.constant(rng.normal(size=(4, 1, 1, 16)).astype("float32"))
    weight = tf.constant(rng.normal(size=(4, 8, 8, 16)).astype("float32"))
    keras_norm, ours = _norm_pair(kind, x.shape, rng)
    kwargs = {"none": {}, "shift": {"shift": shift}, "scale_shift": {"scale": scale, "shift": shift}}[conditioning]

    def grads(fn, layer):
        with tf.GradientTape() as tape:
            tape.watch([x, scale, shift])
            loss = tf.reduce_sum(fn(layer, x, True, **kwargs) * weight)
        return tape.gradient(loss, [x, scale, shift, layer.gamma, layer.beta],
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)

    for got, want in zip(grads(modulated_norm, ours), grads(norm_then_modulate, keras_norm)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_modulated_norm_without_stats_update_leaves_the_moving_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 8, 8, 16)).astype("float32")
    _, norm = _norm_pair("batch", x.shape, rng)
    before = [w.numpy().copy() for w in norm.non_trainable_weights]
    normalised = np.asarray(modulated_norm(norm, tf.constant(x), True, update_stats=False))
    for w, old in zip(norm.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), old)
    # batch statistics were used: each channel is standardised before γ and β
    gamma, beta = norm.gamma.numpy(), norm.beta.numpy()
    np.testing.assert_allclose(((normalised - beta) / gamma).mean(axis=(0, 1, 2)), 0.0, atol=1e-4)


def test_group_norm_fast_path_matches_keras_with_a_free_batch_axis_and_a_large_mean():
    # traced with an unknown batch size (as the trainer's step is), per-example and shared coefficients,
    # activations far from zero mean: values and all gradients as Keras' layer + FiLM
    rng = np.random.default_rng(4)
    x = tf.constant((rng.normal(size=(3, 8, 8, 32)) * 0.5 + 4).astype("float32"))
    scale = tf.constant((rng.normal(size=(3, 1, 1, 32)) * 0.3).astype("float32"))
    weight = tf.constant(rng.normal(size=(3, 8, 8, 32)).astype("float32"))
    keras_norm, ours = _norm_pair("group", x.shape, rng)
    spec = [tf.TensorSpec((None, 8, 8, 32)), tf.TensorSpec((None, 1, 1, 32))]

    def grads(fn, layer):
        @tf.function(input_signature=spec)
        def step(x, scale):
            with tf.GradientTape() as tape:
                tape.watch([x, scale])
                y = fn(layer, x, True, scale=scale)
                loss = tf.reduce_sum(y * weight)
            return [y] + tape.gradient(loss, [x, scale, layer.gamma, layer.beta])
        return step(x, scale)

    for got, want in zip(grads(modulated_norm, ours), grads(norm_then_modulate, keras_norm)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=2e-4)
