"""Exceptions a user can cause. The CLI turns every one into a one-line error and exit code 2."""

import errno
import os
from typing import Optional, Sequence, Type, Union


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


class WriteError(PokemonDiffusionError):
    """A file could not be written: a full disk, a read-only file system or no permission.

    Not an ``OSError`` on purpose: code that skips one unreadable input on OSError must not skip
    past a full disk, which fails every later write too.
    """

    def __init__(self, message: str, errno_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.errno = errno_code


# the causes of a failed write a user can fix; any other OSError is a bug or a broken machine
WRITE_FAILURES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted", errno.EFBIG: "file too large"}


def write_failed(path: Union[str, "os.PathLike[str]", None], exc: BaseException) -> Optional[WriteError]:
    """The one-line :class:`WriteError` for ``exc`` when it is a failed write (full disk, read-only,
    no permission), else None (the caller re-raises ``exc``).

    The message names ``path`` (what was being written), why, and what to do about it.
    """
    code = getattr(exc, "errno", None)
    if code not in WRITE_FAILURES:
        return None
    where = path if path is not None else getattr(exc, "filename", None)
    return WriteError(f"cannot write {where}: {WRITE_FAILURES[code]}; free space or choose a writable "
                      "folder, then run the command again", code)


def require_extra(modules: Sequence[str], *, extra: str, what: str,
                  error: Type[PokemonDiffusionError] = PokemonDiffusionError) -> None:
    """Raise ``error`` in one line when an optional dependency of ``what`` is not installed,
    naming the pip extra that brings it (``pyproject.toml``'s optional-dependencies)."""
    from importlib.util import find_spec

    missing = [name for name in modules if find_spec(name) is None]
    if missing:
        raise error(f"{what} needs {' and '.join(missing)}, which is not installed; allowed: "
                    f"pip install \"pokemon-diffusion[{extra}]\"")
