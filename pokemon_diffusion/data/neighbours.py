"""Neighbour captions: a description trained with every Pokémon it fits, not with one picture.

Each image's name-free description ("a small yellow Electric-type Pokémon") is unique to it or
shared by a few images, so a model learns one picture per description and draws near-copies for
every seed (docs/RESULTS.md, *Variety of descriptions*). With ``TrainConfig.caption_neighbours`` K
> 0, each *training* image also carries the descriptions of its K nearest training Pokémon of the
same colours: those whose colour caption ("a yellow Pokémon") is the image's own, nearest by the
cosine of their description embeddings, one row per neighbour, tagged :data:`NEIGHBOUR_FORM`. A
description then conditions its own Pokémon and its look-alikes, and seeds differ as the real
Pokémon it fits differ. The draw weighs each row by the form's weight in ``TrainConfig.caption_weights``
(1 when not named: K rows then outweigh the image's own description K to 1; the reference gives 0.5).

The rows are added after the held-out split, from training images only: a held-out Pokémon's
captions and pictures never enter training.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import List, Sequence

import numpy as np

from ..errors import DataError

logger = logging.getLogger(__name__)

#: The caption form of the added rows (a key for ``TrainConfig.caption_weights``).
NEIGHBOUR_FORM = "neighbour"
#: The forms that pick the neighbours: the description they add, and the colours they must share.
DESCRIPTION_FORM, COLOUR_FORM = "description", "colour"


def _form_rows(examples, indices: Sequence[int]) -> tuple:
    """Per image: its description's row index and its colour caption; a clear error when untagged."""
    desc_rows: List[int] = []
    colours: List[str] = []
    for i in indices:
        entry = examples.entries[i]
        forms = entry.all_caption_forms or []
        if DESCRIPTION_FORM not in forms or COLOUR_FORM not in forms:
            raise DataError(f"{entry.image_path}: its captions have no '{DESCRIPTION_FORM}' and '{COLOUR_FORM}' "
                            f"forms (caption_forms: {', '.join(forms) or 'none'}), which train.caption_neighbours "
                            "needs; allowed: collect the dataset again with the default caption forms "
                            "(`pokemon-diffusion collect`, then `embed`), or caption_neighbours 0")
        desc_rows.append(forms.index(DESCRIPTION_FORM))
        colours.append(entry.all_captions[forms.index(COLOUR_FORM)])
    return desc_rows, colours


def neighbour_indices(examples, train_indices: Sequence[int], k: int) -> List[List[int]]:
    """For each of ``train_indices``, up to ``k`` other training images (indices into ``examples``):
    the nearest by description embedding among those with the same colour caption, another
    Pokémon (a different Pokédex number or name) and a different description text; ties keep
    the dataset order."""
    train = [int(i) for i in train_indices]
    return _nearest(examples, train, *_form_rows(examples, train), k)


def _nearest(examples, train: List[int], desc_rows: List[int], colours: List[str], k: int) -> List[List[int]]:
    from .dataset import pokemon_key

    vectors = np.stack([examples.caption_embeddings[i, r] for i, r in zip(train, desc_rows)]).astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    texts = [examples.entries[i].all_captions[r] for i, r in zip(train, desc_rows)]
    keys = [pokemon_key(examples.entries[i]) for i in train]
    similarity = vectors @ vectors.T
    out = []
    for a in range(len(train)):
        candidates = [b for b in range(len(train))
                      if colours[b] == colours[a] and keys[b] != keys[a] and texts[b] != texts[a]]
        candidates.sort(key=lambda b: -similarity[a, b])  # stable: equal similarities keep the dataset order
        out.append([train[b] for b in candidates[:k]])
    return out


def add_neighbour_captions(examples, train_indices: Sequence[int], k: int):
    """``examples`` with each training image's neighbour descriptions appended to its captions.

    Args:
        examples: ``dataset.Examples`` with several captions per image (tagged with their forms).
        train_indices: the training side of the split; only these images get rows, only from each other.
        k: neighbours per image (0: ``examples`` unchanged).

    Returns:
        A new ``Examples``: ``caption_embeddings`` (N, K0 + k, dim) padded as before, ``caption_counts``
        and each entry's ``captions`` / ``caption_forms`` extended (the entries are copies).

    Raises:
        DataError: one caption per image, or captions without the description and colour forms.
    """
    if k <= 0:
        return examples
    if examples.caption_embeddings is None:
        raise DataError("train.caption_neighbours needs several captions per image (their 'description' and "
                        "'colour' forms); this dataset has one; allowed: collect it again (`pokemon-diffusion "
                        "collect`, then `embed`), or caption_neighbours 0")
    from .dataset import stack_caption_embeddings

    train = [int(i) for i in train_indices]
    desc_rows, colours = _form_rows(examples, train)
    row_of = dict(zip(train, desc_rows))
    rows = [examples.caption_embeddings[i, :examples.caption_counts[i]] for i in range(len(examples))]
    entries = list(examples.entries)
    for i, near in zip(train, _nearest(examples, train, desc_rows, colours, k)):
        if not near:
            continue
        rows[i] = np.concatenate([rows[i]] + [examples.caption_embeddings[j, row_of[j]][None] for j in near])
        entry = entries[i]
        entries[i] = dataclasses.replace(
            entry, captions=entry.all_captions + [examples.entries[j].all_captions[row_of[j]] for j in near],
            caption_forms=list(entry.all_caption_forms) + [NEIGHBOUR_FORM] * len(near))
    added = [len(r) - int(examples.caption_counts[i]) for i, r in enumerate(rows)]
    logger.info("caption_neighbours %d: %d neighbour descriptions added to %d of %d training images (the others "
                "have no other training Pokémon of their colours)", k, sum(added), sum(a > 0 for a in added), len(train))
    embeddings, counts = stack_caption_embeddings(rows)
    return dataclasses.replace(examples, entries=entries, caption_embeddings=embeddings, caption_counts=counts)
