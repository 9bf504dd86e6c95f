"""The noise schedule: its tables and every formula that reads them, in one object.

:class:`NoiseSchedule` holds the per-timestep tables (computed in float64 with NumPy, stored as
float32) and the formulas both trainers and the samplers use, written once in ``keras.ops`` so
they run inside a TensorFlow ``tf.function`` and a ``jax.jit`` alike:

* ``q_sample``: the forward process x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε (DDPM eq. 4);
* ``target``: what the network learns, ε or v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (Salimans & Ho eq. 9);
* ``epsilon_and_x0`` / ``epsilon``: the (ε̂, x̂_0) a network output implies at x_t;
* ``loss_weights``: per-timestep loss weights, 1 or Min-SNR-γ (Hang et al. 2023), NumPy.

Min-SNR-γ ("Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023) weights each
timestep's loss by its clamped signal-to-noise ratio SNR(t) = ᾱ_t / (1 − ᾱ_t): the x0-loss
weight min(SNR, γ) becomes min(SNR, γ)/SNR for ε-prediction and min(SNR, γ)/(SNR + 1) for v.

Importing this module loads NumPy and Keras (for ``keras.ops``) only; it never imports
TensorFlow or JAX directly.

References:
    DDPM: Ho et al. 2020 (eq. 4, 7, 15). Improved DDPM: Nichol & Dhariwal 2021 (cosine, eq. 17).
    v-prediction: Salimans & Ho 2022, "Progressive Distillation" (eq. 9, appendix D).

Example:
    >>> schedule = make_schedule(DiffusionConfig(timesteps=100))            # doctest: +SKIP
    >>> x_t = schedule.q_sample(x0, t, noise)
    >>> loss = mean((schedule.target(x0, t, noise) - model([x_t, t, text])) ** 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
from keras import ops

from ..config import LOSS_WEIGHTINGS, PREDICTIONS, DiffusionConfig
from ..errors import ConfigError


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


def gather(table: np.ndarray, t: Any, ndim: int = 4) -> Any:
    """``table[t]`` for a batch of integer timesteps, shaped to broadcast over ``ndim``-d images."""
    values = ops.take(ops.convert_to_tensor(np.asarray(table, np.float32)), ops.cast(t, "int32"), axis=0)
    return ops.reshape(values, [-1] + [1] * (ndim - 1))


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """Precomputed float32 tables of one schedule, indexed by t = 0 .. T−1, and their formulas."""

    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    posterior_variance: np.ndarray
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"prediction: got {self.prediction!r}; allowed: {' | '.join(PREDICTIONS)}")

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

    # -- per-timestep tables (NumPy) ---------------------------------------------------------

    def snr(self) -> np.ndarray:
        """SNR(t) = ᾱ_t / (1 − ᾱ_t), float64 (inf where ᾱ_t = 1)."""
        return snr(self.alphas_cumprod)

    def loss_weights(self, weighting: str = "none", gamma: float = 5.0) -> np.ndarray:
        """The weight of each timestep's loss for this schedule's prediction (see :func:`loss_weights`)."""
        return loss_weights(self.alphas_cumprod, self.prediction, weighting, gamma)

    # -- per batch (keras.ops) ---------------------------------------------------------------

    def coefficients(self, t: Any, ndim: int = 4) -> Tuple[Any, Any]:
        """(√ᾱ_t, √(1−ᾱ_t)) for a batch of timesteps, shaped to broadcast over ``ndim``-d images."""
        abar = gather(self.alphas_cumprod, t, ndim)
        return ops.sqrt(abar), ops.sqrt(1.0 - abar)

    def q_sample(self, x0: Any, t: Any, noise: Any) -> Any:
        """x_t ~ q(x_t | x_0) in closed form: √ᾱ_t·x_0 + √(1−ᾱ_t)·ε (DDPM eq. 4)."""
        sqrt_abar, sqrt_one_minus = self.coefficients(t, len(x0.shape))
        return sqrt_abar * x0 + sqrt_one_minus * noise

    def target(self, x0: Any, t: Any, noise: Any) -> Any:
        """What the network learns to output: ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (Salimans & Ho eq. 9)."""
        if self.prediction == "epsilon":
            return noise
        sqrt_abar, sqrt_one_minus = self.coefficients(t, len(x0.shape))
        return sqrt_abar * noise - sqrt_one_minus * x0

    def epsilon_and_x0(self, x_t: Any, t: Any, output: Any) -> Tuple[Any, Any]:
        """The (ε̂, x̂_0) a network output implies at x_t.

        ε-prediction: ε̂ = output, x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t (DDPM eq. 15 rearranged).
        v-prediction: ε̂ = √(1−ᾱ_t)·x_t + √ᾱ_t·v̂, x̂_0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂.
        """
        sqrt_abar, sqrt_one_minus = self.coefficients(t, len(x_t.shape))
        if self.prediction == "epsilon":
            return output, (x_t - sqrt_one_minus * output) / sqrt_abar
        return sqrt_one_minus * x_t + sqrt_abar * output, sqrt_abar * x_t - sqrt_one_minus * output

    def epsilon(self, x_t: Any, t: Any, output: Any) -> Any:
        """Only ε̂ of :meth:`epsilon_and_x0` (no division, so safe at every t)."""
        if self.prediction == "epsilon":
            return output
        sqrt_abar, sqrt_one_minus = self.coefficients(t, len(x_t.shape))
        return sqrt_one_minus * x_t + sqrt_abar * output


def make_schedule(config: DiffusionConfig) -> NoiseSchedule:
    """Build the tables for a :class:`DiffusionConfig`."""
    if config.schedule == "linear":
        betas = linear_betas(config.timesteps, config.beta_start, config.beta_end)
    else:
        betas = cosine_betas(config.timesteps)
    return NoiseSchedule.from_betas(betas, config.prediction)


def q_sample(schedule: NoiseSchedule, x0: Any, t: Any, noise: Any) -> Any:
    """``schedule.q_sample(x0, t, noise)``: x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε (DDPM eq. 4)."""
    return schedule.q_sample(x0, t, noise)


# -- loss weights per timestep (NumPy) ------------------------------------------------------------

def snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    """SNR(t) = ᾱ_t / (1 − ᾱ_t), float64 (inf where ᾱ_t = 1)."""
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return abar / (1.0 - abar)


def loss_weights(alphas_cumprod: np.ndarray, prediction: str = "epsilon", weighting: str = "min_snr",
                 gamma: float = 5.0) -> np.ndarray:
    """The weight of each timestep's loss, float32 of ``alphas_cumprod``'s shape.

    ``none``: all ones (the simple DDPM loss). ``min_snr``: min(SNR, γ)/SNR for ε-prediction
    (written min(1, γ/SNR): finite at SNR = 0), min(SNR, γ)/(SNR + 1) for v.

    Example:
        >>> [round(float(w), 3) for w in loss_weights(np.array([0.9, 0.5, 0.1]), "epsilon", "min_snr", 5.0)]
        [0.556, 1.0, 1.0]

    Raises:
        ConfigError: an unknown weighting or prediction, or γ <= 0.
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise ConfigError(f"loss_weighting: got {weighting!r}; allowed: {' | '.join(LOSS_WEIGHTINGS)}")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"prediction: got {prediction!r}; allowed: {' | '.join(PREDICTIONS)}")
    if not gamma > 0:
        raise ConfigError(f"min_snr_gamma: got {gamma!r}; allowed: a positive number (the paper uses 5)")
    ratio = snr(alphas_cumprod)
    if weighting == "none":
        return np.ones(ratio.shape, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        if prediction == "epsilon":
            weights = np.minimum(1.0, gamma / ratio)
        else:
            weights = np.where(np.isinf(ratio), 0.0, np.minimum(ratio, gamma) / (ratio + 1.0))
    return weights.astype(np.float32)
