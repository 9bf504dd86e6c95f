"""A training run on the JAX backend: ``train(data, run_dir, config)`` (``train --backend jax``).

The same run folder as the TensorFlow loop (``config.json``, ``encoder.json``, ``ema_model.keras``,
``metrics.jsonl``), so ``sample``, ``evaluate``, ``load_run`` and the demo read it unchanged on
TensorFlow; only ``checkpoints/`` differs (``jax_checkpoint.py``). The loop is the shared
:class:`~.run_loop.RunLoop`; what is JAX's own here is the data (``jax_data.BatchStream``, NumPy)
and the devices. No TensorBoard (it needs TensorFlow's writer) and no sample grid. Never imports
TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..config import EVAL_MAX_IMAGES, RunConfig
from ..locks import writer_lock
from ..run_dir import CHECKPOINT_DIR, METRICS_FILE
from .jax_checkpoint import latest_step
from .jax_data import BatchStream, load_training_data
from .jax_trainer import JaxTrainer
from .metrics import MetricsWriter
from .run_loop import RunLoop, TrainResult, check_run_folder, fit_text_dim, total_steps_for, write_run_files

logger = logging.getLogger(__name__)


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
    config = fit_text_dim(config, training.encoder.dim)
    tc = config.train
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    check_run_folder(run_dir, config, training.encoder, backend="jax", resume=resume,
                     found=latest_step(checkpoint_dir))
    total_steps = total_steps_for(tc, len(training.train))
    keras.utils.set_random_seed(tc.seed)  # the initial weights
    trainer = JaxTrainer(config, total_steps, devices=devices)
    trainer.open_checkpoints(checkpoint_dir, tc.max_checkpoints)
    restored = trainer.restore() if resume else None
    stream = BatchStream(training, tc.batch_size, seed=tc.seed, flip=tc.flip, start=trainer.examples_seen,
                         caption_weights=tc.caption_weights, embedding_noise=tc.embedding_noise)
    write_run_files(run_dir, config, training.encoder, training.entries)
    eval_set = training.held_out(EVAL_MAX_IMAGES) if len(training.val) else None
    metrics = MetricsWriter(run_dir / METRICS_FILE, None,
                            keep_until=(restored.step if restored else 0) if resume else None)
    logger.info("training (JAX, %d device(s), %s) on %d images (%d held out) for %d steps from step %d, batch %d",
                len(trainer.devices), trainer.policy, len(training.train), len(training.val), total_steps,
                trainer.step, tc.batch_size)
    loop = RunLoop(trainer, run_dir, metrics, eval_set, restored=restored, on_step=on_step, label="train (jax)")
    return loop.train(iter(stream.next, None), handle_signals)
