"""Min-SNR-γ loss weights (Hang et al. 2023) and their use in the train step."""

import numpy as np
import pytest

from pokemon_diffusion.config import DiffusionConfig, TrainConfig
from pokemon_diffusion.diffusion.schedule import loss_weights, snr
from pokemon_diffusion.errors import ConfigError


def _abar(schedule="linear", timesteps=1000):
    from pokemon_diffusion.diffusion.schedule import make_schedule

    return make_schedule(DiffusionConfig(schedule=schedule, timesteps=timesteps)).alphas_cumprod


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_weights_follow_the_papers_formula(schedule):
    abar = _abar(schedule)
    ratio = abar.astype(np.float64) / (1.0 - abar.astype(np.float64))
    gamma = 5.0
    eps, v = loss_weights(abar, "epsilon", "min_snr", gamma), loss_weights(abar, "v", "min_snr", gamma)
    assert eps.dtype == np.float32 and eps.shape == abar.shape
    finite = ratio > 0
    np.testing.assert_allclose(eps[finite], (np.minimum(ratio, gamma) / ratio)[finite], rtol=1e-6)
    np.testing.assert_allclose(v, np.minimum(ratio, gamma) / (ratio + 1.0), rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(eps)) and np.all(np.isfinite(v))
    # low noise (high SNR) is down-weighted; from SNR <= γ on, ε keeps weight 1
    assert eps[0] < 0.01 and eps[-1] == 1.0 and np.all(np.diff(eps) >= -1e-7)
    assert np.all(eps[ratio <= gamma] == 1.0)


def test_hand_computed_values_and_the_defaults():
    abar = np.array([0.99, 5 / 6, 0.5, 0.0])  # SNR 99, 5, 1, 0
    np.testing.assert_allclose(loss_weights(abar, "epsilon"), [5 / 99, 1, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(loss_weights(abar, "v"), [5 / 100, 5 / 6, 0.5, 0], rtol=1e-6)
    np.testing.assert_allclose(loss_weights(abar, "epsilon", "min_snr", 1.0), [1 / 99, 0.2, 1, 1], rtol=1e-6)
    assert loss_weights(abar, "v", "none").tolist() == [1, 1, 1, 1]
    assert snr(np.array([0.5]))[0] == 1.0
    config = TrainConfig()
    assert (config.loss_weighting, config.min_snr_gamma) == ("none", 5.0)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="loss_weighting: got 'p2'; allowed: none | min_snr"):
        loss_weights(np.array([0.5]), "epsilon", "p2")
    with pytest.raises(ConfigError, match="min_snr_gamma"):
        loss_weights(np.array([0.5]), "epsilon", "min_snr", 0.0)
    with pytest.raises(ConfigError, match="TrainConfig.loss_weighting"):
        TrainConfig(loss_weighting="snr")
    with pytest.raises(ConfigError, match="TrainConfig.min_snr_gamma"):
        TrainConfig(min_snr_gamma=-1.0)


@pytest.mark.slow
def test_train_step_multiplies_the_per_example_loss_by_the_weights():
    """Same init, data and draws: γ above every SNR changes nothing; a small γ multiplies the ε loss by
    exactly the Min-SNR weight min(SNR_t, γ)/SNR_t of the t drawn.

    One example and T = 2, so the step's loss is one example's loss times the weight of one of two
    known t: the ratio must be one of the two weights (squared or inverted weights are not)."""
    import keras
    import tensorflow as tf

    from helpers_training import tiny_config
    from pokemon_diffusion.diffusion.schedule import make_schedule
    from pokemon_diffusion.training.trainer import Trainer

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    batch = (tf.constant(images), tf.constant(rng.standard_normal((1, 8)).astype(np.float32)),
             tf.range(1, dtype=tf.int64))
    losses = {}
    for name, weighting, gamma in (("none", "none", 5.0), ("huge", "min_snr", 1e6), ("small", "min_snr", 0.5)):
        keras.utils.set_random_seed(0)
        config = tiny_config(prediction="epsilon", timesteps=2, strategy="one", loss_weighting=weighting,
                             min_snr_gamma=gamma, warmup_steps=0, batch_size=1)
        trainer = Trainer(config, total_steps=10)
        trainer.distribute(tf.data.Dataset.from_tensors(batch))
        losses[name] = float(trainer.train_step(batch))
    assert losses["huge"] == pytest.approx(losses["none"], rel=1e-6)
    abar = np.asarray(make_schedule(config.diffusion).alphas_cumprod, np.float64)
    weights = np.minimum(abar / (1 - abar), 0.5) / (abar / (1 - abar))  # ~5e-5 at t = 0, ~0.0103 at t = 1
    ratio = losses["small"] / losses["none"]
    assert min(abs(ratio / w - 1) for w in weights) < 1e-4, (ratio, weights)
