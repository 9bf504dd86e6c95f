"""Colour prompt-following, the attribute test of GenEval (Ghosh et al. 2023) for one attribute.

For each of the 11 basic colour terms the model draws ``"a {colour} Pokémon"`` with several seeds;
a sample follows its prompt when its main figure colour (:func:`collection.captions.main_colours`,
the same function that writes the training captions) is the prompted colour. Two chance levels
go with the score:

* ``chance_uniform`` = 1/K for K prompted colours: a sample whose colour ignores the prompt;
* ``chance_shuffled`` = Σ_c p(prompt c) · p(sample's colour is c): the score the same samples would
  get with their prompts shuffled (= 1/K for balanced prompts; for the top-2 score it depends on
  how often samples name two colours).

Pure NumPy (and the captions module); the sampling is evaluate.py's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from ..collection.captions import BASIC_COLOURS, main_colours

COLOUR_PROMPT = "a {colour} Pokémon"


def colour_prompts(colours: Sequence[str] = BASIC_COLOURS, seeds: int = 4,
                   template: str = COLOUR_PROMPT) -> List[str]:
    """Each colour's prompt ``seeds`` times in a row, e.g. ``["a black Pokémon", "a black Pokémon", ...]``.

    Raises:
        ValueError: an unknown colour, or ``seeds`` < 1.
    """
    unknown = [c for c in colours if c not in BASIC_COLOURS]
    if unknown or seeds < 1:
        raise ValueError(f"colour_prompts: got colours {unknown or list(colours)} and seeds {seeds}; allowed: "
                         f"colours from {', '.join(BASIC_COLOURS)} and seeds >= 1")
    return [template.format(colour=c) for c in colours for _ in range(seeds)]


def colour_following(images_uint8: np.ndarray, prompted: Sequence[str]) -> Dict[str, Any]:
    """How often each sample's main colour is the colour its prompt asked for.

    Args:
        images_uint8: (N, H, W, 3) uint8 samples (white background, as the model draws them).
        prompted: the colour each sample was prompted with (N names from ``BASIC_COLOURS``).

    Returns:
        ``accuracy`` (first main colour = prompted), ``accuracy_top2`` (prompted among the one or two
        main colours), ``chance_uniform``, ``chance_shuffled`` and ``chance_shuffled_top2`` (see the
        module docstring), ``per_colour`` (accuracy per prompted colour), ``drawn`` (per prompted
        colour, how many samples got each first colour) and ``num_samples``.

    Raises:
        ValueError: lengths differ or no sample.
    """
    images = np.asarray(images_uint8)
    prompted = list(prompted)
    if images.ndim != 4 or images.shape[0] != len(prompted) or not prompted:
        raise ValueError(f"colour_following: got images of shape {images.shape} for {len(prompted)} prompts; "
                         "allowed: (N, H, W, 3) uint8 with N = number of prompts >= 1")
    named = [main_colours(image) for image in images]
    first = np.array([n[0] for n in named], dtype=object)
    want = np.array(prompted, dtype=object)
    hits = first == want
    hits2 = np.array([p in n for p, n in zip(prompted, named)])
    colours = sorted(set(prompted), key=BASIC_COLOURS.index)
    p_prompt = {c: float(np.mean(want == c)) for c in colours}
    return {
        "accuracy": float(hits.mean()),
        "accuracy_top2": float(hits2.mean()),
        "chance_uniform": 1.0 / len(colours),
        "chance_shuffled": float(sum(p * np.mean(first == c) for c, p in p_prompt.items())),
        "chance_shuffled_top2": float(sum(p * np.mean([c in n for n in named]) for c, p in p_prompt.items())),
        "per_colour": {c: float(hits[want == c].mean()) for c in colours},
        "drawn": {c: _counts(first[want == c]) for c in colours},
        "num_samples": len(prompted),
    }


def _counts(names: np.ndarray) -> Dict[str, int]:
    values, counts = np.unique(names.astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {str(values[i]): int(counts[i]) for i in order}
