import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.config import DiffusionConfig
from pokemon_diffusion.diffusion.schedule import cosine_betas, linear_betas, make_schedule, q_sample


def test_linear_endpoints_and_dtype():
    betas = linear_betas(1000)
    assert betas.dtype == np.float64
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    schedule = make_schedule(DiffusionConfig())
    assert schedule.betas.dtype == np.float32 and schedule.timesteps == 1000
    # DDPM's linear schedule leaves almost no signal at t = T (ᾱ_T ≈ 4e-5)
    assert schedule.alphas_cumprod[-1] == pytest.approx(4.04e-5, rel=0.05)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alphas_cumprod_decreases_from_one_to_zero(name):
    s = make_schedule(DiffusionConfig(schedule=name, timesteps=1000))
    abar = s.alphas_cumprod
    assert np.all(np.diff(abar) < 0)
    assert 0.99 < abar[0] <= 1.0 and abar[-1] < 0.01
    assert np.all(s.posterior_variance >= 0) and s.posterior_variance[0] == 0.0
    assert s.alphas_cumprod_prev[0] == 1.0


def test_cosine_matches_its_closed_form():
    T, s = 1000, 0.008
    abar = np.cumprod(1 - cosine_betas(T))
    f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    assert abar[499] == pytest.approx(f(500) / f(0), rel=1e-6)


def test_q_sample_moments():
    schedule = make_schedule(DiffusionConfig())
    x0 = tf.fill([20000, 1, 1, 1], 0.5)
    t = tf.fill([20000], 300)
    xt = q_sample(schedule, x0, t, tf.random.stateless_normal(x0.shape, seed=[1, 2]))
    abar = schedule.alphas_cumprod[300]
    assert float(tf.reduce_mean(xt)) == pytest.approx(np.sqrt(abar) * 0.5, abs=0.01)
    assert float(tf.math.reduce_std(xt)) == pytest.approx(np.sqrt(1 - abar), abs=0.01)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_epsilon_and_x0_inverts_the_training_target(prediction):
    schedule = make_schedule(DiffusionConfig(prediction=prediction))
    x0 = tf.random.stateless_uniform([4, 8, 8, 3], seed=[0, 1], minval=-1, maxval=1)
    noise = tf.random.stateless_normal([4, 8, 8, 3], seed=[0, 2])
    t = tf.constant([0, 10, 500, 999])
    xt = q_sample(schedule, x0, t, noise)
    eps, x0_hat = schedule.epsilon_and_x0(xt, t, schedule.target(x0, t, noise))
    np.testing.assert_allclose(eps, noise, atol=2e-3)
    np.testing.assert_allclose(x0_hat[:3], x0[:3], atol=2e-3)  # t=999: x0 from ε is ill-conditioned
