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
