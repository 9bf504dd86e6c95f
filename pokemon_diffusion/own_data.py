"""``train --data DIR`` on a plain folder of your pictures: collected and embedded into the run.

A folder without ``pokemon_metadata.json`` is read as the ``folder`` source (``collection/folder.py``:
images, captions from ``metadata.jsonl`` — Hugging Face ImageFolder's ``file_name`` / ``text`` — or
``captions.csv``, else from the file names), collected into ``RUN/data`` and embedded there with the
text encoder the run needs (the ``--init`` source's, else ``auto``). Both steps reuse finished work,
so ``--resume`` only adds what changed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

from .collection.metadata import METADATA_FILE

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
DATA_CACHE_DIR = "data"  # RUN/data: the collected and embedded copy of a plain folder


def is_plain_folder(folder: PathLike) -> bool:
    """A folder that is not a dataset (no ``pokemon_metadata.json``): to collect before training."""
    path = Path(folder)
    return path.is_dir() and not (path / METADATA_FILE).is_file()


def encoder_for(init: Any) -> str:
    """The encoder spec to embed with: the ``--init`` source's identity, else ``auto``."""
    if init is None:
        return "auto"
    from .run_dir import ENCODER_FILE, read_encoder_info
    from .training.init_from import init_dir

    return read_encoder_info(init_dir(init) / ENCODER_FILE).name


def prepare_folder(folder: PathLike, run_dir: PathLike, *, encoder: str = "auto",
                   device: Optional[str] = None) -> Path:
    """Collect ``folder``'s images into ``run_dir/data`` and embed their captions there.

    Returns:
        The dataset folder (``run_dir/data``) to train on.

    Raises:
        DataError (errors.py): no image in the folder, or a bad ``metadata.jsonl`` / ``captions.csv``.
        EncoderError: the encoder cannot be loaded.
    """
    from .collection.pipeline import collect
    from .config import DataConfig
    from .text.embeddings import embed_dataset

    folder, cache = Path(folder), Path(run_dir) / DATA_CACHE_DIR
    summary = collect(DataConfig(source="folder", path=str(folder), out_dir=str(cache)))
    log.info("collected %d image(s) of %s into %s (%d new, %d failed)", summary.found, folder, cache,
             summary.downloaded, summary.failed)
    embed_dataset(cache, encoder, device=device)
    return cache
