"""Exceptions a user can cause. The CLI turns every one into a one-line error and exit code 2."""


class PokemonDiffusionError(Exception):
    """Base class of the errors this library raises on bad input or a failed external resource."""


class ConfigError(PokemonDiffusionError, ValueError):
    """A configuration value is outside what is allowed."""


class DataError(PokemonDiffusionError):
    """A dataset, metadata file or image could not be read or is invalid."""


class ScrapeError(PokemonDiffusionError):
    """A web source could not be fetched or parsed (HTTP failure, Cloudflare challenge, unknown layout)."""


class EncoderError(PokemonDiffusionError):
    """A text encoder could not be loaded, or it does not match the one a dataset or model was made with."""


class CheckpointError(PokemonDiffusionError):
    """A run directory or checkpoint is missing, incomplete or does not match the request."""


class FolderBusyError(PokemonDiffusionError):
    """Another process is writing the same run or data folder (it holds the folder's ``.lock``)."""
