"""The reverse-process step maths, pure functions of tensors (no model, no loop).

``ddpm_step`` (DDPM eq. 11 with the posterior of eq. 6-7), ``ddim_step`` (DDIM eq. 12 and 16),
classifier-free guidance (Ho & Salimans eq. 6), condition annealing (CADS) and the DDIM
sub-sequence. Each step returns a :class:`StepOutput` (prev_sample, pred_original_sample), as
diffusers' schedulers do.

References:
    DDPM: Ho et al. 2020, eq. 6-7 (posterior q(x_{t-1} | x_t, x_0)) and eq. 11 (reverse step).
    DDIM: Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 and eq. 16.
    CADS: Sadat et al. 2024, "CADS: Unleashing the Diversity of Diffusion Models through
    Condition-Annealed Sampling", eq. 3-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from ..config import CADS_RANGE
from ..errors import ConfigError
from .schedule import NoiseSchedule, gather


@dataclass(frozen=True)
class StepOutput:
    """What one reverse step returns.

    Attributes:
        prev_sample: x at the next (less noisy) level, shape of the input.
        pred_original_sample: the model's estimate of x_0 at this step (clipped if asked).
    """

    prev_sample: tf.Tensor
    pred_original_sample: tf.Tensor



def apply_guidance(out_cond: tf.Tensor, out_null: tf.Tensor, guidance_scale) -> tf.Tensor:
    """Classifier-free guidance (Ho & Salimans eq. 6): ``out_null + w · (out_cond − out_null)``.

    Applied to the raw network output. For ε this is the paper's formula; for v it is the same
    combination, because ε = √(1−ᾱ_t)·x_t + √ᾱ_t·v is affine in v with the same x_t in both branches.
    """
    return out_null + guidance_scale * (out_cond - out_null)


@dataclass(frozen=True)
class ConditionAnnealing:
    """CADS settings (Sadat et al. 2024): noise on the condition early in sampling, for variety.

    While the noise level τ = (t + 1) / T is above ``start`` the conditional embedding is mixed with
    Gaussian noise, fully at τ ≥ ``end`` (pure noise, rescaled to the embedding's statistics), and
    less and less down to ``start``, below which the prompt is clean. Seeds of one prompt then
    take different coarse layouts, which the clean prompt fills in.

    Attributes:
        strength: s, the noise's scale relative to the embedding's root-mean-square value
            (0 turns annealing off).
        start, end: τ₁ < τ₂ in [0, 1] (default ``config.CADS_RANGE``).
        mix: ψ, the share of the rescaled embedding (eq. 5; 1 = fully rescaled).
    """

    strength: float = 0.0
    start: float = CADS_RANGE[0]
    end: float = CADS_RANGE[1]
    mix: float = 1.0

    def __post_init__(self) -> None:
        values = (self.strength, self.start, self.end, self.mix)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
            raise ConfigError(f"condition annealing: got {values}; allowed: finite numbers")
        if not 0.0 <= self.strength <= 10.0:
            raise ConfigError(f"condition annealing strength: got {self.strength}; allowed: 0 (off) to 10")
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ConfigError(f"condition annealing range: got {self.start}..{self.end}; "
                              "allowed: 0 <= start < end <= 1 (noise levels, 1 = pure noise)")
        if not 0.0 <= self.mix <= 1.0:
            raise ConfigError(f"condition annealing mix: got {self.mix}; allowed: 0 to 1")

    @classmethod
    def from_config(cls, config) -> Optional["ConditionAnnealing"]:
        """The settings of a ``SampleConfig`` (``cads_strength``, ``cads_range``), or None when off."""
        return cls(config.cads_strength, *config.cads_range) if config.cads_strength > 0 else None

    def as_row(self) -> list:
        """[strength, start, end, mix]: one row of the compiled loop's (B, 4) settings table."""
        return [self.strength, self.start, self.end, self.mix]


def anneal_condition(cond: tf.Tensor, level, noise: tf.Tensor, settings: tf.Tensor) -> tf.Tensor:
    """CADS (Sadat et al. 2024, eq. 3-5): the condition seen at noise level ``level`` in (0, 1].

    ŷ = √γ·y + s·√(1−γ)·rms(y)·n, γ = 1 below ``start``, 0 above ``end``, linear between (eq. 3);
    then ŷ rescaled per row to y's mean and standard deviation (eq. 4), mixed ψ : 1−ψ with ŷ (eq. 5).
    An all-zeros row (the null condition) stays zeros; a row of strength 0 stays as it is.

    Args:
        cond: (B, dim) float32 embeddings.
        level: scalar float32, (t + 1) / T of this step.
        noise: standard normal, shape of ``cond``.
        settings: (B, 4) or (4,) float32 rows of ``ConditionAnnealing.as_row()``: one per image, or
            one for all (a row of strength 0 leaves its image's prompt clean).
    """
    strength, start, end, mix = tf.unstack(tf.reshape(settings, [-1, 4, 1]), axis=1)  # each (B or 1, 1)
    gamma = tf.clip_by_value((end - level) / (end - start), 0.0, 1.0)
    mean, var = tf.nn.moments(cond, axes=[1], keepdims=True)
    rms = tf.sqrt(tf.reduce_mean(tf.square(cond), axis=1, keepdims=True))
    noisy = tf.sqrt(gamma) * cond + strength * tf.sqrt(1.0 - gamma) * rms * noise
    noisy_mean, noisy_var = tf.nn.moments(noisy, axes=[1], keepdims=True)
    rescaled = (noisy - noisy_mean) * tf.math.divide_no_nan(tf.sqrt(var), tf.sqrt(noisy_var)) + mean
    return tf.where(strength > 0.0, mix * rescaled + (1.0 - mix) * noisy, cond)  # strength 0: bit for bit


def _alpha_bar_prev(schedule: NoiseSchedule, t_prev: tf.Tensor) -> tf.Tensor:
    """ᾱ at ``t_prev``, where ``t_prev = -1`` stands for the clean image (ᾱ = 1)."""
    table = np.concatenate([[1.0], schedule.alphas_cumprod]).astype(np.float32)
    return gather(table, tf.cast(t_prev, tf.int32) + 1)


def _estimate(schedule: NoiseSchedule, x_t, t, model_output, clip_x0: bool):
    """(ε̂, x̂_0) from the network output; with ``clip_x0``, x̂_0 is clipped to [-1, 1] and ε̂
    re-derived from it so that both stay on the same line through x_t (DDPM eq. 4)."""
    eps, x0 = schedule.epsilon_and_x0(x_t, t, model_output)
    if clip_x0:
        x0 = tf.clip_by_value(x0, -1.0, 1.0)
        abar = gather(schedule.alphas_cumprod, t)
        eps = (x_t - tf.sqrt(abar) * x0) / tf.sqrt(1.0 - abar)
    return eps, x0


def posterior_mean_coefficients(schedule: NoiseSchedule) -> Tuple[np.ndarray, np.ndarray]:
    """The two (T,) coefficients of the posterior mean μ̃(x_t, x_0) (DDPM eq. 7), float32.

    Computed in float64 from the betas: in float32, 1 − ᾱ_0 = β_0 = 1e-4 loses three digits and
    the last step would return 0.99984·x̂_0 instead of x̂_0.
    """
    betas = schedule.betas.astype(np.float64)
    abar = np.cumprod(1.0 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    coef_x0 = np.sqrt(abar_prev) * betas / (1.0 - abar)
    coef_xt = np.sqrt(1.0 - betas) * (1.0 - abar_prev) / (1.0 - abar)
    return coef_x0.astype(np.float32), coef_xt.astype(np.float32)


def ddpm_step(schedule: NoiseSchedule, x_t: tf.Tensor, t: tf.Tensor, model_output: tf.Tensor,
              noise: tf.Tensor, *, clip_x0: bool = True) -> StepOutput:
    """One ancestral DDPM step x_t → x_{t−1}, sampling the posterior q(x_{t−1} | x_t, x̂_0).

    Args:
        schedule: the noise schedule the model was trained with.
        x_t: (B, H, W, C) current sample.
        t: (B,) int, 0-based step index (0 .. T−1).
        model_output: the network's (guided) prediction, ε or v as ``schedule.prediction`` says.
        noise: standard normal, shape of ``x_t``; unused at t = 0, where β̃_0 = 0.
        clip_x0: clip x̂_0 to [-1, 1] before forming the mean.

    Returns:
        StepOutput(prev_sample=x_{t−1}, pred_original_sample=x̂_0).
    """
    # 1. ε̂ and x̂_0 from the network output (x̂_0 optionally clipped)
    _, x0 = _estimate(schedule, x_t, t, model_output, clip_x0)
    # 2. posterior mean, DDPM eq. 7: μ̃ = √ᾱ_{t−1}·β_t/(1−ᾱ_t)·x̂_0 + √α_t·(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t.
    #    With the unclipped x̂_0 this equals eq. 11: (x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t.
    coef_x0, coef_xt = posterior_mean_coefficients(schedule)
    mean = gather(coef_x0, t) * x0 + gather(coef_xt, t) * x_t
    # 3. add √β̃_t·z, β̃_t the posterior variance of eq. 7 (zero at t = 0: the last step is the mean)
    variance = gather(schedule.posterior_variance, t)
    return StepOutput(mean + tf.sqrt(variance) * noise, x0)


def ddim_step(schedule: NoiseSchedule, x_t: tf.Tensor, t: tf.Tensor, t_prev: tf.Tensor,
              model_output: tf.Tensor, noise: tf.Tensor, eta=0.0, *, clip_x0: bool = True) -> StepOutput:
    """One DDIM step x_t → x_{t_prev} (Song et al. eq. 12), deterministic when ``eta`` = 0.

    Args:
        schedule: the noise schedule the model was trained with.
        x_t: (B, H, W, C) current sample.
        t: (B,) int, 0-based step index.
        t_prev: (B,) int, the next step index (< t); -1 means the clean image (ᾱ = 1).
        model_output: the network's (guided) prediction, ε or v.
        noise: standard normal, shape of ``x_t``; scaled by σ, so unused when ``eta`` = 0.
        eta: η of eq. 16; 0 = DDIM, 1 with t_prev = t − 1 = the DDPM posterior (σ² = β̃_t).
        clip_x0: clip x̂_0 to [-1, 1] (and re-derive ε̂ from it).

    Returns:
        StepOutput(prev_sample=x_{t_prev}, pred_original_sample=x̂_0).
    """
    # 1. ε̂ and x̂_0
    eps, x0 = _estimate(schedule, x_t, t, model_output, clip_x0)
    abar = gather(schedule.alphas_cumprod, t)
    abar_prev = _alpha_bar_prev(schedule, t_prev)
    # 2. σ_t(η), eq. 16: η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev)
    sigma = eta * tf.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
    # 3. eq. 12: x_prev = √ᾱ_prev·x̂_0 + √(1−ᾱ_prev−σ²)·ε̂ + σ·z  (max(…, 0) guards float rounding)
    direction = tf.sqrt(tf.maximum(1.0 - abar_prev - sigma ** 2, 0.0)) * eps
    return StepOutput(tf.sqrt(abar_prev) * x0 + direction + sigma * noise, x0)


def ddim_timesteps(timesteps: int, steps: int) -> np.ndarray:
    """The DDIM sub-sequence: ``steps`` 0-based indices evenly spaced from T−1 down to 0.

    Starting at T−1 (the "trailing" spacing) makes the first step see pure noise, as in training.

    Raises:
        ConfigError: ``steps`` is not from 1 to ``timesteps``.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= timesteps:
        raise ConfigError(f"DDIM steps: got {steps}; allowed: 1 to the schedule's T = {timesteps}")
    # spacing (T−1)/(steps−1) >= 1, so the rounded values are distinct
    return np.round(np.linspace(timesteps - 1, 0, steps)).astype(np.int32)
