"""Shape figures: does the model rebuild real images noised part of the way? (SDEdit as a probe.)

For the held-out images (whole Pokémon the run never saw), each is noised to a level (a fraction
of T) with fixed noise and denoised by the EMA model with DDIM, conditioned on its own caption
(w = 1). Reported per level: how often the result's nearest real image (pixel features, as for
the conditioning accuracy) is the original Pokémon (top-1, top-5) and the mean feature distance
to the original. From a quarter of T the model only restores detail; from three quarters it must
rebuild the layout from a faint trace. A model that draws blobs loses the original between the
two; better shapes push that point up. Unlike the held-out loss, whose mean is mostly its t = 0
point, these figures are about the figure. See docs/EVALUATION.md.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np

from . import features as feats
from .conditioning import nearest_neighbours

LEVEL_FRACTIONS = (0.25, 0.5, 0.75)
STEPS = 20


CHUNK = 32  # images per call; fixed, so that each image's noise does not depend on a batch-size option


def reconstruction(loaded, data, indices: Sequence[int], *, fractions: Sequence[float] = LEVEL_FRACTIONS,
                   steps: int = STEPS, seed: int = 0, k: int = 5) -> Dict[str, Any]:
    """The figures of the module docstring for ``data``'s images at ``indices``.

    Returns:
        ``{"levels": {level: {"fraction", "top1", "top_k", "feature_distance"}}, "num_images",
        "chance_top1", "steps", "guidance_scale", "k", "images"}``, or ``{"skipped": reason}``
        when ``indices`` is empty.
    """
    from ..diffusion.reconstruct import reconstruct

    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        return {"skipped": "no held-out images to reconstruct"}
    schedule = loaded.schedule
    names = np.asarray(data.names)
    real_f = feats.pixel_features(data.images)
    levels: Dict[str, Any] = {}
    for fraction in fractions:
        level = int(round(float(fraction) * (schedule.timesteps - 1)))
        out = np.concatenate([
            reconstruct(loaded.model, data.images[chunk], data.embeddings[chunk], level, schedule=schedule,
                        steps=steps, guidance_scale=1.0, seed=seed + i)
            for i, chunk in enumerate(np.split(indices, range(CHUNK, len(indices), CHUNK)))])
        gen_f = feats.pixel_features(out)
        hits = names[nearest_neighbours(gen_f, real_f, k=k)] == names[indices][:, None]
        levels[str(level)] = {"fraction": float(fraction), "top1": float(hits[:, 0].mean()),
                              "top_k": float(hits.any(axis=1).mean()),
                              "feature_distance": float(np.linalg.norm(gen_f - real_f[indices], axis=1).mean())}
    same_name = (names[indices][:, None] == names[None, :]).mean(axis=1)
    return {"levels": levels, "num_images": int(indices.size), "chance_top1": float(same_name.mean()),
            "steps": int(steps), "guidance_scale": 1.0, "k": int(k),
            "images": "held-out split (whole Pokémon the run never saw), each with its own caption"}
