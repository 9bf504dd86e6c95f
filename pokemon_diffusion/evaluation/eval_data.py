"""The dataset as evaluation reads it: the training loader's entries, images and embeddings, and the
check that its embeddings come from the run's encoder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List

import numpy as np


class EvalData:
    """The dataset as evaluation needs it: entries, images at the run's size, caption embeddings."""

    def __init__(self, entries: List[Any], images: np.ndarray, embeddings: np.ndarray):
        self.entries = entries
        self.images = images          # float32 (R, H, W, 3) in [-1, 1], composited on white
        self.embeddings = embeddings  # float32 (R, text_dim)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> List[str]:
        return [e.name for e in self.entries]

    @property
    def types(self) -> List[List[str]]:
        return [list(e.types) for e in self.entries]


def load_eval_data(data_dir: os.PathLike | str, image_size: int) -> EvalData:
    """Read the dataset with the training loader (``data.dataset.load_examples``), at ``image_size``.

    The same loader as training means the same entries, order and pixels, hence the same held-out split.

    Raises:
        DataError: missing metadata, or no entry with a readable image and embedding.
    """
    from ..data.dataset import load_examples

    examples = load_examples(data_dir, (image_size, image_size))
    return EvalData(list(examples.entries), examples.images, examples.embeddings)


def check_dataset_encoder(data_dir: os.PathLike | str, run_encoder) -> None:
    """The dataset's captions must be embedded with the encoder the run was trained with.

    Raises:
        EncoderError: another encoder or size (names both and says how to fix it).
        CheckpointError: ``DIR/embeddings.json`` is missing or unreadable.
    """
    from ..run_dir import read_encoder_info

    info = read_encoder_info(Path(data_dir) / "embeddings.json")
    run_encoder.check(info.name, info.dim, what=f"the dataset's embeddings ({data_dir}/embeddings.json)")
