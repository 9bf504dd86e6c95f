"""`pokemon-diffusion sample`: generate Pokémon from text prompts with a trained run.

Example::

    pokemon-diffusion sample --run runs/demo --prompt "a fire-type dragon Pokémon" --num 4 \\
        --sampler ddim --steps 50 --guidance 3 --seed 0 --out samples.png \\
        --steps-figure steps.png --gif denoising.gif
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..config import SAMPLERS, SampleConfig
from ..errors import ConfigError, EncoderError
from ._args import choice_help, float_range, int_range

log = logging.getLogger(__name__)

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
MAX_IMAGES = 256  # per call: prompts x --num; beyond this, memory and time are the user's surprise


def _suffix_path(suffixes):
    """argparse type: a file path ending in one of ``suffixes``."""

    def parse(text: str) -> Path:
        if Path(text).suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a file name ending in "
                                             f"{' | '.join(suffixes)}")
        return Path(text)

    parse.__name__ = "file name"
    return parse


def _prompt(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a non-empty prompt")
    return text.strip()


def add_parser(subparsers):
    defaults = SampleConfig()
    parser = subparsers.add_parser(
        "sample", help="generate images from text prompts with a trained run",
        description="Generate images from text prompts with a trained run's EMA model and noise "
                    "schedule, with DDIM or DDPM and classifier-free guidance; write a captioned "
                    "grid, optionally the denoising steps (figure and GIF).")
    parser.add_argument("--run", required=True, metavar="RUN", help="run folder written by `train`")
    parser.add_argument("--prompt", required=True, action="append", type=_prompt, metavar="TEXT",
                        help="text prompt; repeat for several prompts")
    parser.add_argument("--num", type=int_range(1, MAX_IMAGES), default=1, metavar="N",
                        help="images per prompt (default: %(default)s)")
    parser.add_argument("--sampler", choices=SAMPLERS, default=defaults.sampler,
                        help=f"{choice_help(SAMPLERS)} (default: %(default)s)")
    parser.add_argument("--steps", type=int_range(1, 10_000), default=None, metavar="N",
                        help=f"DDIM steps (default: {defaults.steps}, at most the run's T); DDPM always "
                             "runs all T steps")
    parser.add_argument("--guidance", type=float_range(0.0, 50.0), default=defaults.guidance_scale,
                        metavar="W", help="classifier-free guidance weight: 1 = conditional only, "
                                          "0 = unconditional (default: %(default)s)")
    parser.add_argument("--eta", type=float_range(0.0, 1.0), default=None, metavar="X",
                        help="DDIM eta: 0 deterministic ... 1 stochastic (default: 0)")
    parser.add_argument("--seed", type=int_range(0, 2**31 - 1), default=None, metavar="S",
                        help="random seed; the same seed gives the same images (default: random, logged)")
    parser.add_argument("--intermediates", type=int_range(2, 1000), default=defaults.num_intermediates,
                        metavar="K", help="denoising steps kept for --steps-figure/--gif (default: %(default)s)")
    parser.add_argument("--no-clip", action="store_true",
                        help="do not clip each step's estimate of the clean image to [-1, 1]")
    parser.add_argument("--out", required=True, type=_suffix_path(FIGURE_SUFFIXES), metavar="FILE.png",
                        help="captioned grid of the generated images")
    parser.add_argument("--steps-figure", type=_suffix_path(FIGURE_SUFFIXES), metavar="FILE.png",
                        help="also write the denoising steps (rows = images, columns = t)")
    parser.add_argument("--gif", type=_suffix_path((".gif",)), metavar="FILE.gif",
                        help="also write the denoising as an animated GIF")
    parser.add_argument("--text-encoder", metavar="SPEC", default=None,
                        help="where to load the run's text encoder from (default: the identity saved in "
                             "RUN/encoder.json); it must be the same encoder (identity and size)")
    parser.set_defaults(func=run)
    return parser


def _load_encoder(expected, spec):
    """The run's text encoder, loaded from ``spec`` (None = the identity in RUN/encoder.json).

    ``load_encoder_matching`` refuses a spec naming another encoder before loading anything.
    """
    from ..data.text import load_encoder_matching

    return load_encoder_matching(expected, spec)


def _sample_config(args, timesteps: int) -> SampleConfig:
    """Check the flags against each other and the run's T; ConfigError names the flag."""
    if args.sampler == "ddpm":
        if args.steps is not None and args.steps != timesteps:
            raise ConfigError(f"--steps {args.steps}: ddpm runs all T = {timesteps} steps of the run's "
                              "schedule; use --sampler ddim for fewer steps")
        if args.eta is not None:
            raise ConfigError(f"--eta {args.eta}: eta applies to --sampler ddim only")
        steps = timesteps
    else:
        steps = min(SampleConfig().steps, timesteps) if args.steps is None else args.steps
        if steps > timesteps:
            raise ConfigError(f"--steps {steps}: allowed: 1 to the run's T = {timesteps}")
    return SampleConfig(sampler=args.sampler, steps=steps, guidance_scale=args.guidance,
                        eta=0.0 if args.eta is None else args.eta, num_intermediates=args.intermediates,
                        clip_x0=not args.no_clip, seed=args.seed)


def _encode(encoder, prompts, dim: int):
    import numpy as np

    embeddings = np.asarray(encoder.encode(list(prompts)), dtype=np.float32)
    if embeddings.shape != (len(prompts), dim):
        raise EncoderError(f"text encoder {encoder.name!r} returned shape {embeddings.shape} for "
                           f"{len(prompts)} prompts; expected ({len(prompts)}, {dim})")
    return embeddings


def run(args) -> int:
    from ..diffusion.samplers import sample
    from ..run_dir import load_run
    from ..viz import plot_denoising_steps, plot_samples, save_denoising_gif, save_figure

    prompts = list(args.prompt)
    if len(prompts) * args.num > MAX_IMAGES:
        raise ConfigError(f"{len(prompts)} prompts x --num {args.num} = {len(prompts) * args.num} images; "
                          f"allowed: at most {MAX_IMAGES} per call")
    # 1. the run (EMA model, schedule) and the flags checked against it
    loaded = load_run(args.run)
    config = _sample_config(args, loaded.config.diffusion.timesteps)
    model_config = loaded.config.model

    # 2. the run's text encoder, identity and size checked before any sampling
    encoder = _load_encoder(loaded.encoder, args.text_encoder)
    loaded.encoder.check(encoder.name, int(encoder.dim), what=f"text encoder {encoder.name!r}")
    embeddings = _encode(encoder, prompts, loaded.encoder.dim)

    # 3. sample: each prompt's embedding is repeated for its --num images (prompt-major)
    shape = (len(prompts) * args.num, model_config.image_size, model_config.image_size, model_config.channels)
    log.info("sampling %d image(s) of %dx%d with %s, %d steps, guidance %g", shape[0], shape[1], shape[2],
             config.sampler, config.steps, config.guidance_scale)
    result = sample(loaded.model, embeddings, shape, schedule=loaded.schedule, sampler=config.sampler,
                    steps=config.steps, eta=config.eta, guidance_scale=config.guidance_scale,
                    seed=config.seed, num_intermediates=config.num_intermediates, clip_x0=config.clip_x0)
    log.info("sampled in %.1f s (%.2f s per image); seed %d (pass --seed %d to repeat)", result.seconds,
             result.seconds / shape[0], result.seed, result.seed)

    # 4. the files, each written atomically
    written = [save_figure(plot_samples(result.images, prompts), args.out)]
    if args.steps_figure:
        written.append(save_figure(plot_denoising_steps(result, prompts=prompts), args.steps_figure))
    if args.gif:
        written.append(save_denoising_gif(result, args.gif))
    for path in written:
        log.info("wrote %s", path)
    return 0
