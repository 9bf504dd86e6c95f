"""Training units: learning-rate schedule, EMA maths, the compiled train step and its random draws."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers_training import tiny_config
from pokemon_diffusion.data.dataset import make_dataset
from pokemon_diffusion.training.ema import ExponentialMovingAverage, ema_decay
from pokemon_diffusion.training.lr_schedule import WarmupCosineDecay
from pokemon_diffusion.training.objective import null_condition
from pokemon_diffusion.training.run_loop import total_steps_for
from pokemon_diffusion.training.trainer import Trainer


def test_lr_warms_up_linearly_then_follows_a_cosine_to_zero():
    lr = WarmupCosineDecay(1e-3, total_steps=110, warmup_steps=10)
    values = [float(lr(s)) for s in (0, 4, 9, 10, 60, 110, 500)]
    np.testing.assert_allclose(values, [1e-4, 5e-4, 1e-3, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)
    assert all(float(lr(s)) >= float(lr(s + 1)) for s in range(10, 110))
    constant = WarmupCosineDecay(1e-3, total_steps=110, warmup_steps=10, decay="constant")
    assert float(constant(5)) == pytest.approx(6e-4) and float(constant(1000)) == pytest.approx(1e-3)
    no_warmup = WarmupCosineDecay(2e-4, total_steps=100, warmup_steps=0, final_lr=1e-5)
    assert float(no_warmup(0)) == pytest.approx(2e-4) and float(no_warmup(100)) == pytest.approx(1e-5)
    again = WarmupCosineDecay.from_config(lr.get_config())
    assert float(again(60)) == float(lr(60))


def test_lr_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="decay: got 'linear'; allowed: cosine | constant"):
        WarmupCosineDecay(1e-3, 10, decay="linear")
    with pytest.raises(ValueError, match="final_lr: got 1.0"):
        WarmupCosineDecay(1e-3, 10, final_lr=1.0)


def test_epochs_become_steps():
    config = tiny_config().train.replace(steps=None, epochs=3, batch_size=4)
    assert total_steps_for(config, 10) == 8  # ceil(3 * 10 / 4)
    assert total_steps_for(tiny_config(steps=7).train, 10) == 7


def test_ema_decay_warms_up_and_caps():
    np.testing.assert_allclose([float(ema_decay(n, 0.999)) for n in (0, 1, 10, 90, 10**6)],
                               [0.1, 2 / 11, 11 / 20, 91 / 100, 0.999], rtol=1e-6)
    assert float(ema_decay(5, 0.0)) == 0.0


def _bn_model():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.5)(x)  # brings an int64 seed-state variable
    return keras.Model(inputs, x)


def test_ema_averages_every_float_variable_including_batchnorm_statistics():
    keras.utils.set_random_seed(0)
    model, shadow = _bn_model(), _bn_model()
    ema = ExponentialMovingAverage(model, shadow, decay=0.999)
    start = [v.numpy().copy() for v in model.variables]
    for v, s in zip(model.variables, shadow.variables):
        np.testing.assert_array_equal(v.numpy(), s.numpy())  # starts as a copy
    model(np.random.default_rng(0).normal(3, 1, (8, 3)).astype("float32"), training=True)  # moves BN stats + seed
    now = [v.numpy().copy() for v in model.variables]
    names = [v.path for v in model.variables]
    moving = [i for i, n in enumerate(names) if "moving_mean" in n][0]
    assert not np.allclose(start[moving], now[moving])
    d = float(ema.update(0))
    assert d == pytest.approx(0.1)
    for i, s in enumerate(shadow.variables):
        if s.dtype == "int64":
            np.testing.assert_array_equal(s.numpy(), now[i])  # copied, not averaged
        else:
            np.testing.assert_allclose(s.numpy(), 0.1 * start[i] + 0.9 * now[i], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="EMA model has"):
        ExponentialMovingAverage(model, keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)]), 0.9)


def test_null_condition_zeros_the_dropped_rows_only():
    text = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = null_condition(text, tf.constant([False, True, False])).numpy()
    np.testing.assert_array_equal(out, [[1, 2], [0, 0], [5, 6]])


@pytest.fixture(scope="module")
def trainer():
    keras.utils.set_random_seed(0)
    return Trainer(tiny_config(dropout=0.1, cond_drop=0.3, learning_rate=3e-3, warmup_steps=0,
                               strategy="one"), total_steps=1000)


@pytest.fixture(scope="module")
def four_images():
    rng = np.random.default_rng(0)
    images = np.zeros((4, 16, 16, 3), np.float32)
    for i in range(4):  # flat colour squares: easy to memorise
        images[i, 4:12, 4:12] = rng.uniform(-1, 1, 3)
    return images, rng.standard_normal((4, 8)).astype(np.float32)


def test_draws_are_per_example_and_the_null_rate_is_cond_drop(trainer):
    draws = tf.function(trainer._draws)  # map_fn is slow eagerly
    key = tf.constant([7, 0], tf.int64)
    t, noise, drop = draws(key, tf.range(4000, dtype=tf.int64))
    p, n = 0.3, 4000
    assert abs(float(tf.reduce_mean(tf.cast(drop, tf.float32))) - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert int(tf.reduce_min(t)) >= 0 and int(tf.reduce_max(t)) < trainer.schedule.timesteps
    assert abs(float(tf.reduce_mean(noise))) < 0.01 and abs(float(tf.math.reduce_std(noise)) - 1) < 0.01
    # an example's draws depend on its stream position only, not on the rest of its batch
    t2, noise2, drop2 = draws(key, tf.constant([17, 3], tf.int64))
    np.testing.assert_array_equal(noise2.numpy(), noise.numpy()[[17, 3]])
    np.testing.assert_array_equal(t2.numpy(), t.numpy()[[17, 3]])
    t3, _, _ = draws(tf.constant([8, 0], tf.int64), tf.constant([17, 3], tf.int64))
    assert not np.array_equal(t3.numpy(), t2.numpy())


@pytest.mark.slow
def test_train_step_traces_once_and_overfits_four_images(trainer, four_images):
    images, text = four_images
    before, _ = trainer.held_out_loss(images, text, which="raw", timesteps=4, seed=1)
    batches = iter(trainer.distribute(make_dataset(images, text, 4, repeat=True, with_index=True, seed=0)))
    start = int(trainer.step.numpy())
    for _ in range(60):
        loss = trainer.train_step(next(batches))
        assert np.isfinite(float(loss))
    # a batch of another size (the last batch of an epoch) reuses the same graph
    trainer.train_step((tf.constant(images[:3]), tf.constant(text[:3]), tf.constant([0, 1, 2], tf.int64)))
    assert trainer.train_step.experimental_get_tracing_count() == 1
    assert int(trainer.step.numpy()) == start + 61
    after, per_t = trainer.held_out_loss(images, text, which="raw", timesteps=4, seed=1)
    assert after < 0.8 * before, (before, after, per_t)
    total, count, bad = trainer.drain()
    assert bad is None and count >= 61 and np.isfinite(total)
    assert trainer.drain() == (0.0, 0, None)  # reset after reading


@pytest.mark.slow
def test_remat_trains_the_same_weights(four_images):
    # rematerialisation trades memory for time only: same losses, weights, EMA and BatchNorm statistics
    images, text = four_images
    runs = []
    for remat in (False, True):
        keras.utils.set_random_seed(0)
        trainer = Trainer(tiny_config(channel_mults=(1, 2), dropout=0.2, warmup_steps=0, remat=remat), total_steps=10)
        batches = iter(trainer.distribute(make_dataset(images, text, 4, repeat=True, with_index=True)))
        losses = [float(trainer.train_step(next(batches))) for _ in range(3)]
        runs.append((losses, [v.numpy() for v in trainer.model.variables + trainer.ema_model.variables]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    # atol: the biases of convs followed by a BatchNorm have a zero true gradient, so their values
    # (~1e-6) are rounding noise that AdamW normalises; everything else agrees to rtol 1e-4
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=3e-6)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_in_low_precision_and_exports_float32(policy, monkeypatch, four_images, tmp_path):
    # the CPU gets mixed_bfloat16; mixed_float16 (the GPU choice) is forced here to cover loss scaling
    from pokemon_diffusion.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "precision_policy", lambda mixed: policy)
    keras.utils.set_random_seed(0)
    trainer = Trainer(tiny_config(mixed_precision=True, dropout=0.1, warmup_steps=0), total_steps=10)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored after building
    assert {layer.dtype_policy.name for layer in trainer.model.layers if layer.weights} >= {policy}
    assert {v.dtype for v in trainer.model.variables if v.trainable} == {"float32"}  # master weights
    images, text = four_images
    batches = iter(trainer.distribute(make_dataset(images, text, 4, repeat=True, with_index=True)))
    start = [v.numpy().copy() for v in trainer.model.trainable_variables]
    losses = [float(trainer.train_step(next(batches))) for _ in range(3)]
    assert all(np.isfinite(losses)) and trainer.drain()[2] is None
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(start, trainer.model.trainable_variables))
    if policy == "mixed_float16":
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        assert int(trainer.optimizer.iterations.numpy()) == 3  # no step skipped for overflow
    trainer.export_ema(tmp_path / "ema.keras")
    exported = keras.saving.load_model(tmp_path / "ema.keras")
    assert {layer.dtype_policy.name for layer in exported.layers} == {"float32"}


def test_strategies_by_name(monkeypatch):
    from types import SimpleNamespace

    from pokemon_diffusion.errors import ConfigError
    from pokemon_diffusion.training import distribute
    from pokemon_diffusion.training.distribute import make_strategy, precision_policy

    real = tf.config.list_logical_devices
    gpus = real("GPU")  # whatever this machine has: the expectations follow it
    if len(gpus) <= 1:
        assert make_strategy("auto") is tf.distribute.get_strategy()  # one device: no distribution overhead
    else:
        assert isinstance(make_strategy("auto"), tf.distribute.MirroredStrategy)
        assert make_strategy("auto").num_replicas_in_sync == len(gpus)
    one = make_strategy("one")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and make_strategy("one") is one  # one per process
    assert one.extended.worker_devices[0].upper().endswith("GPU:0" if gpus else "CPU:0")
    # both kinds of machine, simulated: the policy and the auto strategy follow the devices
    for fake, policy in (([], "mixed_bfloat16"), (["/device:GPU:0"], "mixed_float16")):
        monkeypatch.setattr(tf.config, "list_logical_devices",
                            lambda kind=None, fake=fake: [SimpleNamespace(name=n) for n in fake] if kind == "GPU"
                            else real(kind))
        monkeypatch.setattr(distribute, "tensorflow_gpu", lambda fake=fake: bool(fake))
        assert precision_policy(False) == "float32" and precision_policy(True) == policy
        assert make_strategy("auto") is tf.distribute.get_strategy()
    with pytest.raises(ConfigError, match="strategy: got 'tpu'; allowed: auto | one | mirrored | multiworker"):
        make_strategy("tpu")


def test_image_grid_and_tensorboard_image(tmp_path):
    from pokemon_diffusion.training.metrics import MetricsWriter
    from pokemon_diffusion.training.loop import _image_grid

    images = np.stack([np.full((2, 3, 3), v, np.float32) for v in (-1.0, 0.0, 1.0)])
    grid = _image_grid(images, columns=2)
    assert grid.shape == (4, 6, 3) and grid.dtype == np.uint8
    assert grid[0, 0, 0] == 0 and grid[0, 3, 0] == 127 and grid[2, 0, 0] == 255 and grid[2, 3, 0] == 255
    writer = MetricsWriter(tmp_path / "m.jsonl", tmp_path / "tb")
    writer.image("samples", grid, step=5)
    writer.close()
    (events,) = list((tmp_path / "tb").iterdir())
    values = [v for e in tf.compat.v1.train.summary_iterator(str(events)) for v in e.summary.value]
    (value,) = values
    assert value.tag == "samples" and value.metadata.plugin_data.plugin_name == "images"
    width, height, png = tf.make_ndarray(value.tensor)
    assert (int(width), int(height)) == (6, 4)
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), grid)


@pytest.mark.slow
def test_sample_grid_uses_the_samplers_on_the_ema_model(trainer, monkeypatch):
    from pokemon_diffusion.diffusion import samplers  # the project's own module: a broken import fails here
    from pokemon_diffusion.training.loop import _SampleGrid

    real, models = samplers.sample, []

    def spy(model, *args, **kwargs):
        models.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(samplers, "sample", spy)
    grid = _SampleGrid(np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32), seed=0)
    image = grid.images(trainer)
    assert image is not None and image.shape == (16, 64, 3) and image.dtype == np.uint8  # 3 images, 4 columns
    assert len(models) == 1 and models[0] is trainer.ema_model and models[0] is not trainer.model
