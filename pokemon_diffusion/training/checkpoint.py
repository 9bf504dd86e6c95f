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

One path rule: the folder is made absolute once (:func:`checkpoint_paths`), and every checkpoint
is that folder joined with its name (``ckpt-N``), whatever the index file holds and wherever the
process was started. When the index file (``checkpoints/checkpoint``) is missing or unreadable
but ``ckpt-N`` files are there, they are found by listing the folder, with one warning. ``train
--resume`` and ``train --init`` both read through :func:`newest_readable_checkpoint`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, List, Optional, Tuple

import tensorflow as tf

from ..atomic import atomic_write_text
from ..errors import CheckpointError, WriteError, write_failed

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "ckpt"
INDEX_FILE = "checkpoint"  # CheckpointManager's index of the checkpoints, newest last
_NUMBERED = re.compile(rf"^{CHECKPOINT_PREFIX}-(\d+)\.index$")


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
        self.shown = Path(directory)  # as the user gave it, for messages
        self.directory = Path(os.path.abspath(directory))  # one path rule: absolute, once
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
        _repair_index(self.directory)  # before the manager reads it: it would fail, or forget the checkpoints
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep,
                                                  step_counter=step, checkpoint_name=CHECKPOINT_PREFIX)

    @property
    def latest(self) -> Optional[str]:
        """Path prefix of the newest good checkpoint: the one restored (until the next save), else the newest."""
        return self._restored or self.manager.latest_checkpoint

    def save(self) -> str:
        """Write a checkpoint numbered by the current step; returns its path prefix."""
        number = int(self.step.numpy())
        try:
            path = self.manager.save(checkpoint_number=number)
        except (OSError, tf.errors.OpError) as exc:
            _remove_temp(self.directory, number)
            raise _save_failed(self.shown / f"{CHECKPOINT_PREFIX}-{number}", exc) from None
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
        path = newest_readable_checkpoint(directory if directory is not None else self.shown)
        if path is None:
            return None
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


def checkpoint_paths(directory: os.PathLike | str) -> List[str]:
    """Path prefixes of the checkpoints in ``directory``, oldest first; [] when there is none.

    The folder is made absolute here and each checkpoint is that folder joined with its file name,
    so a relative ``--out`` and the index's own relative (or moved absolute) paths give the same
    files. The index file gives the list; when it is missing or unreadable, the ``ckpt-N.index``
    files on disk do (by step), with one warning when the index exists but cannot be read.
    """
    folder = os.path.abspath(directory)
    listed = _listed(folder)
    try:
        state = tf.train.get_checkpoint_state(folder)
        reason = None if state is not None else "empty or not a checkpoint index"
    except (UnicodeDecodeError, ValueError, OSError, tf.errors.OpError) as exc:
        state, reason = None, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if state is not None and state.all_model_checkpoint_paths:
        return [os.path.join(folder, os.path.basename(p)) for p in state.all_model_checkpoint_paths]
    if listed and os.path.exists(os.path.join(folder, INDEX_FILE)):
        logger.warning("%s is unreadable (%s); found %s by listing the folder",
                       os.path.join(str(directory), INDEX_FILE), reason, ", ".join(os.path.basename(p) for p in listed))
    return listed


def newest_readable_checkpoint(directory: os.PathLike | str, *, advice: Optional[str] = None) -> Optional[str]:
    """The newest checkpoint of ``directory`` whose every tensor reads, or None when there is none.

    Damaged newer ones are skipped with one warning naming each (their files stay where they are).
    ``advice`` ends the error when every one is damaged (default: for ``--resume``).

    Raises:
        CheckpointError: every checkpoint is damaged.
    """
    damaged = []
    for path in reversed(checkpoint_paths(directory)):
        reason = checkpoint_damage(path)
        if reason is None:
            break
        damaged.append(f"{_shown(directory, path)} ({reason})")
    else:
        if not damaged:
            return None
        advice = advice or (f"train into a new --out, or move {directory} away to start this run again from "
                            "step 0")
        raise CheckpointError(f"no readable checkpoint in {directory}: {', '.join(damaged)} "
                              f"{'is' if len(damaged) == 1 else 'are'} damaged; {advice}")
    if damaged:
        logger.warning("skipping damaged checkpoint%s %s; %s from %s", "s" if len(damaged) > 1 else "",
                       ", ".join(damaged), "resuming" if advice is None else "reading", Path(path).name)
    return path


def latest_checkpoint_step(directory: os.PathLike | str) -> Optional[int]:
    """The step of the newest checkpoint in ``directory`` without building anything, or None."""
    paths = checkpoint_paths(directory)
    return _number(os.path.basename(paths[-1])) if paths else None


def _shown(directory: os.PathLike | str, path: str) -> str:
    """``path`` under the folder as the user named it (relative stays relative in messages)."""
    return os.path.join(str(directory), os.path.basename(path))


def _number(name: str) -> Optional[int]:
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def _listed(folder: str) -> List[str]:
    """``FOLDER/ckpt-N`` for each ``ckpt-N.index`` in ``folder``, by N (oldest first)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    numbered: List[Tuple[int, str]] = [(int(m.group(1)), m.group(0)[:-len(".index")])
                                       for m in map(_NUMBERED.match, names) if m]
    return [os.path.join(folder, name) for _, name in sorted(numbered)]


def _repair_index(folder: Path) -> None:
    """Rewrite an unreadable index from the ``ckpt-N`` files on disk (relative names, as the manager does)."""
    index = folder / INDEX_FILE
    if not index.exists():
        return
    try:
        if tf.train.get_checkpoint_state(str(folder)) is not None:
            return
    except (UnicodeDecodeError, ValueError, OSError, tf.errors.OpError):
        pass
    paths = checkpoint_paths(folder)  # warns
    names = [os.path.basename(p) for p in paths]
    # the text format the manager reads; with timestamps, or it would keep the listed ones forever
    stamps = [os.path.getmtime(p + ".index") for p in paths]
    text = "".join([f'model_checkpoint_path: "{names[-1]}"\n'] if names else []) + \
        "".join(f'all_model_checkpoint_paths: "{name}"\n' for name in names) + \
        "".join(f"all_model_checkpoint_timestamps: {stamp!r}\n" for stamp in stamps) + \
        (f"last_preserved_timestamp: {min(stamps) - 1.0!r}\n" if stamps else "")
    try:
        if names:
            atomic_write_text(index, text)
        else:
            index.unlink()
    except OSError as exc:
        raise _save_failed(index, exc) from None


def _remove_temp(folder: Path, number: int) -> None:
    """Remove what a failed save left: ``ckpt-N_temp*``, the shards written before the final rename."""
    for path in folder.glob(f"{CHECKPOINT_PREFIX}-{number}_temp*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _save_failed(path: Path, exc: BaseException) -> Exception:
    """The one-line error for a failed checkpoint write (TensorFlow's errors carry no errno)."""
    error = write_failed(path, exc)
    if error is not None:
        return error
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    for code, words in ((28, "no space left"), (30, "read-only file system"), (13, "permission denied")):
        if words in lowered:
            return write_failed(path, OSError(code, text))  # type: ignore[return-value]
    return WriteError(f"cannot write {path}: {text}")
