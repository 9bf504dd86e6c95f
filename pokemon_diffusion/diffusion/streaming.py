"""Sampling that shows its work: :func:`iter_sample` yields the state every ``every`` steps.

The run is the one :func:`~pokemon_diffusion.diffusion.samplers.sample` makes (same checks, same
compiled ``tf.while_loop``, same noise keys): only the segment bounds differ, and the noise of
step i does not depend on them, so the last frame's images equal ``sample(...)``'s for the same
arguments. Between frames the loop runs compiled, never one Python call per step.

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
    """

    step: int
    steps: int
    t: int
    x: np.ndarray
    x0: np.ndarray
    seed: int
    result: Optional[SampleResult] = None

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
                negative_emb=None) -> Iterator[StreamFrame]:
    """Sample like :func:`~pokemon_diffusion.diffusion.samplers.sample`, yielding a frame every ``every`` steps.

    Every argument is checked when this function is called, before the first frame is asked for.

    Args:
        model, text_emb, shape, schedule, sampler, steps, eta, guidance_scale, seed,
            num_intermediates, clip_x0, negative_emb: as in ``sample`` (the result keeps the same
            intermediates).
        every: reverse steps between two frames, >= 1; the last step always yields a frame.

    Returns:
        An iterator of :class:`StreamFrame` at steps ``every``, ``2·every``, ... and the last step;
        the last frame carries the :class:`SampleResult`.

    Raises:
        EncoderError, ConfigError: as in ``sample``; ConfigError for a bad ``every``.
    """
    every = _check_every(every)
    sampling = plan(model, text_emb, shape, schedule=schedule, sampler=sampler, steps=steps, eta=eta,
                    guidance_scale=guidance_scale, seed=seed, num_intermediates=num_intermediates,
                    clip_x0=clip_x0, negative_emb=negative_emb)
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
