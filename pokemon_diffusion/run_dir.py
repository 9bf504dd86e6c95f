"""A training run's folder: what ``train`` writes and ``sample`` / ``evaluate`` read.

Layout::

    RUN/config.json        RunConfig (model, diffusion, train)
    RUN/encoder.json       {"name": ..., "dim": ...}: the text encoder the captions were embedded with
    RUN/ema_model.keras    the EMA weights as a whole Keras model (what sampling uses)
    RUN/checkpoints/       tf.train.CheckpointManager files (model, EMA, optimizer, step, RNG)
    RUN/metrics.jsonl      one JSON object per logged step
    RUN/tensorboard/       TensorBoard event files
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .atomic import atomic_path, atomic_write_text
from .config import RunConfig
from .errors import CheckpointError, EncoderError

CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.json"
EMA_MODEL_FILE = "ema_model.keras"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


@dataclass(frozen=True)
class EncoderInfo:
    """Identity of a text encoder: ``name`` is what :func:`load_text_encoder` accepts back."""

    name: str
    dim: int

    def check(self, name: str, dim: int, what: str = "text encoder") -> None:
        """Raise :class:`EncoderError` unless ``name``/``dim`` match this encoder."""
        if dim != self.dim:
            raise EncoderError(f"{what} gives {dim}-d embeddings but the model expects {self.dim}-d "
                               f"({self.name}); use --text-encoder {self.name}")
        if name != self.name:
            raise EncoderError(f"{what} is {name!r} but the model was trained with {self.name!r}; "
                               f"use --text-encoder {self.name}")


@dataclass
class LoadedRun:
    """A run ready for sampling: the EMA model, its configs and its encoder's identity."""

    path: Path
    config: RunConfig
    encoder: EncoderInfo
    model: Any  # keras.Model

    @property
    def schedule(self):
        from .diffusion.schedule import make_schedule

        return make_schedule(self.config.diffusion)


def write_encoder_info(run_dir: os.PathLike | str, info: EncoderInfo) -> None:
    atomic_write_text(Path(run_dir) / ENCODER_FILE, json.dumps({"name": info.name, "dim": info.dim}) + "\n")


def read_encoder_info(path: os.PathLike | str) -> EncoderInfo:
    """Read ``encoder.json`` from a run or ``embeddings.json`` from a dataset (same two keys)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return EncoderInfo(str(data["name"]), int(data["dim"]))
    except FileNotFoundError:
        raise CheckpointError(f"missing {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot read encoder identity from {path}: {exc!r}") from None


def save_model_atomic(model: Any, path: os.PathLike | str) -> None:
    """``model.save`` to a temporary ``.keras`` file beside ``path``, then rename it over ``path``."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_run(run_dir: os.PathLike | str, model_file: Optional[str] = None) -> LoadedRun:
    """Load a run folder written by ``train`` (see the module docstring).

    Raises:
        CheckpointError: the folder or one of its files is missing or unreadable.
    """
    import keras

    from .model import layers  # noqa: F401  (registers the custom layers for deserialisation)

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir} (train one with `pokemon-diffusion train`)")
    model_path = run_dir / (model_file or EMA_MODEL_FILE)
    if not model_path.is_file():
        raise CheckpointError(f"{run_dir} has no {model_path.name}: training has not saved a model yet")
    try:
        config = RunConfig.load(run_dir / CONFIG_FILE)
    except Exception as exc:  # ConfigError, missing file
        raise CheckpointError(f"{run_dir}: {exc}") from None
    encoder = read_encoder_info(run_dir / ENCODER_FILE)
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # keras raises ValueError/OSError/zipfile errors for damaged files
        raise CheckpointError(f"cannot load {model_path}: {exc}") from None
    return LoadedRun(run_dir, config, encoder, model)
