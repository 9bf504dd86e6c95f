"""Regenerate the pictures in docs/RESULTS.md from the shipped reference model.

    .venv/bin/python docs/make_figures.py [--run runs/reference] [--model DIR] [--prefix NAME] [--data DIR]

Writes docs/images/reference_*.png (seeded: the same model gives the same pictures). ``--run``
adds the training curve of the run the model came from (its metrics.jsonl). ``--model`` draws
from another pretrained folder or run folder (default: the shipped model) and ``--prefix``
renames the files (e.g. ``previous_reference`` keeps the old model's pictures for a side-by-side).
The variety figure shows free descriptions from four seeds with condition annealing off and on.
``--data`` adds the reconstruction figure: 8 held-out images noised to 1/4, 1/2 and 3/4 of T and
denoised back (``evaluation/reconstruction.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np

from pokemon_diffusion.config import SampleConfig
from pokemon_diffusion.demo import DEMO_PROMPTS
from pokemon_diffusion.generate import encode_prompts, generate, save_outputs
from pokemon_diffusion.logging_utils import setup_logging
from pokemon_diffusion.pretrained import load_pretrained
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.viz import plot_samples, plot_training_curves, save_figure

IMAGES = Path(__file__).resolve().parent / "images"
GUIDANCE_PROMPTS = ("Charmander, a Fire-type Pokémon", "a blue water turtle Pokémon")
GUIDANCE_SCALES = (0.0, 1.0, 3.0, 6.0)
#: Pokémon of the prompt-form figure (training split of the reference's seed-0 split) and the forms shown.
#: Free descriptions of the variety figure: seeds without and with condition annealing (CADS).
VARIETY_PROMPTS = ("a cute yellow electric mouse", "a small blue Water-type Pokémon", "a large red Fire-type Pokémon")
FORM_POKEMON = (("Pikachu", "Electric"), ("Charizard", "Fire/Flying"), ("Bulbasaur", "Grass/Poison"),
                ("Squirtle", "Water"), ("Gengar", "Ghost/Poison"), ("Jigglypuff", "Normal/Fairy"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="the training run folder (for the loss curve)")
    parser.add_argument("--model", type=Path, help="a pretrained or run folder to draw from (default: the shipped one)")
    parser.add_argument("--prefix", default="reference", help="file name prefix under docs/images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="the run's dataset folder (for the reconstruction figure)")
    args = parser.parse_args()
    setup_logging(0)
    IMAGES.mkdir(parents=True, exist_ok=True)
    run = load_run(args.model) if args.model else load_pretrained()
    name = args.prefix
    config = SampleConfig(seed=args.seed)

    # 1. four samples for each demo prompt (4 dataset captions, 4 new descriptions)
    result, labels = generate(run, list(DEMO_PROMPTS), num=4, config=config)
    save_outputs(result, labels, IMAGES / f"{name}_samples.png")
    logging.info("4 x %d samples in %.1f s", len(DEMO_PROMPTS), result.seconds)

    # 2. the denoising steps of one sample per prompt
    result, labels = generate(run, list(DEMO_PROMPTS), num=1, config=dataclasses.replace(config, num_intermediates=8))
    save_outputs(result, labels, IMAGES / f"{name}_one_each.png", steps_figure=IMAGES / f"{name}_denoising.png")

    # 3. the same noise under increasing classifier-free guidance
    embeddings = encode_prompts(run, GUIDANCE_PROMPTS)
    images, captions = [], []
    for prompt, embedding in zip(GUIDANCE_PROMPTS, embeddings):
        for w in GUIDANCE_SCALES:
            res, _ = generate(run, [prompt], num=2, embeddings=embedding[None],
                              config=dataclasses.replace(config, guidance_scale=w))
            images.append(res.images)
            captions += [f"w={w:g}: {prompt}"] * 2
    save_figure(plot_samples(np.concatenate(images), captions, ncols=8), IMAGES / f"{name}_guidance.png")

    # 4. what people type: each Pokémon by name (as typed and enriched), the example form, the
    #    dataset caption and the description without the name; the same seed everywhere
    save_figure(forms_figure(run, config), IMAGES / f"{name}_forms.png")

    # 5. variety: four seeds of free descriptions, condition annealing off and at the default
    save_figure(variety_figure(run, config), IMAGES / f"{name}_variety.png")

    if args.data:
        save_figure(reconstruction_figure(run, args.data, args.seed), IMAGES / f"{name}_reconstruction.png")
    if args.run:
        save_figure(plot_training_curves(args.run), IMAGES / f"{name}_training_curve.png")
    logging.info("wrote %s", ", ".join(sorted(p.name for p in IMAGES.glob(f"{name}_*.png"))))


def forms_figure(run, config: SampleConfig):
    """Rows: FORM_POKEMON; columns: name, name enriched, 'NAME, a TYPE-type Pokémon' as typed and
    enriched, the run's caption (the enriched name), the caption without the name; two seeds each."""
    images, captions = [], []
    for pokemon, types in FORM_POKEMON:
        known = run.name_table.find(pokemon)[0] if run.name_table else None
        caption, description = (known.caption, known.description) if known else (pokemon, pokemon)
        article = "an" if types[0] in "AEIOU" else "a"
        example = f"{pokemon}, {article} {types}-type Pokémon"
        for prompt, enrich, label in ((pokemon, False, "name"), (pokemon, True, "name, enriched"),
                                      (example, False, "example form"), (description, False, "description")):
            res, _ = generate(run, [prompt], num=2, config=dataclasses.replace(config, enrich=enrich))
            images.append(res.images)
            captions += [f"{label}: {prompt if not enrich else caption}"] * 2
    return plot_samples(np.concatenate(images), captions, ncols=8)


def variety_figure(run, config: SampleConfig, seeds: int = 4):
    """Rows: VARIETY_PROMPTS with condition annealing off, then at the default strength; ``seeds`` images each."""
    images, captions = [], []
    for prompt in VARIETY_PROMPTS:
        for strength in (0.0, SampleConfig().cads_strength):
            res, _ = generate(run, [prompt], num=seeds, config=dataclasses.replace(config, cads_strength=strength))
            images.append(res.images)
            captions += [f"CADS {strength:g}: {prompt}"] * seeds
    return plot_samples(np.concatenate(images), captions, ncols=2 * seeds)


def reconstruction_figure(run, data_dir: Path, seed: int, count: int = 8):
    """Rows: held-out originals, then each rebuilt from 1/4, 1/2 and 3/4 of T (w = 1, DDIM-20)."""
    from pokemon_diffusion.data.dataset import split_by_pokemon
    from pokemon_diffusion.diffusion.reconstruct import reconstruct
    from pokemon_diffusion.evaluation.eval_data import load_eval_data
    from pokemon_diffusion.evaluation.reconstruction import LEVEL_FRACTIONS, STEPS

    data = load_eval_data(data_dir, run.config.model.image_size)
    _, val_idx = split_by_pokemon(data.entries, run.config.train.val_fraction, run.config.train.seed)
    idx = np.asarray(val_idx[:count])
    rows, captions = [data.images[idx]], [f"held out: {data.names[i]}" for i in idx]
    for fraction in LEVEL_FRACTIONS:
        level = int(round(fraction * (run.schedule.timesteps - 1)))
        rows.append(reconstruct(run.model, data.images[idx], data.embeddings[idx], level, schedule=run.schedule,
                                steps=STEPS, seed=seed))
        captions += [f"from t={level}"] * len(idx)
    return plot_samples(np.concatenate(rows), captions, ncols=len(idx))


if __name__ == "__main__":
    main()
