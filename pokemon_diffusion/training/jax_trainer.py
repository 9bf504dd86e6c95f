"""The JAX train step: one ``jax.jit`` over ``model.stateless_call`` and ``optimizer.stateless_apply``.

Needs ``KERAS_BACKEND=jax`` (Keras fixes its backend per process; ``train --backend jax`` re-runs
itself with it) and never imports TensorFlow: this is the path for machines that have JAX and no
TensorFlow. The maths (the schedule's q_sample, targets and loss weights; the loss, null condition,
EMA, clipping, AdamW with the warm-up + cosine schedule) is ``diffusion/schedule.py`` and
:mod:`.objective`, shared with the TensorFlow :class:`~.trainer.Trainer`;
what is JAX's lives here: the state (plain arrays), the gradients, the compilation, and the
spreading of a batch over devices (``keras.distribution.DataParallel``).

Randomness. Every example's (t, ε, guidance drop) comes from ``fold_in(fold_in(seed key, step),
stream position)``: nothing random is carried in the state, the draws do not depend on how a batch
is split across devices, and a resumed run draws exactly what an uninterrupted one would. The
draws differ from the TensorFlow trainer's (another generator); the distributions are the same.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import keras
import numpy as np

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from ..hardware import use_mixed_precision
from ..diffusion.schedule import make_schedule
from ..run_dir import save_model_atomic
from .jax_checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from .run_loop import Restored
from .objective import (clip_by_global_norm, dtype_policy, ema_decay, ema_update, held_out_loss, heldout_error,
                        make_optimizer, null_condition, per_example_loss)

logger = logging.getLogger(__name__)

STATE_PARTS = ("trainable", "non_trainable", "optimizer", "ema_trainable", "ema_non_trainable")
State = Dict[str, List[Any]]


def _is_float(array: Any) -> bool:
    return jnp.issubdtype(array.dtype, jnp.floating)


def devices_for(strategy: str) -> List[Any]:
    """The devices of a ``TrainConfig.strategy`` on JAX: "one" = the first, "auto"/"mirrored" = all local ones.

    Raises:
        ConfigError: "multiworker" (several hosts), which this path does not do.
    """
    if strategy == "multiworker":
        raise ConfigError("TrainConfig.strategy: got 'multiworker'; allowed on --backend jax: auto | one | mirrored "
                          "(one host; the TensorFlow backend trains on several)")
    return jax.local_devices()[:1] if strategy == "one" else jax.local_devices()


class JaxTrainer:
    """Model, optimizer, the training state as arrays, and the jitted train and eval functions.

    Args:
        config: the run's configs; ``config.model.text_dim`` must match the embeddings.
        total_steps: the step budget (ends the cosine learning-rate schedule).
        devices: JAX devices to spread each batch over (``DataParallel``); None = ``devices_for(strategy)``.
        model_fn: builds a model from a ModelConfig; None = ``build_unet``.

    Raises:
        ConfigError: Keras is not on the JAX backend, or the batch does not split evenly over the devices.
    """

    def __init__(self, config: RunConfig, total_steps: int, *, devices: Optional[Sequence[Any]] = None,
                 model_fn: Optional[Callable[[Any], Any]] = None) -> None:
        if keras.backend.backend() != "jax":
            raise ConfigError(f"JaxTrainer: Keras runs on {keras.backend.backend()!r}; allowed: 'jax' "
                              "(set KERAS_BACKEND=jax before Keras is imported)")
        if config.model.low_res is not None:
            raise ConfigError(f"JaxTrainer: got an upsampler (ModelConfig.low_res {config.model.low_res}); allowed: "
                              "a base model (upsamplers train with --backend tensorflow)")
        if model_fn is None:
            from ..model.unet import build_unet as model_fn
        tc = config.train
        self.config, self.total_steps, self.model_fn = config, int(total_steps), model_fn
        self.devices = list(devices) if devices else devices_for(tc.strategy)
        if tc.batch_size % len(self.devices):
            raise ConfigError(f"TrainConfig.batch_size: got {tc.batch_size}; allowed: a multiple of the number "
                              f"of devices ({len(self.devices)}), so each gets the same share")
        self.distribution = keras.distribution.DataParallel(devices=self.devices) if len(self.devices) > 1 else None
        gpu = any(d.platform == "gpu" for d in self.devices)
        self.policy = "mixed_bfloat16" if use_mixed_precision(tc.mixed_precision, gpu, backend="jax") else "float32"
        self.schedule = make_schedule(config.diffusion)
        # per-timestep loss weights: 1, or Min-SNR-γ (Hang et al. 2023), as in the TensorFlow step
        self.loss_weights = self.schedule.loss_weights(tc.loss_weighting, tc.min_snr_gamma)
        size, channels = config.model.image_size, config.model.channels
        self.image_shape = (size, size, channels)
        with self._scope():
            with dtype_policy(self.policy):
                self.model = model_fn(config.model)
            self.optimizer = make_optimizer(tc, self.total_steps, self.model)
            self.optimizer.build(self.model.trainable_variables)
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        # the EMA starts as a copy of the initial weights (as the TensorFlow trainer's)
        self.state: State = {"trainable": trainable, "non_trainable": non_trainable,
                             "optimizer": [v.value for v in self.optimizer.variables],
                             "ema_trainable": [jnp.array(a) for a in trainable],
                             "ema_non_trainable": [jnp.array(a) for a in non_trainable]}
        self.base_key = jax.random.PRNGKey(tc.seed)
        # no buffer donation: the first state shares its buffers with the Keras variables, and a
        # few copies of a U-Net's state are small next to a GPU's memory
        self._step = jax.jit(self._train_step)
        self._evaluate = jax.jit(self._eval_losses)
        self._export_model: Optional[Any] = None
        self.step = 0  # updates done
        self.examples_seen = 0  # stream elements consumed: where a resumed stream starts
        self.pending: List[Tuple[int, Any, Any]] = []  # (step, loss, finite) device scalars since the last drain
        self.checkpoint_dir: Optional[Path] = None
        self.max_checkpoints = 1

    def _scope(self):
        return self.distribution.scope() if self.distribution is not None else contextlib.nullcontext()

    # -- the train step ---------------------------------------------------------------------

    def _draws(self, key: Any, index: Any) -> Tuple[Any, Any, Any]:
        """Per-example (t, ε, drop) keyed by (step key, stream position)."""
        timesteps, cond_drop = self.schedule.timesteps, self.config.train.cond_drop

        def one(position):
            k_t, k_noise, k_drop = jax.random.split(jax.random.fold_in(key, position), 3)
            t = jax.random.randint(k_t, (), 0, timesteps, dtype=jnp.int32)
            return t, jax.random.normal(k_noise, self.image_shape, jnp.float32), jax.random.uniform(k_drop) < cond_drop

        return jax.vmap(one)(index)

    def _train_step(self, state: State, pixels: Any, flips: Any, text: Any, index: Any, step: Any):
        tc = self.config.train
        # 0. uint8 pixels -> [-1, 1], mirrored where the data stream said so (cheaper to send uint8)
        images = pixels.astype(jnp.float32) / 127.5 - 1.0
        images = jnp.where(flips[:, None, None, None], images[:, :, ::-1, :], images)
        # 1. draw t ~ U{0..T-1}, ε ~ N(0, I) and the guidance-dropout mask for every example
        t, noise, drop = self._draws(jax.random.fold_in(self.base_key, step), index)
        # 2. classifier-free guidance training: some captions become the null condition
        text = null_condition(text, drop)
        # 3. x_t (DDPM eq. 4) and the target (ε, or v)
        x_t = self.schedule.q_sample(images, t, noise)
        target = self.schedule.target(images, t, noise)

        # 4. the simple loss (DDPM eq. 14), a mean over the global batch, and its gradient
        def loss_fn(trainable):
            output, non_trainable = self.model.stateless_call(trainable, state["non_trainable"], [x_t, t, text],
                                                              training=True)
            return jnp.mean(per_example_loss(target, output) * jnp.asarray(self.loss_weights)[t]), non_trainable

        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["trainable"])
        # 5. clip by the global norm, 6. AdamW (warm-up + cosine learning rate)
        grads, norm = clip_by_global_norm(grads, tc.grad_clip_norm)
        trainable, optimizer = self.optimizer.stateless_apply(state["optimizer"], grads, state["trainable"])
        # 7. EMA of every float variable (BatchNorm statistics too); integer ones (seed states) copied
        d = ema_decay(step, tc.ema_decay)
        ema_t = [ema_update(s, v, d) for s, v in zip(state["ema_trainable"], trainable)]
        ema_nt = [ema_update(s, v, d) if _is_float(v) else v for s, v in zip(state["ema_non_trainable"], non_trainable)]
        new = {"trainable": trainable, "non_trainable": non_trainable, "optimizer": optimizer,
               "ema_trainable": ema_t, "ema_non_trainable": ema_nt}
        return new, loss, jnp.isfinite(loss) & jnp.isfinite(norm)

    def train_step(self, batch: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> Any:
        """One update on a ``BatchStream`` batch (uint8 pixels, flip mask, embeddings, int stream positions).

        Returns:
            The loss as a device scalar (not waited for: :meth:`drain` reads it with its finiteness).
        """
        pixels, flips, text, index = batch
        arrays = [np.asarray(pixels, np.uint8), np.asarray(flips, bool), np.asarray(text, np.float32),
                  np.asarray(index % 2**31, np.int32)]  # positions wrap at 2^31: JAX has no int64 by default
        if self.distribution is not None:  # split the batch axis over the devices
            arrays = [jax.device_put(a, self.distribution.get_data_layout(a.shape).backend_layout) for a in arrays]
        self.state, loss, finite = self._step(self.state, *arrays, jnp.int32(self.step))
        self.step += 1
        self.examples_seen += len(index)
        self.pending.append((self.step, loss, finite))
        return loss

    def drain(self) -> Tuple[float, int, Optional[int]]:
        """``(sum of the finite losses, their count, first non-finite step or None)`` since the last drain."""
        values = [(step, float(loss), bool(finite)) for step, loss, finite in self.pending]
        self.pending = []
        bad = next((step for step, _, finite in values if not finite), None)
        finite = [value for _, value, ok in values if ok]
        return float(sum(finite)), len(finite), bad

    # -- evaluation, reading and writing the state ------------------------------------------

    def _eval_losses(self, trainable, non_trainable, x0, t, text, noise):
        def model_fn(x_t):
            return self.model.stateless_call(trainable, non_trainable, [x_t, t, text], training=False)[0]

        return heldout_error(self.schedule, x0, t, noise, model_fn)

    def held_out_loss(self, images: np.ndarray, embeddings: np.ndarray, *, which: str = "ema",
                      timesteps: int = 8, seed: int = 0, batch_size: int = 64) -> Tuple[float, Dict[int, float]]:
        """The held-out loss of the EMA ("ema") or raw ("raw") weights: see ``objective.held_out_loss``."""
        prefix = "ema_" if which == "ema" else ""
        trainable, non_trainable = self.state[prefix + "trainable"], self.state[prefix + "non_trainable"]
        return held_out_loss(lambda x0, t, text, noise: self._evaluate(trainable, non_trainable, x0, t, text, noise),
                             images, embeddings, timesteps=self.schedule.timesteps, points=timesteps, seed=seed,
                             batch_size=batch_size)

    def current_lr(self) -> float:
        """The learning rate of the next update."""
        # the optimizer's own ``learning_rate`` reads its ``iterations`` variable, which stateless_apply
        # leaves untouched (the live count is in the state): evaluate the schedule at the step instead
        return float(self.optimizer._learning_rate(self.step))

    # -- checkpoints (jax_checkpoint.py) ----------------------------------------------------

    def open_checkpoints(self, folder: Path, max_to_keep: int) -> None:
        """Save checkpoints into ``folder``, keeping the newest ``max_to_keep``."""
        self.checkpoint_dir, self.max_checkpoints = Path(folder), int(max_to_keep)

    def save(self, elapsed_s: float) -> str:
        """Write ``jax-ckpt-<step>.npz`` of the whole state; returns its path."""
        meta = {"step": self.step, "examples_seen": self.examples_seen, "elapsed_s": elapsed_s, "backend": "jax"}
        return str(save_checkpoint(self.checkpoint_dir, self.step, self.state_arrays(), meta, self.max_checkpoints))

    def restore(self, folder: Optional[Path] = None) -> Optional[Restored]:
        """Load the newest checkpoint of ``folder`` (default: the one saved to), if any.

        Raises:
            CheckpointError: it cannot be read, or does not match this model and optimizer.
        """
        found = list_checkpoints(Path(folder) if folder is not None else self.checkpoint_dir)
        if not found:
            return None
        path = found[max(found)]
        arrays, meta = load_checkpoint(path)
        self.load_state_arrays(arrays, str(path))
        self.step, self.examples_seen = int(meta["step"]), int(meta["examples_seen"])
        logger.info("resumed %s at step %d", path, self.step)
        return Restored(self.step, float(meta["elapsed_s"]), str(path))

    def export_ema(self, path: Path) -> None:
        """Save the EMA weights as a float32 Keras model (backend-neutral: TensorFlow loads it)."""
        if self._export_model is None:  # built once, on one device and in float32
            with dtype_policy("float32"):
                self._export_model = self.model_fn(self.config.model)
        export = self._export_model
        pairs = list(zip(export.trainable_variables, self.state["ema_trainable"])) + \
            list(zip(export.non_trainable_variables, self.state["ema_non_trainable"]))
        for variable, value in pairs:
            variable.assign(np.asarray(value))
        save_model_atomic(export, path)

    def state_arrays(self) -> Dict[str, np.ndarray]:
        """The whole state as host arrays named ``part/000``... (what a checkpoint stores)."""
        return {f"{part}/{i:04d}": np.asarray(a) for part in STATE_PARTS for i, a in enumerate(self.state[part])}

    def load_state_arrays(self, arrays: Dict[str, np.ndarray], source: str) -> None:
        """Replace the state by ``arrays`` (from :meth:`state_arrays`), placed like the current state.

        Raises:
            CheckpointError: the arrays do not match this model and optimizer (count, shape or dtype).
        """
        new: State = {}
        for part in STATE_PARTS:
            current = self.state[part]
            names = sorted(k for k in arrays if k.startswith(part + "/"))
            if len(names) != len(current):
                raise CheckpointError(f"{source}: {len(names)} {part} arrays, this model has {len(current)}; "
                                      "allowed: a checkpoint of the same model config")
            values = []
            for name, template in zip(names, current):
                value = arrays[name]
                if value.shape != template.shape or value.dtype != template.dtype:
                    raise CheckpointError(f"{source}: {name} is {value.shape} {value.dtype}, this model needs "
                                          f"{template.shape} {template.dtype}")
                values.append(jax.device_put(value, template.sharding))
            new[part] = values
        self.state = new
