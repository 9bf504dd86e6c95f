"""A run as a TensorFlow SavedModel: text embeddings, seed, steps and guidance in, images out.

``export_saved_model("runs/r1", "serve/r1")`` (``pokemon-diffusion export RUN DIR --format
saved_model``) writes a SavedModel whose ``serving_default`` signature runs the compiled DDIM loop
(``diffusion/compiled.py``'s ``tf.while_loop``) with the run's EMA U-Net::

    import tensorflow as tf
    sampler = tf.saved_model.load("serve/r1").signatures["serving_default"]
    out = sampler(text_emb=tf.constant(emb, tf.float32),   # (N, dim): one image per row
                  seed=tf.constant(0, tf.int64), steps=tf.constant(50, tf.int32),
                  guidance=tf.constant(3.0))
    out["images"]        # float32 (N, H, W, C) in [-1, 1]
    out["images_uint8"]  # uint8 (N, H, W, C), 0 to 255

The number of steps is a run-time input (1 to the run's T; the DDIM sub-sequence is computed in the
graph exactly as ``steps.ddim_timesteps`` does), and so are the seed (0 to 2**31−1, the same noise
as ``sample(..., seed=...)``) and the guidance scale. Deterministic DDIM (η = 0), x̂_0 clipped, the
null (all-zeros) unconditional embedding; the loop always runs the two-branch guided forward pass,
so w = 0 and w = 1 agree with the in-process sampler to float rounding rather than bit for bit.
Prompts are encoded outside the model with the run's text encoder (``encoder.json``, also written
to DIR), so serving needs TensorFlow only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Union

from .atomic import atomic_write_text
from .config import MAX_SEED
from .errors import CheckpointError
from .run_dir import LoadedRun, load_run, write_encoder_info

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
SIGNATURE_FILE = "signature.json"


def ddim_table(timesteps: int, steps):
    """``steps.ddim_timesteps(timesteps, steps)`` in TensorFlow ops, for a tensor ``steps``:
    the same float64 ``linspace`` arithmetic as NumPy's, then round half to even; int32 (steps,)."""
    import tensorflow as tf

    count = tf.cast(steps, tf.float64)
    start = tf.constant(float(timesteps - 1), tf.float64)
    # NumPy: y_i = i * ((stop − start) / (num − 1)) + start, the last one set to stop; num = 1 gives [start]
    step = tf.math.divide_no_nan(-start, count - 1.0)
    values = tf.range(count, dtype=tf.float64) * step + start
    last = tf.cast(steps, tf.int32) - 1
    values = tf.where((tf.range(tf.cast(steps, tf.int32)) == last) & (steps > 1), tf.zeros_like(values), values)
    return tf.cast(tf.round(values), tf.int32)


def sampler_module(run: LoadedRun):
    """A ``tf.Module`` holding the run's model with a ``serve`` function (see the module docstring)."""
    import tensorflow as tf

    from .diffusion.compiled import segment_loop

    model, schedule = run.model, run.schedule
    size, channels, dim = run.config.model.image_size, run.config.model.channels, run.encoder.dim
    timesteps = schedule.timesteps
    loop = segment_loop(lambda: model, schedule, "ddim", True, True)

    class Sampler(tf.Module):
        def __init__(self):
            super().__init__(name="pokemon_diffusion_sampler")
            self.model = model  # tracked: its variables are saved with the module

        @tf.function(input_signature=[tf.TensorSpec([None, dim], tf.float32, name="text_emb"),
                                      tf.TensorSpec([], tf.int64, name="seed"),
                                      tf.TensorSpec([], tf.int32, name="steps"),
                                      tf.TensorSpec([], tf.float32, name="guidance")])
        def serve(self, text_emb, seed, steps, guidance):
            checks = [tf.debugging.assert_greater_equal(steps, 1, message=f"steps: allowed 1 to {timesteps}"),
                      tf.debugging.assert_less_equal(steps, timesteps, message=f"steps: allowed 1 to {timesteps}"),
                      tf.debugging.assert_greater_equal(seed, tf.constant(0, tf.int64),
                                                        message="seed: allowed 0 to 2**31-1"),
                      tf.debugging.assert_less_equal(seed, tf.constant(MAX_SEED, tf.int64),
                                                     message="seed: allowed 0 to 2**31-1")]
            with tf.control_dependencies(checks):
                step_t = ddim_table(timesteps, steps)
            step_prev = tf.concat([step_t[1:], [-1]], 0)
            pad = [[0, timesteps - tf.shape(step_t)[0]]]
            batch = tf.shape(text_emb)[0]
            # the same keys as samplers.plan: x_T from fold_in(key, 0), every step's noise from fold_in(key, 1)
            run_key = tf.stack([seed, tf.constant(0, tf.int64)])
            x = tf.random.stateless_normal([batch, size, size, channels],
                                           tf.random.experimental.stateless_fold_in(run_key, 0))
            x = tf.ensure_shape(x, [None, size, size, channels])
            noise_key = tf.random.experimental.stateless_fold_in(run_key, 1)
            x, _ = loop(x, text_emb, tf.zeros_like(text_emb), tf.pad(step_t, pad), tf.pad(step_prev, pad),
                        tf.constant(0), steps, guidance, tf.constant(0.0), noise_key)
            images = tf.clip_by_value(x, -1.0, 1.0)
            pixels = tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0.0, 255.0), tf.uint8)
            return {"images": images, "images_uint8": pixels}

    return Sampler()


def export_saved_model(run_dir: PathLike, dest: PathLike, *, force: bool = False) -> Path:
    """Write ``run_dir``'s sampler as a SavedModel in ``dest`` (see the module docstring).

    Also writes ``DIR/encoder.json`` (the text encoder prompts must be embedded with) and
    ``DIR/signature.json`` (the inputs, outputs and limits, for people and serving configs).

    Raises:
        CheckpointError: the run cannot be loaded, or ``dest`` holds files and ``force`` is False.
    """
    import tensorflow as tf

    run_dir, dest = Path(run_dir), Path(dest)
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not force)):
        raise CheckpointError(f"export: {dest} exists and is not an empty folder; allowed: a new or empty "
                              "folder, or --force to replace its files")
    if dest.exists() and dest.resolve() == run_dir.resolve():
        raise CheckpointError(f"export: got the run folder {run_dir} as the destination; allowed: another folder")
    run = load_run(run_dir)
    if getattr(run, "stages", None):
        size = run.config.model.image_size
        log.warning("%s is a cascade: the SavedModel samples its base only (%dx%d); its upsampler stages are not "
                    "exported", run_dir, size, size)
    module = sampler_module(run)
    dest.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(dest), signatures={"serving_default": module.serve})
    size, channels = run.config.model.image_size, run.config.model.channels
    write_encoder_info(dest, run.encoder)
    signature = {
        "signature": "serving_default", "sampler": "ddim (eta 0, x0 clipped, guided two-branch pass)",
        "inputs": {"text_emb": f"float32 [N, {run.encoder.dim}], embedded with {run.encoder.name}",
                   "seed": "int64 scalar, 0 to 2**31-1", "steps": f"int32 scalar, 1 to {run.schedule.timesteps}",
                   "guidance": "float32 scalar (1 = conditional only)"},
        "outputs": {"images": f"float32 [N, {size}, {size}, {channels}] in [-1, 1]",
                    "images_uint8": f"uint8 [N, {size}, {size}, {channels}]"},
    }
    atomic_write_text(dest / SIGNATURE_FILE, json.dumps(signature, indent=2) + "\n")
    log.info("exported %s as a SavedModel to %s (serving_default: text_emb, seed, steps, guidance -> images)",
             run_dir, dest)
    return dest

