"""A training run on TensorFlow: ``train(data_dir, run_dir, config)``.

Reads the dataset, splits off whole Pokémon for validation, builds a :class:`~.trainer.Trainer`
under a ``tf.distribute`` strategy and a ``tf.data`` stream, and hands both to the shared
:class:`~.run_loop.RunLoop` (stop reasons, logs, held-out loss, checkpoints: ``--resume``
continues exactly). What is TensorFlow's own stays here: the strategy, the chief/worker split
of a multi-worker run, ``--init`` and the TensorBoard sample grid. The run folder then holds
what ``sample`` needs (see ``run_dir.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from ..config import EVAL_MAX_IMAGES, SAMPLE_GRID_IMAGES, RunConfig
from ..data.caption_draw import caption_draw_weights
from ..data.dataset import Examples, load_examples, make_dataset, read_embeddings_info, split_by_pokemon
from ..data.neighbours import add_neighbour_captions
from ..data.pairs import pair_element
from ..errors import DataError
from ..locks import writer_lock
from ..run_dir import CHECKPOINT_DIR, METRICS_FILE, TENSORBOARD_DIR, EncoderInfo
from .checkpoint import latest_checkpoint_step
from ..threads import configure_threads
from .distribute import is_chief, make_strategy, step_branches
from .init_from import check_init, load_init_weights
from .metrics import MetricsWriter
from .run_loop import RunLoop, TrainResult, check_run_folder, fit_text_dim, total_steps_for, write_run_files
from .trainer import Trainer

logger = logging.getLogger(__name__)

SAMPLE_GRID_STEPS = 25  # DDIM steps for the grid
SAMPLE_GRID_GUIDANCE = 3.0


def _encoder_of(data_dir: Path) -> EncoderInfo:
    info = read_embeddings_info(data_dir)
    if info is None:
        raise DataError(f"{data_dir} has no embeddings.json: embed the captions first "
                        f"(`pokemon-diffusion embed --data {data_dir}`)")
    return EncoderInfo(info["name"], int(info["dim"]))


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
          handle_signals: bool = True, init: Any = None,
          sample_embeddings: Optional[np.ndarray] = None) -> TrainResult:
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
        sample_embeddings: (n, dim) embeddings of the TensorBoard sample grid's prompts (the
            validation prompts); None = the first held-out (else training) captions.

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
    # first: the thread pools and MultiWorkerMirroredStrategy can only be set before TensorFlow starts
    if strategy is None:
        configure_threads(step_branches(config.train, config.model.norm))
    strategy = strategy if strategy is not None else make_strategy(config.train.strategy)
    with contextlib.ExitStack() as stack:
        worker_dir = None
        if is_chief(strategy):
            stack.enter_context(writer_lock(run_dir, "train"))
        else:  # non-chief workers must save too (collectives), but somewhere private
            worker_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pokemon_diffusion_worker_")))
            logger.info("not the chief: checkpoints go to %s (removed at the end)", worker_dir)
        return _train(Path(data_dir), Path(run_dir), config, resume, strategy, on_step, handle_signals, worker_dir,
                      init, sample_embeddings)


def _train(data_dir: Path, run_dir: Path, config: RunConfig, resume: bool, strategy: tf.distribute.Strategy,
           on_step: Optional[Callable[[int, float], Optional[bool]]], handle_signals: bool,
           worker_dir: Optional[Path], init: Any = None,
           sample_embeddings: Optional[np.ndarray] = None) -> TrainResult:
    if not data_dir.is_dir():
        raise DataError(f"dataset folder not found: {data_dir} (make one with `pokemon-diffusion collect`)")
    encoder = _encoder_of(data_dir)
    config = fit_text_dim(config, encoder.dim)
    tc = config.train
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    found = latest_checkpoint_step(checkpoint_dir)
    check_run_folder(run_dir, config, encoder, backend="tensorflow", resume=resume, found=found)
    source = check_init(init, config, encoder) if init is not None and not (resume and found) else None

    # 1. data: every usable example, whole Pokémon held out for validation
    size = config.model.image_size
    examples = load_examples(data_dir, (size, size))
    train_idx, val_idx = split_by_pokemon(examples.entries, tc.val_fraction, tc.seed)
    # the training side's captions, with its neighbour descriptions (none by default; data/neighbours.py)
    train_set = add_neighbour_captions(examples, train_idx, tc.caption_neighbours).subset(train_idx)
    val_set = examples.subset(val_idx)
    eval_set: Optional[Examples] = val_set.subset(range(min(len(val_set), EVAL_MAX_IMAGES))) if len(val_set) else None
    total_steps = total_steps_for(tc, len(train_set))
    draw_weights = caption_draw_weights(train_set.entries, train_set.caption_counts, tc.caption_weights)

    # 2. model, EMA, optimizer, RNG; then the checkpoint (restoring it on resume)
    if tc.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(tc.seed)
    trainer = Trainer(config, total_steps, strategy=strategy)
    chief = worker_dir is None
    trainer.open_checkpoints(worker_dir or checkpoint_dir, tc.max_checkpoints)
    restored = trainer.restore(checkpoint_dir) if resume else None  # every worker reads the chief's
    load_init_weights(trainer, source)  # --init: weights only (None: nothing); optimizer, step, stream fresh
    if chief:
        write_run_files(run_dir, config, encoder, examples.entries)
    logger.info("training on %d images (%d held out) for %d steps from step %d, batch %d, %s, %s",
                len(train_set), len(val_set), total_steps, restored.step if restored else 0, tc.batch_size,
                f"{type(trainer.strategy).__name__} x{trainer.replicas}, {trainer.branches} branch(es)", trainer.policy)

    # 3. the data stream, resumed at the element where the checkpoint stopped
    several = train_set.caption_embeddings is not None  # several captions: one drawn per element
    upsampler = config.model.low_res is not None  # its pairs are made in the stream (data/pairs.py)
    pair_fn = functools.partial(pair_element, low_res=config.model.low_res, crop=trainer.image_shape[0],
                                aug_max=tc.aug_max, seed=tc.seed) if upsampler else None
    dataset = make_dataset(train_set.images, train_set.caption_embeddings if several else train_set.embeddings,
                           tc.batch_size, shuffle=True, flip=tc.flip, seed=tc.seed, repeat=True,
                           start_index=int(trainer.examples_seen.numpy()), with_index=True,
                           caption_counts=train_set.caption_counts, pair_fn=pair_fn,
                           caption_weights=draw_weights, embedding_noise=tc.embedding_noise)
    batches = iter(trainer.distribute(dataset))
    metrics = MetricsWriter(run_dir / METRICS_FILE, run_dir / TENSORBOARD_DIR,
                            keep_until=(restored.step if restored else 0) if resume else None,
                            enabled=chief)
    grid = _SampleGrid((eval_set if eval_set is not None else train_set).embeddings
                       if sample_embeddings is None else np.asarray(sample_embeddings, np.float32), tc.seed)
    loop = RunLoop(trainer, run_dir, metrics, (eval_set.images, eval_set.embeddings) if eval_set else None,
                   restored=restored, chief=chief, on_step=on_step,
                   sample_grid=None if upsampler else lambda: grid.images(trainer))
    return loop.train(batches, handle_signals)
