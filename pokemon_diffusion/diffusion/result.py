"""What one sampling run returns: :class:`SampleResult` (images, kept states, the seed used)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleResult:
    """The outcome of one sampling run.

    Attributes:
        images: final images, float32 in [-1, 1], shape (B, H, W, C).
        intermediates: kept states x_t, float32, shape (K, B, H, W, C), not clipped (noisy states
            are not images yet); ``intermediates[0]`` is the starting noise and
            ``intermediates[-1]`` equals ``images``.
        timesteps: (K,) int, the noise level t of each kept state in the paper's notation
            (x_T is the pure noise, so the first entry is T; x_0 is the image, the last entry is 0).
        seed: the integer seed used (drawn at random when none was given); pass it back to
            reproduce the images.
        sampler: "ddpm" or "ddim".
        steps: number of reverse steps run.
        guidance_scale: the guidance weight w.
        eta: DDIM's η (1.0 for DDPM, whose variance is DDIM's η = 1 one).
        seconds: wall-clock time of the loop, tracing included.
    """

    images: np.ndarray
    intermediates: np.ndarray
    timesteps: np.ndarray
    seed: int
    sampler: str
    steps: int
    guidance_scale: float
    eta: float
    seconds: float

    def to_uint8(self) -> np.ndarray:
        """The images as uint8 pixels (B, H, W, C), 0 to 255: what an image file holds."""
        return np.clip(np.round((self.images + 1.0) * 127.5), 0, 255).astype(np.uint8)

    def to_pil(self) -> list:
        """The images as PIL images (RGB; L for one channel), ready to ``.save(path)``."""
        from ..image_files import to_pil

        return to_pil(self.images)
