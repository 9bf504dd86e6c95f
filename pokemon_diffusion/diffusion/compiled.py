"""The compiled reverse loop: one ``tf.function`` holding a ``tf.while_loop`` over a segment of steps.

All arguments are tensors of fixed shape (the step tables are padded to T), so the loop traces
once per model, sampler kind, guidance on/off, clipping and schedule, whatever the seed, guidance
scale, eta, number of steps or segment bounds. A segment returns the state x after its last
step and that step's estimate x̂_0 (what a live view shows). Compiled loops are cached per model in a weak
dictionary and reach the model through a weakref, so a cache entry never keeps a model alive.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Callable, Dict, Tuple

import numpy as np
import tensorflow as tf

from ..hardware import split_guided_pass, tensorflow_gpu
from ..model.unet import model_inputs
from .schedule import NoiseSchedule
from .steps import anneal_condition, apply_guidance, ddim_step, ddpm_step

# model -> {(kind, guided, clip_x0, split, schedule key): tf.function}. Weak keys, and the compiled
# functions reach the model only through a weakref, so a cached loop never keeps a model alive.
_COMPILED: "weakref.WeakKeyDictionary[Any, Dict[tuple, Any]]" = weakref.WeakKeyDictionary()


def _schedule_key(schedule: NoiseSchedule) -> Tuple[str, str]:
    """Schedules with the same betas and prediction compile to the same loop."""
    return schedule.prediction, hashlib.sha1(np.ascontiguousarray(schedule.betas).tobytes()).hexdigest()


def segment_loop(model_ref: Callable[[], Any], schedule: NoiseSchedule, kind: str, guided: bool,
                 clip_x0: bool, split: bool = False) -> Callable[..., Tuple[tf.Tensor, tf.Tensor]]:
    """The (not yet compiled) function that runs steps ``[start, stop)`` of one sampling run.

    ``model_ref()`` returns the model (a weakref here; a strong one where the loop is exported
    inside a SavedModel, ``saved_model.py``). The function returns ``(x, x0)``: the state after
    step ``stop − 1`` and that step's x̂_0 (zeros for an empty segment). ``split``: the guided
    pass as two independent forward passes (conditional, unconditional) that TensorFlow runs side
    by side on a multi-core CPU, instead of one pass over both (``hardware.split_guided_pass``).
    """

    def predict(x, t, cond, uncond, guidance, extra):
        model = model_ref()
        if model is None:  # pragma: no cover - the cache entry dies with the model
            raise RuntimeError("the model of this compiled sampler was garbage collected")
        if guided and split:  # two branches that share nothing but the weights: one per core
            out_cond = model(model_inputs(x, t, cond, extra), training=False)
            out_null = model(model_inputs(x, t, uncond, extra), training=False)
            return apply_guidance(tf.cast(out_cond, tf.float32), tf.cast(out_null, tf.float32), guidance)
        if guided:
            # one forward pass over [cond; uncond] (uncond: the null embedding, all zeros, or a
            # negative prompt's): twice the batch, half the kernel launches
            both = [tf.concat([e, e], 0) for e in extra]  # an upsampler's conditioning, for both halves
            out = model(model_inputs(tf.concat([x, x], 0), tf.concat([t, t], 0), tf.concat([cond, uncond], 0), both),
                        training=False)
            out_cond, out_null = tf.split(tf.cast(out, tf.float32), 2, axis=0)
            return apply_guidance(out_cond, out_null, guidance)
        return tf.cast(model(model_inputs(x, t, cond, extra), training=False), tf.float32)

    def segment(x, cond, uncond, step_t, step_prev, start, stop, guidance, eta, noise_key, extra=(), annealing=None,
                interval=None):
        batch = tf.shape(x)[0]

        def body(i, x, _x0):
            # 1. this step's levels, one per batch element (the model takes a (B,) int32 vector)
            t = tf.fill([batch], step_t[i])
            t_prev = tf.fill([batch], step_prev[i])
            # 2. network output, guided (inside the guidance interval only, when one is given: w = 1,
            #    the conditional output, outside it); with CADS the conditional embedding is noised
            #    early on (its noise keyed by the step, apart from the image noise's key)
            level = tf.cast(step_t[i] + 1, tf.float32) / schedule.timesteps  # (0, 1], 1 = pure noise
            step_guidance, step_cond = guidance, cond
            if interval is not None:
                step_guidance = tf.where((level > interval[0]) & (level <= interval[1]), guidance, 1.0)
            if annealing is not None:
                cond_key = tf.random.experimental.stateless_fold_in(
                    tf.random.experimental.stateless_fold_in(noise_key, tf.cast(i, tf.int64)), 1)
                step_cond = anneal_condition(cond, level, tf.random.stateless_normal(tf.shape(cond), cond_key),
                                             annealing)
            out = predict(x, t, step_cond, uncond, step_guidance, extra)
            # 3. this step's noise: a key folded from the run's key and the step index
            z = tf.random.stateless_normal(tf.shape(x), tf.random.experimental.stateless_fold_in(
                noise_key, tf.cast(i, tf.int64)))
            # 4. the reverse step
            if kind == "ddpm":
                step = ddpm_step(schedule, x, t, out, z, clip_x0=clip_x0)
            else:
                step = ddim_step(schedule, x, t, t_prev, out, z, eta, clip_x0=clip_x0)
            # a Keras output has an unknown batch size; the loop needs the state's shape fixed
            return (i + 1, tf.ensure_shape(step.prev_sample, x.shape),
                    tf.ensure_shape(step.pred_original_sample, x.shape))

        # x̂_0 rides along in the loop state: one extra tensor, no extra compute or trace
        _, x, x0 = tf.while_loop(lambda i, *_: i < stop, body, (start, x, tf.zeros_like(x)))
        return x, x0

    return segment


def compiled_segment(model, schedule: NoiseSchedule, kind: str, guided: bool, clip_x0: bool):
    """The cached compiled loop for this model and these static options (the guided pass split
    where ``hardware.split_guided_pass`` says so: a CPU with several cores)."""
    per_model = _COMPILED.setdefault(model, {})
    split = guided and split_guided_pass(gpu=tensorflow_gpu())
    key = (kind, guided, clip_x0, split, _schedule_key(schedule))
    if key not in per_model:
        per_model[key] = tf.function(segment_loop(weakref.ref(model), schedule, kind, guided, clip_x0, split))
    return per_model[key]


def tracing_count(model) -> int:
    """How many times the sampling loops compiled for ``model`` have been traced (for tests)."""
    return sum(fn.experimental_get_tracing_count() for fn in _COMPILED.get(model, {}).values())
