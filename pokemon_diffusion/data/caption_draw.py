"""Which caption embedding each stream element carries: the draw among an image's captions
(uniform, or weighted by caption form) and the optional embedding noise.

Both are stateless draws keyed by ``(seed XOR salt, stream position)``, so the stream is a
function of the seed alone and a resumed run gets the same captions and noise
(``dataset.make_dataset`` calls :func:`element_caption` per element; the JAX ``BatchStream`` makes
the same kinds of draws from NumPy generators).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..collection.metadata import Entry
from ..errors import DataError

#: XORed into the seed for the caption draws, so they are independent of the flips (same seed, same position).
CAPTION_DRAW_SALT = 0x5EED_CA97
#: XORed into the seed for the embedding noise (``TrainConfig.embedding_noise``).
EMBEDDING_NOISE_SALT = 0x0015_E0E5


def caption_draw_weights(entries: Sequence[Entry], caption_counts: Optional[np.ndarray],
                         weights: Dict[str, float]) -> Optional[np.ndarray]:
    """Cumulative draw probabilities ``(N, K)`` of each image's captions, from a weight per caption
    form (``TrainConfig.caption_weights``; forms not named weigh 1), for ``dataset.make_dataset``.

    Args:
        entries: the N metadata entries (their ``all_caption_forms`` tag each caption).
        caption_counts: ``Examples.caption_counts`` (None: one caption each).
        weights: form -> weight; empty means a uniform draw (returns None, the stream of before).

    Raises:
        DataError: an image whose captions have no form tags (collected before they existed), or
            whose captions all weigh 0.
    """
    if not weights or caption_counts is None:
        return None
    k = int(np.max(caption_counts))
    cumulative = np.ones((len(entries), k), dtype=np.float64)
    for i, (entry, count) in enumerate(zip(entries, caption_counts)):
        forms = entry.all_caption_forms
        if forms is None or len(forms) != count:
            raise DataError(f"{entry.image_path}: its captions have no form tags (caption_forms), so "
                            "train.caption_weights cannot weigh them; allowed: collect the dataset again "
                            "(`pokemon-diffusion collect`, then `embed`), or caption_weights {}")
        row = np.array([float(weights.get(form, 1.0)) for form in forms])
        if not row.sum() > 0:
            raise DataError(f"{entry.image_path}: train.caption_weights {weights!r} give all its captions "
                            f"({', '.join(forms)}) weight 0; allowed: at least one positive weight per image")
        cumulative[i, :count] = np.cumsum(row) / row.sum()
    return cumulative.astype(np.float32)


def element_caption(embedding: Any, index: Any, *, seed: int, several: bool, noise: float) -> Any:
    """The embedding one element carries (TensorFlow ops, inside ``tf.data``'s map).

    Args:
        embedding: ``(dim,)``; or, with ``several``, ``(rows (K, dim), count)`` plus the cumulative
            draw probabilities ``(K,)`` of :func:`caption_draw_weights` when the draw is weighted.
        index: the element's int64 stream position.
        seed: the stream's seed.
        several: one caption to draw among several.
        noise: ``TrainConfig.embedding_noise`` (0: none).
    """
    import tensorflow as tf

    if several:
        rows, count, *cumulative = embedding
        key = tf.stack([tf.constant(seed ^ CAPTION_DRAW_SALT, tf.int64), index])
        if cumulative:  # weighted: the first caption whose cumulative probability exceeds u
            u = tf.random.stateless_uniform([], seed=key)
            pick = tf.minimum(tf.reduce_sum(tf.cast(cumulative[0] <= u, tf.int32)), count - 1)
        else:
            pick = tf.random.stateless_uniform([], seed=key, minval=0, maxval=count, dtype=tf.int32)
        embedding = tf.gather(rows, pick)
    if noise:
        key = tf.stack([tf.constant(seed ^ EMBEDDING_NOISE_SALT, tf.int64), index])
        dim = embedding.shape[-1]
        scale = float(noise) * tf.norm(embedding) / float(dim) ** 0.5
        embedding = embedding + scale * tf.random.stateless_normal([dim], seed=key)
    return embedding
