"""The rest of the training objective, written once in ``keras.ops`` for every backend.

The schedule's formulas (q_sample, the ε / v target, ε̂ from an output, loss weights) are
:class:`~pokemon_diffusion.diffusion.schedule.NoiseSchedule`'s; here is what training adds around
them: the loss, the null condition, EMA, clipping, the optimizer, the held-out loss. Both trainers
call these functions: the TensorFlow one (``trainer.py``, inside its ``tf.function``) and the JAX
one (``jax_trainer.py``, inside its ``jax.jit``). Only what is backend-specific (gradients,
compilation, variables, checkpoints) stays in those modules. This module imports Keras and NumPy
only, never TensorFlow or JAX directly.

References:
    DDPM: Ho et al. 2020, eq. 4 (q(x_t | x_0)) and eq. 14 (the simple loss ‖ε − ε_θ(x_t, t)‖²).
    v-prediction: Salimans & Ho 2022, eq. 9. Classifier-free guidance: Ho & Salimans 2022, sec. 3.2.
    AdamW: Loshchilov & Hutter 2019. EMA warm-up: as in diffusers' ``EMAModel``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import keras
import numpy as np
from keras import ops

from ..config import TrainConfig
from ..diffusion.schedule import NoiseSchedule
from .lr_schedule import WarmupCosineDecay


def heldout_error(schedule: NoiseSchedule, x0: Any, t: Any, noise: Any, model_fn: Callable) -> Any:
    """Per-example ‖ε − ε̂‖² of ``model_fn(x_t)`` at (x0, t, noise): the held-out measure.

    Always in ε space, whatever the network predicts, so ε- and v-prediction runs (and every
    loss weighting) are judged on one scale; for ε-prediction it equals the training loss.
    """
    x_t = schedule.q_sample(x0, t, noise)
    return per_example_loss(noise, schedule.epsilon(x_t, t, ops.cast(model_fn(x_t), "float32")))


def null_condition(text: Any, drop: Any) -> Any:
    """Replace the embeddings where ``drop`` is True by the null (all-zeros) embedding.

    The project's guidance contract: the unconditional input is the zero vector, in training
    (with probability ``cond_drop``) and in the samplers' unconditional branch.
    """
    return ops.where(ops.reshape(drop, [-1, 1]), ops.zeros_like(text), text)


def per_example_loss(target: Any, prediction: Any) -> Any:
    """‖target − prediction‖² averaged over each image (DDPM eq. 14), float32 whatever the compute dtype."""
    return ops.mean(ops.square(target - ops.cast(prediction, "float32")), axis=[1, 2, 3])


def ema_decay(num_updates: Any, max_decay: float) -> Any:
    """The decay of update number ``num_updates`` (0-based): ``min(max_decay, (1 + n) / (10 + n))``."""
    n = ops.cast(num_updates, "float32")
    return ops.minimum(ops.convert_to_tensor(max_decay, "float32"), (1.0 + n) / (10.0 + n))


def ema_update(shadow: Any, value: Any, decay: Any) -> Any:
    """``d·shadow + (1 − d)·value``, as ``shadow − (1 − d)(shadow − value)`` (one fewer multiply)."""
    return shadow - ops.cast(1.0 - decay, shadow.dtype) * (shadow - ops.cast(value, shadow.dtype))


def clip_by_global_norm(grads: Sequence[Any], clip_norm: float) -> Tuple[List[Any], Any]:
    """Scale ``grads`` so their global norm is at most ``clip_norm`` (as ``tf.clip_by_global_norm``).

    Returns:
        ``(clipped gradients, the global norm before clipping)``.
    """
    norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads))
    scale = clip_norm / ops.maximum(norm, clip_norm)
    return [g * ops.cast(scale, g.dtype) for g in grads], norm


@contextlib.contextmanager
def dtype_policy(name: Optional[str]) -> Iterator[None]:
    """Build models under the Keras dtype policy ``name``, then restore the previous global policy.

    Keras reads the policy when a layer is created, so only model construction needs to be inside.
    """
    previous: Any = keras.config.dtype_policy()
    if name:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(config: TrainConfig, total_steps: int, model: Any, loss_scaling: bool = False):
    """AdamW with the warm-up + cosine schedule; no weight decay on biases and norm scales.

    Gradient clipping is done by the train step (after the cross-replica sum), not by the
    optimizer: Keras clips before its own all-reduce, i.e. per replica.

    Args:
        config: learning rate, warm-up, schedule, weight decay.
        total_steps: the step where the cosine ends.
        model: the model whose 0-d/1-d variables are excluded from weight decay.
        loss_scaling: wrap in a dynamic ``LossScaleOptimizer`` (float16 training).

    Returns:
        A Keras optimizer (not yet built).
    """
    schedule = WarmupCosineDecay(config.learning_rate, total_steps, config.warmup_steps, 0.0, config.lr_schedule)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay,
                                       beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    # decaying biases and norm gains towards 0 only hurts (the usual practice since BERT)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) <= 1])
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# -- the held-out loss: a fixed t grid and fixed noise, the same on every backend ---------------

def eval_t_grid(timesteps: int, points: int) -> np.ndarray:
    """``points`` timesteps evenly spaced over [0, T − 1] (duplicates dropped), int32."""
    return np.unique(np.round(np.linspace(0, timesteps - 1, points)).astype(np.int32))


def eval_noise(shape: Sequence[int], seed: int, t: int, batch: int) -> np.ndarray:
    """The fixed ε of one (t, batch) cell of the held-out grid: NumPy, so every backend sees the same."""
    return np.random.default_rng([int(seed), int(t), int(batch)]).standard_normal(tuple(shape), np.float32)


def held_out_loss(losses_fn: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any],
                  images: np.ndarray, embeddings: np.ndarray, *, timesteps: int, points: int = 8,
                  seed: int = 0, batch_size: int = 64) -> Tuple[float, Dict[int, float]]:
    """Denoising loss on held-out images over a fixed grid of t with fixed noise.

    The same images, t values and noise are used at every evaluation (and on every backend), so
    the curve moves only when the model does.

    Args:
        losses_fn: ``(x0, t, text, noise) -> per-example losses`` of one batch (a compiled function).
        images, embeddings: the held-out examples (conditional: their own caption embeddings).
        timesteps: T of the schedule.
        points: points of the t grid, evenly spaced over [0, T − 1].
        seed: seed of the fixed noise.
        batch_size: images per forward pass.

    Returns:
        ``(mean loss, {t: mean loss at t})``.
    """
    per_t: Dict[int, float] = {}
    for t_value in eval_t_grid(timesteps, points):
        losses = []
        for b, start in enumerate(range(0, len(images), batch_size)):
            x0 = np.asarray(images[start:start + batch_size], np.float32)
            noise = eval_noise(x0.shape, seed, int(t_value), b)
            t = np.full([len(x0)], int(t_value), np.int32)
            text = np.asarray(embeddings[start:start + batch_size], np.float32)
            losses.append(np.asarray(keras.ops.convert_to_numpy(losses_fn(x0, t, text, noise))))
        per_t[int(t_value)] = float(np.mean(np.concatenate(losses)))
    return float(np.mean(list(per_t.values()))), per_t
