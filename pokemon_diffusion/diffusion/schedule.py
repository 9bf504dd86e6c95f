"""Noise schedules and the closed-form forward process.

Tables are computed in float64 with NumPy and stored as float32 (``NoiseSchedule``); the
TensorFlow helpers below gather from them per batch element, so they work inside ``tf.function``.

References:
    DDPM: Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (eq. 4, 6, 7, 11).
    Improved DDPM: Nichol & Dhariwal 2021 (cosine schedule, eq. 17).
    v-prediction: Salimans & Ho 2022, "Progressive Distillation" (sec. 4, appendix D).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import tensorflow as tf

from . import parametrization
from .tables import NoiseSchedule, cosine_betas, linear_betas, make_schedule  # noqa: F401  (re-exported)


def _at(table: np.ndarray, t: tf.Tensor, ndim: int = 4) -> tf.Tensor:
    """Gather ``table[t]`` for a batch of integer timesteps, shaped to broadcast over images."""
    values = tf.gather(tf.constant(table), tf.cast(t, tf.int32))
    return tf.reshape(values, [-1] + [1] * (ndim - 1))


def _coefficients(schedule: NoiseSchedule, t: tf.Tensor, ndim: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """(√ᾱ_t, √(1−ᾱ_t)) for a batch of timesteps, shaped to broadcast over ``ndim``-d images."""
    abar = _at(schedule.alphas_cumprod, t, ndim)
    return tf.sqrt(abar), tf.sqrt(1.0 - abar)


def q_sample(schedule: NoiseSchedule, x0: tf.Tensor, t: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """Sample x_t ~ q(x_t | x_0) in closed form (DDPM eq. 4): √ᾱ_t·x_0 + √(1−ᾱ_t)·ε."""
    return parametrization.noised(*_coefficients(schedule, t, len(x0.shape)), x0, noise)


def training_target(schedule: NoiseSchedule, x0: tf.Tensor, t: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """What the network learns to output: ε or v (:func:`.parametrization.target`)."""
    return parametrization.target(schedule.prediction, *_coefficients(schedule, t, len(x0.shape)), x0, noise)


def split_prediction(schedule: NoiseSchedule, x_t: tf.Tensor, t: tf.Tensor, output: tf.Tensor):
    """Turn a network output into ``(eps, x0)`` estimates (:func:`.parametrization.epsilon_and_x0`)."""
    return parametrization.epsilon_and_x0(schedule.prediction, *_coefficients(schedule, t, len(x_t.shape)),
                                          x_t, output)
