"""SDEdit reconstruction: noise real images to a level, denoise them back with the compiled DDIM loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.config import DiffusionConfig
from pokemon_diffusion.diffusion.reconstruct import reconstruct, reconstruction_levels
from pokemon_diffusion.diffusion.schedule import make_schedule
from pokemon_diffusion.errors import ConfigError, EncoderError

SCHEDULE = make_schedule(DiffusionConfig(timesteps=100, prediction="epsilon"))  # the oracle predicts ε
RNG = np.random.default_rng(0)
X0 = RNG.uniform(-0.9, 0.9, (3, 8, 8, 3)).astype("float32")


class Oracle(keras.Model):
    """Predicts the exact ε of x_t for known clean images: DDIM (η = 0) must then return them.

    It also counts its calls and records the highest and lowest level it was asked about.
    """

    def __init__(self, x0, scale=1.0, prediction="epsilon"):
        super().__init__()
        self.prediction = prediction
        self.x0 = tf.constant(x0)
        self.scale = scale
        self.alpha_bar = tf.constant(SCHEDULE.alphas_cumprod, tf.float32)
        self.calls = tf.Variable(0)
        self.highest = tf.Variable(-1)
        self.lowest = tf.Variable(10**6)

    def call(self, inputs, training=False):
        x, t, text = inputs
        self.calls.assign_add(1)
        self.highest.assign(tf.maximum(self.highest, tf.reduce_max(t)))
        self.lowest.assign(tf.minimum(self.lowest, tf.reduce_min(t)))
        ab = tf.reshape(tf.gather(self.alpha_bar, t), (-1, 1, 1, 1))
        eps = (x - tf.sqrt(ab) * self.x0) / tf.sqrt(1.0 - ab)
        out = eps if self.prediction == "epsilon" else tf.sqrt(ab) * eps - tf.sqrt(1.0 - ab) * self.x0
        return out * self.scale + 0.0 * tf.reduce_sum(text)


def test_levels_run_from_the_start_level_down_to_zero():
    assert reconstruction_levels(8, 5).tolist() == [8, 6, 4, 2, 0]
    assert reconstruction_levels(2, 10).tolist() == [2, 1, 0]  # no repeated level
    assert reconstruction_levels(0, 3).tolist() == [0]
    assert reconstruction_levels(50, 1).tolist() == [50]  # one step: at the level the images were noised to
    assert reconstruction_levels(50, 2).tolist() == [50, 0]


@pytest.mark.parametrize("level, steps", [(0, 7), (10, 7), (50, 7), (99, 7), (60, 1), (60, 2)])
def test_an_exact_noise_predictor_gets_the_images_back(level, steps):
    oracle = Oracle(X0)
    out = reconstruct(oracle, X0, np.zeros(4, "float32"), level, schedule=SCHEDULE, steps=steps)
    np.testing.assert_allclose(out, X0, atol=2e-4)
    # the first step is at the level the images were noised to, one call per step
    levels = reconstruction_levels(level, steps)
    assert int(oracle.highest.numpy()) == level and int(oracle.lowest.numpy()) == levels[-1]
    assert int(oracle.calls.numpy()) == len(levels)


@pytest.mark.parametrize("level, steps", [(99, 7), (60, 1)])
def test_an_exact_v_predictor_gets_the_images_back_with_a_v_schedule(level, steps):
    schedule = make_schedule(DiffusionConfig(timesteps=100, prediction="v"))
    out = reconstruct(Oracle(X0, prediction="v"), X0, np.zeros(4, "float32"), level, schedule=schedule, steps=steps)
    np.testing.assert_allclose(out, X0, atol=2e-4)


def test_the_seed_fixes_the_noise_and_a_wrong_model_is_seen():
    text = np.zeros((3, 4), "float32")
    wrong = Oracle(X0, scale=0.5)  # under-predicts ε: the result keeps noise, more of it from higher up
    a = reconstruct(wrong, X0, text, 80, schedule=SCHEDULE, steps=10, seed=1)
    b = reconstruct(wrong, X0, text, 80, schedule=SCHEDULE, steps=10, seed=1)
    c = reconstruct(wrong, X0, text, 80, schedule=SCHEDULE, steps=10, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    low = reconstruct(wrong, X0, text, 5, schedule=SCHEDULE, steps=10, seed=1)
    assert np.abs(low - X0).mean() < np.abs(a - X0).mean()


@pytest.mark.parametrize("kwargs, message", [
    (dict(level=100), "level: got 100; allowed: an integer from 0 to T - 1 = 99"),
    (dict(level=-1), "level: got -1"),
    (dict(level=2.5), "level: got 2.5"),
    (dict(level=5, steps=0), "steps: got 0; allowed: an integer >= 1"),
    (dict(level=5, guidance_scale=float("nan")), "guidance_scale: got nan"),
])
def test_bad_arguments_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        reconstruct(Oracle(X0), X0, np.zeros(4, "float32"), schedule=SCHEDULE, **kwargs)


def test_a_unet_checks_the_image_and_embedding_sizes():
    from pokemon_diffusion.config import ModelConfig
    from pokemon_diffusion.model.unet import build_unet

    model = build_unet(ModelConfig(image_size=16, base_width=8, channel_mults=(1,), num_res_blocks=1, text_dim=4))
    images = np.zeros((2, 16, 16, 3), "float32")
    out = reconstruct(model, images, np.zeros(4, "float32"), 30, schedule=SCHEDULE, steps=3, guidance_scale=2.0)
    assert out.shape == images.shape and np.all(np.abs(out) <= 1)
    with pytest.raises(EncoderError, match="5 values but the model expects 4"):
        reconstruct(model, images, np.zeros(5, "float32"), 30, schedule=SCHEDULE)
    with pytest.raises(ConfigError, match="height 8"):
        reconstruct(model, X0, np.zeros(4, "float32"), 30, schedule=SCHEDULE)


def test_a_negative_embedding_replaces_the_null_one_when_guided():
    from test_samplers import tiny_model

    model, text, negative = tiny_model(timesteps=100), np.linspace(-1, 1, 4).astype("float32"), np.full(4, 0.5, "float32")
    args = dict(schedule=SCHEDULE, steps=3, seed=1)
    today = reconstruct(model, X0, text, 40, guidance_scale=3.0, **args)
    np.testing.assert_array_equal(reconstruct(model, X0, text, 40, guidance_scale=3.0, negative_emb=np.zeros(4), **args),
                                  today)
    assert not np.allclose(reconstruct(model, X0, text, 40, guidance_scale=3.0, negative_emb=negative, **args), today,
                           atol=1e-4)
    np.testing.assert_array_equal(reconstruct(model, X0, text, 40, guidance_scale=1.0, negative_emb=negative, **args),
                                  reconstruct(model, X0, text, 40, guidance_scale=1.0, **args))
