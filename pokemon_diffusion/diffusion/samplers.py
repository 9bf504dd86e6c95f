"""DDPM and DDIM sampling, compiled, with classifier-free guidance and bounded intermediates.

The reverse process runs inside one ``tf.function`` holding a ``tf.while_loop`` over the steps.
An eager outer loop calls it once per *segment* of steps: segments end where an intermediate
image is kept (``num_intermediates`` evenly spaced states, never all T) and, when a progress
bar is shown, every ~1 % of the steps. All arguments of the compiled loop are tensors of fixed
shape, so a second call with the same image shape and batch size does not retrace (see
:func:`tracing_count`), whatever the seed, guidance scale, eta or number of steps.

Guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6) runs the conditional
and the null (all-zeros) embedding in ONE batched forward pass and combines the outputs::

    out = out_null + w · (out_cond − out_null)       w = 1: conditional only, w = 0: unconditional

Noise is stateless: the starting noise and the noise of step i are drawn from keys folded from
one integer seed, so the same seed gives the same images however the loop is segmented.

References:
    DDPM: Ho et al. 2020, eq. 6-7 (posterior q(x_{t-1} | x_t, x_0)) and eq. 11 (reverse step).
    DDIM: Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 and eq. 16.

Example:
    >>> images, steps = sample_ddim(model, embedding, shape=(4, 32, 32, 3), seed=0)  # doctest: +SKIP
    >>> images.shape, steps.shape                                                    # doctest: +SKIP
    ((4, 32, 32, 3), (10, 4, 32, 32, 3))
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ..config import DiffusionConfig
from ..errors import ConfigError, EncoderError
from ..logging_utils import progress as progress_bar
from .schedule import NoiseSchedule, _at, make_schedule, split_prediction

log = logging.getLogger(__name__)

SAMPLER_KINDS = ("ddpm", "ddim")
DEFAULT_TIMESTEPS = 1000  # T of the default schedule, as in the seed's sample_ddpm
MAX_SEED = 2**31 - 1
# With a progress bar the loop returns to Python about this many times per run (plus once per
# kept intermediate); each return costs well under a millisecond next to a U-Net forward pass.
PROGRESS_UPDATES = 100

# model -> {(kind, guided, clip_x0, schedule key): tf.function}. Weak keys, and the compiled
# functions reach the model only through a weakref, so a cached loop never keeps a model alive.
_COMPILED: "weakref.WeakKeyDictionary[Any, Dict[tuple, Any]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class StepOutput:
    """What one reverse step returns.

    Attributes:
        prev_sample: x at the next (less noisy) level, shape of the input.
        pred_original_sample: the model's estimate of x_0 at this step (clipped if asked).
    """

    prev_sample: tf.Tensor
    pred_original_sample: tf.Tensor


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


# --------------------------------------------------------------------------------------------
# Pure step maths (no loop, no model): easy to test on their own.
# --------------------------------------------------------------------------------------------

def apply_guidance(out_cond: tf.Tensor, out_null: tf.Tensor, guidance_scale) -> tf.Tensor:
    """Classifier-free guidance (Ho & Salimans eq. 6): ``out_null + w · (out_cond − out_null)``.

    Applied to the raw network output. For ε this is the paper's formula; for v it is the same
    combination, because ε = √(1−ᾱ_t)·x_t + √ᾱ_t·v is affine in v with the same x_t in both branches.
    """
    return out_null + guidance_scale * (out_cond - out_null)


def _alpha_bar_prev(schedule: NoiseSchedule, t_prev: tf.Tensor) -> tf.Tensor:
    """ᾱ at ``t_prev``, where ``t_prev = -1`` stands for the clean image (ᾱ = 1)."""
    table = np.concatenate([[1.0], schedule.alphas_cumprod]).astype(np.float32)
    return _at(table, tf.cast(t_prev, tf.int32) + 1)


def _estimate(schedule: NoiseSchedule, x_t, t, model_output, clip_x0: bool):
    """(ε̂, x̂_0) from the network output; with ``clip_x0``, x̂_0 is clipped to [-1, 1] and ε̂
    re-derived from it so that both stay on the same line through x_t (DDPM eq. 4)."""
    eps, x0 = split_prediction(schedule, x_t, t, model_output)
    if clip_x0:
        x0 = tf.clip_by_value(x0, -1.0, 1.0)
        abar = _at(schedule.alphas_cumprod, t)
        eps = (x_t - tf.sqrt(abar) * x0) / tf.sqrt(1.0 - abar)
    return eps, x0


def posterior_mean_coefficients(schedule: NoiseSchedule) -> Tuple[np.ndarray, np.ndarray]:
    """The two (T,) coefficients of the posterior mean μ̃(x_t, x_0) (DDPM eq. 7), float32.

    Computed in float64 from the betas: in float32, 1 − ᾱ_0 = β_0 = 1e-4 loses three digits and
    the last step would return 0.99984·x̂_0 instead of x̂_0.
    """
    betas = schedule.betas.astype(np.float64)
    abar = np.cumprod(1.0 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    coef_x0 = np.sqrt(abar_prev) * betas / (1.0 - abar)
    coef_xt = np.sqrt(1.0 - betas) * (1.0 - abar_prev) / (1.0 - abar)
    return coef_x0.astype(np.float32), coef_xt.astype(np.float32)


def ddpm_step(schedule: NoiseSchedule, x_t: tf.Tensor, t: tf.Tensor, model_output: tf.Tensor,
              noise: tf.Tensor, *, clip_x0: bool = True) -> StepOutput:
    """One ancestral DDPM step x_t → x_{t−1}, sampling the posterior q(x_{t−1} | x_t, x̂_0).

    Args:
        schedule: the noise schedule the model was trained with.
        x_t: (B, H, W, C) current sample.
        t: (B,) int, 0-based step index (0 .. T−1).
        model_output: the network's (guided) prediction, ε or v as ``schedule.prediction`` says.
        noise: standard normal, shape of ``x_t``; unused at t = 0, where β̃_0 = 0.
        clip_x0: clip x̂_0 to [-1, 1] before forming the mean.

    Returns:
        StepOutput(prev_sample=x_{t−1}, pred_original_sample=x̂_0).
    """
    # 1. ε̂ and x̂_0 from the network output (x̂_0 optionally clipped)
    _, x0 = _estimate(schedule, x_t, t, model_output, clip_x0)
    # 2. posterior mean, DDPM eq. 7: μ̃ = √ᾱ_{t−1}·β_t/(1−ᾱ_t)·x̂_0 + √α_t·(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t.
    #    With the unclipped x̂_0 this equals eq. 11: (x_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t.
    coef_x0, coef_xt = posterior_mean_coefficients(schedule)
    mean = _at(coef_x0, t) * x0 + _at(coef_xt, t) * x_t
    # 3. add √β̃_t·z, β̃_t the posterior variance of eq. 7 (zero at t = 0: the last step is the mean)
    variance = _at(schedule.posterior_variance, t)
    return StepOutput(mean + tf.sqrt(variance) * noise, x0)


def ddim_step(schedule: NoiseSchedule, x_t: tf.Tensor, t: tf.Tensor, t_prev: tf.Tensor,
              model_output: tf.Tensor, noise: tf.Tensor, eta=0.0, *, clip_x0: bool = True) -> StepOutput:
    """One DDIM step x_t → x_{t_prev} (Song et al. eq. 12), deterministic when ``eta`` = 0.

    Args:
        schedule: the noise schedule the model was trained with.
        x_t: (B, H, W, C) current sample.
        t: (B,) int, 0-based step index.
        t_prev: (B,) int, the next step index (< t); -1 means the clean image (ᾱ = 1).
        model_output: the network's (guided) prediction, ε or v.
        noise: standard normal, shape of ``x_t``; scaled by σ, so unused when ``eta`` = 0.
        eta: η of eq. 16; 0 = DDIM, 1 with t_prev = t − 1 = the DDPM posterior (σ² = β̃_t).
        clip_x0: clip x̂_0 to [-1, 1] (and re-derive ε̂ from it).

    Returns:
        StepOutput(prev_sample=x_{t_prev}, pred_original_sample=x̂_0).
    """
    # 1. ε̂ and x̂_0
    eps, x0 = _estimate(schedule, x_t, t, model_output, clip_x0)
    abar = _at(schedule.alphas_cumprod, t)
    abar_prev = _alpha_bar_prev(schedule, t_prev)
    # 2. σ_t(η), eq. 16: η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev)
    sigma = eta * tf.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
    # 3. eq. 12: x_prev = √ᾱ_prev·x̂_0 + √(1−ᾱ_prev−σ²)·ε̂ + σ·z  (max(…, 0) guards float rounding)
    direction = tf.sqrt(tf.maximum(1.0 - abar_prev - sigma ** 2, 0.0)) * eps
    return StepOutput(tf.sqrt(abar_prev) * x0 + direction + sigma * noise, x0)


def ddim_timesteps(timesteps: int, steps: int) -> np.ndarray:
    """The DDIM sub-sequence: ``steps`` 0-based indices evenly spaced from T−1 down to 0.

    Starting at T−1 (the "trailing" spacing) makes the first step see pure noise, as in training.

    Raises:
        ConfigError: ``steps`` is not from 1 to ``timesteps``.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= timesteps:
        raise ConfigError(f"DDIM steps: got {steps}; allowed: 1 to the schedule's T = {timesteps}")
    # spacing (T−1)/(steps−1) >= 1, so the rounded values are distinct
    return np.round(np.linspace(timesteps - 1, 0, steps)).astype(np.int32)


# --------------------------------------------------------------------------------------------
# The compiled loop.
# --------------------------------------------------------------------------------------------

def _schedule_key(schedule: NoiseSchedule) -> Tuple[str, str]:
    """Schedules with the same betas and prediction compile to the same loop."""
    return schedule.prediction, hashlib.sha1(np.ascontiguousarray(schedule.betas).tobytes()).hexdigest()


def _make_segment_fn(model_ref: "weakref.ref", schedule: NoiseSchedule, kind: str, guided: bool,
                     clip_x0: bool):
    """Build the ``tf.function`` that runs steps ``[start, stop)`` of one sampling run."""

    def predict(x, t, cond, guidance):
        model = model_ref()
        if model is None:  # pragma: no cover - the cache entry dies with the model
            raise RuntimeError("the model of this compiled sampler was garbage collected")
        if guided:
            # one forward pass over [cond; null]: twice the batch, half the kernel launches
            out = model([tf.concat([x, x], 0), tf.concat([t, t], 0),
                         tf.concat([cond, tf.zeros_like(cond)], 0)], training=False)
            out_cond, out_null = tf.split(tf.cast(out, tf.float32), 2, axis=0)
            return apply_guidance(out_cond, out_null, guidance)
        return tf.cast(model([x, t, cond], training=False), tf.float32)

    def segment(x, cond, step_t, step_prev, start, stop, guidance, eta, noise_key):
        batch = tf.shape(x)[0]

        def body(i, x):
            # 1. this step's levels, one per batch element (the model takes a (B,) int32 vector)
            t = tf.fill([batch], step_t[i])
            t_prev = tf.fill([batch], step_prev[i])
            # 2. network output, guided
            out = predict(x, t, cond, guidance)
            # 3. this step's noise: a key folded from the run's key and the step index
            z = tf.random.stateless_normal(tf.shape(x), tf.random.experimental.stateless_fold_in(
                noise_key, tf.cast(i, tf.int64)))
            # 4. the reverse step
            if kind == "ddpm":
                step = ddpm_step(schedule, x, t, out, z, clip_x0=clip_x0)
            else:
                step = ddim_step(schedule, x, t, t_prev, out, z, eta, clip_x0=clip_x0)
            # a Keras output has an unknown batch size; the loop needs the state's shape fixed
            return i + 1, tf.ensure_shape(step.prev_sample, x.shape)

        _, x = tf.while_loop(lambda i, _: i < stop, body, (start, x))
        return x

    return tf.function(segment)


def _compiled_segment(model, schedule: NoiseSchedule, kind: str, guided: bool, clip_x0: bool):
    """The cached compiled loop for this model and these static options."""
    per_model = _COMPILED.setdefault(model, {})
    key = (kind, guided, clip_x0, _schedule_key(schedule))
    if key not in per_model:
        per_model[key] = _make_segment_fn(weakref.ref(model), schedule, kind, guided, clip_x0)
    return per_model[key]


def tracing_count(model) -> int:
    """How many times the sampling loops compiled for ``model`` have been traced (for tests)."""
    return sum(fn.experimental_get_tracing_count() for fn in _COMPILED.get(model, {}).values())


# --------------------------------------------------------------------------------------------
# Checks done before any compute.
# --------------------------------------------------------------------------------------------

def _model_input_shape(model, index: int) -> Optional[tuple]:
    """The declared shape of one of a Keras model's inputs, or None for other callables."""
    try:
        return tuple(model.inputs[index].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _check_shape(model, shape: Sequence[int]) -> Tuple[int, int, int, int]:
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


def _prepare_embeddings(model, text_emb, batch: int) -> np.ndarray:
    """Check ``text_emb`` against the model and repeat it to one row per image.

    Raises:
        EncoderError: the embedding size is not the model's text size.
        ConfigError: wrong rank, non-finite values, or a row count that does not divide the batch.
    """
    emb = np.asarray(text_emb, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2 or emb.shape[0] < 1:
        raise ConfigError(f"text_emb: got shape {np.shape(text_emb)}; allowed: (dim,) or (n, dim)")
    declared = _model_input_shape(model, 2)
    if declared is not None and declared[-1] is not None and emb.shape[1] != declared[-1]:
        raise EncoderError(f"text embedding has {emb.shape[1]} values but the model expects "
                           f"{declared[-1]}: embed the prompts with the encoder the model was trained with")
    if not np.all(np.isfinite(emb)):
        raise ConfigError("text_emb: got NaN or infinite values; allowed: finite numbers")
    n = emb.shape[0]
    if batch % n:
        raise ConfigError(f"text_emb: got {n} embeddings for a batch of {batch} images; "
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


def _resolve_schedule(schedule: Optional[NoiseSchedule], timesteps: Optional[int]) -> NoiseSchedule:
    """The schedule given, else the default linear one with ``timesteps`` steps."""
    if schedule is None:
        return make_schedule(DiffusionConfig(timesteps=DEFAULT_TIMESTEPS if timesteps is None else timesteps))
    # the default 1000 says nothing when a schedule is given; another value is a likely mistake
    if timesteps not in (None, DEFAULT_TIMESTEPS, schedule.timesteps):
        log.warning("timesteps=%s ignored: the schedule given has T = %d", timesteps, schedule.timesteps)
    return schedule


# --------------------------------------------------------------------------------------------
# Public entry points.
# --------------------------------------------------------------------------------------------

def sample(model, text_emb, shape: Sequence[int] = (1, 32, 32, 3), *,
           schedule: Optional[NoiseSchedule] = None, sampler: str = "ddim", steps: Optional[int] = None,
           eta: float = 0.0, guidance_scale: float = 3.0, seed: Optional[int] = None,
           num_intermediates: int = 10, clip_x0: bool = True,
           progress: Optional[bool] = None) -> SampleResult:
    """Generate images with DDPM or DDIM and classifier-free guidance.

    Args:
        model: called as ``model([x, t, text_emb], training=False)`` (see ``build_unet``); use the
            EMA model of a run (``load_run(...).model``).
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

    Returns:
        SampleResult: images in [-1, 1], the kept intermediates and their t, the seed used.

    Raises:
        EncoderError: the embedding size differs from the model's.
        ConfigError: any other argument outside what is allowed (also a ValueError).
    """
    # 1. validate everything before any compute
    if sampler not in SAMPLER_KINDS:
        raise ConfigError(f"sampler: got {sampler!r}; allowed: {' | '.join(SAMPLER_KINDS)}")
    schedule = schedule if schedule is not None else make_schedule(DiffusionConfig())
    shape = _check_shape(model, shape)
    cond = _prepare_embeddings(model, text_emb, shape[0])
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
    step_prev = np.append(step_t[1:], -1).astype(np.int32)
    num_steps = len(step_t)
    records = _record_points(num_steps, num_intermediates)
    seed = _resolve_seed(seed)

    # 2. one compiled loop per (model, sampler, guided?, clip, schedule); w = 0 and w = 1 need
    #    a single forward pass, with the null or the conditional embedding
    guided = guidance_scale not in (0.0, 1.0)
    if guidance_scale == 0.0:
        cond = np.zeros_like(cond)
    run_segment = _compiled_segment(model, schedule, sampler, guided, clip_x0)

    # 3. the starting noise x_T and the key every step's noise is folded from
    run_key = tf.constant([seed, 0], tf.int64)
    x = tf.random.stateless_normal(shape, tf.random.experimental.stateless_fold_in(run_key, 0))
    noise_key = tf.random.experimental.stateless_fold_in(run_key, 1)

    # 4. segments end at kept states, and every ~1 % of the steps when a bar is drawn
    bar = progress_bar(total=num_steps, enabled=progress, desc=f"{sampler} sampling", unit="step")
    stops = set(records.tolist())
    if not bar.disable:
        stops |= set(range(0, num_steps, max(1, num_steps // PROGRESS_UPDATES)))
    stops = sorted(stops | {num_steps})
    # the step tables are padded to T (the most steps a run can have) so that their shape, and
    # hence the compiled loop, is the same for any number of steps
    pad = schedule.timesteps - num_steps
    args = dict(cond=tf.constant(cond), step_t=tf.constant(np.pad(step_t, (0, pad))),
                step_prev=tf.constant(np.pad(step_prev, (0, pad))),
                guidance=tf.constant(guidance_scale, tf.float32), eta=tf.constant(float(eta), tf.float32),
                noise_key=noise_key)
    keep = set(records.tolist())
    kept: List[np.ndarray] = [x.numpy()]  # records[0] == 0: the starting noise
    started = time.perf_counter()
    with bar:
        start = 0
        for stop in stops:
            if stop == start:
                continue
            x = run_segment(x, start=tf.constant(start), stop=tf.constant(stop), **args)
            bar.update(stop - start)
            if stop in keep:
                kept.append(x.numpy())
            start = stop
    seconds = time.perf_counter() - started

    # 5. label each kept state with its noise level in the paper's notation (x_T ... x_0)
    levels = np.append(step_t + 1, 0)
    images = kept[-1] = np.clip(kept[-1], -1.0, 1.0)
    log.debug("%s: %d steps, batch %d, w=%g, seed %d in %.2f s", sampler, num_steps, shape[0],
              guidance_scale, seed, seconds)
    return SampleResult(images=images, intermediates=np.stack(kept), timesteps=levels[records],
                        seed=seed, sampler=sampler, steps=num_steps, guidance_scale=guidance_scale,
                        eta=float(eta), seconds=seconds)


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
