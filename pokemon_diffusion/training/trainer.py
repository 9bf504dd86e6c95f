"""The train step: one compiled ``tf.function`` with EMA, guidance dropout and gradient clipping.

:class:`Trainer` owns the U-Net, its EMA copy, AdamW and the random generator under the chosen
``tf.distribute`` strategy and dtype policy; :meth:`Trainer.train_step` is traced once. The
run around it (data, checkpoints, metrics, signals, the time limit) is :func:`loop.train`.

Randomness. The step draws a fresh key from a ``tf.random.Generator`` (its state is checkpointed)
and derives every example's timestep, noise and guidance-dropout decision from that key and the
example's position in the data stream (stateless ops). The draws therefore do not depend on how
a batch is split across replicas, and a resumed run draws exactly what an uninterrupted one would.

References:
    DDPM: Ho et al. 2020, eq. 4 (q(x_t | x_0)) and eq. 14 (the simple loss ‖ε − ε_θ(x_t, t)‖²).
    Classifier-free guidance: Ho & Salimans 2022 (the null condition during training, sec. 3.2).
    AdamW: Loshchilov & Hutter 2019. EMA warm-up: as in diffusers' ``EMAModel``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from ..config import RunConfig
from ..data.pairs import HELD_OUT_AUG_LEVEL, condition_inputs
from ..diffusion.schedule import make_schedule
from ..errors import ConfigError
from ..model.unet import model_inputs
from ..run_dir import save_model_atomic
from ..threads import configure_threads
from .distribute import make_strategy, precision_policy, step_branches
from .ema import ExponentialMovingAverage
from .checkpoint import TrainingCheckpoint
from .run_loop import Restored
from .objective import dtype_policy, held_out_loss, heldout_error, make_optimizer, null_condition, per_example_loss

logger = logging.getLogger(__name__)


def example_draws(key: tf.Tensor, index: tf.Tensor, image_shape: Tuple[int, ...], timesteps: int,
                  cond_drop: float) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-example ``(t, ε, drop)`` from stateless ops keyed by (step key, stream position).

    Each example's draws depend on nothing but the key and its own position, so they do not
    depend on the batch size or on how a batch is split across replicas. A ``map_fn`` over the
    batch: measured at < 1 % of the step (docs/PERFORMANCE.md), so not vectorised.

    Returns:
        int32 ``t`` (B,) in [0, timesteps), float32 ``ε`` (B, *image_shape), bool ``drop`` (B,).
    """
    def one(position):
        seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(key, position), 3)
        t = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=timesteps, dtype=tf.int32)
        noise = tf.random.stateless_normal(image_shape, seeds[1])
        drop = tf.random.stateless_uniform([], seeds[2]) < cond_drop
        return t, noise, drop

    return tf.map_fn(one, index, fn_output_signature=(tf.TensorSpec([], tf.int32),
                                                      tf.TensorSpec(image_shape, tf.float32),
                                                      tf.TensorSpec([], tf.bool)))


def denoising_loss(target: tf.Tensor, prediction: tf.Tensor, global_batch: tf.Tensor,
                   weights: tf.Tensor) -> tf.Tensor:
    """This share of the simple loss ‖target − f_θ‖² (DDPM eq. 14), each image's mean weighted by
    its timestep's weight (1, or Min-SNR-γ), summed over the local examples and divided by the
    GLOBAL batch size, so replica shares add up to the mean."""
    return tf.reduce_sum(per_example_loss(target, prediction) * weights) / global_batch


def held_out_error_fn(model: Any, config: RunConfig):
    """``(x0, t, text, noise) -> per-example ‖ε − ε̂‖²`` of ``model`` in inference mode, one ``tf.function``
    with a free batch axis: what the held-out loss (``objective.held_out_loss``) calls per batch.
    Needs no optimizer, so ``evaluate`` scores a loaded model with it as training does."""
    schedule = make_schedule(config.diffusion)
    size, channels, dim = config.model.image_size, config.model.channels, config.model.text_dim
    image = tf.TensorSpec([None, size, size, channels], tf.float32)
    spec = [image, tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, dim], tf.float32), image]

    low_res = config.model.low_res

    def evaluate(x0, t, text, noise):
        # an upsampler sees the held-out image degraded, at a fixed augmentation level, without noise
        extra = () if low_res is None else condition_inputs(x0, low_res, HELD_OUT_AUG_LEVEL)
        return heldout_error(schedule, x0, t, noise, lambda x_t: model(model_inputs(x_t, t, text, extra),
                                                                       training=False))

    return tf.function(evaluate, input_signature=spec, autograph=False)


def check_crop(config: RunConfig) -> int:
    """An upsampler's training crop side (``train.crop_size``, default the whole image), checked."""
    model, crop = config.model, config.train.crop_size or config.model.image_size
    if model.low_res is None and config.train.crop_size is not None:
        raise ConfigError(f"TrainConfig.crop_size: got {crop}; allowed: None for a base model (crops are for an "
                          "upsampler: ModelConfig.low_res, `train --upsample-from`)")
    step = 2 ** (model.levels - 1)
    if crop > model.image_size or crop % step:
        raise ConfigError(f"TrainConfig.crop_size: got {crop}; allowed: a multiple of {step} (2 ** (levels - 1)) "
                          f"up to image_size {model.image_size}")
    return crop


class Trainer:
    """Model, EMA model, optimizer, RNG and the compiled train and eval functions of one run.

    Args:
        config: the run's configs; ``config.model.text_dim`` must match the embeddings.
        total_steps: the step budget (ends the cosine learning-rate schedule).
        strategy: a ``tf.distribute.Strategy``; None = ``make_strategy(config.train.strategy)``.
        model_fn: builds a model from a ModelConfig; None = ``build_unet``. With ``train.remat`` it is
            also called with ``remat=True`` (for the trained model).

    Example:
        >>> trainer = Trainer(config, total_steps=1000)                       # doctest: +SKIP
        >>> batches = trainer.distribute(make_dataset(x, e, 32, repeat=True, with_index=True))
        >>> loss = trainer.train_step(next(iter(batches)))
    """

    def __init__(self, config: RunConfig, total_steps: int, *, strategy: Optional[tf.distribute.Strategy] = None,
                 model_fn: Optional[Callable[[Any], Any]] = None) -> None:
        if model_fn is None:
            from ..model.unet import build_unet as model_fn
        tc = config.train
        self.config = config
        self.total_steps = int(total_steps)
        self.model_fn = model_fn
        if strategy is None:  # the thread pools first: creating a strategy starts TensorFlow
            configure_threads(step_branches(tc, config.model.norm))
        self.strategy = strategy if strategy is not None else make_strategy(tc.strategy)
        self.replicas = int(self.strategy.num_replicas_in_sync)
        if tc.batch_size < self.replicas:
            raise ConfigError(f"TrainConfig.batch_size: got {tc.batch_size}; allowed: at least the number of "
                              f"replicas ({self.replicas}), since each replica needs examples")
        # each branch needs examples: at most one per example of a replica's share of the batch
        self.branches = min(step_branches(tc, config.model.norm, self.replicas), tc.batch_size // self.replicas)
        self.schedule = make_schedule(config.diffusion)
        self.loss_weights = self.schedule.loss_weights(tc.loss_weighting, tc.min_snr_gamma)  # per t; ones for "none"
        self.policy = precision_policy(tc.mixed_precision)
        self.loss_scaling = self.policy == "mixed_float16"
        size, channels = config.model.image_size, config.model.channels
        size = check_crop(config)  # an upsampler trains on crops (data/pairs.py); a base model on whole images
        self.image_shape = (size, size, channels)
        with self.strategy.scope():
            with dtype_policy(self.policy):
                # rematerialisation only where gradients are taken; the EMA model is never differentiated
                self.model = model_fn(config.model, remat=True) if tc.remat else model_fn(config.model)
                self.ema_model = model_fn(config.model)
            self.optimizer = make_optimizer(tc, self.total_steps, self.model, self.loss_scaling)
            self.optimizer.build(self.model.trainable_variables)  # before a restore: its slots must exist
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # stream elements consumed: where a resumed data stream starts, even if the batch size changed
            self.examples_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_seen")
            self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed_seconds")
            # log accumulators, read and reset by the loop (not checkpointed)
            self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_sum")
            self.loss_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="loss_count")
            self.nonfinite_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="nonfinite_step")
        self.ema = ExponentialMovingAverage(self.model, self.ema_model, tc.ema_decay)
        # used in cross-replica context only, so it lives outside the strategy (one state, not one per replica)
        self.generator = tf.random.Generator.from_seed(tc.seed)
        self.train_step: Optional[Any] = None
        self._eval_fns: Dict[str, Any] = {}
        self._export_model: Optional[Any] = None
        self.checkpoint: Optional[TrainingCheckpoint] = None

    # -- the train step ---------------------------------------------------------------------

    def distribute(self, dataset: tf.data.Dataset):
        """Prepare a dataset of ``(images, embeddings, indices)`` batches and compile the step for it.

        Returns:
            What to iterate: the dataset itself, or its distributed version under a multi-replica strategy.
        """
        # the default strategy returns the dataset itself; others split batches / prefetch to devices
        dataset = self.strategy.experimental_distribute_dataset(dataset)
        if self.train_step is None:
            # a fixed signature with a free batch axis: one trace, whatever the batch size; the step has no
            # Python control flow on tensors, and without AutoGraph it traces twice as fast (measured)
            self.train_step = tf.function(self._train_step, input_signature=[dataset.element_spec],
                                          autograph=False)
        return dataset

    def _draws(self, key: tf.Tensor, index: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per-example (t, ε, drop) of this step (see :func:`example_draws`)."""
        return example_draws(key, index, self.image_shape, self.schedule.timesteps, self.config.train.cond_drop)

    def _replica_step(self, batch: Tuple[tf.Tensor, ...], key: tf.Tensor):
        """Forward, backward and update on this replica's share of the batch.

        Returns:
            ``(loss share, global gradient norm, number of examples)`` of this replica.
        """
        images = batch[0]
        context = tf.distribute.get_replica_context()
        # the loss is a mean over the GLOBAL batch (summed across replicas), whatever the split
        global_batch = tf.cast(tf.shape(images)[0], tf.float32)
        if self.replicas > 1:
            global_batch = context.all_reduce(tf.distribute.ReduceOp.SUM, global_batch)
        variables = self.model.trainable_variables
        # 1-4 on each branch: slices of the batch whose graphs share nothing but the weights, so that
        # TensorFlow runs them side by side (threads.configure_threads); their gradients add up
        size = tf.shape(images)[0]
        if self.branches > 1:  # the loop's batches are full; an empty branch would fail deep in the model
            tf.debugging.assert_greater_equal(size, self.branches, message=f"a batch smaller than branches "
                                              f"({self.branches}): feed at least that many examples per replica")
        cuts = [size * i // self.branches for i in range(self.branches + 1)]
        pieces = [batch] if self.branches == 1 else [[part[a:b] for part in batch] for a, b in zip(cuts, cuts[1:])]
        shares = [self._branch(variables, piece, key, global_batch) for piece in pieces]
        loss = tf.add_n([share[0] for share in shares])
        grads = [tf.add_n(list(parts)) for parts in zip(*(share[1] for share in shares))]  # one branch: identity
        # 5. sum across replicas, then clip by the global norm of the full-batch gradient
        if self.replicas > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        scale = tf.cast(self.optimizer.dynamic_scale, tf.float32) if self.loss_scaling else None
        if scale is not None:
            grads = [g / scale for g in grads]
        grads, norm = self._clip(grads)
        if scale is not None:  # the LossScaleOptimizer unscales (and skips non-finite steps) itself
            grads = [g * scale for g in grads]
        if self.replicas > 1:  # the Keras optimizer sums across replicas once more
            grads = [g / self.replicas for g in grads]
        # 6. AdamW update (warm-up + cosine learning rate)
        self.optimizer.apply(grads, variables)
        return loss, norm, tf.shape(images, out_type=tf.int64)[0]

    def _branch(self, variables, batch, key: tf.Tensor, global_batch: tf.Tensor):
        """Steps 1-4 on one branch's examples: ``(its loss share, its gradients)``."""
        images, text, index, *extra = batch  # extra: what the batch maker adds for the model (model_inputs)
        # 1. draw t ~ U{0..T-1}, ε ~ N(0, I) and the guidance-dropout mask for every example
        t, noise, drop = self._draws(key, index)
        # 2. classifier-free guidance training: some captions become the null condition
        text = null_condition(text, drop)
        # 3. x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε (DDPM eq. 4) and the target (ε, or v)
        x_t = self.schedule.q_sample(images, t, noise)
        target = self.schedule.target(images, t, noise)
        # 4. the simple loss ‖target − f_θ(x_t, t, text)‖² (DDPM eq. 14), float32 under mixed precision
        with tf.GradientTape() as tape:
            loss = denoising_loss(target, self.model(model_inputs(x_t, t, text, extra), training=True), global_batch,
                                  tf.gather(self.loss_weights, t))  # Min-SNR-γ weights (Hang et al. 2023)
            scaled_loss = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
        # a variable the loss does not reach gets a zero gradient, not None (None breaks the all-reduce)
        return loss, tape.gradient(scaled_loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def _clip(self, grads):
        """Clip by the global norm of the full-batch gradient; returns (gradients, norm before clipping)."""
        return tf.clip_by_global_norm(grads, self.config.train.grad_clip_norm)

    def _train_step(self, batch):
        """One step on a (possibly distributed) batch; returns the global mean loss (float32)."""
        key = self.generator.make_seeds(1)[:, 0]
        loss, norm, count = self.strategy.run(self._replica_step, args=(batch, key))
        loss = self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        self.examples_seen.assign_add(self.strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))
        norm = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None)  # equal on every replica
        # 7. EMA of all the model's variables, with the decay warmed up by the number of updates so far
        self.ema.update(self.step)
        self.step.assign_add(1)
        self._bookkeeping(loss, norm)
        return loss

    def _bookkeeping(self, loss: tf.Tensor, norm: tf.Tensor) -> None:
        """8. For the loop: the mean loss since the last log and the first non-finite step (the NaN guard)."""
        finite = tf.math.is_finite(loss)
        if not self.loss_scaling:  # float16 overflows in the gradient are normal and skipped by loss scaling
            finite = tf.logical_and(finite, tf.math.is_finite(norm))
        self.nonfinite_step.assign(tf.where(tf.logical_and(tf.logical_not(finite), self.nonfinite_step < 0),
                                            self.step, self.nonfinite_step))
        self.loss_sum.assign_add(tf.where(finite, tf.cast(loss, tf.float64), tf.constant(0.0, tf.float64)))
        self.loss_count.assign_add(tf.cast(finite, tf.int64))

    # -- evaluation -------------------------------------------------------------------------

    def _eval_fn(self, which: str):
        """Per-example denoising loss of the EMA ("ema") or raw ("raw") model, inference mode."""
        if which not in self._eval_fns:
            self._eval_fns[which] = held_out_error_fn(self.ema_model if which == "ema" else self.model, self.config)
        return self._eval_fns[which]

    def held_out_loss(self, images: np.ndarray, embeddings: np.ndarray, *, which: str = "ema",
                      timesteps: int = 8, seed: int = 0, batch_size: int = 64) -> Tuple[float, Dict[int, float]]:
        """Denoising loss on held-out images over a fixed grid of t with fixed noise.

        The same images, t values and noise are used at every evaluation, so the curve moves only
        when the model does.

        Args:
            images, embeddings: the held-out examples (conditional: their own caption embeddings).
            which: "ema" or "raw" weights.
            timesteps: points of the t grid, evenly spaced over [0, T − 1].
            seed: seed of the fixed noise.
            batch_size: images per forward pass.

        Returns:
            ``(mean loss, {t: mean loss at t})``.
        """
        # the grid, the noise (NumPy) and the loop are shared with the JAX trainer (objective.py)
        return held_out_loss(self._eval_fn(which), images, embeddings, timesteps=self.schedule.timesteps,
                             points=timesteps, seed=seed, batch_size=batch_size)

    # -- reading state, checkpoints ----------------------------------------------------------

    def current_lr(self) -> float:
        """The learning rate of the next update."""
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def drain(self) -> Tuple[float, int, Optional[int]]:
        """``(sum of the finite losses, their count, first non-finite step or None)`` since the last
        drain (waits for the device); resets the sums."""
        bad = int(self.nonfinite_step.numpy())
        total, count = float(self.loss_sum.numpy()), int(self.loss_count.numpy())
        self.loss_sum.assign(0.0)
        self.loss_count.assign(0)
        return total, count, bad if bad >= 0 else None

    def open_checkpoints(self, folder: Path, max_to_keep: int) -> None:
        """Save checkpoints of the whole state (``checkpoint.TrainingCheckpoint``) into ``folder``."""
        self.checkpoint = TrainingCheckpoint(folder, model=self.model, ema_model=self.ema_model,
                                             optimizer=self.optimizer, step=self.step, generator=self.generator,
                                             elapsed=self.elapsed, examples_seen=self.examples_seen,
                                             max_to_keep=max_to_keep)

    def save(self, elapsed_s: float) -> str:
        """Write a checkpoint numbered by the step (after :meth:`open_checkpoints`); returns its path prefix."""
        self.elapsed.assign(elapsed_s)
        return self.checkpoint.save()

    def restore(self, folder: Optional[Path] = None) -> Optional[Restored]:
        """Restore the newest readable checkpoint of ``folder`` (default: the one saved to), if any.

        Raises:
            CheckpointError: see ``TrainingCheckpoint.restore_latest``.
        """
        step = self.checkpoint.restore_latest(folder)
        if step is None:
            return None
        if step and not self.checkpoint.restored_examples_seen:
            # older checkpoints: the stream advanced one batch per step with this batch size
            self.examples_seen.assign(step * self.config.train.batch_size)
            logger.info("checkpoint has no data-stream position; resuming the stream at element %d",
                        step * self.config.train.batch_size)
        return Restored(step, float(self.elapsed.numpy()), self.checkpoint.latest)

    def export_ema(self, path: Path) -> None:
        """Save the EMA weights as a float32 Keras model (whatever the training dtype policy)."""
        if self.policy == "float32" and self.strategy is tf.distribute.get_strategy():
            # float32 on the default strategy: the EMA model is already that model (no third build, ~1 s)
            save_model_atomic(self.ema_model, path)
            return
        if self._export_model is None:  # built once, outside the strategy and the mixed-precision policy
            self._export_model = self.model_fn(self.config.model)
        export = self._export_model
        for target, source in zip(export.variables, self.ema_model.variables):
            target.assign(np.asarray(source.numpy()))
        save_model_atomic(export, path)
