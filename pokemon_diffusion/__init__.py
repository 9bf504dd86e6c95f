"""pokemon_diffusion: a text-conditioned pixel-space DDPM for Pokémon, in TensorFlow/Keras.

Importing the package is cheap: TensorFlow, transformers and torch load only when a name that
needs them is first used (PEP 562 module ``__getattr__``).

Example:
    >>> import pokemon_diffusion as pd
    >>> pd.ModelConfig(image_size=32).widths
    (32, 64, 96, 128)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ._version import __version__
from .config import DataConfig, DiffusionConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from .errors import (CheckpointError, ConfigError, DataError, EncoderError, PokemonDiffusionError,
                     ScrapeError)

# public name -> module that defines it (relative to this package)
_LAZY = {
    # data
    "collect": ".collection.pipeline", "CollectSummary": ".collection.pipeline",
    "scrape_pokemon_images_and_embeddings": ".scrape",
    "read_metadata": ".collection.metadata", "write_metadata": ".collection.metadata", "Entry": ".collection.metadata",
    "get_text_embedding": ".text.registry", "load_text_encoder": ".text.registry", "embed_dataset": ".text.embeddings",
    "null_text_embedding": ".text.registry", "TextEncoder": ".text.registry",
    "load_data": ".data.dataset", "make_dataset": ".data.dataset", "load_examples": ".data.dataset",
    "split_by_pokemon": ".data.dataset", "read_image": ".data.images",
    # model and diffusion
    "build_unet": ".model.unet", "count_flops": ".model.unet", "model_summary_line": ".model.unet",
    "make_schedule": ".diffusion.schedule", "q_sample": ".diffusion.schedule",
    "sample": ".diffusion.samplers", "sample_ddpm": ".diffusion.samplers",
    "sample_ddim": ".diffusion.samplers", "SampleResult": ".diffusion.samplers",
    "iter_sample": ".diffusion.streaming", "StreamFrame": ".diffusion.streaming",
    "reconstruct": ".diffusion.reconstruct",
    # training, runs, generation
    "train": ".training.loop", "TrainResult": ".training.run_loop", "Trainer": ".training.trainer",
    "TrainingDivergedError": ".training.run_loop", "evaluate": ".evaluation.evaluate",
    "load_run": ".run_dir", "load_pretrained": ".pretrained",
    "generate": ".generate", "edit": ".generate", "save_outputs": ".generate", "run_demo": ".demo",
    "save_images": ".image_files", "model_name": ".pretrained",
    # figures
    "plot_denoising_steps": ".viz", "plot_samples": ".viz", "save_denoising_gif": ".viz",
    "plot_training_curves": ".viz", "save_figure": ".viz",
}

__all__ = [
    "__version__", "DataConfig", "DiffusionConfig", "ModelConfig", "RunConfig", "SampleConfig",
    "TrainConfig", "CheckpointError", "ConfigError", "DataError", "EncoderError",
    "PokemonDiffusionError", "ScrapeError", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pokemon_diffusion' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
