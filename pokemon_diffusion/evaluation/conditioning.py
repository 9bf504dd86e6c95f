"""Conditioning accuracy: does a sample look like the Pokémon its caption names? Pure NumPy.

* :func:`nearest_neighbour_accuracy`: each sample's nearest real images (in some feature space)
  against the prompted entry: top-1 / top-k name hits, type agreement, and their chance levels.
* :func:`choose_split_prompts` and :func:`split_accuracy`: the same figures for captions of the
  training split and for held-out captions (whole Pokémon the run never saw, ``split_by_pokemon``),
  so memorising the training set and following an unseen caption are told apart.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

def as_features(features: np.ndarray, what: str, min_rows: int = 1) -> np.ndarray:
    """Check a 2-D (N, D) feature array and return it as float64."""
    arr = np.asarray(features)
    if arr.ndim != 2:
        raise ValueError(f"{what}: got an array of shape {arr.shape}; allowed: 2-D (num_samples, dim)")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{what}: got {arr.shape[0]} row(s); allowed: at least {min_rows}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: contains NaN or infinite values; allowed: finite numbers")
    return arr



_as_features = as_features

# -------------------------------------------------------------------- nearest-neighbour accuracy

def nearest_neighbours(queries: np.ndarray, references: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` nearest references (Euclidean) to each query, nearest first: (Q, k).

    Ties are broken by the lower reference index, so the result is deterministic.
    """
    q = _as_features(queries, "nearest_neighbours queries")
    r = _as_features(references, "nearest_neighbours references")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"nearest_neighbours: feature sizes differ ({q.shape[1]} vs {r.shape[1]}); "
                         "allowed: equal sizes")
    k = min(k, r.shape[0])
    # ‖q − r‖² = ‖q‖² − 2qᵀr + ‖r‖²; the ‖q‖² term does not change the ranking of a row
    dist = (r * r).sum(axis=1)[None, :] - 2.0 * q @ r.T
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def nearest_neighbour_accuracy(generated_features: np.ndarray, real_features: np.ndarray,
                               prompt_index: Sequence[int], real_types: Sequence[Sequence[str]], *,
                               real_labels: Optional[Sequence[str]] = None, k: int = 5) -> Dict[str, object]:
    """Conditioning accuracy: is each sample's nearest real image the Pokémon it was prompted with?

    Args:
        generated_features: (N, D) features of N samples.
        real_features: (R, D) features of the R real images.
        prompt_index: for each sample, the index (0 .. R−1) of the real entry whose caption prompted it.
        real_types: for each real image, its types (e.g. ``["Grass", "Poison"]``).
        real_labels: for each real image, who it shows (e.g. its name), so another image of the
            prompted Pokémon (a second form) also counts as a hit; default: the index itself.
        k: the "top-k" of ``top_k`` (5 gives top-5).

    Returns:
        A dict: ``top1`` / ``top_k`` (fractions of samples whose 1 / k nearest real images include
        the prompted Pokémon), ``type_exact`` (nearest image has exactly the prompted type set),
        ``type_overlap`` (shares at least one type), ``chance`` (the same four figures for a
        uniformly random real image, so the numbers can be read against luck), ``k``, ``num_samples``,
        ``num_real`` and ``neighbours`` ((N, k) indices, nearest first).

    Raises:
        ValueError: mismatched lengths or an index outside 0 .. R−1.
    """
    gen = _as_features(generated_features, "generated_features")
    real = _as_features(real_features, "real_features")
    num_real = real.shape[0]
    prompt = np.asarray(prompt_index, dtype=np.int64).reshape(-1)
    if prompt.shape[0] != gen.shape[0]:
        raise ValueError(f"prompt_index: got {prompt.shape[0]} indices for {gen.shape[0]} samples; "
                         "allowed: one per sample")
    if prompt.size and (prompt.min() < 0 or prompt.max() >= num_real):
        raise ValueError(f"prompt_index: got values from {prompt.min()} to {prompt.max()}; "
                         f"allowed: 0 to {num_real - 1}")
    if len(real_types) != num_real:
        raise ValueError(f"real_types: got {len(real_types)} for {num_real} real images; allowed: one each")
    labels = list(range(num_real)) if real_labels is None else list(real_labels)
    if len(labels) != num_real:
        raise ValueError(f"real_labels: got {len(labels)} for {num_real} real images; allowed: one each")
    if not 1 <= k:
        raise ValueError(f"k: got {k}; allowed: 1 or more")

    neighbours = nearest_neighbours(gen, real, k)
    type_sets = [frozenset(t) for t in real_types]
    label_arr = np.asarray([str(lab) for lab in labels], dtype=object)
    top1, topk, exact, overlap = [], [], [], []
    for sample, want in enumerate(prompt):
        near = neighbours[sample]
        top1.append(label_arr[near[0]] == label_arr[want])
        topk.append(bool(np.any(label_arr[near] == label_arr[want])))
        exact.append(type_sets[near[0]] == type_sets[want])
        overlap.append(bool(type_sets[near[0]] & type_sets[want]))
    return {
        "top1": _fraction(top1),
        "top_k": _fraction(topk),
        "type_exact": _fraction(exact),
        "type_overlap": _fraction(overlap),
        "chance": _chance_levels(prompt, label_arr, type_sets, neighbours.shape[1]),
        "k": int(neighbours.shape[1]),
        "num_samples": int(gen.shape[0]),
        "num_real": int(num_real),
        "neighbours": neighbours,
    }


def _fraction(hits: List[bool]) -> float:
    return float(np.mean(hits)) if hits else float("nan")


def _chance_levels(prompt: np.ndarray, labels: np.ndarray, type_sets: List[frozenset], k: int) -> Dict[str, float]:
    """Expected accuracies if each sample's neighbours were real images drawn uniformly at random.

    top-k uses draws without replacement: 1 − C(R − c, k) / C(R, k), c = images with the prompted label.
    """
    num_real = len(labels)
    top1, topk, exact, overlap = [], [], [], []
    for want in prompt:
        same = int(np.sum(labels == labels[want]))
        top1.append(same / num_real)
        miss = 1.0  # probability that k draws without replacement all miss the prompted label
        for j in range(k):
            miss *= max(num_real - same - j, 0) / (num_real - j)
        topk.append(1.0 - miss)
        exact.append(np.mean([s == type_sets[want] for s in type_sets]))
        overlap.append(np.mean([bool(s & type_sets[want]) for s in type_sets]))
    return {name: float(np.mean(v)) if v else float("nan")
            for name, v in (("top1", top1), ("top_k", topk), ("type_exact", exact), ("type_overlap", overlap))}


# -------------------------------------------------------------------- training vs held-out captions

def choose_split_prompts(train_index: Sequence[int], heldout_index: Sequence[int], num: int,
                         seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``num`` prompt entries, half from the held-out split (when there is one), seeded.

    Held-out Pokémon are few (5 % by default), so a uniform draw would give a handful; half and
    half gives both figures the same weight. Within a split the draw is distinct while possible (asked for
    more, every entry of the split once and the rest drawn again).

    Returns:
        ``(entry indices, held-out mask)``, sorted by entry index.

    Raises:
        ValueError: no entries at all.
    """
    train, held = np.asarray(train_index, np.int64), np.asarray(heldout_index, np.int64)
    if train.size + held.size == 0:
        raise ValueError("choose_split_prompts: no entries; allowed: at least one")
    num_held = num // 2 if held.size else 0
    if not train.size:
        num_held = num
    rng = np.random.default_rng(seed)
    chosen = []
    for pool, count in ((train, num - num_held), (held, num_held)):
        if count <= pool.size:
            chosen.append(pool[rng.choice(pool.size, count, replace=False)])
        else:  # more than the split holds: every entry once, the rest drawn again
            chosen += [pool, pool[rng.choice(pool.size, count - pool.size, replace=True)]]
    index = np.concatenate(chosen)
    mask = np.isin(index, held) if held.size else np.zeros(index.shape, bool)
    order = np.argsort(index, kind="stable")
    return index[order], mask[order]


def split_accuracy(generated_features: np.ndarray, real_features: np.ndarray, prompt_index: Sequence[int],
                   heldout: Sequence[bool], real_types: Sequence[Sequence[str]], *,
                   real_labels: Optional[Sequence[str]] = None, k: int = 5) -> Dict[str, Dict[str, object]]:
    """:func:`nearest_neighbour_accuracy` for the training-split and the held-out prompts separately.

    Returns:
        ``{"train": {...}, "heldout": {...}}``, each with ``top1``, ``top_k``, ``type_exact``,
        ``type_overlap``, ``chance`` and ``num_samples`` (``{"num_samples": 0}`` for an empty split).
    """
    prompt = np.asarray(prompt_index, np.int64)
    mask = np.asarray(heldout, bool)
    gen = np.asarray(generated_features)
    out: Dict[str, Dict[str, object]] = {}
    for name, rows in (("train", ~mask), ("heldout", mask)):
        if not rows.any():
            out[name] = {"num_samples": 0}
            continue
        result = nearest_neighbour_accuracy(gen[rows], real_features, prompt[rows], real_types,
                                            real_labels=real_labels, k=k)
        out[name] = {key: result[key] for key in ("top1", "top_k", "type_exact", "type_overlap", "chance",
                                                  "num_samples")}
    return out
