"""Training checkpoints: ``tf.train.Checkpoint`` + ``CheckpointManager`` over explicit variable lists.

A checkpoint holds everything needed to continue bit-for-bit: the model's variables (weights,
BatchNorm statistics, dropout seed states), the EMA model's, the optimizer's (moments, update count,
loss scale), the global step, the elapsed training time, the number of data-stream elements
consumed and the ``tf.random.Generator`` state.

Why variable lists and not ``tf.train.Checkpoint(model=model)``: with Keras 3, tracking a
functional model through ``tf.train.Checkpoint`` saves only part of it (measured with Keras 3.15:
the BatchNorm statistics but not the convolution kernels or the seed states). The lists are saved
in ``model.variables`` order, which is fixed by the architecture; a checkpoint of a different
architecture fails to restore with a :class:`CheckpointError`.

``CheckpointManager`` writes each checkpoint under a new name and then updates its index file, so
a crash (even ``kill -9``) mid-save leaves the previous checkpoint as the latest. A checkpoint
damaged afterwards (a full disk, a file cut short by a copy) is skipped on restore with a warning,
and the newest readable one is used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import tensorflow as tf

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "ckpt"


class TrainingCheckpoint:
    """Save and restore the whole training state in one folder.

    Args:
        directory: the checkpoint folder (``RUN/checkpoints``).
        model: the model being trained.
        ema_model: the EMA model.
        optimizer: the (built) Keras optimizer.
        step: int64 ``tf.Variable``, the number of training steps done.
        generator: the ``tf.random.Generator`` the train step draws from.
        elapsed: float64 ``tf.Variable``, training seconds done before this process.
        examples_seen: int64 ``tf.Variable``, data-stream elements consumed (where a resume starts).
        max_to_keep: how many checkpoints to keep (older ones are deleted).
    """

    def __init__(self, directory: os.PathLike | str, *, model: Any, ema_model: Any, optimizer: Any,
                 step: tf.Variable, generator: tf.random.Generator, elapsed: tf.Variable,
                 examples_seen: tf.Variable, max_to_keep: int = 3) -> None:
        self.directory = Path(directory)
        self.step = step
        # plain lists are wrapped into trackable lists; order = model.variables order
        state = dict(step=step, elapsed=elapsed, generator=generator,
                     model_variables=list(model.variables), ema_variables=list(ema_model.variables),
                     optimizer_variables=list(optimizer.variables))
        self.checkpoint = tf.train.Checkpoint(examples_seen=examples_seen, **state)
        # checkpoints written before ``examples_seen`` existed (0.1 runs) restore without it
        self._legacy_checkpoint = tf.train.Checkpoint(**state)
        self.restored_examples_seen = False
        self._restored: Optional[str] = None  # the checkpoint restore_latest read (newer ones may be damaged)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep,
                                                  step_counter=step, checkpoint_name=CHECKPOINT_PREFIX)

    @property
    def latest(self) -> Optional[str]:
        """Path prefix of the newest good checkpoint: the one restored (until the next save), else the newest."""
        return self._restored or self.manager.latest_checkpoint

    def save(self) -> str:
        """Write a checkpoint numbered by the current step; returns its path prefix."""
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        self._restored = None
        logger.debug("saved checkpoint %s", path)
        return path

    def restore_latest(self, directory: Optional[os.PathLike | str] = None) -> Optional[int]:
        """Restore the newest readable checkpoint, if any.

        A damaged checkpoint (a truncated or missing file, as a full disk or a kill mid-write
        leaves) is skipped with one warning naming it, and the next newer-to-older one is tried;
        its files are left where they are, and the next save of that step writes over them.

        Args:
            directory: where to read from (default: the folder this object saves to); non-chief
                workers of a multi-worker run read the chief's checkpoints and save elsewhere.

        Returns:
            The restored step, or None when the folder has no checkpoint. ``restored_examples_seen``
            says whether the checkpoint held the data-stream position (older ones did not).

        Raises:
            CheckpointError: every checkpoint is damaged, or the readable one does not match this
                model/optimizer.
        """
        directory = Path(directory) if directory is not None else self.directory
        state = tf.train.get_checkpoint_state(str(directory))
        if state is None or not state.all_model_checkpoint_paths:
            return None
        # in save order, so newest first once reversed; relative paths are relative to the folder
        candidates = [str(directory / p) if not os.path.isabs(p) else p
                      for p in reversed(state.all_model_checkpoint_paths)]
        damaged = []
        for path in candidates:
            reason = checkpoint_damage(path)
            if reason is None:
                break
            damaged.append(f"{path} ({reason})")
        else:
            raise CheckpointError(f"no readable checkpoint in {directory}: {', '.join(damaged)} "
                                  f"{'is' if len(damaged) == 1 else 'are'} damaged; train into a new --out, or move "
                                  f"{directory} away to start this run again from step 0")
        if damaged:
            logger.warning("skipping damaged checkpoint%s %s; resuming from %s", "s" if len(damaged) > 1 else "",
                           ", ".join(damaged), Path(path).name)
        self._restore(path)
        self._restored = path
        step = int(self.step.numpy())
        logger.info("restored checkpoint %s (step %d)", path, step)
        return step

    def _restore(self, path: str) -> None:
        try:
            keys = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(path)}
            self.restored_examples_seen = "examples_seen" in keys
            target = self.checkpoint if self.restored_examples_seen else self._legacy_checkpoint
            status = target.restore(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise CheckpointError(f"cannot restore {path}: it does not match this model and optimizer "
                                  f"(was it written with another config?): {str(exc).splitlines()[0]}") from None


def checkpoint_damage(path: str) -> Optional[str]:
    """Why the checkpoint at path prefix ``path`` cannot be read back, or None when every tensor reads.

    Reads each tensor once (the whole checkpoint passes through memory, one tensor at a time):
    a truncated ``.data`` file only shows when the bytes past its end are asked for.
    """
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (IndexError, ValueError, tf.errors.OpError) as exc:  # IndexError: "Read less bytes than requested"
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def latest_checkpoint_step(directory: os.PathLike | str) -> Optional[int]:
    """The step of the newest checkpoint in ``directory`` without building anything, or None."""
    path = tf.train.latest_checkpoint(str(directory))
    if path is None:
        return None
    try:
        return int(path.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None
