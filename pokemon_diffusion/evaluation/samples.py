"""Drawing the evaluation's samples: one image per caption embedding, and the colour prompts' embeddings."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from ..config import MAX_SEED
from ..errors import PokemonDiffusionError
from .prompt_following import colour_prompts


def generate_from_embeddings(loaded_run, embeddings: np.ndarray, *, sampler: str = "ddim", steps: Optional[int] = 50,
             guidance_scale: float = 3.0, eta: float = 0.0, seed: int = 0, batch_size: int = 16,
             progress: Optional[bool] = None, annealing=None, guidance_interval=None) -> np.ndarray:
    """One image per embedding row with the run's EMA model and schedule, in fixed-size batches
    (``annealing``, ``guidance_interval``: as in ``diffusion.samplers.sample``; a list of annealings
    has one per embedding row).

    The last batch is padded with repeats of its first row and trimmed, so every batch has the
    same shape and the compiled sampling loop is traced once. Batch i uses seed ``(seed + i) mod 2³¹``.

    Returns:
        float32 (N, H, W, C) in [-1, 1].
    """
    from ..diffusion.samplers import sample

    cfg = loaded_run.config.model
    n = embeddings.shape[0]
    batch = min(batch_size, n)
    out = []
    for i, start in enumerate(range(0, n, batch)):
        chunk = embeddings[start:start + batch]
        real = chunk.shape[0]
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - real, axis=0)])
        rows = annealing[start:start + batch] if isinstance(annealing, list) else annealing  # one per row
        if isinstance(rows, list) and len(rows) < batch:
            rows = rows + [rows[0]] * (batch - len(rows))
        ddim = sampler == "ddim"  # ddpm refuses steps and eta: it runs all T steps with its own variance
        result = sample(loaded_run.model, chunk, (batch, cfg.image_size, cfg.image_size, cfg.channels),
                        schedule=loaded_run.schedule, sampler=sampler, steps=steps if ddim else None,
                        eta=eta if ddim else 0.0,
                        guidance_scale=guidance_scale, seed=(seed + i) % (MAX_SEED + 1), num_intermediates=2,
                        progress=progress, annealing=rows, guidance_interval=guidance_interval)
        out.append(result.images[:real])
    return np.concatenate(out).astype(np.float32)


def colour_embeddings(loaded_run, seeds: int, encoder: Any = None) -> Tuple[Optional[np.ndarray], List[str], str]:
    """``(embeddings or None, prompted colours, why not)`` of the colour prompts, with the run's encoder.

    ``encoder`` (anything with ``encode(texts)``) replaces loading the run's own (tests).
    """
    prompts = colour_prompts(seeds=seeds)
    colours = [p.split()[1] for p in prompts]
    try:
        if encoder is None:
            from ..text.registry import load_encoder_matching

            encoder = load_encoder_matching(loaded_run.encoder)
        vectors = np.asarray(encoder.encode(prompts), np.float32)
    except (PokemonDiffusionError, ImportError, OSError) as exc:
        return None, colours, f"the run's text encoder {loaded_run.encoder.name} cannot embed the prompts: {exc}"
    if vectors.shape != (len(prompts), loaded_run.config.model.text_dim):
        return None, colours, f"the encoder gave {vectors.shape} embeddings for {len(prompts)} prompts"
    return vectors, colours, ""
