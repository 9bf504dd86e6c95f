"""Prompt-form robustness: does the model follow what people type, not only its caption template?

For Pokémon of the training split and held-out ones (``split_by_pokemon``), each prompt form

* ``name``: "Pikachu";
* ``example``: "Pikachu, an Electric-type Pokémon" (the README's and the app's example form);
* ``caption``: the dataset's caption, "Pikachu, a small yellow Electric-type Pokémon";
* ``description``: the caption without the name, "a small yellow Electric-type Pokémon";

is encoded with the run's encoder and sampled with several seeds, as typed and after prompt
enrichment (``prompts.py``, what users get by default; it rewrites ``name`` and ``example`` to the
caption), so a model that cannot follow names on its own is not hidden by the rewrite. Each
sample is scored by

* ``colour``: the Pokémon's main colour (the first of ``captions.main_colours`` of its real image at
  the run's size) is one of the sample's main colours; ``chance`` is the same for a random Pokémon;
* ``top1`` / ``top_k``: the prompted Pokémon is the nearest / among the k nearest real images in
  the pixel feature space (``evaluate.conditioning_accuracy``, its chance level alongside);
* ``variety``: ``variety.variety_report`` of each prompt's seeds (0: every seed the same picture).

Figures are pooled over seeds; ``*_se`` is the standard error over Pokémon (seeds of one prompt
are not independent draws), so two figures differ beyond noise when they differ by about 2 SE.
Run it alone with ``python -m pokemon_diffusion.evaluation.prompt_forms RUN --data DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..collection.captions import main_colours, make_caption
from ..prompts import NameTable, enrich_prompt, name_free_description

log = logging.getLogger(__name__)

FORMS = ("name", "example", "caption", "description")
POKEMON_PER_SPLIT = 8  # evaluate's default (--prompt-forms)
SEEDS = 3  # images per prompt (--prompt-form-seeds)
ENRICHED = ("name", "example")  # the forms enrichment rewrites (the others already describe the picture)


def form_prompts(entry) -> Dict[str, str]:
    """The four prompt forms of one dataset entry."""
    name = f"{entry.name} ({entry.form})" if entry.form else entry.name
    return {"name": name,
            "example": make_caption(entry.name, entry.types, entry.form, template="plain"),
            "caption": entry.caption,
            "description": name_free_description(entry)}


def choose_pokemon(entries: Sequence[Any], train_idx: Sequence[int], val_idx: Sequence[int], num: int,
                   seed: int) -> Dict[str, np.ndarray]:
    """Up to ``num`` entries per split, one per Pokémon name, base forms first, seeded."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, pool in (("train", train_idx), ("heldout", val_idx)):
        seen, chosen = set(), []
        for i in sorted(pool, key=lambda i: (entries[i].form is not None, i)):
            if entries[i].name not in seen:
                seen.add(entries[i].name)
                chosen.append(i)
        chosen = np.asarray(chosen, np.int64)
        out[split] = np.sort(rng.choice(chosen, min(num, chosen.size), replace=False)) if chosen.size else chosen
    return out


def colour_hits(samples_uint8: np.ndarray, wanted: Sequence[str], all_colours: Sequence[str]):
    """Per sample: the wanted colour is among its main colours; and the chance of that for a random Pokémon."""
    hits, chance = [], []
    palette = np.asarray(all_colours, dtype=object)
    for image, colour in zip(samples_uint8, wanted):
        have = set(main_colours(image))
        hits.append(colour in have)
        chance.append(float(np.mean([c in have for c in palette])))
    return np.asarray(hits, bool), float(np.mean(chance)) if chance else float("nan")


def _pooled(values: np.ndarray, groups: np.ndarray) -> Dict[str, float]:
    """Mean of per-sample values, and its standard error over groups (Pokémon)."""
    means = np.asarray([values[groups == g].mean() for g in np.unique(groups)], np.float64)
    se = float(means.std(ddof=1) / np.sqrt(means.size)) if means.size > 1 else float("nan")
    return {"mean": float(values.mean()), "se": se}


def prompt_form_report(loaded, data, train_idx: Sequence[int], val_idx: Sequence[int], *,
                       encode: Callable[[List[str]], np.ndarray], generate: Callable[..., np.ndarray],
                       num_pokemon: int = POKEMON_PER_SPLIT, seeds: int = SEEDS, seed: int = 0, k: int = 5,
                       table: Optional[NameTable] = None) -> Dict[str, Any]:
    """The ``prompt_forms`` entry of the evaluation report (see the module docstring).

    Args:
        loaded: the run (``load_run``); its name table enriches unless ``table`` is given.
        data: the run's dataset at its image size: ``entries`` and float ``images`` in [-1, 1]
            (``eval_data.EvalData``).
        train_idx, val_idx: the run's split of ``data``.
        encode: texts -> (N, dim) embeddings with the run's encoder.
        generate: ``(embeddings, seed=..., texts=...) -> images in [-1, 1]``, one per row, ``texts`` the
            row's prompt (for per-prompt settings: ``generate.prompt_annealing``; the rest bound).
        num_pokemon: Pokémon per split; seeds: images per prompt (2 or more, for variety).
    """
    from . import features as feats
    from .conditioning import nearest_neighbour_accuracy
    from .variety import variety_report

    if seeds < 2:
        raise ValueError(f"seeds: got {seeds}; allowed: 2 or more")
    table = table if table is not None else loaded.name_table
    real_uint8 = feats.to_uint8(data.images)
    real_colours = [main_colours(image)[0] for image in real_uint8]
    real_features = feats.pixel_features(data.images)
    names = np.asarray([e.name for e in data.entries], dtype=object)
    types = [list(e.types) for e in data.entries]
    chosen = choose_pokemon(data.entries, train_idx, val_idx, num_pokemon, seed)
    # every (split, form, enriched) variant's texts; identical texts are sampled once
    variants: Dict[tuple, List[str]] = {}
    for split, index in chosen.items():
        prompts = [form_prompts(data.entries[i]) for i in index]
        for form in FORMS:
            typed = [p[form] for p in prompts]
            variants[(split, form, False)] = typed
            if form in ENRICHED and table is not None:
                variants[(split, form, True)] = [enrich_prompt(t, table).text for t in typed]
    texts = list(dict.fromkeys(t for group in variants.values() for t in group))
    log.info("prompt forms: %d distinct prompts x %d seeds", len(texts), seeds)
    images = feats.to_uint8(generate(np.repeat(encode(texts), seeds, axis=0), seed=seed,
                                     texts=[t for t in texts for _ in range(seeds)]))
    features = feats.pixel_features(images.astype(np.float32) / 127.5 - 1.0)
    row = {t: i for i, t in enumerate(texts)}
    out: Dict[str, Any] = {"forms": list(FORMS), "seeds": seeds, "k": k, "enrichment": table is not None,
                           "pokemon": {s: [data.entries[i].name for i in idx] for s, idx in chosen.items()},
                           "results": []}
    for (split, form, enriched), group in variants.items():
        index = chosen[split]
        if not index.size:
            continue
        rows = np.concatenate([np.arange(row[t] * seeds, (row[t] + 1) * seeds) for t in group])
        prompted = np.repeat(index, seeds)
        hits, chance = colour_hits(images[rows], [real_colours[i] for i in prompted], real_colours)
        # nearest real images in the pixel feature space, as evaluate's conditioning figures
        identity = nearest_neighbour_accuracy(features[rows], real_features, prompted, types,
                                              real_labels=list(names), k=k)  # one search: hits and chance
        near = names[identity["neighbours"]]
        top1 = (near[:, 0] == names[prompted]).astype(np.float64)
        topk = np.any(near == names[prompted][:, None], axis=1).astype(np.float64)
        variety = variety_report(images[rows], seeds, real_uint8, seed=seed)
        out["results"].append({
            "split": split, "form": form, "enriched": enriched, "example": group[0], "num_samples": int(rows.size),
            "colour": _pooled(hits.astype(np.float64), prompted), "colour_chance": chance,
            "top1": _pooled(top1, prompted), "top_k": _pooled(topk, prompted),
            "identity_chance": identity["chance"], "variety_ratio": variety["ratio"]})
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pokemon_diffusion.evaluation.prompt_forms RUN --data DIR [--out REPORT.json]``."""
    from types import SimpleNamespace

    from ..cli_args import add_seed_argument, add_variety_arguments, float_range, int_range, variety_options
    from ..config import SampleConfig
    from ..data.dataset import load_examples, split_by_pokemon
    from ..generate import encode_prompts, prompt_annealing
    from ..pretrained import load_pretrained
    from ..run_dir import load_run
    from .eval_data import check_dataset_encoder
    from .samples import generate_from_embeddings

    parser = argparse.ArgumentParser(prog="python -m pokemon_diffusion.evaluation.prompt_forms",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run folder, or 'reference' for the shipped model")
    parser.add_argument("--data", required=True, help="the dataset the run was trained on")
    parser.add_argument("--pokemon", type=int_range(1, 10_000), default=POKEMON_PER_SPLIT,
                        help="Pokémon per split (default %(default)s)")
    parser.add_argument("--seeds", type=int_range(2, 64), default=SEEDS, help="images per prompt (default %(default)s)")
    add_seed_argument(parser, default=0, help="the first image's seed (default %(default)s)")
    parser.add_argument("--steps", type=int_range(1, 1000), default=50, help="DDIM steps (default 50)")
    parser.add_argument("--guidance", type=float_range(0.0, 100.0), default=3.0, help="guidance scale (default 3)")
    add_variety_arguments(parser)
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    options = SampleConfig(**variety_options(args))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    loaded = load_pretrained() if args.run == "reference" else load_run(args.run)
    check_dataset_encoder(args.data, loaded.encoder)
    size = loaded.config.model.image_size
    examples = load_examples(args.data, (size, size))
    data = SimpleNamespace(entries=examples.entries, images=examples.images)
    train_idx, val_idx = split_by_pokemon(data.entries, loaded.config.train.val_fraction, loaded.config.train.seed)
    report = prompt_form_report(
        loaded, data, train_idx, val_idx, encode=lambda texts: encode_prompts(loaded, texts),
        generate=lambda emb, seed, texts: generate_from_embeddings(
            loaded, emb, steps=args.steps, guidance_scale=args.guidance, seed=seed,
            annealing=prompt_annealing(loaded, texts, options), guidance_interval=options.guidance_interval),
        num_pokemon=args.pokemon, seeds=args.seeds, seed=args.seed)
    report.update(run=args.run, data=args.data, steps=args.steps, guidance=args.guidance, cads=args.cads,
                  cads_range=",".join(map(str, args.cads_range)), cads_names=args.cads_names,
                  guidance_interval=args.guidance_interval)
    from .report import format_prompt_forms

    print(format_prompt_forms(report))
    if args.out:
        from ..atomic import atomic_write_text
        from .report import jsonable

        atomic_write_text(args.out, json.dumps(jsonable(report), indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
