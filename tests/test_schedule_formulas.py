"""The schedule's ε / v formulas (``NoiseSchedule`` methods, keras.ops) against their closed forms."""

import numpy as np
import pytest
from keras import ops

from pokemon_diffusion.config import DiffusionConfig
from pokemon_diffusion.diffusion.schedule import NoiseSchedule, make_schedule
from pokemon_diffusion.errors import ConfigError


def _batch(prediction, seed=0):
    schedule = make_schedule(DiffusionConfig(timesteps=50, prediction=prediction))
    rng = np.random.default_rng(seed)
    t = np.array([0, 10, 30, 45], np.int32)
    x0, noise = rng.uniform(-1, 1, size=(2, 4, 8, 8, 3)).astype(np.float32)
    abar = schedule.alphas_cumprod[t].astype(np.float64).reshape(-1, 1, 1, 1)
    return schedule, t, x0, noise, np.sqrt(abar), np.sqrt(1 - abar)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_the_output_of_a_perfect_network_gives_back_the_noise_and_the_image(prediction):
    schedule, t, x0, noise, a, b = _batch(prediction)
    x_t = schedule.q_sample(x0, t, noise)
    np.testing.assert_allclose(ops.convert_to_numpy(x_t), a * x0 + b * noise, atol=1e-6)
    output = schedule.target(x0, t, noise)
    eps, x0_hat = schedule.epsilon_and_x0(x_t, t, output)
    np.testing.assert_allclose(ops.convert_to_numpy(eps), noise, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(x0_hat)[1:], x0[1:], atol=1e-4)  # t=0 from ε: ill-conditioned
    np.testing.assert_allclose(ops.convert_to_numpy(schedule.epsilon(x_t, t, output)), ops.convert_to_numpy(eps),
                               atol=1e-7)


def test_v_is_the_rotation_of_the_paper():
    # Salimans & Ho eq. 9 with α_t = √ᾱ, σ_t = √(1−ᾱ): v = α·ε − σ·x, and ‖v‖² + ‖x_t‖² = ‖x‖² + ‖ε‖²
    schedule, t, x0, noise, a, b = _batch("v", 1)
    v = ops.convert_to_numpy(schedule.target(x0, t, noise))
    np.testing.assert_allclose(v, a * noise - b * x0, atol=1e-6)
    x_t = ops.convert_to_numpy(schedule.q_sample(x0, t, noise))
    np.testing.assert_allclose(v ** 2 + x_t ** 2, x0 ** 2 + noise ** 2, atol=1e-5)
    assert make_schedule(DiffusionConfig(prediction="epsilon")).target(x0, t, noise) is noise  # no arithmetic


def test_an_unknown_prediction_type_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"prediction: got 'x0'; allowed: epsilon \| v"):
        NoiseSchedule.from_betas(np.linspace(1e-4, 0.02, 10), "x0")
