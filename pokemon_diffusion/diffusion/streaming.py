"""Sampling that shows its work: :func:`iter_sample` yields the state every ``every`` steps.

The run is the one :func:`~pokemon_diffusion.diffusion.samplers.sample` makes (same checks, same
compiled ``tf.while_loop``, same noise keys): only the segment bounds differ, and the noise of
step i does not depend on them, so the last frame's images equal ``sample(...)``'s for the same
arguments. Between frames the loop runs compiled, never one Python call per step.

Given a cascade run (``run_dir.CascadeRun``) it streams the base's frames and then each upsampler
stage's (``stage`` says which), every frame enlarged by pixel repetition to the requested size;
the stages run as ``cascade.sample_cascade`` runs them (``cascade.plan_stage``), so the last frame's
result equals ``sample_cascade``'s for the same arguments.

Example:
    >>> for frame in iter_sample(model, embedding, (1, 32, 32, 3), seed=0, every=5):  # doctest: +SKIP
    ...     show(frame.x, frame.x0)                      # x_t and the model's x̂_0, live
    >>> frame.result.images.shape                                                     # doctest: +SKIP
    (1, 32, 32, 3)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .cascade import cascade_result, cascade_sizes, check_cascade_shape, enlarge, plan_stage
from .samplers import SampleResult, SamplingPlan, plan
from .schedule import NoiseSchedule


@dataclass(frozen=True)
class StreamFrame:
    """The state of a sampling run after ``step`` of its ``steps`` reverse steps.

    Attributes:
        step: reverse steps done, 1 .. ``steps``.
        steps: reverse steps in the run.
        t: the noise level of ``x`` in the paper's notation (T = pure noise ... 0 = the image).
        x: the current state x_t, float32 (B, H, W, C), not clipped; at the last frame the final
            images, clipped to [-1, 1] (equal to ``result.images``).
        x0: the last step's estimate x̂_0 of the clean images (clipped when ``clip_x0``).
        seed: the seed of the run (drawn when none was given).
        result: None, except at the last frame: the run's :class:`SampleResult`.
        stage: 0 for the base's frames, i for the i-th upsampler stage's (a cascade).
        stages: the upsampler stages this run goes through (0 for a single run); ``step`` and
            ``steps`` count the current stage's steps.
    """

    step: int
    steps: int
    t: int
    x: np.ndarray
    x0: np.ndarray
    seed: int
    result: Optional[SampleResult] = None
    stage: int = 0
    stages: int = 0

    @property
    def done(self) -> bool:
        return self.result is not None


def _check_every(every) -> int:
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ConfigError(f"every: got {every!r}; allowed: an integer >= 1 (steps between frames)")
    return int(every)


def iter_sample(model, text_emb, shape: Sequence[int] = (1, 32, 32, 3), *,
                schedule: Optional[NoiseSchedule] = None, sampler: str = "ddim", steps: Optional[int] = None,
                eta: float = 0.0, guidance_scale: float = 3.0, seed: Optional[int] = None,
                num_intermediates: int = 10, clip_x0: bool = True, every: int = 5,
                negative_emb=None, annealing=None, guidance_interval=None) -> Iterator[StreamFrame]:
    """Sample like :func:`~pokemon_diffusion.diffusion.samplers.sample`, yielding a frame every ``every`` steps.

    Every argument is checked when this function is called, before the first frame is asked for.

    Args:
        model: as in ``sample``, or a cascade run: its base's frames, then each stage's (see the
            module docstring; ``schedule`` is then ignored, its runs carry theirs).
        text_emb, shape, schedule, sampler, steps, eta, guidance_scale, seed,
            num_intermediates, clip_x0, negative_emb, annealing, guidance_interval: as in ``sample``
            (the result keeps the same intermediates).
        every: reverse steps between two frames, >= 1; the last step always yields a frame.

    Returns:
        An iterator of :class:`StreamFrame` at steps ``every``, ``2·every``, ... and the last step;
        the last frame carries the :class:`SampleResult`.

    Raises:
        EncoderError, ConfigError: as in ``sample``; ConfigError for a bad ``every``.
    """
    every = _check_every(every)
    if getattr(model, "stages", None) is not None:  # a cascade run
        batch, size, channels, count = check_cascade_shape(model, shape)
        base_size = cascade_sizes(model)[0]
        sampling = plan(model.base.model, text_emb, (batch, base_size, base_size, channels),
                        schedule=model.base.schedule, sampler=sampler, steps=steps, eta=eta,
                        guidance_scale=guidance_scale, seed=seed, num_intermediates=num_intermediates,
                        clip_x0=clip_x0, negative_emb=negative_emb, annealing=annealing,
                        guidance_interval=guidance_interval)
        return _cascade_frames(model, sampling, every, size, count, text_emb, negative_emb, clip_x0)
    sampling = plan(model, text_emb, shape, schedule=schedule, sampler=sampler, steps=steps, eta=eta,
                    guidance_scale=guidance_scale, seed=seed, num_intermediates=num_intermediates,
                    clip_x0=clip_x0, negative_emb=negative_emb, annealing=annealing,
                    guidance_interval=guidance_interval)
    return _frames(sampling, every, model)


def _frames(plan: SamplingPlan, every: int, model) -> Iterator[StreamFrame]:
    """Run ``plan`` in compiled segments that end at frames and at the states the result keeps.

    ``model`` is held here on purpose: the compiled loop reaches it only through a weakref, and
    the generator may outlive the caller's reference.
    """
    num_steps = plan.num_steps
    shown = set(range(every, num_steps, every))
    keep = set(plan.records.tolist())
    levels = plan.levels
    x = plan.x_T
    kept: List[np.ndarray] = [x.numpy()]  # records[0] == 0: the starting noise
    started = time.perf_counter()
    seconds = 0.0
    start = 0
    for stop in sorted(shown | keep | {num_steps}):
        if stop == start:
            continue
        x, x0 = plan.run(x, start, stop)
        start = stop
        if stop in keep:
            kept.append(x.numpy())
        if stop == num_steps:
            break
        if stop in shown:
            # the consumer's time (drawing, sending) is not the sampler's
            seconds += time.perf_counter() - started
            yield StreamFrame(step=stop, steps=num_steps, t=int(levels[stop]), x=x.numpy(), x0=x0.numpy(),
                              seed=plan.seed)
            started = time.perf_counter()
    result = plan.result(kept, seconds + time.perf_counter() - started)
    yield StreamFrame(step=num_steps, steps=num_steps, t=0, x=result.images, x0=x0.numpy(), seed=plan.seed,
                      result=result)


def _cascade_frames(cascade, base_plan: SamplingPlan, every: int, size: int, count: int, text_emb, negative_emb,
                    clip_x0: bool) -> Iterator[StreamFrame]:
    """The base's frames, then each stage's, enlarged to ``size``; the last one carries the cascade's result."""
    started = time.perf_counter()
    paused = 0.0  # the consumer's time between frames is not the sampler's
    stage_images: List[np.ndarray] = []
    stage_steps = 0
    base = None
    for stage in range(count + 1):
        if stage == 0:
            frames = _frames(base_plan, every, cascade.base.model)
        else:
            run = plan_stage(cascade, stage - 1, (stage_images or [base.images])[-1], text_emb, seed=base.seed,
                             guidance_scale=base.guidance_scale, clip_x0=clip_x0, negative_emb=negative_emb)
            frames = _frames(run, every, cascade.stages[stage - 1].model)
        for frame in frames:
            if frame.done:
                if stage == 0:
                    base = frame.result
                else:
                    stage_images.append(frame.result.images)
                    stage_steps += frame.result.steps
                if stage < count:
                    shown = dict(result=None)  # the next stage follows: this one's last picture, live
                else:
                    result = cascade_result(base, stage_images, stage_steps, size,
                                            time.perf_counter() - started - paused)
                    shown = dict(result=result)
                frame = StreamFrame(step=frame.step, steps=frame.steps, t=0, x=frame.result.images, x0=frame.x0,
                                    seed=frame.seed, **shown)
            waited = time.perf_counter()
            yield StreamFrame(step=frame.step, steps=frame.steps, t=frame.t, x=enlarge(frame.x, size),
                              x0=enlarge(frame.x0, size), seed=frame.seed, result=frame.result, stage=stage,
                              stages=count)
            paused += time.perf_counter() - waited
