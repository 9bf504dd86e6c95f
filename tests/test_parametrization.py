"""The ε / v formulas of diffusion/parametrization.py, on NumPy arrays (no framework)."""

import numpy as np
import pytest

from pokemon_diffusion.diffusion import parametrization as p


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    abar = rng.uniform(0.01, 0.999, size=(4, 1, 1, 1))
    x0, noise = rng.uniform(-1, 1, size=(2, 4, 8, 8, 3))
    return np.sqrt(abar), np.sqrt(1 - abar), x0, noise


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_the_output_of_a_perfect_network_gives_back_the_noise_and_the_image(prediction):
    a, b, x0, noise = _batch()
    x_t = p.noised(a, b, x0, noise)
    output = p.target(prediction, a, b, x0, noise)
    eps, x0_hat = p.epsilon_and_x0(prediction, a, b, x_t, output)
    np.testing.assert_allclose(eps, noise, atol=1e-9)
    np.testing.assert_allclose(x0_hat, x0, atol=1e-9)
    np.testing.assert_allclose(p.epsilon(prediction, a, b, x_t, output), eps, atol=1e-12)


def test_v_is_the_rotation_of_the_paper():
    # Salimans & Ho eq. 9 with α_t = √ᾱ, σ_t = √(1−ᾱ): v = α·ε − σ·x, and ‖v‖² summed over (x, ε)
    a, b, x0, noise = _batch(1)
    v = p.target("v", a, b, x0, noise)
    np.testing.assert_allclose(v, a * noise - b * x0)
    np.testing.assert_allclose(v ** 2 + p.noised(a, b, x0, noise) ** 2, x0 ** 2 + noise ** 2, atol=1e-9)


def test_an_unknown_prediction_type_is_refused_by_name():
    a, b, x0, noise = _batch()
    with pytest.raises(ValueError, match=r"prediction: got 'x0'; allowed: epsilon, v"):
        p.target("x0", a, b, x0, noise)
