"""Noise real images part of the way and denoise them back (SDEdit, Meng et al. 2022).

``reconstruct(model, images, text_emb, level)`` draws ``x_level = √ᾱ·x_0 + √(1−ᾱ)·ε`` with the
seed's noise and runs deterministic DDIM (η = 0) from ``level`` down to 0 with the sampler's
compiled loop. From a low level the model only has to restore detail; from a high one it must
rebuild the figure's layout from a faint trace of it. How far up a model still gets the original
back is a measure of its shapes (``evaluation/reconstruction.py``); the same call is image-to-image
generation ("draw this, but ...") for a user.

Example:
    >>> out = reconstruct(run.model, images, embeddings, level=500, schedule=run.schedule)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from ..config import DiffusionConfig
from ..errors import ConfigError
from .compiled import compiled_segment
from .samplers import check_shape, loop_args, prepare_embeddings
from .schedule import NoiseSchedule, make_schedule


def reconstruction_levels(level: int, steps: int) -> np.ndarray:
    """``steps`` distinct 0-based levels evenly spaced from ``level`` down to 0 (fewer if level < steps − 1).

    The first is always ``level`` (the level the images were noised to); one step is ``[level]``.

    Example:
        >>> reconstruction_levels(8, 5).tolist()
        [8, 6, 4, 2, 0]
        >>> reconstruction_levels(8, 1).tolist()
        [8]
    """
    return np.unique(np.round(np.linspace(level, 0, steps)).astype(np.int32))[::-1].copy()


def reconstruct(model, images, text_emb, level: int, *, schedule: Optional[NoiseSchedule] = None,
                steps: int = 20, guidance_scale: float = 1.0, seed: int = 0, clip_x0: bool = True,
                negative_emb=None) -> np.ndarray:
    """Noise ``images`` to ``level`` and denoise them with DDIM (η = 0); returns (B, H, W, C) in [-1, 1].

    Args:
        model: the run's EMA model (see ``samplers.sample``).
        images: (B, H, W, C) float images in [-1, 1].
        text_emb: (dim,) or (n, dim) embeddings, n dividing B (as in ``samplers.sample``).
        level: the 0-based level to noise to, 0 .. T − 1 (T − 1: almost pure noise).
        schedule: the run's schedule (None: the default linear T = 1000 one).
        steps: DDIM steps from ``level`` to 0 (at most level + 1 distinct levels are used).
        guidance_scale: w; 1 = the conditional model alone, 0 = unconditional.
        seed: the noise of step 1; the same seed gives the same output.
        clip_x0: clip each step's x̂_0 to [-1, 1].
        negative_emb: guidance's unconditional embedding instead of the null one (as in ``samplers.sample``).

    Raises:
        ConfigError: a level, step count, guidance weight or image shape outside what is allowed.
        EncoderError: the embedding size differs from the model's.
    """
    schedule = schedule if schedule is not None else make_schedule(DiffusionConfig())
    x0 = np.asarray(images, dtype=np.float32)
    shape = check_shape(model, x0.shape)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level < schedule.timesteps:
        raise ConfigError(f"level: got {level!r}; allowed: an integer from 0 to T - 1 = {schedule.timesteps - 1}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ConfigError(f"steps: got {steps!r}; allowed: an integer >= 1")
    guidance_scale = float(guidance_scale)
    if not np.isfinite(guidance_scale):
        raise ConfigError(f"guidance_scale: got {guidance_scale}; allowed: a finite number (1 = no guidance)")
    cond = prepare_embeddings(model, text_emb, shape[0])
    uncond = None if negative_emb is None else prepare_embeddings(model, negative_emb, shape[0], "negative_emb")
    if guidance_scale == 0.0:
        cond = np.zeros_like(cond) if uncond is None else uncond
    step_t = reconstruction_levels(int(level), int(steps))
    key = tf.constant([int(seed), 2], tf.int64)  # 2: not a stream of samplers.sample's keys
    noise = tf.random.stateless_normal(shape, key)
    x = schedule.q_sample(tf.constant(x0), tf.fill([shape[0]], tf.constant(int(level), tf.int32)), noise)
    run = compiled_segment(model, schedule, "ddim", guidance_scale not in (0.0, 1.0), clip_x0)
    args = loop_args(schedule, step_t, cond, guidance_scale, 0.0, tf.random.experimental.stateless_fold_in(key, 1),
                     uncond)
    x, _ = run(x, start=tf.constant(0), stop=tf.constant(len(step_t)), **args)
    return np.clip(x.numpy(), -1.0, 1.0)
