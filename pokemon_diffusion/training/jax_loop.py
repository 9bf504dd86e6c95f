"""A training run on the JAX backend: ``train(data, run_dir, config)`` (``train --backend jax``).

The same run folder as the TensorFlow loop (``config.json``, ``encoder.json``, ``ema_model.keras``,
``metrics.jsonl``), so ``sample``, ``evaluate``, ``load_run`` and the demo read it unchanged on
TensorFlow; only ``checkpoints/`` differs: one ``jax-ckpt-<step>.npz`` per checkpoint holding the
whole state (weights, BatchNorm statistics, seed states, optimizer slots, EMA) and the stream
position, written atomically, the newest ``max_checkpoints`` kept. No TensorBoard (it needs
TensorFlow's writer) and no sample grid. Never imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from ..atomic import atomic_path
from ..config import RunConfig
from ..errors import CheckpointError
from ..locks import writer_lock
from ..logging_utils import progress
from ..run_dir import CHECKPOINT_DIR, CONFIG_FILE, EMA_MODEL_FILE, ENCODER_FILE, METRICS_FILE, read_encoder_info, \
    write_encoder_info
from ..prompts import write_name_table
from .jax_data import BatchStream, load_training_data
from .jax_trainer import JaxTrainer
from .metrics import MetricsWriter
from .outcome import TrainResult, TrainingDivergedError, progress_postfix, stop_on_signals  # noqa: F401

logger = logging.getLogger(__name__)

EVAL_MAX_IMAGES = 256  # as the TensorFlow loop: a fixed subset of the held-out images
CHECKPOINT_RE = re.compile(r"^jax-ckpt-(\d+)\.npz$")


# -- checkpoints: one .npz of the whole state per step --------------------------------------------

def list_checkpoints(folder: Path) -> Dict[int, Path]:
    """``{step: path}`` of the JAX checkpoints in ``folder``."""
    found = {}
    for path in Path(folder).glob("jax-ckpt-*.npz"):
        match = CHECKPOINT_RE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def save_checkpoint(folder: Path, step: int, arrays: Dict[str, np.ndarray], meta: Dict[str, Any], keep: int) -> Path:
    """Write ``jax-ckpt-<step>.npz`` atomically, then delete all but the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"jax-ckpt-{step}.npz"
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
    for old in sorted(list_checkpoints(folder))[:-keep]:
        list_checkpoints(folder)[old].unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path):
    """``(arrays, meta)`` of a checkpoint. Raises CheckpointError when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return arrays, json.loads(str(arrays.pop("meta")))
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc!r}") from None


# -- run-folder checks (as the TensorFlow loop's) ------------------------------------------------

def _check_folder(run_dir: Path, config: RunConfig, encoder: Any, resume: bool) -> Optional[Path]:
    """The checkpoint to resume from (None = start); refuses another run's or TensorFlow's folder."""
    folder = run_dir / CHECKPOINT_DIR
    if folder.is_dir() and any(folder.glob("ckpt-*.index")):
        raise CheckpointError(f"{folder} holds TensorFlow checkpoints; continue that run with --backend tensorflow, "
                              "or train into another --out")
    found = list_checkpoints(folder)
    if not resume:
        if found:
            raise CheckpointError(f"{run_dir} already holds a run (checkpoint at step {max(found)}); pass --resume "
                                  "to continue it, or choose another --out")
        return None
    if (run_dir / ENCODER_FILE).is_file():
        read_encoder_info(run_dir / ENCODER_FILE).check(encoder.name, encoder.dim, "the dataset's text encoder")
    if (run_dir / CONFIG_FILE).is_file():
        saved = RunConfig.load(run_dir / CONFIG_FILE)
        for part in ("model", "diffusion"):
            if getattr(saved, part) != getattr(config, part):
                raise CheckpointError(f"cannot resume {run_dir} with a different {part} config ({getattr(saved, part)} "
                                      f"in the run, {getattr(config, part)} now); train into a new --out")
    if not found:
        logger.warning("--resume: %s has no checkpoint yet; starting from step 0", folder)
        return None
    return found[max(found)]


# -- the entry point ------------------------------------------------------------------------------

def train(data: Any, run_dir: Any, config: RunConfig, *, resume: bool = False, devices: Optional[Sequence[Any]] = None,
          on_step: Optional[Callable[[int, float], Optional[bool]]] = None, handle_signals: bool = True) -> TrainResult:
    """Train on the JAX backend and write the run folder (see the module docstring).

    Args:
        data: a dataset folder or a packed ``.npz`` (``benchmarks/pack_dataset.py``).
        run_dir: the run folder to write.
        config: model, diffusion and training configs (``model.text_dim`` is set from the data).
        resume: continue from the newest ``jax-ckpt-*.npz`` (exactly: state, step, stream position).
        devices: JAX devices to spread each batch over (``DataParallel``); None = from ``config.train.strategy``
            ("auto": all local devices, "one": the first).
        on_step: ``on_step(step, loss)`` after every step (a device sync); True stops as a signal would.
        handle_signals: stop cleanly on the first SIGINT/SIGTERM (main thread only).

    Returns:
        :class:`TrainResult`.

    Raises:
        DataError, CheckpointError, EncoderError, ConfigError: as the TensorFlow ``loop.train``.
        TrainingDivergedError: the loss became non-finite (nothing bad is saved).
        FolderBusyError: another process is training into ``run_dir``.
    """
    run_dir = Path(run_dir)
    with writer_lock(run_dir, "train"):
        return _train(data, run_dir, config, resume, devices, on_step, handle_signals)


def _train(data: Any, run_dir: Path, config: RunConfig, resume: bool, devices: Optional[Sequence[Any]],
           on_step: Optional[Callable[[int, float], Optional[bool]]], handle_signals: bool) -> TrainResult:
    import keras

    training = load_training_data(data, config)
    if config.model.text_dim != training.encoder.dim:
        logger.info("model.text_dim set to %d to match the dataset's embeddings", training.encoder.dim)
        config = config.replace(model=config.model.replace(text_dim=training.encoder.dim))
    tc = config.train
    checkpoint = _check_folder(run_dir, config, training.encoder, resume)
    total_steps = tc.steps if tc.steps is not None else max(1, math.ceil(tc.epochs * len(training.train) / tc.batch_size))
    keras.utils.set_random_seed(tc.seed)  # the initial weights
    trainer = JaxTrainer(config, total_steps, devices=devices)
    start, examples_seen, elapsed = 0, 0, 0.0
    if checkpoint is not None:
        arrays, meta = load_checkpoint(checkpoint)
        trainer.load_state_arrays(arrays, str(checkpoint))
        start, examples_seen, elapsed = int(meta["step"]), int(meta["examples_seen"]), float(meta["elapsed_s"])
        logger.info("resumed %s at step %d", checkpoint, start)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)
    write_encoder_info(run_dir, training.encoder)
    if training.entries:  # a dataset folder (a packed .npz has no metadata)
        write_name_table(run_dir, training.entries)
    eval_set = training.held_out(EVAL_MAX_IMAGES) if len(training.val) else None
    stream = BatchStream(training, tc.batch_size, seed=tc.seed, flip=tc.flip, start=examples_seen)
    metrics = MetricsWriter(run_dir / METRICS_FILE, None, keep_until=start if resume else None)
    logger.info("training (JAX, %d device(s), %s) on %d images (%d held out) for %d steps from step %d, batch %d",
                len(trainer.devices), trainer.policy, len(training.train), len(training.val), total_steps, start,
                tc.batch_size)
    loop = _Loop(trainer, stream, metrics, run_dir, eval_set, start, elapsed, checkpoint, on_step)
    try:
        with stop_on_signals(handle_signals) as signals:
            loop.run(signals)
    finally:
        metrics.close()
    return loop.result()


class _Loop:
    """The eager outer loop: steps, logs, evaluations, checkpoints, stopping (as the TensorFlow loop's)."""

    def __init__(self, trainer: JaxTrainer, stream: BatchStream, metrics: MetricsWriter, run_dir: Path,
                 eval_set: Any, start: int, elapsed: float, checkpoint: Optional[Path],
                 on_step: Optional[Callable[[int, float], Optional[bool]]]) -> None:
        self.trainer, self.stream, self.metrics, self.run_dir = trainer, stream, metrics, run_dir
        self.tc = trainer.config.train
        self.eval_set, self.on_step = eval_set, on_step
        self.step, self.elapsed_before, self.started = start, elapsed, time.monotonic()
        self.stopped = "completed"
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.last_saved: Optional[int] = start if checkpoint else None
        self.last_loss: Optional[float] = None
        self.last_val: Optional[float] = None
        self.pending: list = []  # (step, loss, finite) device scalars since the last log: no sync per step
        # throughput: wall time between device syncs, without the compiling first step, evaluations
        # and saves (steps are dispatched asynchronously, so timing one call would time the dispatch)
        self.busy_s, self.busy_images, self.interval_images = 0.0, 0, 0
        self.mark = time.monotonic()

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def run(self, signals: Dict[str, Optional[str]]) -> None:
        tc, total = self.tc, self.trainer.total_steps
        limit_s = tc.time_limit_minutes * 60.0 if tc.time_limit_minutes else None
        first = True
        with progress(total=total, initial=self.step, desc="train (jax)", unit="step") as bar:
            while self.step < total:
                loss, finite = self.trainer.train_step(*self.stream.next(), self.step)
                if first:  # the first call compiles: wait for it, and keep it out of img/s
                    loss.block_until_ready()
                    self.mark = time.monotonic()
                else:
                    self.interval_images += tc.batch_size
                first = False
                self.pending.append((self.step + 1, loss, finite))
                if self.on_step is not None and self.on_step(self.step + 1, float(loss)):
                    self.stopped = "callback"
                self.step += 1
                bar.update(1)
                if signals["signal"]:
                    self.stopped = "interrupted"
                elif limit_s is not None and self.elapsed() - self.elapsed_before >= limit_s:
                    self.stopped = "time_limit"
                stopping = self.stopped != "completed"
                last = (stopping and self.stopped != "interrupted") or self.step == total
                evaluate = self.eval_set is not None and (self.step % tc.eval_every == 0 or last)
                if self.step % tc.log_every == 0 or evaluate or stopping or self.step == total:
                    self._log(bar, evaluate)
                if self.step % tc.checkpoint_every == 0 and not stopping:
                    self._save()
                if stopping:
                    break
        self._finish()

    def _drain(self) -> Optional[float]:
        """Mean finite loss of the pending steps; raises at the first non-finite one."""
        values = [(step, float(loss), bool(finite)) for step, loss, finite in self.pending]
        self.pending = []
        bad = next((step for step, _, finite in values if not finite), None)
        if bad is not None:
            where = f"the last good checkpoint is {self.checkpoint}" if self.checkpoint else "no checkpoint yet"
            raise TrainingDivergedError(f"training diverged: the loss became NaN/inf at step {bad}; stopped at step "
                                        f"{self.step} without saving; {where}. Lower --lr (now "
                                        f"{self.tc.learning_rate:g}), raise warmup_steps, check the data")
        return float(np.mean([v for _, v, _ in values])) if values else None

    def _log(self, bar: Any, evaluate: bool) -> None:
        loss = self._drain()  # waits for the device, so the interval holds the queued steps' time
        interval_s = time.monotonic() - self.mark
        self.last_loss = loss if loss is not None else self.last_loss
        img_per_s = self.interval_images / interval_s if self.interval_images and interval_s > 0 else None
        if img_per_s:
            self.busy_s += interval_s
            self.busy_images += self.interval_images
        self.interval_images = 0
        record: Dict[str, Any] = {"step": self.step, "loss": loss, "lr": self.trainer.current_lr(self.step),
                                  "img_per_s": img_per_s, "elapsed_s": round(self.elapsed(), 3)}
        if evaluate:
            images, embeddings = self.eval_set
            for key, which in (("val_loss", "ema"), ("val_loss_raw", "raw")):
                record[key], _ = self.trainer.held_out_loss(images, embeddings, which=which,
                                                            timesteps=self.tc.eval_timesteps, seed=self.tc.seed,
                                                            batch_size=self.tc.batch_size)
            self.last_val = record["val_loss"]
        self.metrics.write(record)
        bar.set_postfix(progress_postfix(loss, img_per_s, record["val_loss"] if evaluate else None), refresh=False)
        self.mark = time.monotonic()

    def _save(self) -> None:
        self._drain_keep()
        meta = {"step": self.step, "examples_seen": self.stream.position, "elapsed_s": self.elapsed(),
                "backend": "jax"}
        path = save_checkpoint(self.run_dir / CHECKPOINT_DIR, self.step, self.trainer.state_arrays(), meta,
                               self.tc.max_checkpoints)
        self.checkpoint, self.last_saved = str(path), self.step
        self.trainer.export_ema(self.run_dir / EMA_MODEL_FILE)
        self.mark, self.interval_images = time.monotonic(), 0  # saving time is not training time

    def _drain_keep(self) -> None:
        """Check the pending losses before saving, keeping them for the next log's mean."""
        pending = list(self.pending)
        self._drain()
        self.pending = pending

    def _finish(self) -> None:
        self._drain_keep()
        if self.last_saved != self.step or not (self.run_dir / EMA_MODEL_FILE).is_file():
            self._save()
        logger.info("stopped (%s) at step %d/%d after %.0f s; EMA model in %s", self.stopped, self.step,
                    self.trainer.total_steps, self.elapsed(), self.run_dir / EMA_MODEL_FILE)

    def result(self) -> TrainResult:
        return TrainResult(run_dir=self.run_dir, step=self.step, total_steps=self.trainer.total_steps,
                           stopped=self.stopped, loss=self.last_loss, val_loss=self.last_val, elapsed_s=self.elapsed(),
                           images_per_s=self.busy_images / self.busy_s if self.busy_s > 0 else None,
                           checkpoint=self.checkpoint, model_path=self.run_dir / EMA_MODEL_FILE)
