"""The run loop of every backend: when to step, log, evaluate, save, stop, and what the run returns.

Backend-neutral (no TensorFlow, no JAX): ``loop.py`` (TensorFlow) and ``jax_loop.py`` (JAX) each
build their data stream and their trainer, then hand both to :class:`RunLoop`. A trainer is
anything with the methods of :class:`StepTrainer`; the loop never looks inside it.

What the loop decides, the same on every backend:
    * stop reasons: "completed" (the step budget), "time_limit", "interrupted" (SIGINT/SIGTERM:
      stop after the current step and save), "callback" (``on_step`` returned True);
    * a log record every ``log_every`` steps, at every evaluation, when stopping and at the end;
      the held-out loss every ``eval_every`` steps and on the last record (not after Ctrl-C);
    * a checkpoint (and the EMA model) every ``checkpoint_every`` steps and at the end;
    * divergence: the first non-finite loss stops the run before anything is saved, naming the
      last good checkpoint;
    * throughput: images over the wall time between device syncs, without the compiling first
      step, evaluations and saves;
    * the result: :class:`TrainResult` (or :class:`TrainingDivergedError`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Protocol, Sequence, Tuple

from ..config import RunConfig, TrainConfig
from ..errors import CheckpointError, PokemonDiffusionError
from ..logging_utils import progress
from ..prompts import write_name_table
from ..run_dir import CHECKPOINT_DIR, CONFIG_FILE, EMA_MODEL_FILE, EncoderInfo, check_resume, write_encoder_info
from .metrics import MetricsWriter

logger = logging.getLogger(__name__)

# checkpoint files of each backend, so that each refuses the other's folder by name
CHECKPOINT_FILES = {"tensorflow": ("TensorFlow", "ckpt-*.index"), "jax": ("JAX", "jax-ckpt-*.npz")}


@dataclass(frozen=True)
class Restored:
    """What a trainer's ``restore`` read: the step, the training seconds before, the checkpoint."""

    step: int
    elapsed_s: float
    path: str


class StepTrainer(Protocol):
    """What :class:`RunLoop` asks of a trainer (``trainer.Trainer``, ``jax_trainer.JaxTrainer``).

    ``train_step(batch)`` runs one update and returns its loss as a device scalar, not waited for;
    ``drain()`` waits for the device and returns ``(sum of the finite losses, their count, first
    non-finite step or None)`` since the last drain; ``current_lr()`` is the learning rate of the
    next update; ``held_out_loss`` the fixed-grid held-out loss of the "ema" or "raw" weights;
    ``save(elapsed_s)`` writes a checkpoint of the whole state (returns its path) and
    ``restore(folder)`` reads the newest one (or returns None); ``export_ema(path)`` writes the
    EMA weights as a float32 ``.keras`` model.
    """

    config: RunConfig
    total_steps: int

    def train_step(self, batch: Any) -> Any: ...

    def drain(self) -> Tuple[float, int, Optional[int]]: ...

    def current_lr(self) -> float: ...

    def held_out_loss(self, images: Any, embeddings: Any, *, which: str = "ema", timesteps: int = 8, seed: int = 0,
                      batch_size: int = 64) -> Tuple[float, Dict[int, float]]: ...

    def save(self, elapsed_s: float) -> str: ...

    def restore(self, folder: Optional[Path] = None) -> Optional[Restored]: ...

    def export_ema(self, path: Path) -> None: ...


# -- how a run ends ------------------------------------------------------------------------------

class TrainingDivergedError(PokemonDiffusionError):
    """The training loss (or gradient) became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """How a call to :func:`train` ended.

    Attributes:
        run_dir: the run folder.
        step: training steps done (resumes included).
        total_steps: the step budget of the run.
        stopped: "completed" | "time_limit" | "interrupted" (SIGINT/SIGTERM) | "callback".
        loss: mean training loss over the last logged interval.
        val_loss: the last held-out loss of the EMA model (None without a validation split).
        elapsed_s: training seconds, resumes included.
        images_per_s: training throughput of this call (tracing excluded), or None.
        checkpoint: path prefix of the last checkpoint written.
        model_path: the saved EMA model (``RUN/ema_model.keras``).
    """

    run_dir: Path
    step: int
    total_steps: int
    stopped: str
    loss: Optional[float]
    val_loss: Optional[float]
    elapsed_s: float
    images_per_s: Optional[float]
    checkpoint: Optional[str]
    model_path: Optional[Path]


@contextlib.contextmanager
def stop_on_signals(enabled: bool) -> Iterator[Dict[str, Optional[str]]]:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step (and checkpoint).

    A second signal of the same kind gets the previous handler (Ctrl-C twice aborts at once).
    """
    flag: Dict[str, Optional[str]] = {"signal": None}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous: Dict[int, Any] = {}

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name
        logger.warning("%s: stopping after this step and saving a checkpoint (send it again to abort now)",
                       flag["signal"])
        signal.signal(signum, previous[signum])

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def progress_postfix(loss: Optional[float], img_per_s: Optional[float], val_loss: Optional[float]) -> Dict[str, str]:
    """The progress bar's loss / img/s / held-out loss fields (both loops show the same)."""
    shown = {"loss": f"{loss:.4f}" if loss is not None else "-"}
    if img_per_s:
        shown["img/s"] = f"{img_per_s:.1f}"
    if val_loss is not None:
        shown["val"] = f"{val_loss:.4f}"
    return shown


# -- before the loop: the step budget, the run folder --------------------------------------------

def total_steps_for(config: TrainConfig, num_train: int) -> int:
    """The step budget: ``steps``, or ``ceil(epochs · num_train / batch_size)``."""
    if config.steps is not None:
        return int(config.steps)
    return max(1, math.ceil(config.epochs * num_train / config.batch_size))


def fit_text_dim(config: RunConfig, dim: int) -> RunConfig:
    """``config`` with ``model.text_dim`` set to the dataset's embedding size."""
    if config.model.text_dim == dim:
        return config
    logger.info("model.text_dim set to %d to match the dataset's embeddings (was %d)", dim, config.model.text_dim)
    return config.replace(model=config.model.replace(text_dim=dim))


def check_run_folder(run_dir: Path, config: RunConfig, encoder: EncoderInfo, *, backend: str, resume: bool,
                     found: Optional[int]) -> None:
    """Refuse another backend's run, a run without ``resume``, or a resume with another model.

    Args:
        found: the step of the newest checkpoint of this backend in ``run_dir/checkpoints``, or None.

    Raises:
        CheckpointError, EncoderError: as ``run_dir.check_resume``, or the folder holds the other
            backend's checkpoints, or a run and ``resume`` is False.
    """
    folder = run_dir / CHECKPOINT_DIR
    for other, (name, pattern) in CHECKPOINT_FILES.items():
        if other != backend and folder.is_dir() and any(folder.glob(pattern)):
            raise CheckpointError(f"{folder} holds {name} checkpoints; continue that run with --backend {other}, "
                                  "or train into another --out")
    if resume:
        check_resume(run_dir, config, encoder)
        if found is None:
            logger.warning("--resume: %s has no checkpoint yet; starting from step 0", folder)
    elif found is not None:
        raise CheckpointError(f"{run_dir} already holds a run (checkpoint at step {found}); pass --resume to "
                              "continue it, or choose another --out")


def write_run_files(run_dir: Path, config: RunConfig, encoder: EncoderInfo,
                    entries: Optional[Sequence[Any]] = None) -> None:
    """The run folder's ``config.json``, ``encoder.json`` and, from the dataset's ``entries`` (a
    packed .npz has none), ``prompt_names.json``: what ``sample`` reads besides the model."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / CONFIG_FILE)
    write_encoder_info(run_dir, encoder)
    if entries:
        write_name_table(run_dir, entries)  # prompt enrichment for sample and the app


# -- the loop ------------------------------------------------------------------------------------

class RunLoop:
    """The eager outer loop of a run: steps, logs, evaluations, checkpoints, stopping.

    Args:
        trainer: a :class:`StepTrainer`, restored already when resuming.
        run_dir: the run folder (the EMA model goes to ``run_dir/ema_model.keras``).
        metrics: where log records go.
        eval_set: ``(images in [-1, 1], embeddings)`` of the held-out loss, or None.
        restored: what the trainer's ``restore`` read (None: a fresh start).
        chief: whether this process writes the run folder (multi-worker TensorFlow: one does).
        on_step: ``on_step(step, loss)`` after every step (a device sync); True stops as a signal would.
        sample_grid: returns an image grid for TensorBoard every ``sample_every`` steps (or None).
        label: the progress bar's name.
    """

    def __init__(self, trainer: StepTrainer, run_dir: Path, metrics: MetricsWriter,
                 eval_set: Optional[Tuple[Any, Any]], *, restored: Optional[Restored] = None, chief: bool = True,
                 on_step: Optional[Callable[[int, float], Optional[bool]]] = None,
                 sample_grid: Optional[Callable[[], Any]] = None, label: str = "train") -> None:
        self.trainer, self.run_dir, self.metrics, self.eval_set = trainer, run_dir, metrics, eval_set
        self.tc = trainer.config.train
        self.chief, self.on_step, self.sample_grid, self.label = chief, on_step, sample_grid, label
        self.step = restored.step if restored else 0
        self.elapsed_before = restored.elapsed_s if restored else 0.0
        self.checkpoint: Optional[str] = restored.path if restored else None
        self.last_saved: Optional[int] = self.step if restored else None
        self.started = time.monotonic()
        self.stopped = "completed"
        self.last_loss: Optional[float] = None
        self.last_val: Optional[float] = None
        self.model_path: Optional[Path] = None
        # losses drained since the last log, and the first non-finite step seen
        self.loss_sum, self.loss_count, self.bad_step = 0.0, 0, None
        # throughput: wall time between device syncs (steps may be dispatched asynchronously)
        self.busy_s, self.busy_images, self.interval_images = 0.0, 0, 0
        self.mark = time.monotonic()

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def train(self, batches: Iterator[Any], handle_signals: bool = True) -> TrainResult:
        """Run until a stop reason, then save; returns the :class:`TrainResult`."""
        try:
            with stop_on_signals(handle_signals) as signals:
                self.run(batches, signals)
        finally:
            self.metrics.close()
        return self.result()

    def run(self, batches: Iterator[Any], signals: Dict[str, Optional[str]]) -> None:
        tc, total = self.tc, self.trainer.total_steps
        limit_s = tc.time_limit_minutes * 60.0 if tc.time_limit_minutes else None
        first = True
        with progress(total=total, initial=self.step, desc=self.label, unit="step") as bar:
            while self.step < total:
                loss = self.trainer.train_step(next(batches))
                if first:  # the first call compiles: wait for it, and keep it out of img/s
                    self._collect()
                    self.mark = time.monotonic()
                    first = False
                else:
                    self.interval_images += tc.batch_size
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
                # the last record of a run always carries the held-out loss (not after Ctrl-C: stop fast)
                evaluate = self.eval_set is not None and (self.step % tc.eval_every == 0 or last)
                if self.step % tc.log_every == 0 or evaluate or stopping or self.step == total:
                    self._log(bar, evaluate)
                if self.step % tc.checkpoint_every == 0 and not stopping:
                    self._save()
                if self.sample_grid is not None and tc.sample_every and self.step % tc.sample_every == 0:
                    self._sample_grid()
                if stopping:
                    break
        self._finish()

    def _collect(self) -> None:
        """Wait for the device and add the losses of the steps since the last collect."""
        total, count, bad = self.trainer.drain()
        self.loss_sum += total
        self.loss_count += count
        if self.bad_step is None:
            self.bad_step = bad

    def _guard(self) -> None:
        """Stop with a clear error at the first non-finite loss; nothing bad has been saved."""
        self._collect()
        if self.bad_step is None:
            return
        where = f"the last good checkpoint is {self.checkpoint}" if self.checkpoint else \
            "no checkpoint had been written yet"
        raise TrainingDivergedError(
            f"training diverged: the loss became NaN/inf at step {self.bad_step}; stopped at step {self.step} "
            f"without saving; {where}. Lower --lr (now {self.tc.learning_rate:g}), raise warmup_steps, check the "
            "data" + (", or train without --mixed-precision" if self.trainer.policy != "float32" else ""))

    def _log(self, bar: Any, evaluate: bool) -> None:
        self._guard()  # waits for the device, so the interval holds the queued steps' time
        loss = self.loss_sum / self.loss_count if self.loss_count else None
        self.loss_sum, self.loss_count = 0.0, 0
        self.last_loss = loss if loss is not None else self.last_loss
        interval_s = time.monotonic() - self.mark
        img_per_s = self.interval_images / interval_s if self.interval_images and interval_s > 0 else None
        if img_per_s:
            self.busy_s += interval_s
            self.busy_images += self.interval_images
        self.interval_images = 0
        record: Dict[str, Any] = {"step": self.step, "loss": loss, "lr": self.trainer.current_lr(),
                                  "img_per_s": img_per_s, "elapsed_s": round(self.elapsed(), 3)}
        extra: Dict[str, float] = {}
        if evaluate:
            images, embeddings = self.eval_set
            for key, which in (("val_loss", "ema"), ("val_loss_raw", "raw")):
                record[key], per_t = self.trainer.held_out_loss(
                    images, embeddings, which=which, timesteps=self.tc.eval_timesteps, seed=self.tc.seed,
                    batch_size=self.tc.batch_size)
                if which == "ema":
                    extra = {f"val_loss_at_t/{t:05d}": v for t, v in per_t.items()}
            self.last_val = record["val_loss"]
        self.metrics.write(record, extra)
        bar.set_postfix(progress_postfix(loss, img_per_s, record["val_loss"] if evaluate else None), refresh=False)
        logger.debug("step %d: %s", self.step, record)
        self.mark = time.monotonic()  # evaluation time is not training time

    def _save(self) -> None:
        self._guard()
        self.checkpoint = self.trainer.save(self.elapsed())
        self.last_saved = self.step
        if self.chief:
            self.model_path = self.run_dir / EMA_MODEL_FILE
            self.trainer.export_ema(self.model_path)
        self.mark, self.interval_images = time.monotonic(), 0  # saving time is not training time

    def _sample_grid(self) -> None:
        if not self.chief:
            return
        grid = self.sample_grid()
        if grid is not None:
            self.metrics.image("samples", grid, self.step)
        self.mark, self.interval_images = time.monotonic(), 0

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
                           checkpoint=self.checkpoint, model_path=self.model_path)
