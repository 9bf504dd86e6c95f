"""Training data for the JAX path, with NumPy only (no ``tf.data``: it runs where TensorFlow is absent).

Two sources give the same arrays: a dataset folder (read with ``data.dataset.load_examples`` and
split with ``split_by_pokemon``, as the TensorFlow loop does; needs OpenCV) or one packed ``.npz``
(``benchmarks/pack_dataset.py``: uint8 images, embeddings, that same split and the encoder's
identity; needs NumPy only, for machines without OpenCV).

The stream mirrors ``make_dataset``'s contract: a seeded permutation per epoch, a horizontal flip
and (for images with several captions) a caption decided per stream position, and any position as
a start (``--resume``). Each batch element
carries its stream position, from which the step draws its noise. The order itself differs from
``tf.data``'s shuffle (another generator).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..config import RunConfig
from ..errors import DataError
from ..run_dir import EncoderInfo

logger = logging.getLogger(__name__)

PACK_KEYS = ("images", "embeddings", "train", "val", "meta")


@dataclass
class TrainingData:
    """Images as uint8 ``(N, H, W, 3)``, embeddings ``(N, dim)``, the split and the encoder;
    every caption's embedding ``(N, K, dim)`` with counts ``(N,)`` when images have several."""

    images: np.ndarray
    embeddings: np.ndarray
    train: np.ndarray
    val: np.ndarray
    encoder: EncoderInfo
    caption_embeddings: Optional[np.ndarray] = None
    caption_counts: Optional[np.ndarray] = None
    entries: Optional[list] = None  # the metadata entries (a dataset folder; not a packed .npz)

    def held_out(self, limit: int) -> Tuple[np.ndarray, np.ndarray]:
        """The first ``limit`` held-out examples as float32 images in [-1, 1] (as ``load_examples`` gives)."""
        idx = self.val[:limit]
        return self.images[idx].astype(np.float32) / 127.5 - 1.0, self.embeddings[idx]


def _from_folder(folder: Path, config: RunConfig) -> TrainingData:
    from ..data.dataset import load_examples, read_embeddings_info, split_by_pokemon  # OpenCV: folders only
    from ..data.neighbours import add_neighbour_captions

    info = read_embeddings_info(folder)
    if info is None:
        raise DataError(f"{folder} has no embeddings.json: embed the captions first "
                        f"(`pokemon-diffusion embed --data {folder}`)")
    size = config.model.image_size
    examples = load_examples(folder, (size, size))
    train, val = split_by_pokemon(examples.entries, config.train.val_fraction, config.train.seed)
    examples = add_neighbour_captions(examples, train, config.train.caption_neighbours)  # data/neighbours.py
    images = np.clip(np.rint((examples.images + 1.0) * 127.5), 0, 255).astype(np.uint8)  # exact: pixel/127.5 - 1
    return TrainingData(images, examples.embeddings, train, val, EncoderInfo(info["name"], int(info["dim"])),
                        examples.caption_embeddings, examples.caption_counts, examples.entries)


def _from_pack(path: Path, config: RunConfig) -> TrainingData:
    if config.train.caption_neighbours:
        raise DataError(f"{path}: a packed .npz has one caption per image, and train.caption_neighbours "
                        f"{config.train.caption_neighbours} needs their forms; allowed: the dataset folder, "
                        "or caption_neighbours 0")
    try:
        with np.load(path, allow_pickle=False) as pack:
            arrays: Dict[str, np.ndarray] = {k: pack[k] for k in PACK_KEYS}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read the packed dataset {path}: {exc!r}; allowed: an .npz from "
                        f"benchmarks/pack_dataset.py with {', '.join(PACK_KEYS)}") from None
    size, tc = config.model.image_size, config.train
    images = arrays["images"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:3] != (size, size):
        raise DataError(f"{path}: images {images.shape} {images.dtype}; allowed: uint8 (N, {size}, {size}, 3) "
                        f"for --image-size {size} (pack again with --size {size})")
    if (meta.get("seed"), meta.get("val_fraction")) != (tc.seed, tc.val_fraction):
        raise DataError(f"{path} holds the split of seed {meta.get('seed')} and val_fraction "
                        f"{meta.get('val_fraction')}; this run has {tc.seed} and {tc.val_fraction} (pack again)")
    return TrainingData(images, arrays["embeddings"].astype(np.float32), arrays["train"].astype(np.int64),
                        arrays["val"].astype(np.int64), EncoderInfo(str(meta["encoder"]), int(meta["dim"])))


def load_training_data(source, config: RunConfig) -> TrainingData:
    """Read a dataset folder or a packed ``.npz`` (see the module docstring).

    Raises:
        DataError: the source is missing, unreadable, or packed for another image size or split.
    """
    source = Path(source)
    if source.is_dir():
        data = _from_folder(source, config)
    elif source.is_file():
        data = _from_pack(source, config)
    else:
        raise DataError(f"dataset not found: {source}; allowed: a dataset folder (`pokemon-diffusion collect`) "
                        "or a packed .npz (benchmarks/pack_dataset.py)")
    if not len(data.train):
        raise DataError(f"{source}: no training images after the held-out split")
    return data


class BatchStream:
    """Batches of ``(uint8 images, flip mask, embeddings, stream positions)`` from the training split.

    Position p is element ``p mod n`` of epoch ``p // n``'s permutation (seeded by ``(seed, epoch)``);
    its flip is drawn from ``(seed, epoch, 1)``, its caption (images with several; uniform, or by
    ``caption_weights``) from ``(seed, epoch, 2)`` and its embedding noise from ``(seed, epoch, 3)``.
    So the stream depends on the seed only and starts anywhere.
    """

    def __init__(self, data: TrainingData, batch_size: int, *, seed: int, flip: bool, start: int = 0,
                 caption_weights: Optional[Dict[str, float]] = None, embedding_noise: float = 0.0) -> None:
        self.images, self.embeddings = data.images[data.train], data.embeddings[data.train]
        several = data.caption_embeddings is not None
        self.captions = data.caption_embeddings[data.train] if several else None
        self.counts = data.caption_counts[data.train] if several else None
        self.cumulative = None
        if several and caption_weights:
            from ..data.caption_draw import caption_draw_weights

            self.cumulative = caption_draw_weights([data.entries[i] for i in data.train], self.counts,
                                                   caption_weights)
        self.noise = float(embedding_noise)
        self.n, self.batch_size, self.seed, self.flip = len(self.images), int(batch_size), int(seed), bool(flip)
        self.position = int(start)
        self._epoch = -1
        self._order = self._flips = self._picks = np.zeros(0)

    def _load_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        self._flips = np.random.default_rng([self.seed, epoch, 1]).random(self.n) < 0.5
        self._picks = np.random.default_rng([self.seed, epoch, 2]).random(self.n)  # caption draw in [0, 1)
        if self.noise:
            self._noise = np.random.default_rng([self.seed, epoch, 3]).standard_normal(
                (self.n, self.embeddings.shape[-1]))

    def next(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        positions = np.arange(self.position, self.position + self.batch_size, dtype=np.int64)
        ids, flips = np.empty(self.batch_size, np.int64), np.zeros(self.batch_size, bool)
        picks = np.zeros(self.batch_size)
        noise = np.zeros((self.batch_size, self.embeddings.shape[-1])) if self.noise else None
        for epoch in np.unique(positions // self.n):  # a batch may straddle two epochs
            if epoch != self._epoch:
                self._load_epoch(int(epoch))
            mask = positions // self.n == epoch
            slots = positions[mask] % self.n
            ids[mask] = self._order[slots]
            flips[mask] = self._flips[slots] & self.flip
            picks[mask] = self._picks[slots]
            if noise is not None:
                noise[mask] = self._noise[slots]
        self.position += self.batch_size
        if self.captions is None:
            embeddings = self.embeddings[ids]
        elif self.cumulative is None:
            rows = (picks * self.counts[ids]).astype(np.int64)  # uniform over each image's captions
            embeddings = self.captions[ids, rows]
        else:  # the first caption whose cumulative probability exceeds the draw
            rows = np.minimum((self.cumulative[ids] <= picks[:, None]).sum(axis=1), self.counts[ids] - 1)
            embeddings = self.captions[ids, rows]
        if noise is not None:
            scale = self.noise * np.linalg.norm(embeddings, axis=-1, keepdims=True) / np.sqrt(embeddings.shape[-1])
            embeddings = (embeddings + scale * noise).astype(np.float32)
        return self.images[ids], flips, embeddings, positions
