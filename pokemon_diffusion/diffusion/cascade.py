"""Sampling a cascade: the base model, then each upsampler stage (``run_dir.CascadeRun``).

A stage takes the previous stage's images, brings them to its own size with the one filter of
training (``data/pairs.upsample``, bicubic; training degrades with area-down + the same upsample),
adds Gaussian noise at the cascade's fixed augmentation level (``aug_level``, given to the model
as its ``aug_levels`` input, as in training) and denoises its own noise with DDIM (η = 0,
``stage_steps`` steps, the same prompt and negative prompt as the base, and the base's guidance
scale unless the cascade fixes its own, ``stage_guidance``: a stage's pass costs (size/base)² a
base pass, and an unguided stage needs one pass per step instead of two).

The result is one :class:`~.samplers.SampleResult` at the requested size: the base's kept states
and then each stage's final image (every frame enlarged to the final size by pixel repetition,
``timesteps`` 0 for a stage's frame), so the denoising figure and GIF show the whole cascade.
Every draw comes from the one seed: the base's as in :func:`~.samplers.sample`, a stage's
starting noise from the same seed at its own shape, its augmentation noise from ``(seed, stage)``.
:func:`plan_stage` makes a stage's run and :func:`cascade_result` the result, for :func:`sample_cascade`
and for ``streaming.iter_sample`` (which shows every stage's denoising live), so both give the same images.
"""

from __future__ import annotations

import logging
import time
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ..data.pairs import upsample
from ..errors import ConfigError
from .samplers import SampleResult, SamplingPlan, plan, sample

log = logging.getLogger(__name__)

AUG_NOISE_SALT = 0x0A06  # the augmentation noise's key: (seed, salt + stage index)


def enlarge(frames: np.ndarray, size: int) -> np.ndarray:
    """``(..., h, h, C)`` -> ``(..., size, size, C)`` by pixel repetition (``size`` a multiple of ``h``)."""
    factor = size // frames.shape[-2]
    return np.repeat(np.repeat(frames, factor, axis=-3), factor, axis=-2) if factor > 1 else frames


def cascade_sizes(cascade: Any) -> List[int]:
    """The sizes a cascade can give: its base's, then each stage's."""
    return [cascade.base.config.model.image_size] + [s.config.model.image_size for s in cascade.stages]


def check_cascade_shape(cascade: Any, shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """``(batch, size, channels, stages to run)`` of ``shape``, a size the cascade gives.

    Raises:
        ConfigError: a malformed shape or a size the cascade does not give.
    """
    sizes = cascade_sizes(cascade)
    try:
        batch, height, width, channels = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"shape: got {shape!r}; allowed: (batch, height, width, channels)") from None
    if height != width or height not in sizes:
        raise ConfigError(f"shape: got {height}x{width}; allowed: the cascade's sizes "
                          f"{' | '.join(f'{s}x{s}' for s in sizes)}")
    return batch, height, channels, sizes.index(height)


def plan_upsampling(run: Any, images, text_emb, *, key, steps: int, aug_level: float, guidance_scale: float,
                    seed: int, clip_x0: bool = True, negative_emb=None) -> SamplingPlan:
    """One upsampler run's DDIM (η = 0) on ``images``: brought up to its side with ``pairs.upsample``
    (bicubic, as in training), plus ``aug_level`` · N(0, I) drawn with the stateless ``key`` (its
    conditioning augmentation), as the run's low-resolution input. ``run``: a loaded run or a
    cascade's stage (``model``, ``schedule``, ``config``). The one maker of an upsampling plan, for a
    cascade's stages (:func:`plan_stage`) and ``evaluation/upsampler.py``."""
    batch, channels = int(images.shape[0]), int(images.shape[-1])
    side = run.config.model.image_size
    low = upsample(images, side) + aug_level * tf.random.stateless_normal((batch, side, side, channels), key)
    return plan(run.model, text_emb, (batch, side, side, channels), schedule=run.schedule, sampler="ddim",
                steps=min(steps, run.config.diffusion.timesteps), eta=0.0, guidance_scale=guidance_scale, seed=seed,
                num_intermediates=2, clip_x0=clip_x0, negative_emb=negative_emb,
                extra=(low, np.full((batch,), aug_level, np.float32)))


def plan_stage(cascade: Any, index: int, images: np.ndarray, text_emb, *, seed: int, guidance_scale: float,
               clip_x0: bool, negative_emb=None) -> SamplingPlan:
    """Stage ``index``'s DDIM run on the previous images (see the module docstring): the one place
    a stage's settings are chosen, for :func:`sample_cascade` and ``streaming``."""
    key = tf.constant([seed, AUG_NOISE_SALT + index], tf.int64)
    return plan_upsampling(cascade.stages[index], images, text_emb, key=key,
                           steps=cascade.stage_steps, aug_level=cascade.aug_level,
                           guidance_scale=guidance_scale if cascade.stage_guidance is None else cascade.stage_guidance,
                           seed=seed, clip_x0=clip_x0, negative_emb=negative_emb)


def cascade_result(base: SampleResult, stage_images: Sequence[np.ndarray], stage_steps: int, size: int,
                   seconds: float) -> SampleResult:
    """The cascade's :class:`SampleResult`: the base's kept states, then each stage's final images,
    every frame enlarged to ``size``; ``steps`` counts the base's and the stages' steps."""
    frames = [base.intermediates] + [images[None] for images in stage_images]
    intermediates = np.concatenate([enlarge(f, size) for f in frames], axis=0)
    return SampleResult(images=stage_images[-1] if stage_images else base.images, intermediates=intermediates,
                        timesteps=np.append(base.timesteps, np.zeros(len(stage_images), int)), seed=base.seed,
                        sampler=base.sampler, steps=base.steps + stage_steps, guidance_scale=base.guidance_scale,
                        eta=base.eta, seconds=seconds)


def sample_cascade(cascade: Any, text_emb, shape: Sequence[int], *, sampler: str = "ddim", steps: Optional[int] = None,
                   eta: float = 0.0, guidance_scale: float = 3.0, seed: Optional[int] = None,
                   num_intermediates: int = 10, clip_x0: bool = True, progress: Optional[bool] = None,
                   negative_emb=None, schedule: Any = None, annealing: Any = None,
                   guidance_interval: Any = None) -> SampleResult:
    """The base, then the stages up to ``shape``'s size (see the module docstring).

    Args:
        cascade: a ``run_dir.CascadeRun`` (``base``, ``stages``, ``stage_steps``, ``aug_level``).
        shape: (batch, size, size, channels), ``size`` one of :func:`cascade_sizes`.
        others: as :func:`~.samplers.sample`, for the base (``annealing`` and ``guidance_interval``
            too: the stages follow the base's layout, so they see the clean prompt, guided); each
            run samples with its own schedule (``schedule`` is ignored: a cascade's runs carry theirs).

    Raises:
        ConfigError: a size the cascade does not give; others as :func:`~.samplers.sample`.
    """
    batch, height, channels, count = check_cascade_shape(cascade, shape)
    started = time.perf_counter()
    base_size = cascade_sizes(cascade)[0]
    base = sample(cascade.base.model, text_emb, (batch, base_size, base_size, channels), schedule=cascade.base.schedule,
                  sampler=sampler, steps=steps, eta=eta, guidance_scale=guidance_scale, seed=seed,
                  num_intermediates=num_intermediates, clip_x0=clip_x0, progress=progress, negative_emb=negative_emb,
                  annealing=annealing, guidance_interval=guidance_interval)
    finals, stage_steps = run_stages(cascade, base.images, text_emb, count, seed=base.seed,
                                     guidance_scale=guidance_scale, clip_x0=clip_x0, negative_emb=negative_emb)
    return cascade_result(base, finals, stage_steps, height, time.perf_counter() - started)


def run_stages(cascade: Any, images: np.ndarray, text_emb, count: int, *, seed: int, guidance_scale: float,
               clip_x0: bool, negative_emb=None) -> Tuple[List[np.ndarray], int]:
    """The first ``count`` stages on base-size ``images`` (a base sample, or an edited image):
    ``(each stage's final images, clipped to [-1, 1]; the stages' DDIM steps in all)``."""
    finals, stage_steps = [], 0
    for index in range(count):
        run = plan_stage(cascade, index, images, text_emb, seed=seed, guidance_scale=guidance_scale,
                         clip_x0=clip_x0, negative_emb=negative_emb)
        x, _ = run.run(run.x_T, 0, run.num_steps)
        images = np.clip(x.numpy(), -1.0, 1.0)
        finals.append(images)
        stage_steps += run.num_steps
        log.debug("cascade stage %d: %dx%d, %d DDIM steps, aug level %g", index + 1, run.shape[1], run.shape[2],
                  run.num_steps, cascade.aug_level)
    return finals, stage_steps
