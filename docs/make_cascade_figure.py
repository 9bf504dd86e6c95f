"""The cascade picture of docs/RESULTS.md: base sample ×4 bicubic | the cascade's output, same prompt and seed.

    .venv/bin/python docs/make_cascade_figure.py [--run CASCADE] [--prefix cascade] [--seed 0]

For each prompt (``demo.DEMO_PROMPTS``, enriched as users get them; one row) and ``--num`` seeds: the base
model's 32×32 sample (pixel repetition), the same sample bicubic-upsampled to the cascade's size,
and the cascade's output (the same base sample, then its stages); prints how well the output
area-downsampled keeps the base sample (PSNR: the base's colour and identity carry over). Writes
``docs/images/<prefix>_vs_bicubic.png``. ``--run`` is a cascade folder (``cascade.json``; default
the shipped model).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np

from pokemon_diffusion.config import SampleConfig
from pokemon_diffusion.data.pairs import upsample
from pokemon_diffusion.demo import DEMO_PROMPTS
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.evaluation.upsampler import area_down, psnr
from pokemon_diffusion.generate import generate
from pokemon_diffusion.logging_utils import setup_logging
from pokemon_diffusion.pretrained import load_pretrained
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.viz import plot_samples, save_figure

IMAGES = Path(__file__).resolve().parent / "images"


def cascade_figure(run, prompts, config: SampleConfig, num: int):
    """Rows of (base ×4 nearest, base ×4 bicubic, cascade) for each prompt and seed."""
    sizes = list(getattr(run, "sizes", []))
    if len(sizes) < 2:
        raise ConfigError("cascade_figure: the run is not a cascade; allowed: a folder with cascade.json")
    top = sizes[-1]
    images, captions, kept = [], [], []
    for prompt in prompts:
        base, labels = generate(run, [prompt], num=num, config=config, size=sizes[0])
        full, _ = generate(run, [prompt], num=num, config=config, size=top)
        factor = top // sizes[0]
        nearest = np.repeat(np.repeat(base.images, factor, axis=1), factor, axis=2)
        bicubic = np.clip(np.asarray(upsample(base.images, top)), -1.0, 1.0)
        kept.append(psnr_per_image(area_down(full.images, sizes[0]), base.images))
        for i in range(num):
            images += [nearest[i], bicubic[i], full.images[i]]
            captions += [f"{labels[i]} ({sizes[0]}²)", f"×{factor} bicubic", f"cascade {top}²"]
    kept = np.concatenate(kept)
    print(f"the cascade's output area-downsampled to {sizes[0]}² against the base sample: PSNR median "
          f"{np.median(kept):.1f} dB, min {kept.min():.1f} dB over {len(kept)} images")
    return plot_samples(np.stack(images), captions, ncols=3 * num)


def psnr_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR (dB, data range 2) of each image pair."""
    return np.array([psnr(x[None], y[None]) for x, y in zip(a, b)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a cascade folder (default: the shipped model)")
    parser.add_argument("--prefix", default="cascade", help="file name prefix under docs/images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num", type=int, default=1, help="seeds per prompt")
    parser.add_argument("--prompts", type=int, default=6, help="how many of the demo prompts")
    args = parser.parse_args()
    setup_logging(1)
    logging.getLogger("pokemon_diffusion").setLevel(logging.WARNING)
    run = load_run(args.run) if args.run else load_pretrained()
    config = dataclasses.replace(SampleConfig(), seed=args.seed)
    figure = cascade_figure(run, DEMO_PROMPTS[:args.prompts], config, args.num)
    print(save_figure(figure, IMAGES / f"{args.prefix}_vs_bicubic.png", dpi=110))


if __name__ == "__main__":
    main()
