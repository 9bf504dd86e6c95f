"""Per-prompt variety: do different seeds of one prompt give different pictures?

A model that memorises its training images draws the same artwork for a caption whatever the
noise; a blob model draws blobs of random shape. Neither is told apart by accuracy figures, so
``evaluate`` draws ``seeds`` images of a few prompts and reports how far apart they are:

* ``within_prompt``: the mean, over prompts, of the mean root-mean-square pixel difference (values
  in [0, 1]) between each pair of one prompt's images;
* ``real_pairs``: the same distance between random pairs of *different* real images, the scale
  (two different Pokémon);
* ``ratio``: within_prompt / real_pairs. 0: every seed gives the same picture; near 1: a prompt's
  seeds differ as much as two unrelated Pokémon.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict

import numpy as np


def rms_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of two uint8 images, in units of the full [0, 255] range."""
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) / 255.0
    return float(np.sqrt(np.mean(diff * diff)))


def within_prompt_distances(images_uint8: np.ndarray, seeds: int) -> np.ndarray:
    """Mean pairwise RMS distance of each consecutive group of ``seeds`` images (one prompt each).

    Args:
        images_uint8: (P·seeds, H, W, C) uint8, prompt-major (a prompt's seeds are adjacent).
        seeds: images per prompt, 2 or more.

    Returns:
        float64 (P,).
    """
    images = np.asarray(images_uint8)
    if seeds < 2 or images.shape[0] % seeds or images.shape[0] == 0:
        raise ValueError(f"seeds: got {seeds} for {images.shape[0]} images; allowed: 2 or more, dividing the count")
    groups = images.reshape(images.shape[0] // seeds, seeds, *images.shape[1:])
    return np.array([np.mean([rms_distance(g[i], g[j]) for i, j in itertools.combinations(range(seeds), 2)])
                     for g in groups])


def real_pair_distance(real_uint8: np.ndarray, pairs: int = 256, seed: int = 0) -> float:
    """Mean RMS distance between ``pairs`` random pairs of different real images (seeded)."""
    real = np.asarray(real_uint8)
    if real.shape[0] < 2:
        raise ValueError(f"real images: got {real.shape[0]}; allowed: 2 or more")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, real.shape[0], pairs)
    second = (first + rng.integers(1, real.shape[0], pairs)) % real.shape[0]  # never the same image
    return float(np.mean([rms_distance(real[i], real[j]) for i, j in zip(first, second)]))


def variety_report(images_uint8: np.ndarray, seeds: int, real_uint8: np.ndarray, seed: int = 0) -> Dict[str, Any]:
    """The ``variety`` entry of the evaluation report (see the module docstring)."""
    per_prompt = within_prompt_distances(images_uint8, seeds)
    scale = real_pair_distance(real_uint8, seed=seed)
    within = float(per_prompt.mean())
    return {"within_prompt": within, "real_pairs": scale, "ratio": within / scale if scale > 0 else None,
            "per_prompt": per_prompt.tolist(), "num_prompts": int(per_prompt.size), "seeds": int(seeds),
            "distance": "root-mean-square pixel difference, values in [0, 1], full resolution"}
