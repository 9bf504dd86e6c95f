"""Per-timestep loss weights: Min-SNR-γ (Hang et al. 2023).

"Efficient Diffusion Training via Min-SNR Weighting Strategy" (ICCV 2023) weights each timestep's
loss by its clamped signal-to-noise ratio, SNR(t) = ᾱ_t / (1 − ᾱ_t), so that the many low-noise
steps, whose targets are easy, stop dominating the gradient. The x0-loss weight min(SNR, γ) turns into

* ε-prediction: w(t) = min(SNR(t), γ) / SNR(t)      (= min(1, γ / SNR(t)))
* v-prediction: w(t) = min(SNR(t), γ) / (SNR(t) + 1)

with γ = 5 in the paper. ``"none"`` gives w = 1 (the simple DDPM loss).

Example:
    >>> import numpy as np
    >>> [round(float(w), 3) for w in loss_weights(np.array([0.9, 0.5, 0.1]), "epsilon", "min_snr", 5.0)]
    [0.556, 1.0, 1.0]
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

WEIGHTINGS = ("none", "min_snr")
PREDICTIONS = ("epsilon", "v")


def snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    """SNR(t) = ᾱ_t / (1 − ᾱ_t), float64 (inf where ᾱ_t = 1)."""
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return abar / (1.0 - abar)


def loss_weights(alphas_cumprod: np.ndarray, prediction: str = "epsilon", weighting: str = "min_snr",
                 gamma: float = 5.0) -> np.ndarray:
    """The weight of each timestep's loss, float32 of ``alphas_cumprod``'s shape.

    Args:
        alphas_cumprod: ᾱ_t for t = 0 .. T−1 (``NoiseSchedule.alphas_cumprod``).
        prediction: what the network predicts: ``epsilon`` or ``v``.
        weighting: ``none`` (all ones) or ``min_snr``.
        gamma: the clamp γ (> 0).

    Raises:
        ConfigError: an unknown weighting or prediction, or γ <= 0.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"loss_weighting: got {weighting!r}; allowed: {' | '.join(WEIGHTINGS)}")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"prediction: got {prediction!r}; allowed: {' | '.join(PREDICTIONS)}")
    if not gamma > 0:
        raise ConfigError(f"min_snr_gamma: got {gamma!r}; allowed: a positive number (the paper uses 5)")
    ratio = snr(alphas_cumprod)
    if weighting == "none":
        return np.ones(ratio.shape, np.float32)
    clamped = np.minimum(ratio, gamma)
    with np.errstate(divide="ignore", invalid="ignore"):
        if prediction == "epsilon":
            # min(SNR, γ)/SNR written as min(1, γ/SNR): finite at SNR = 0 (the last step of a cosine schedule)
            weights = np.minimum(1.0, gamma / ratio)
        else:
            weights = np.where(np.isinf(ratio), 0.0, clamped / (ratio + 1.0))
    return weights.astype(np.float32)
