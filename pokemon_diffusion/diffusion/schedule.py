"""Noise schedules and the closed-form forward process.

Tables are computed in float64 with NumPy and stored as float32 (``NoiseSchedule``); the
TensorFlow helpers below gather from them per batch element, so they work inside ``tf.function``.

References:
    DDPM: Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (eq. 4, 6, 7, 11).
    Improved DDPM: Nichol & Dhariwal 2021 (cosine schedule, eq. 17).
    v-prediction: Salimans & Ho 2022, "Progressive Distillation" (sec. 4, appendix D).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..config import DiffusionConfig


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """β_t rising linearly from ``beta_start`` to ``beta_end`` (DDPM sec. 4), float64, shape (T,)."""
    return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule (Improved DDPM eq. 17): ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T)+s)/(1+s)·π/2).

    β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped at ``max_beta`` to avoid the singularity at t = T.
    """
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    return np.clip(1.0 - alphas_cumprod[1:] / alphas_cumprod[:-1], 0.0, max_beta)


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """Precomputed float32 tables of one schedule, indexed by t = 0 .. T−1."""

    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    posterior_variance: np.ndarray
    prediction: str = "epsilon"

    @property
    def timesteps(self) -> int:
        return int(self.betas.shape[0])

    @classmethod
    def from_betas(cls, betas: np.ndarray, prediction: str = "epsilon") -> "NoiseSchedule":
        betas = np.asarray(betas, dtype=np.float64)
        alphas_cumprod = np.cumprod(1.0 - betas)
        alphas_cumprod_prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
        # DDPM eq. 7: β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        f32 = lambda a: a.astype(np.float32)  # noqa: E731
        return cls(f32(betas), f32(alphas_cumprod), f32(alphas_cumprod_prev), f32(posterior_variance),
                   prediction)


def make_schedule(config: DiffusionConfig) -> NoiseSchedule:
    """Build the tables for a :class:`DiffusionConfig`."""
    if config.schedule == "linear":
        betas = linear_betas(config.timesteps, config.beta_start, config.beta_end)
    else:
        betas = cosine_betas(config.timesteps)
    return NoiseSchedule.from_betas(betas, config.prediction)


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
