"""DDPM and DDIM sampling, compiled, with classifier-free guidance and bounded intermediates.

The reverse process runs inside one ``tf.function`` holding a ``tf.while_loop`` over the steps.
An eager outer loop calls it once per *segment* of steps: segments end where an intermediate
image is kept (``num_intermediates`` evenly spaced states, never all T) and, when a progress
bar is shown, every ~1 % of the steps. All arguments of the compiled loop are tensors of fixed
shape, so a second call with the same image shape and batch size does not retrace (see
:func:`.compiled.tracing_count`), whatever the seed, guidance scale, eta or number of steps.

Guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6) runs the conditional
and the null (all-zeros) embedding in ONE batched forward pass and combines the outputs::

    out = out_null + w · (out_cond − out_null)       w = 1: conditional only, w = 0: unconditional

A negative prompt's embedding (``negative_emb``) takes the null embedding's place, as diffusers'
``negative_prompt`` does: guidance then steps away from it.

Noise is stateless: the starting noise and the noise of step i are drawn from keys folded from
one integer seed, so the same seed gives the same images however the loop is segmented.

References:
    DDPM: Ho et al. 2020, eq. 6-7 (posterior q(x_{t-1} | x_t, x_0)) and eq. 11 (reverse step).
    DDIM: Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 and eq. 16.

Example: ``sample_ddim(model, embedding, shape=(4, 32, 32, 3), seed=0)`` -> images (4, 32, 32, 3), 10 kept
states (10, 4, 32, 32, 3). A cascade run as the model: its base, then its stages (``diffusion/cascade.py``).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ..config import MAX_SEED, SAMPLERS, DiffusionConfig
from ..errors import ConfigError, EncoderError
from ..logging_utils import progress as progress_bar
from .compiled import compiled_segment
from .schedule import NoiseSchedule, make_schedule
from .result import SampleResult
from .steps import ConditionAnnealing, ddim_timesteps

log = logging.getLogger(__name__)

DEFAULT_TIMESTEPS = 1000  # T of the default schedule, as in the seed's sample_ddpm
# With a progress bar the loop returns to Python about this many times per run (plus once per
# kept intermediate); each return costs well under a millisecond next to a U-Net forward pass.
PROGRESS_UPDATES = 100


# --------------------------------------------------------------------------------------------
# Checks done before any compute.
# --------------------------------------------------------------------------------------------

def _model_input_shape(model, index: int) -> Optional[tuple]:
    """The declared shape of one of a Keras model's inputs, or None for other callables."""
    try:
        return tuple(model.inputs[index].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def check_shape(model, shape: Sequence[int]) -> Tuple[int, int, int, int]:
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"shape: got {shape!r}; allowed: (batch, height, width, channels)") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ConfigError(f"shape: got {shape}; allowed: 4 positive sizes (batch, height, width, channels)")
    declared = _model_input_shape(model, 0)
    if declared is not None and len(declared) == 4:
        for got, want, what in zip(shape[1:], declared[1:], ("height", "width", "channels")):
            if want is not None and got != want:
                raise ConfigError(f"shape: got {what} {got}; the model takes images of "
                                  f"{declared[1]}x{declared[2]}x{declared[3]}")
    return shape  # type: ignore[return-value]


def prepare_embeddings(model, text_emb, batch: int, what: str = "text_emb") -> np.ndarray:
    """Check ``text_emb`` (named ``what`` in errors) against the model and repeat it to one row per image.

    Raises:
        EncoderError: the embedding size is not the model's text size.
        ConfigError: wrong rank, non-finite values, or a row count that does not divide the batch.
    """
    emb = np.asarray(text_emb, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2 or emb.shape[0] < 1:
        raise ConfigError(f"{what}: got shape {np.shape(text_emb)}; allowed: (dim,) or (n, dim)")
    declared = _model_input_shape(model, 2)
    if declared is not None and declared[-1] is not None and emb.shape[1] != declared[-1]:
        raise EncoderError(f"text embedding has {emb.shape[1]} values but the model expects "
                           f"{declared[-1]}: embed the prompts with the encoder the model was trained with")
    if not np.all(np.isfinite(emb)):
        raise ConfigError(f"{what}: got NaN or infinite values; allowed: finite numbers")
    n = emb.shape[0]
    if batch % n:
        raise ConfigError(f"{what}: got {n} embeddings for a batch of {batch} images; "
                          f"allowed: 1 embedding, or a number that divides the batch")
    return np.repeat(emb, batch // n, axis=0)  # prompt-major: rows of the same prompt together


def _record_points(num_steps: int, num_intermediates: int) -> np.ndarray:
    """Indices (0 .. num_steps) of the states kept: evenly spaced, first and last included.

    A run of S steps has S + 1 states; asking for more keeps them all.
    """
    if isinstance(num_intermediates, bool) or not isinstance(num_intermediates, (int, np.integer)) \
            or num_intermediates < 2:
        raise ConfigError(f"num_intermediates: got {num_intermediates!r}; allowed: an integer >= 2 "
                          "(the starting noise and the final image at least)")
    count = min(int(num_intermediates), num_steps + 1)
    # spacing num_steps / (count − 1) >= 1, so the rounded indices are distinct
    return np.round(np.linspace(0, num_steps, count)).astype(int)


def _resolve_seed(seed: Optional[int]) -> int:
    if seed is None:
        return secrets.randbelow(MAX_SEED + 1)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed: got {seed!r}; allowed: an integer from 0 to {MAX_SEED}, or None")
    return int(seed)


def annealing_rows(annealing, prompts: int, batch: int) -> Optional[np.ndarray]:
    """The loop's (B, 4) condition-annealing table (``steps.anneal_condition``), or None when no
    image is annealed. ``annealing``: one ``ConditionAnnealing`` for every image, or one (or None)
    per prompt row, repeated like the embeddings (prompt-major)."""
    per_prompt = list(annealing) if isinstance(annealing, (list, tuple)) else [annealing] * prompts
    if len(per_prompt) != prompts or not all(a is None or isinstance(a, ConditionAnnealing) for a in per_prompt):
        raise ConfigError(f"annealing: got {annealing!r}; allowed: None, a ConditionAnnealing, or one "
                          f"(or None) per prompt ({prompts})")
    rows = [(a if a is not None else ConditionAnnealing()).as_row() for a in per_prompt]
    if not any(row[0] > 0 for row in rows):
        return None
    return np.repeat(np.asarray(rows, np.float32), batch // prompts, axis=0)


def check_interval(interval) -> Tuple[float, float]:
    """The guidance interval ``(low, high]`` of noise levels (t + 1) / T; None = every step, (0, 1)."""
    if interval is None:
        return 0.0, 1.0
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError):
        low = high = math.nan
    if not 0.0 <= low < high <= 1.0:
        raise ConfigError(f"guidance_interval: got {interval!r}; allowed: (low, high) with 0 <= low < high <= 1 "
                          "(noise levels, 1 = pure noise), or None for every step")
    return low, high


def _resolve_schedule(schedule: Optional[NoiseSchedule], timesteps: Optional[int]) -> NoiseSchedule:
    """The schedule given, else the default linear one with ``timesteps`` steps.

    The default is ``DiffusionConfig()``'s, so a bare model is read as a v-predicting one; pass
    ``schedule=run.schedule`` (or ``make_schedule(DiffusionConfig(prediction="epsilon"))``) for
    an ε model.
    """
    if schedule is None:
        return make_schedule(DiffusionConfig(timesteps=DEFAULT_TIMESTEPS if timesteps is None else timesteps))
    # the default 1000 says nothing when a schedule is given; another value is a likely mistake
    if timesteps not in (None, DEFAULT_TIMESTEPS, schedule.timesteps):
        log.warning("timesteps=%s ignored: the schedule given has T = %d", timesteps, schedule.timesteps)
    return schedule


# --------------------------------------------------------------------------------------------
# One checked run, shared by sample() and streaming.iter_sample().
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplingPlan:
    """A sampling run whose arguments are checked, ready for the compiled loop.

    Attributes:
        x_T: the starting noise of the seed, (B, H, W, C).
        step_t: (S,) 0-based model levels, one per reverse step.
        records: indices (0 .. S) of the states the result keeps.
        run_segment: the cached compiled loop; ``args`` its tensors that do not change in a run.
    """

    sampler: str
    shape: Tuple[int, int, int, int]
    step_t: np.ndarray
    records: np.ndarray
    seed: int
    eta: float
    guidance_scale: float
    x_T: tf.Tensor
    run_segment: Any
    args: Dict[str, Any]

    @property
    def num_steps(self) -> int:
        return len(self.step_t)

    @property
    def levels(self) -> np.ndarray:
        """(S + 1,) the noise level of each state in the paper's notation: T for x_T ... 0 for x_0."""
        return np.append(self.step_t + 1, 0)

    def run(self, x: tf.Tensor, start: int, stop: int) -> Tuple[tf.Tensor, tf.Tensor]:
        """Steps ``[start, stop)`` from state ``x``: (x after them, the last step's x̂_0)."""
        return self.run_segment(x, start=tf.constant(start), stop=tf.constant(stop), **self.args)

    def result(self, kept: List[np.ndarray], seconds: float) -> SampleResult:
        """The SampleResult of the kept states (one per record point, the last one unclipped)."""
        images = kept[-1] = np.clip(kept[-1], -1.0, 1.0)
        log.debug("%s: %d steps, batch %d, w=%g, seed %d in %.2f s", self.sampler, self.num_steps,
                  self.shape[0], self.guidance_scale, self.seed, seconds)
        return SampleResult(images=images, intermediates=np.stack(kept), timesteps=self.levels[self.records],
                            seed=self.seed, sampler=self.sampler, steps=self.num_steps,
                            guidance_scale=self.guidance_scale, eta=self.eta, seconds=seconds)


def loop_args(schedule: NoiseSchedule, step_t: np.ndarray, cond: np.ndarray, guidance_scale: float,
              eta: float, noise_key: tf.Tensor, uncond: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """The compiled loop's arguments that do not change during a run (all but x, start, stop);
    ``uncond`` is guidance's unconditional embedding per image (None: the null one, all zeros).

    The step tables (``step_t`` and each step's next level, −1 after the last) are padded to T,
    the most steps a run can have, so that their shape, and hence the compiled loop, is the same
    for any number of steps.
    """
    step_prev = np.append(step_t[1:], -1).astype(np.int32)
    pad = schedule.timesteps - len(step_t)
    uncond = np.zeros_like(cond) if uncond is None else uncond
    return dict(cond=tf.constant(cond), uncond=tf.constant(uncond, tf.float32), step_t=tf.constant(np.pad(step_t, (0, pad))),
                step_prev=tf.constant(np.pad(step_prev, (0, pad))),
                guidance=tf.constant(guidance_scale, tf.float32), eta=tf.constant(float(eta), tf.float32),
                noise_key=noise_key)


def plan(model, text_emb, shape: Sequence[int], *, schedule: Optional[NoiseSchedule], sampler: str,
         steps: Optional[int], eta: float, guidance_scale: float, seed: Optional[int],
         num_intermediates: int, clip_x0: bool, negative_emb=None, extra: Sequence[Any] = (),
         annealing: Optional[ConditionAnnealing] = None,
         guidance_interval: Optional[Tuple[float, float]] = None) -> SamplingPlan:
    """Check every argument (see :func:`sample`) before any compute, then draw x_T: the :class:`SamplingPlan`
    that :func:`sample` and ``streaming.iter_sample`` run (``extra``: an upsampler's further inputs, fixed).

    Raises:
        EncoderError, ConfigError: as in :func:`sample`.
    """
    # 1. validate everything before any compute
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler: got {sampler!r}; allowed: {' | '.join(SAMPLERS)}")
    schedule = schedule if schedule is not None else make_schedule(DiffusionConfig())
    shape = check_shape(model, shape)
    cond = prepare_embeddings(model, text_emb, shape[0])
    uncond = None if negative_emb is None else prepare_embeddings(model, negative_emb, shape[0], "negative_emb")
    guidance_scale = float(guidance_scale)
    if not math.isfinite(guidance_scale):
        raise ConfigError(f"guidance_scale: got {guidance_scale}; allowed: a finite number (1 = no guidance)")
    if sampler == "ddpm":
        if steps not in (None, schedule.timesteps):
            raise ConfigError(f"steps: got {steps}; ddpm runs all T = {schedule.timesteps} steps of the "
                              "schedule (use sampler='ddim' for fewer)")
        if eta:
            raise ConfigError(f"eta: got {eta}; allowed: 0 for ddpm (eta applies to ddim only)")
        step_t = np.arange(schedule.timesteps - 1, -1, -1, dtype=np.int32)
        eta = 1.0  # reported: DDPM's variance is DDIM's eta = 1 one
    else:
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"eta: got {eta}; allowed: 0 to 1")
        step_t = ddim_timesteps(schedule.timesteps, min(50, schedule.timesteps) if steps is None else steps)
    records = _record_points(len(step_t), num_intermediates)
    seed = _resolve_seed(seed)
    annealing_table = annealing_rows(annealing, len(np.atleast_2d(np.asarray(text_emb))), shape[0])
    interval = check_interval(guidance_interval)

    # 2. one compiled loop per (model, sampler, guided?, clip, schedule); w = 0 and w = 1 need
    #    a single forward pass, with the unconditional (null or negative) or the conditional embedding
    guided = guidance_scale not in (0.0, 1.0)
    if guidance_scale == 0.0:
        cond = np.zeros_like(cond) if uncond is None else uncond
    run_segment = compiled_segment(model, schedule, sampler, guided, clip_x0)

    # 3. the starting noise x_T and the key every step's noise is folded from
    run_key = tf.constant([seed, 0], tf.int64)
    x = tf.random.stateless_normal(shape, tf.random.experimental.stateless_fold_in(run_key, 0))
    noise_key = tf.random.experimental.stateless_fold_in(run_key, 1)

    args = loop_args(schedule, step_t, cond, guidance_scale, eta, noise_key, uncond)
    args.update({"extra": tuple(tf.constant(e, tf.float32) for e in extra)} if len(extra) else {})
    if annealing_table is not None and guidance_scale != 0.0:  # w = 0 never sees the prompt
        args["annealing"] = tf.constant(annealing_table)
    if guided and interval != (0.0, 1.0):
        args["interval"] = tf.constant(interval, tf.float32)
    return SamplingPlan(sampler=sampler, shape=shape, step_t=step_t, records=records, seed=seed, eta=float(eta),
                        guidance_scale=guidance_scale, x_T=x, run_segment=run_segment, args=args)


# --------------------------------------------------------------------------------------------
# Public entry points.
# --------------------------------------------------------------------------------------------

def sample(model, text_emb, shape: Sequence[int] = (1, 32, 32, 3), *,
           schedule: Optional[NoiseSchedule] = None, sampler: str = "ddim", steps: Optional[int] = None,
           eta: float = 0.0, guidance_scale: float = 3.0, seed: Optional[int] = None,
           num_intermediates: int = 10, clip_x0: bool = True, progress: Optional[bool] = None,
           negative_emb=None, annealing: Optional[ConditionAnnealing] = None,
           guidance_interval: Optional[Tuple[float, float]] = None) -> SampleResult:
    """Generate images with DDPM or DDIM and classifier-free guidance.

    Args:
        model: called as ``model([x, t, text_emb], training=False)`` (see ``build_unet``); use the
            EMA model of a run (``load_run(...).model``), or a cascade run (its base, then its stages).
        text_emb: (dim,) or (n, dim) float embeddings; n must divide the batch, each row is used
            for ``batch // n`` consecutive images.
        shape: (batch, height, width, channels) of the images to make.
        schedule: the run's noise schedule; None = the default linear T = 1000 one.
        sampler: "ddim" or "ddpm" (DDPM runs all T steps: leave ``steps`` None and ``eta`` 0).
        steps: DDIM steps, 1 to T (None = 50, or T if T < 50).
        eta: DDIM's η from 0 (deterministic) to 1.
        guidance_scale: w; 1 = conditional only, 0 = unconditional (both one forward pass per step).
        seed: 0 .. 2**31−1; None draws one (returned in the result).
        num_intermediates: states kept for figures, evenly spaced, at least 2; a run of S steps
            keeps at most its S + 1 states.
        clip_x0: clip each step's x̂_0 to [-1, 1].
        progress: show a progress bar; None follows ``logging_utils.progress_enabled()``.
        negative_emb: (dim,) or (n, dim) like ``text_emb``: guidance's unconditional embedding
            (a negative prompt's) instead of the null one (all zeros); unused when w = 1.

    Returns:
        SampleResult: images in [-1, 1], the kept intermediates and their t, the seed used.

    Raises:
        EncoderError: the embedding size differs from the model's.
        ConfigError: any other argument outside what is allowed (also a ValueError).
    """
    options = dict(schedule=schedule, sampler=sampler, steps=steps, eta=eta, guidance_scale=guidance_scale, seed=seed,
                   num_intermediates=num_intermediates, clip_x0=clip_x0, negative_emb=negative_emb, annealing=annealing,
                   guidance_interval=guidance_interval)
    if getattr(model, "stages", None) is not None:  # a cascade run: its own method (no import cycle)
        return model.sample(text_emb, shape, progress=progress, **options)
    sampling = plan(model, text_emb, shape, **options)
    num_steps = sampling.num_steps
    # segments end at kept states, and every ~1 % of the steps when a bar is drawn
    bar = progress_bar(total=num_steps, enabled=progress, desc=f"{sampler} sampling", unit="step")
    keep = set(sampling.records.tolist())
    stops = set(keep)
    if not bar.disable:
        stops |= set(range(0, num_steps, max(1, num_steps // PROGRESS_UPDATES)))
    x = sampling.x_T
    kept: List[np.ndarray] = [x.numpy()]  # records[0] == 0: the starting noise
    started = time.perf_counter()
    with bar:
        start = 0
        for stop in sorted(stops | {num_steps}):
            if stop == start:
                continue
            x, _ = sampling.run(x, start, stop)
            bar.update(stop - start)
            if stop in keep:
                kept.append(x.numpy())
            start = stop
    return sampling.result(kept, time.perf_counter() - started)


def sample_ddpm(model, text_emb, shape: Sequence[int] = (1, 32, 32, 3), timesteps: Optional[int] = 1000, *,
                schedule: Optional[NoiseSchedule] = None, guidance_scale: float = 3.0,
                seed: Optional[int] = None, num_intermediates: int = 10, clip_x0: bool = True,
                progress: Optional[bool] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Ancestral DDPM sampling over all T steps (DDPM eq. 11 with the posterior of eq. 6-7).

    Args:
        model, text_emb, shape, guidance_scale, seed, num_intermediates, clip_x0, progress: as in
            :func:`sample`.
        timesteps: T of the default linear schedule, used when ``schedule`` is None.
        schedule: the run's schedule; it wins over ``timesteps`` (a value other than the default
            1000 and the schedule's T is logged as a warning).

    Returns:
        (final_image, intermediate_images): float32, (B, H, W, C) in [-1, 1] and (K, B, H, W, C)
        with K = min(num_intermediates, T + 1); the first intermediate is the starting noise
        (standard normal, not clipped), the last the final image. Call :func:`sample` to also get
        each intermediate's t and the seed.

    Raises:
        EncoderError, ConfigError: as in :func:`sample`.
    """
    result = sample(model, text_emb, shape, schedule=_resolve_schedule(schedule, timesteps), sampler="ddpm",
                    guidance_scale=guidance_scale, seed=seed, num_intermediates=num_intermediates,
                    clip_x0=clip_x0, progress=progress)
    return result.images, result.intermediates


def sample_ddim(model, text_emb, shape: Sequence[int] = (1, 32, 32, 3), timesteps: Optional[int] = 1000, *,
                schedule: Optional[NoiseSchedule] = None, steps: int = 50, eta: float = 0.0,
                guidance_scale: float = 3.0, seed: Optional[int] = None, num_intermediates: int = 10,
                clip_x0: bool = True, progress: Optional[bool] = None) -> Tuple[np.ndarray, np.ndarray]:
    """DDIM sampling (Song et al. eq. 12) over ``steps`` evenly spaced levels of T.

    Args:
        steps: 1 to T reverse steps.
        eta: 0 (deterministic) to 1 (the DDPM posterior variance on the sub-sequence).
        others: as in :func:`sample_ddpm`.

    Returns:
        (final_image, intermediate_images) as in :func:`sample_ddpm`.

    Raises:
        EncoderError, ConfigError: as in :func:`sample`.
    """
    result = sample(model, text_emb, shape, schedule=_resolve_schedule(schedule, timesteps), sampler="ddim",
                    steps=steps, eta=eta, guidance_scale=guidance_scale, seed=seed,
                    num_intermediates=num_intermediates, clip_x0=clip_x0, progress=progress)
    return result.images, result.intermediates
