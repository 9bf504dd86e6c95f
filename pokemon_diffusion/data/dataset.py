"""From a dataset folder to training batches: ``load_data`` (cv2) and ``make_dataset`` (tf.data).

``load_data`` reads every entry of ``pokemon_metadata.json`` once: the image with OpenCV (BGR→RGB,
alpha composited on white, padded to the target aspect ratio with white, resized with INTER_AREA
when shrinking) scaled to [-1, 1], and the caption embedding from the entry's ``embedding_path``.
Entries whose image or embedding cannot be read are skipped with one warning listing them.

``make_dataset`` turns the arrays into a ``tf.data.Dataset`` of ``(image, embedding)`` batches:
cache, seeded shuffle (reshuffled every epoch), random horizontal flip, batch, prefetch(AUTOTUNE).
Given every caption's embedding of each image (``Examples.caption_embeddings``), it draws one
caption per element, keyed by the element's stream position. The order of elements, their flips
and their captions depend only on the seed, so a resumed run can skip to where it stopped.

``split_by_pokemon`` holds out whole Pokémon (every form and image of one Pokédex number), so the
validation loss measures generalisation to species the model has never seen.

Example:
    >>> images, embeddings = load_data("data/pokemon/pokemon_metadata.json", shape=(32, 32))
    >>> ds = make_dataset(images, embeddings, batch_size=32, seed=0)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError
from ..collection.metadata import EMBEDDINGS_INFO_FILE, METADATA_FILE, Entry, read_metadata
from ..logging_utils import progress
from .caption_draw import element_caption
from .images import check_shape, read_image

logger = logging.getLogger(__name__)

MAX_LISTED = 10  # skipped files named in the warning; the rest are counted


@dataclass
class Examples:
    """What :func:`load_examples` read: aligned arrays plus the entries they came from.

    Attributes:
        images: float32 ``(N, H, W, 3)`` in [-1, 1].
        embeddings: float32 ``(N, dim)``.
        entries: the N metadata entries kept, in the same order.
        skipped: ``"path: reason"`` for every entry left out.
        root: the dataset folder.
        caption_embeddings: float32 ``(N, K, dim)``: every caption's embedding (the main one
            first), padded with the main one to the largest count K; None means one caption each.
        caption_counts: int32 ``(N,)``: how many rows of ``caption_embeddings`` are real.
    """

    images: np.ndarray
    embeddings: np.ndarray
    entries: List[Entry]
    skipped: List[str] = field(default_factory=list)
    root: Path = Path(".")
    caption_embeddings: Optional[np.ndarray] = None
    caption_counts: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Sequence[int]) -> "Examples":
        """The examples at ``indices`` (a new object; arrays are copied by NumPy fancy indexing)."""
        idx = np.asarray(indices, dtype=np.int64)
        several = self.caption_embeddings is not None
        return Examples(self.images[idx], self.embeddings[idx], [self.entries[i] for i in idx], [], self.root,
                        self.caption_embeddings[idx] if several else None,
                        self.caption_counts[idx] if several else None)


def _metadata_path(metadata_file: os.PathLike | str) -> Path:
    path = Path(metadata_file)
    return path / METADATA_FILE if path.is_dir() else path


def read_embeddings_info(root: os.PathLike | str) -> Optional[dict]:
    """``DIR/embeddings.json`` as a dict (``name``, ``dim``, ...), or None when it does not exist.

    Raises:
        DataError: the file exists but is not a JSON object with ``name`` and an integer ``dim``.
    """
    path = Path(root) / EMBEDDINGS_INFO_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or not isinstance(info.get("dim"), int):
        raise DataError(f"{path}: got {info!r}; allowed: a JSON object with 'name' (string) and 'dim' (integer)")
    return info


# np.load parses a .npy header with ast.literal_eval, and CPython 3.11's AST constructor keeps its
# recursion depth in state shared by threads: two parses at once can fail with "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905, seen here when CI read a dataset).
# The loader's threads are for image decoding; the tiny .npy reads take turns.
_NPY_LOCK = threading.Lock()


def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` of one .npy file (no pickles), one thread at a time (see ``_NPY_LOCK``)."""
    with _NPY_LOCK:
        return np.load(path, allow_pickle=False)


def _read_embedding(root: Path, entry: Entry, dim: Optional[int]) -> np.ndarray:
    if not entry.embedding_path:
        raise DataError("no embedding_path (run `pokemon-diffusion embed` first)")
    path = root / entry.embedding_path
    try:
        vector = _load_npy(path)
    except FileNotFoundError:
        raise DataError(f"embedding {entry.embedding_path} is missing") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"embedding {entry.embedding_path} is unreadable ({exc})") from None
    if not np.issubdtype(vector.dtype, np.number):
        raise DataError(f"embedding {entry.embedding_path} holds {vector.dtype} values; expected numbers")
    if vector.ndim == 2 and vector.shape[0] == 1:  # (1, dim): one row of an encoder's batch output
        vector = vector[0]
    if vector.ndim != 1 or (dim is not None and vector.shape[0] != dim):
        raise DataError(f"embedding {entry.embedding_path} has shape {vector.shape}; expected ({dim},)")
    if not np.all(np.isfinite(vector)):
        raise DataError(f"embedding {entry.embedding_path} has non-finite values")
    return vector.astype(np.float32)


def _read_caption_embeddings(root: Path, entry: Entry, main: np.ndarray) -> np.ndarray:
    """(K, dim) embeddings of every caption of an entry; ``main[None]`` when it has one (or when
    its captions file is missing or does not match, with the reason logged at debug level)."""
    rel = entry.captions_embedding_path
    if not rel or len(entry.all_captions) < 2:
        return main[None]
    try:
        rows = _load_npy(root / rel)
    except (OSError, ValueError) as exc:
        raise DataError(f"caption embeddings {rel} are unreadable ({exc}); run `pokemon-diffusion embed`") from None
    if rows.shape != (len(entry.all_captions), main.shape[0]) or not np.all(np.isfinite(rows)):
        raise DataError(f"caption embeddings {rel} have shape {rows.shape}; expected "
                        f"({len(entry.all_captions)}, {main.shape[0]}) finite values (run `pokemon-diffusion embed`)")
    return rows.astype(np.float32)


def stack_caption_embeddings(per_entry: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Pad each entry's (K_i, dim) caption embeddings with its first row to the largest K_i.

    Returns:
        ``(embeddings (N, K, dim) float32, counts (N,) int32)``.
    """
    counts = np.asarray([len(rows) for rows in per_entry], dtype=np.int32)
    k = int(counts.max())
    padded = [np.concatenate([rows, np.repeat(rows[:1], k - len(rows), axis=0)]) for rows in per_entry]
    return np.stack(padded).astype(np.float32), counts


def _warn_skipped(skipped: List[str], total: int) -> None:
    if not skipped:
        return
    shown = "; ".join(skipped[:MAX_LISTED])
    more = f"; and {len(skipped) - MAX_LISTED} more" if len(skipped) > MAX_LISTED else ""
    logger.warning("skipped %d of %d entries: %s%s", len(skipped), total, shown, more)


def load_examples(metadata_file: os.PathLike | str = METADATA_FILE, shape: Tuple[int, int] = (32, 32)) -> Examples:
    """Read every usable (image, embedding) pair of a dataset, keeping the metadata entries.

    Args:
        metadata_file: ``pokemon_metadata.json`` or the folder holding it; paths in it are
            relative to its folder.
        shape: ``(height, width)`` of the images returned.

    Returns:
        :class:`Examples` with images ``(N, H, W, 3)`` float32 in [-1, 1] and embeddings ``(N, dim)``.

    Raises:
        DataError: the metadata file is missing or invalid, embeddings disagree with
            ``embeddings.json``, or no entry is usable.
    """
    shape = check_shape(shape)
    path = _metadata_path(metadata_file)
    root = path.parent
    # missing files are reported below as skipped entries, not as a metadata error
    entries = read_metadata(path, validate=True, check_files=False)
    info = read_embeddings_info(root)
    dim = info["dim"] if info else None
    images, vectors, captions, kept, skipped = [], [], [], [], []

    def read(entry):
        try:
            vector = _read_embedding(root, entry, dim)
            image = read_image(root / entry.image_path, shape, root=root)
            return image, vector, _read_caption_embeddings(root, entry, vector)
        except DataError as exc:
            return exc

    # OpenCV releases the GIL while decoding and resizing: one thread per core, results in order
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        results = pool.map(read, entries)
        pairs = list(progress(zip(entries, results), total=len(entries), desc="loading images", unit="img",
                              leave=False))
    for entry, result in pairs:
        if isinstance(result, DataError):
            skipped.append(f"{entry.image_path}: {result}")
            continue
        image, vector, rows = result
        if dim is None:  # without embeddings.json the first embedding fixes the size
            dim = int(vector.shape[0])
        elif vector.shape[0] != dim:
            skipped.append(f"{entry.image_path}: embedding {entry.embedding_path} has shape {vector.shape}; "
                           f"expected ({dim},)")
            continue
        images.append(image)
        vectors.append(vector)
        captions.append(rows)
        kept.append(entry)
    _warn_skipped(skipped, len(entries))
    if not kept:
        raise DataError(f"{path}: no usable entries out of {len(entries)} "
                        f"(each needs a readable image and its .npy embedding; run `pokemon-diffusion embed`)"
                        + (f"; first problem: {skipped[0]}" if skipped else ""))
    several = any(len(rows) > 1 for rows in captions)
    caption_embeddings, counts = stack_caption_embeddings(captions) if several else (None, None)
    logger.info("loaded %d images of %dx%d and %d-d embeddings%s from %s", len(kept), shape[1], shape[0], dim,
                f" ({int(counts.sum())} captions)" if several else "", root)
    return Examples(np.stack(images).astype(np.float32), np.stack(vectors).astype(np.float32), kept, skipped, root,
                    caption_embeddings, counts)


def load_data(metadata_file: os.PathLike | str = METADATA_FILE,
              shape: Tuple[int, int] = (32, 32)) -> Tuple[np.ndarray, np.ndarray]:
    """The seed's loader: images and caption embeddings as two aligned float32 arrays.

    Args:
        metadata_file: ``pokemon_metadata.json`` or the folder holding it.
        shape: ``(height, width)`` of the images returned.

    Returns:
        ``(images, embeddings)``: ``(N, H, W, 3)`` in [-1, 1] and ``(N, dim)``, both float32.

    Raises:
        DataError: see :func:`load_examples`.

    Example:
        >>> images, embeddings = load_data("data/pokemon", shape=(32, 32))
        >>> images.shape, embeddings.shape
        ((1008, 32, 32, 3), (1008, 384))
    """
    examples = load_examples(metadata_file, shape)
    return examples.images, examples.embeddings


def pokemon_key(entry: Entry) -> str:
    """The group an entry belongs to for the held-out split: its Pokédex number, else its name."""
    return f"dex:{entry.dex}" if entry.dex is not None else f"name:{entry.name.strip().lower()}"


def split_by_pokemon(entries: Sequence[Entry], val_fraction: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Hold out whole Pokémon: every image of a Pokédex number goes to the same side.

    Groups are shuffled with ``seed`` and moved to the validation side until it holds at least
    ``val_fraction`` of the images; the training side always keeps at least one group.

    Args:
        entries: the dataset's entries (``dex`` groups them; ``name`` when ``dex`` is None).
        val_fraction: wanted share of validation images, ``0 <= val_fraction < 1``.
        seed: the shuffle seed; the same seed gives the same split.

    Returns:
        ``(train_indices, val_indices)``: sorted int64 arrays into ``entries``.

    Raises:
        ValueError: ``val_fraction`` is outside [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"split_by_pokemon.val_fraction: got {val_fraction!r}; allowed: 0 <= val_fraction < 1")
    groups: dict = {}
    for i, entry in enumerate(entries):
        groups.setdefault(pokemon_key(entry), []).append(i)
    keys = sorted(groups)  # a fixed order before shuffling, whatever the metadata order
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    wanted = int(np.ceil(val_fraction * len(entries))) if val_fraction > 0 else 0
    val: List[int] = []
    for key in keys[:-1]:  # the last group always stays in training
        if len(val) >= wanted:
            break
        val.extend(groups[key])
    if wanted and not val:
        logger.warning("only one Pokémon in the dataset: no held-out split")
    val_set = set(val)
    train = [i for i in range(len(entries)) if i not in val_set]
    return np.asarray(train, dtype=np.int64), np.asarray(sorted(val), dtype=np.int64)


def make_dataset(images: np.ndarray, embeddings: np.ndarray, batch_size: int = 32, *, shuffle: bool = True,
                 flip: bool = True, seed: int = 0, repeat: bool = False, start_index: int = 0,
                 with_index: bool = False, drop_remainder: bool = False,
                 caption_counts: Optional[np.ndarray] = None, caption_weights: Optional[np.ndarray] = None,
                 embedding_noise: float = 0.0, pair_fn: Optional[Callable] = None):
    """A ``tf.data.Dataset`` of ``(image, embedding)`` batches.

    The pipeline is cache → shuffle (seeded, reshuffled each epoch) → [repeat] → [skip] → random
    horizontal flip → batch → prefetch(AUTOTUNE). Each element's flip is decided by a stateless
    random draw keyed by ``(seed, element index)``, so the stream depends on nothing but the seed
    and can be resumed at any element with ``start_index``.

    Args:
        images: float32 ``(N, H, W, C)`` in [-1, 1].
        embeddings: float32 ``(N, dim)``, aligned with ``images``; or ``(N, K, dim)``, every
            caption's embedding (``Examples.caption_embeddings``) with ``caption_counts``: each
            element then carries the embedding of one of its captions, drawn uniformly from the
            first ``caption_counts[i]`` rows by a stateless draw keyed by ``(seed, position)``.
        batch_size: images per batch.
        shuffle: shuffle with a full-size buffer (a uniform permutation per epoch).
        flip: randomly mirror images left-right (Pokémon artwork has no preferred side).
        seed: seed of the shuffle and the flips.
        repeat: loop over the data forever (training by steps).
        start_index: skip this many elements of the (repeated) stream first: ``step * batch_size``
            for a resumed run.
        with_index: add a third item per batch, the int64 position of each element in the stream
            (the trainer derives each example's noise from it).
        drop_remainder: drop a last batch smaller than ``batch_size``.
        caption_counts: int ``(N,)``, required with ``(N, K, dim)`` embeddings.
        caption_weights: ``(N, K)`` cumulative draw probabilities (:func:`caption_draw_weights`)
            instead of the uniform draw; the same stateless key, so still resumable anywhere.
        embedding_noise: add Gaussian noise to each element's embedding, drawn from ``(seed,
            position)``, with a norm of about this times the embedding's (0: none).
        pair_fn: ``(image, index) -> (image, *extra)`` after the flip (an upsampler's pairs,
            ``pairs.pair_element``); the extras follow the index in each batch (needs ``with_index``).

    Returns:
        A ``tf.data.Dataset`` yielding ``(images (B, H, W, C), embeddings (B, dim))``
        (plus ``indices (B,)`` with ``with_index``), float32.

    Raises:
        DataError: the arrays are empty or not aligned, or an argument is out of range.
    """
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    several = embeddings.ndim == 3
    if images.ndim != 4 or embeddings.ndim not in (2, 3) or images.shape[0] != embeddings.shape[0] or not len(images):
        raise DataError(f"make_dataset: got images {images.shape} and embeddings {embeddings.shape}; "
                        "allowed: (N, H, W, C) and (N, dim) or (N, K, dim) with the same N >= 1")
    if several:
        counts = None if caption_counts is None else np.asarray(caption_counts)
        if counts is None or counts.shape != (len(images),) or counts.min() < 1 or counts.max() > embeddings.shape[1]:
            raise DataError(f"make_dataset.caption_counts: got {caption_counts!r}; allowed: (N,) integers from 1 "
                            f"to K = {embeddings.shape[1]} with (N, K, dim) embeddings")
        cumulative = None if caption_weights is None else np.asarray(caption_weights, np.float32)
        if cumulative is not None and cumulative.shape != embeddings.shape[:2]:
            raise DataError(f"make_dataset.caption_weights: got shape {cumulative.shape}; allowed: "
                            f"{embeddings.shape[:2]} (caption_draw_weights)")
        embeddings = (embeddings, counts.astype(np.int32)) + (() if cumulative is None else (cumulative,))
    if not 0.0 <= float(embedding_noise) <= 2.0:
        raise DataError(f"make_dataset.embedding_noise: got {embedding_noise!r}; allowed: 0 to 2")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"make_dataset.batch_size: got {batch_size!r}; allowed: an integer >= 1")
    if pair_fn is not None and not with_index:
        raise DataError("make_dataset.pair_fn: got a pair function without with_index; allowed: with_index=True")
    if start_index < 0 or (start_index and not repeat and start_index >= len(images)):
        raise DataError(f"make_dataset.start_index: got {start_index!r}; allowed: 0 <= start_index "
                        + ("" if repeat else f"< {len(images)}"))
    n = len(images)
    ds = tf.data.Dataset.from_tensor_slices((images, embeddings)).cache()
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if start_index:
        ds = ds.skip(start_index)  # cheap: cached elements only pass through the shuffle buffer
    indices = tf.data.Dataset.range(start_index, np.iinfo(np.int64).max)
    ds = tf.data.Dataset.zip((ds, indices))

    def augment(pair, index):
        image, embedding = pair
        if flip:
            key = tf.stack([tf.constant(seed, tf.int64), index])
            image = tf.image.stateless_random_flip_left_right(image, seed=key)
        embedding = element_caption(embedding, index, seed=seed, several=several, noise=embedding_noise)
        if pair_fn is not None:
            image, *extra = pair_fn(image, index)
            return (image, embedding, index, *extra)
        return (image, embedding, index) if with_index else (image, embedding)

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
