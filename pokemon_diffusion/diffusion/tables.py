"""Noise-schedule tables in NumPy only (no TensorFlow), so the JAX path can build them too.

Computed in float64 and stored as float32 (:class:`NoiseSchedule`). The TensorFlow helpers that
gather from them live in :mod:`pokemon_diffusion.diffusion.schedule`, which re-exports these names.

References:
    DDPM: Ho et al. 2020 (sec. 4, eq. 7). Improved DDPM: Nichol & Dhariwal 2021 (eq. 17).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
