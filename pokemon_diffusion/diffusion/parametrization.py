"""The forward process and the ε / v output conversions, written once for every array type.

Each function takes the coefficients √ᾱ_t and √(1−ᾱ_t) already gathered and shaped to broadcast
over the images, and uses only ``*``, ``+``, ``-`` and ``/``. So the same formula serves the
TensorFlow samplers (:mod:`.schedule`, tf tensors), the backend-neutral training objective
(``training/objective.py``, keras.ops tensors on TensorFlow or JAX) and NumPy tests; each caller
keeps only its own gather.

References:
    DDPM: Ho et al. 2020, eq. 4 and eq. 15. v-prediction: Salimans & Ho 2022, eq. 9 and app. D.
"""

from __future__ import annotations

from typing import Any, Tuple

from ..config import PREDICTIONS


def noised(sqrt_abar: Any, sqrt_one_minus: Any, x0: Any, noise: Any) -> Any:
    """x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε (DDPM eq. 4)."""
    return sqrt_abar * x0 + sqrt_one_minus * noise


def target(prediction: str, sqrt_abar: Any, sqrt_one_minus: Any, x0: Any, noise: Any) -> Any:
    """What the network learns to output: ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (Salimans & Ho eq. 9)."""
    if prediction == "epsilon":
        return noise
    _check(prediction)
    return sqrt_abar * noise - sqrt_one_minus * x0


def epsilon_and_x0(prediction: str, sqrt_abar: Any, sqrt_one_minus: Any, x_t: Any, output: Any) -> Tuple[Any, Any]:
    """The (ε̂, x̂_0) a network output implies at x_t.

    ε-prediction: ε̂ = output, x̂_0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t (DDPM eq. 15 rearranged).
    v-prediction: ε̂ = √(1−ᾱ_t)·x_t + √ᾱ_t·v̂, x̂_0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂.
    """
    if prediction == "epsilon":
        return output, (x_t - sqrt_one_minus * output) / sqrt_abar
    _check(prediction)
    return sqrt_one_minus * x_t + sqrt_abar * output, sqrt_abar * x_t - sqrt_one_minus * output


def epsilon(prediction: str, sqrt_abar: Any, sqrt_one_minus: Any, x_t: Any, output: Any) -> Any:
    """Only ε̂ of :func:`epsilon_and_x0` (no division, so safe at every t)."""
    if prediction == "epsilon":
        return output
    _check(prediction)
    return sqrt_one_minus * x_t + sqrt_abar * output


def _check(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: got {prediction!r}; allowed: {', '.join(PREDICTIONS)}")
