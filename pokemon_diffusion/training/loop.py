"""A training run: ``train(data_dir, run_dir, config)``.

Reads the dataset, splits off whole Pokémon for validation, builds a :class:`~.trainer.Trainer`
and runs its compiled step until the step budget, the time limit, a signal or a non-finite loss
stops it, with checkpoints (``--resume`` continues exactly), metrics, TensorBoard and a held-out
loss along the way. The run folder then holds what ``sample`` needs (see ``run_dir.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import keras
import numpy as np
import tensorflow as tf

from ..config import RunConfig
from ..data.dataset import Examples, load_examples, make_dataset, read_embeddings_info, split_by_pokemon
from ..errors import CheckpointError, DataError
from ..locks import writer_lock
from ..logging_utils import progress
from ..run_dir import (CHECKPOINT_DIR, CONFIG_FILE, EMA_MODEL_FILE, METRICS_FILE, TENSORBOARD_DIR,
                       EncoderInfo, check_resume, write_encoder_info)
from ..prompts import write_name_table
from .checkpoint import TrainingCheckpoint, latest_checkpoint_step
from .distribute import is_chief, make_strategy
from .init_from import check_init, load_init_weights
from .metrics import MetricsWriter
from .outcome import TrainResult, progress_postfix, stop_on_signals  # noqa: F401  (TrainResult: public here too)
from .trainer import EVAL_MAX_IMAGES, Trainer, TrainingDivergedError, total_steps_for

logger = logging.getLogger(__name__)

SAMPLE_GRID_IMAGES = 8  # images in the TensorBoard sample grid
SAMPLE_GRID_STEPS = 25  # DDIM steps for the grid
SAMPLE_GRID_GUIDANCE = 3.0


def _encoder_of(data_dir: Path) -> EncoderInfo:
    info = read_embeddings_info(data_dir)
    if info is None:
        raise DataError(f"{data_dir} has no embeddings.json: embed the captions first "
                        f"(`pokemon-diffusion embed --data {data_dir}`)")
    return EncoderInfo(info["name"], int(info["dim"]))


def _fit_text_dim(config: RunConfig, dim: int) -> RunConfig:
    if config.model.text_dim == dim:
        return config
    logger.info("model.text_dim set to %d to match the dataset's embeddings (was %d)", dim, config.model.text_dim)
    return config.replace(model=config.model.replace(text_dim=dim))


def _image_grid(images: np.ndarray, columns: int = 4) -> np.ndarray:
    """``(N, H, W, C)`` in [-1, 1] → one uint8 ``(rows·H, columns·W, C)`` grid."""
    n, h, w, c = images.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * h, columns * w, c), 255, np.uint8)
    pixels = np.clip((images + 1.0) * 127.5, 0, 255).astype(np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = pixels[i]
    return grid


class _SampleGrid:
    """DDIM samples of the EMA model for a few fixed captions, for TensorBoard (needs the samplers module)."""

    def __init__(self, embeddings: np.ndarray, seed: int) -> None:
        self.embeddings = embeddings[:SAMPLE_GRID_IMAGES]
        self.seed = seed
        self.enabled = len(self.embeddings) > 0

    def images(self, trainer: Trainer) -> Optional[np.ndarray]:
        if not self.enabled:
            return None
        try:
            from ..diffusion.samplers import sample
        except ImportError:
            logger.info("no sample grid in TensorBoard: pokemon_diffusion.diffusion.samplers is not installed")
            self.enabled = False
            return None
        try:
            n = len(self.embeddings)
            result = sample(trainer.ema_model, self.embeddings, (n,) + trainer.image_shape, schedule=trainer.schedule,
                            sampler="ddim", steps=min(SAMPLE_GRID_STEPS, trainer.schedule.timesteps),
                            guidance_scale=SAMPLE_GRID_GUIDANCE, seed=self.seed, num_intermediates=2, progress=False)
        except Exception as exc:  # a side output: never let it stop a training run
            logger.warning("sample grid disabled: sampling failed with %r", exc)
            self.enabled = False
            return None
        return _image_grid(np.asarray(result.images))


# -- the entry point ----------------------------------------------------------------------------

def train(data_dir: Any, run_dir: Any, config: RunConfig, *, resume: bool = False,
          strategy: Optional[tf.distribute.Strategy] = None,
          on_step: Optional[Callable[[int, float], Optional[bool]]] = None,
          handle_signals: bool = True, init: Any = None) -> TrainResult:
    """Train a text-conditioned DDPM on a dataset folder and write the run folder.

    Sets the global Python/NumPy/TensorFlow/Keras seeds from ``config.train.seed`` (so the
    initial weights are reproducible) and, with ``config.train.deterministic``, turns on
    TensorFlow's deterministic ops.

    Args:
        data_dir: dataset folder with ``pokemon_metadata.json``, images, embeddings and ``embeddings.json``.
        run_dir: the run folder to write (see ``run_dir.py``).
        config: model, diffusion and training configs. ``model.text_dim`` is set from the dataset.
        resume: continue from the newest checkpoint in ``run_dir/checkpoints`` (the step count,
            learning-rate schedule, EMA, optimizer and RNG state continue exactly).
        strategy: a ``tf.distribute.Strategy`` to use instead of ``config.train.strategy``.
        on_step: called as ``on_step(step, loss)`` after every step (loss read from the device:
            a sync per step); returning True stops training as a signal would.
        handle_signals: stop cleanly on the first SIGINT/SIGTERM (main thread only).
        init: start from trained weights, ``"reference"`` or a run folder (``init_from.py``; not on resume).

    Returns:
        :class:`TrainResult`.

    Raises:
        DataError: the dataset is missing, has no embeddings or no usable entries.
        CheckpointError: ``run_dir`` holds another run (without ``resume``), or its config or
            checkpoint does not match.
        EncoderError: the dataset was embedded with another encoder than the run.
        TrainingDivergedError: the loss became non-finite (the last good checkpoint is kept).
        FolderBusyError: another process is training into ``run_dir``.
    """
    # first: MultiWorkerMirroredStrategy can only be created before TensorFlow starts
    strategy = strategy if strategy is not None else make_strategy(config.train.strategy)
    with contextlib.ExitStack() as stack:
        worker_dir = None
        if is_chief(strategy):
            stack.enter_context(writer_lock(run_dir, "train"))
        else:  # non-chief workers must save too (collectives), but somewhere private
            worker_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pokemon_diffusion_worker_")))
            logger.info("not the chief: checkpoints go to %s (removed at the end)", worker_dir)
        return _train(Path(data_dir), Path(run_dir), config, resume, strategy, on_step, handle_signals, worker_dir,
                      init)


def _train(data_dir: Path, run_dir: Path, config: RunConfig, resume: bool, strategy: tf.distribute.Strategy,
           on_step: Optional[Callable[[int, float], Optional[bool]]], handle_signals: bool,
           worker_dir: Optional[Path], init: Any = None) -> TrainResult:
    if not data_dir.is_dir():
        raise DataError(f"dataset folder not found: {data_dir} (make one with `pokemon-diffusion collect`)")
    encoder = _encoder_of(data_dir)
    config = _fit_text_dim(config, encoder.dim)
    tc = config.train
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    if checkpoint_dir.is_dir() and any(checkpoint_dir.glob("jax-ckpt-*.npz")):
        raise CheckpointError(f"{checkpoint_dir} holds JAX checkpoints; continue that run with --backend jax, "
                              "or train into another --out")
    found = latest_checkpoint_step(checkpoint_dir)
    if resume:
        check_resume(run_dir, config, encoder)
        if found is None:
            logger.warning("--resume: %s has no checkpoint yet; starting from step 0", checkpoint_dir)
    elif found is not None:
        raise CheckpointError(f"{run_dir} already holds a run (checkpoint at step {found}); pass --resume to "
                              "continue it, or choose another --out")

    source = check_init(init, config, encoder) if init is not None and not (resume and found) else None
    # 1. data: every usable example, whole Pokémon held out for validation
    size = config.model.image_size
    examples = load_examples(data_dir, (size, size))
    train_idx, val_idx = split_by_pokemon(examples.entries, tc.val_fraction, tc.seed)
    train_set, val_set = examples.subset(train_idx), examples.subset(val_idx)
    eval_set: Optional[Examples] = val_set.subset(range(min(len(val_set), EVAL_MAX_IMAGES))) if len(val_set) else None
    total_steps = total_steps_for(tc, len(train_set))

    # 2. model, EMA, optimizer, RNG; then the checkpoint (restoring it on resume)
    if tc.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(tc.seed)
    trainer = Trainer(config, total_steps, strategy=strategy)
    chief = worker_dir is None
    checkpoint = TrainingCheckpoint(worker_dir or checkpoint_dir, model=trainer.model, ema_model=trainer.ema_model,
                                    optimizer=trainer.optimizer, step=trainer.step, generator=trainer.generator,
                                    elapsed=trainer.elapsed, examples_seen=trainer.examples_seen,
                                    max_to_keep=tc.max_checkpoints)
    start_step = (checkpoint.restore_latest(checkpoint_dir) if resume else None) or 0  # every worker reads the chief's
    load_init_weights(trainer, source)  # --init: weights only (None: nothing); optimizer, step, stream fresh
    if start_step and not checkpoint.restored_examples_seen:
        # older checkpoints: the stream advanced one batch per step with this batch size
        trainer.examples_seen.assign(start_step * tc.batch_size)
        logger.info("checkpoint has no data-stream position; resuming the stream at element %d",
                    start_step * tc.batch_size)
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / CONFIG_FILE)
        write_encoder_info(run_dir, encoder)
        write_name_table(run_dir, examples.entries)  # prompt enrichment for sample and the app
    logger.info("training on %d images (%d held out) for %d steps from step %d, batch %d, %s, %s",
                len(train_set), len(val_set), total_steps, start_step, tc.batch_size,
                f"{type(trainer.strategy).__name__} x{trainer.replicas}", trainer.policy)

    # 3. the data stream, resumed at the element where the checkpoint stopped
    several = train_set.caption_embeddings is not None  # several captions: one drawn per element
    dataset = make_dataset(train_set.images, train_set.caption_embeddings if several else train_set.embeddings,
                           tc.batch_size, shuffle=True, flip=tc.flip, seed=tc.seed, repeat=True,
                           start_index=int(trainer.examples_seen.numpy()), with_index=True,
                           caption_counts=train_set.caption_counts)
    batches = iter(trainer.distribute(dataset))
    metrics = MetricsWriter(run_dir / METRICS_FILE, run_dir / TENSORBOARD_DIR,
                            keep_until=start_step if resume else None, enabled=chief)
    loop = _Loop(trainer, checkpoint, metrics, run_dir, eval_set, train_set, chief, start_step, on_step)
    try:
        with stop_on_signals(handle_signals) as signals:
            loop.run(batches, signals)
    finally:
        metrics.close()
    return loop.result()


class _Loop:
    """The eager outer loop of :func:`train`: steps, logs, evaluations, checkpoints, stopping."""

    def __init__(self, trainer: Trainer, checkpoint: TrainingCheckpoint, metrics: MetricsWriter, run_dir: Path,
                 eval_set: Optional[Examples], train_set: Examples, chief: bool, start_step: int,
                 on_step: Optional[Callable[[int, float], Optional[bool]]]) -> None:
        self.trainer, self.checkpoint, self.metrics, self.run_dir = trainer, checkpoint, metrics, run_dir
        self.tc = trainer.config.train
        self.eval_set, self.chief, self.on_step = eval_set, chief, on_step
        grid_source = eval_set if eval_set is not None else train_set
        self.grid = _SampleGrid(grid_source.embeddings, self.tc.seed)
        self.step = start_step
        self.elapsed_before = float(trainer.elapsed.numpy())
        self.started = time.monotonic()
        self.stopped = "completed"
        self.last_loss: Optional[float] = None
        self.last_val: Optional[float] = None
        self.last_saved: Optional[int] = start_step if checkpoint.latest else None
        self.model_path: Optional[Path] = None
        # throughput: step time only (no tracing, evaluation or saving)
        self.busy_s = 0.0
        self.busy_images = 0
        self.interval_s = 0.0
        self.interval_images = 0

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def run(self, batches: Iterator[Any], signals: Dict[str, Optional[str]]) -> None:
        tc, trainer = self.tc, self.trainer
        limit_s = tc.time_limit_minutes * 60.0 if tc.time_limit_minutes else None
        first = True
        with progress(total=trainer.total_steps, initial=self.step, desc="train", unit="step") as bar:
            while self.step < trainer.total_steps:
                begin = time.monotonic()
                loss = trainer.train_step(next(batches))
                duration = time.monotonic() - begin
                if self.on_step is not None and self.on_step(self.step + 1, float(loss)):
                    self.stopped = "callback"
                self.step += 1
                bar.update(1)
                if not first:  # the first call traces the step
                    self.interval_s += duration
                    self.interval_images += tc.batch_size
                first = False
                if signals["signal"]:
                    self.stopped = "interrupted"
                elif limit_s is not None and self.elapsed() - self.elapsed_before >= limit_s:
                    self.stopped = "time_limit"
                stopping = self.stopped != "completed"
                last = (stopping and self.stopped != "interrupted") or self.step == trainer.total_steps
                # the last record of a run always carries the held-out loss (not after Ctrl-C: stop fast)
                evaluate = self.eval_set is not None and (self.step % tc.eval_every == 0 or last)
                if self.step % tc.log_every == 0 or evaluate or stopping or self.step == trainer.total_steps:
                    self._log(bar, evaluate)
                if self.step % tc.checkpoint_every == 0 and not stopping:
                    self._save()
                if tc.sample_every and self.step % tc.sample_every == 0:
                    self._sample_grid()
                if stopping:
                    break
        self._finish()

    def _guard(self) -> None:
        """Stop with a clear error at the first non-finite loss; nothing bad has been saved."""
        bad = self.trainer.first_nonfinite_step()
        if bad is None:
            return
        kept = self.checkpoint.latest
        where = f"the last good checkpoint is {kept}" if kept else "no checkpoint had been written yet"
        raise TrainingDivergedError(
            f"training diverged: the loss became NaN/inf at step {bad}; stopped at step {self.step} without "
            f"saving; {where}. Lower --lr (now {self.tc.learning_rate:g}), raise warmup_steps, check the data"
            + (", or train without --mixed-precision" if self.tc.mixed_precision else ""))

    def _log(self, bar: Any, evaluate: bool) -> None:
        self._guard()
        loss = self.trainer.pop_mean_loss()
        self.last_loss = loss if loss is not None else self.last_loss
        self.busy_s += self.interval_s
        self.busy_images += self.interval_images
        img_per_s = self.interval_images / self.interval_s if self.interval_s > 0 else None
        self.interval_s, self.interval_images = 0.0, 0
        record: Dict[str, Any] = {"step": self.step, "loss": loss, "lr": self.trainer.current_lr(),
                                  "img_per_s": img_per_s, "elapsed_s": round(self.elapsed(), 3)}
        extra: Dict[str, float] = {}
        if evaluate:
            record["val_loss"], per_t = self.trainer.held_out_loss(
                self.eval_set.images, self.eval_set.embeddings, which="ema", timesteps=self.tc.eval_timesteps,
                seed=self.tc.seed, batch_size=self.tc.batch_size)
            record["val_loss_raw"], _ = self.trainer.held_out_loss(
                self.eval_set.images, self.eval_set.embeddings, which="raw", timesteps=self.tc.eval_timesteps,
                seed=self.tc.seed, batch_size=self.tc.batch_size)
            extra = {f"val_loss_at_t/{t:05d}": v for t, v in per_t.items()}
            self.last_val = record["val_loss"]
        self.metrics.write(record, extra)
        bar.set_postfix(progress_postfix(loss, img_per_s, record["val_loss"] if evaluate else None), refresh=False)
        logger.debug("step %d: %s", self.step, record)

    def _save(self) -> None:
        self._guard()
        self.trainer.elapsed.assign(self.elapsed())
        self.checkpoint.save()
        self.last_saved = self.step
        if self.chief:
            self.model_path = self.run_dir / EMA_MODEL_FILE
            self.trainer.export_ema(self.model_path)

    def _sample_grid(self) -> None:
        if not self.chief:
            return
        grid = self.grid.images(self.trainer)
        if grid is not None:
            self.metrics.image("samples", grid, self.step)

    def _finish(self) -> None:
        self._guard()
        if self.last_saved != self.step or not (self.run_dir / EMA_MODEL_FILE).is_file():
            self._save()
        self.model_path = self.run_dir / EMA_MODEL_FILE if self.chief else None
        logger.info("stopped (%s) at step %d/%d after %.0f s; EMA model in %s", self.stopped, self.step,
                    self.trainer.total_steps, self.elapsed(), self.model_path)

    def result(self) -> TrainResult:
        return TrainResult(run_dir=self.run_dir, step=self.step, total_steps=self.trainer.total_steps,
                           stopped=self.stopped, loss=self.last_loss, val_loss=self.last_val,
                           elapsed_s=self.elapsed(),
                           images_per_s=self.busy_images / self.busy_s if self.busy_s > 0 else None,
                           checkpoint=self.checkpoint.latest, model_path=self.model_path)
