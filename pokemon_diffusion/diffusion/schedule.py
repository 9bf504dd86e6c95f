"""Noise schedules and the closed-form forward process.

Tables are computed in float64 with NumPy and stored as float32 (``NoiseSchedule``); the
TensorFlow helpers below gather from them per batch element, so they work inside ``tf.function``.

References:
    DDPM: Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (eq. 4, 6, 7, 11).
    Improved DDPM: Nichol & Dhariwal 2021 (cosine schedule, eq. 17).
    v-prediction: Salimans & Ho 2022, "Progressive Distillation" (sec. 4, appendix D).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .tables import NoiseSchedule, cosine_betas, linear_betas, make_schedule  # noqa: F401  (re-exported)


def _at(table: np.ndarray, t: tf.Tensor, ndim: int = 4) -> tf.Tensor:
    """Gather ``table[t]`` for a batch of integer timesteps, shaped to broadcast over images."""
    values = tf.gather(tf.constant(table), tf.cast(t, tf.int32))
    return tf.reshape(values, [-1] + [1] * (ndim - 1))


def q_sample(schedule: NoiseSchedule, x0: tf.Tensor, t: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """Sample x_t ~ q(x_t | x_0) in closed form (DDPM eq. 4): √ᾱ_t·x_0 + √(1−ᾱ_t)·ε."""
    abar = _at(schedule.alphas_cumprod, t, len(x0.shape))
    return tf.sqrt(abar) * x0 + tf.sqrt(1.0 - abar) * noise


def training_target(schedule: NoiseSchedule, x0: tf.Tensor, t: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """What the network learns to output: ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (Salimans & Ho, eq. 9)."""
    if schedule.prediction == "epsilon":
        return noise
    abar = _at(schedule.alphas_cumprod, t, len(x0.shape))
    return tf.sqrt(abar) * noise - tf.sqrt(1.0 - abar) * x0


def split_prediction(schedule: NoiseSchedule, x_t: tf.Tensor, t: tf.Tensor, output: tf.Tensor):
    """Turn a network output into ``(eps, x0)`` estimates, whatever the prediction type.

    ε-prediction: x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t (DDPM eq. 15 rearranged).
    v-prediction: x̂_0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂ and ε̂ = √(1−ᾱ_t)·x_t + √ᾱ_t·v̂.
    """
    abar = _at(schedule.alphas_cumprod, t, len(x_t.shape))
    sqrt_abar, sqrt_one_minus = tf.sqrt(abar), tf.sqrt(1.0 - abar)
    if schedule.prediction == "epsilon":
        eps = output
        x0 = (x_t - sqrt_one_minus * eps) / sqrt_abar
    else:
        x0 = sqrt_abar * x_t - sqrt_one_minus * output
        eps = sqrt_one_minus * x_t + sqrt_abar * output
    return eps, x0
