"""objective.py: the shared training maths against TensorFlow's own definitions (fast, TF process)."""

import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.config import DiffusionConfig
from pokemon_diffusion.diffusion.schedule import make_schedule
from pokemon_diffusion.training import objective


def test_the_held_out_measure_is_in_epsilon_space_for_both_predictions():
    """A perfect v-predictor has zero held-out error; an ε-predictor's error is its plain ε-MSE."""
    schedules = {p: make_schedule(DiffusionConfig(timesteps=20, prediction=p)) for p in ("epsilon", "v")}
    abar = schedules["v"].alphas_cumprod
    rng = np.random.default_rng(1)
    x0, noise = rng.standard_normal((3, 4, 4, 3), np.float32), rng.standard_normal((3, 4, 4, 3), np.float32)
    t = np.array([0, 9, 19], np.int32)
    perfect_v = lambda x_t: schedules["v"].target(tf.constant(x0), t, noise)
    np.testing.assert_allclose(objective.heldout_error(schedules["v"], tf.constant(x0), t, noise, perfect_v).numpy(),
                               0.0, atol=1e-10)
    zeros = lambda x_t: tf.zeros_like(x_t)
    np.testing.assert_allclose(objective.heldout_error(schedules["epsilon"], tf.constant(x0), t, noise, zeros).numpy(),
                               np.mean(noise ** 2, axis=(1, 2, 3)), rtol=1e-6)
    # v = 0 implies ε̂ = √(1−ᾱ)·x_t
    a = abar[t].reshape(-1, 1, 1, 1)
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise
    np.testing.assert_allclose(objective.heldout_error(schedules["v"], tf.constant(x0), t, noise, zeros).numpy(),
                               np.mean((noise - np.sqrt(1 - a) * x_t) ** 2, axis=(1, 2, 3)), rtol=1e-5)


def test_loss_ema_and_clipping():
    target, prediction = np.ones((2, 2, 2, 1), np.float32), np.zeros((2, 2, 2, 1), np.float32)
    prediction[1] = 3.0
    np.testing.assert_allclose(objective.per_example_loss(target, tf.constant(prediction, tf.bfloat16)).numpy(), [1, 4])
    assert float(objective.ema_update(tf.constant(10.0), tf.constant(0.0), 0.9)) == pytest.approx(9.0)
    grads = [tf.constant([3.0]), tf.constant([4.0])]
    clipped, norm = objective.clip_by_global_norm(grads, 1.0)
    want, want_norm = tf.clip_by_global_norm(grads, 1.0)
    assert float(norm) == pytest.approx(float(want_norm)) == pytest.approx(5.0)
    np.testing.assert_allclose([float(c[0]) for c in clipped], [float(w[0]) for w in want], rtol=1e-6)
    unclipped, _ = objective.clip_by_global_norm(grads, 10.0)
    assert [float(c[0]) for c in unclipped] == [3.0, 4.0]


def test_held_out_noise_and_grid_are_fixed_and_backend_free():
    assert objective.eval_t_grid(1000, 8).tolist() == [0, 143, 285, 428, 571, 714, 856, 999]
    a, b = objective.eval_noise((2, 4, 4, 3), 0, 143, 1), objective.eval_noise((2, 4, 4, 3), 0, 143, 1)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and not np.array_equal(a, objective.eval_noise((2, 4, 4, 3), 0, 143, 2))
