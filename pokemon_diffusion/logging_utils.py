"""Logging set-up and progress bars, in one place.

The library only ever logs through ``logging.getLogger(__name__)``; the CLI (or a user) calls
:func:`setup_logging` once. Progress bars follow the package logger: they are shown when the
``pokemon_diffusion`` logger lets INFO through and stderr is a terminal, or when forced with
``POKEMON_DIFFUSION_PROGRESS=1``; ``POKEMON_DIFFUSION_PROGRESS=0`` or ``--quiet`` hides them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterable, Optional, TypeVar

PACKAGE_LOGGER = "pokemon_diffusion"
T = TypeVar("T")


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted, not as it was when the handler
    was made (a test's captured stream, a redirected stderr)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property always follows sys.stderr
        pass


def setup_logging(verbosity: int = 0) -> None:
    """Configure the package logger.

    Args:
        verbosity: -1 quiet (warnings only, no progress bars), 0 info, 1 or more debug.
    """
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.setLevel(level)
    if not any(getattr(h, "_pokemon_diffusion", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._pokemon_diffusion = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def progress_enabled() -> bool:
    """Whether progress bars should be drawn now (see the module docstring)."""
    forced = os.environ.get("POKEMON_DIFFUSION_PROGRESS")
    if forced is not None:
        return forced.strip() not in ("", "0", "false", "no")
    if not logging.getLogger(PACKAGE_LOGGER).isEnabledFor(logging.INFO):
        return False
    return sys.stderr.isatty()


def progress(iterable: Optional[Iterable[T]] = None, *, enabled: Optional[bool] = None, **kwargs):
    """A tqdm progress bar that obeys :func:`progress_enabled` unless ``enabled`` is given."""
    from tqdm.auto import tqdm

    disable = not (progress_enabled() if enabled is None else enabled)
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the block (Python exceptions still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices without its C++ start-up lines on stderr.

    TensorFlow 2.21 prints absl lines ("All log messages before absl::InitializeLog()...",
    "Could not find cuda drivers...", "failed call to cuInit") before any log level applies;
    ``TF_CPP_MIN_LOG_LEVEL`` does not reach them. The CLI calls this unless ``-v`` is given. An
    import error is still raised (and shown) after stderr is restored.
    """
    with _native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()
