"""`pokemon-diffusion sample`: generate Pokémon from text prompts with a trained run.

Example::

    pokemon-diffusion sample --run runs/demo --prompt "a fire-type dragon Pokémon" --num 4 \\
        --sampler ddim --steps 50 --guidance 3 --seed 0 --out samples.png \\
        --steps-figure steps.png --gif denoising.gif --negative-prompt "blurry, dark"
    pokemon-diffusion sample --prompt "a blue water turtle Pokémon" --init-image squirtle.png \
        --strength 0.6 --num 4 --out edits.png                      # image-to-image (SDEdit)
    pokemon-diffusion sample --prompt "Pikachu" --num 4 --out-dir pikachu/  # one PNG per image, with metadata
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..config import SampleConfig
from ..errors import ConfigError
from ..cli_args import (OnOffAuto, add_enrich_argument, add_sampler_arguments, add_seed_argument, add_variety_arguments,
                    float_range, int_range, suffix_path, variety_options)

log = logging.getLogger(__name__)

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
MAX_IMAGES = 256  # per call: prompts x --num; beyond this, memory and time are the user's surprise


def _prompt(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a non-empty prompt")
    return text.strip()


def _folder(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a folder name")
    return text


def add_parser(subparsers):
    defaults = SampleConfig()
    parser = subparsers.add_parser(
        "sample", help="generate images from text prompts with a trained run",
        description="Generate images from text prompts with a trained run's EMA model and noise "
                    "schedule, with DDIM or DDPM and classifier-free guidance; write a captioned "
                    "grid, optionally the denoising steps (figure and GIF).")
    parser.add_argument("--run", metavar="RUN", default=None,
                        help="run folder written by `train`, or a run on the Hugging Face Hub: "
                             "hf://OWNER/REPO[@REVISION] (downloaded once into the local cache) "
                             "(default: the shipped reference model)")
    parser.add_argument("--prompt", required=True, action="append", type=_prompt, metavar="TEXT",
                        help="text prompt; repeat for several prompts")
    parser.add_argument("--negative-prompt", type=_prompt, default=defaults.negative_prompt, metavar="TEXT",
                        help="what the images should not look like: its embedding (encoded as typed, never "
                             "enriched) replaces the null condition of guidance, so --guidance W steps away "
                             "from it; no effect at --guidance 1 (default: none, the null condition)")
    parser.add_argument("--num", type=int_range(1, MAX_IMAGES), default=1, metavar="N",
                        help="images per prompt (default: %(default)s)")
    add_sampler_arguments(parser, steps_help="DDIM steps (default: {default}, at most the run's T); DDPM always "
                                             "runs all T steps")
    parser.add_argument("--eta", type=float_range(0.0, 1.0), default=None, metavar="X",
                        help="DDIM eta: 0 deterministic ... 1 stochastic (default: 0)")
    add_variety_arguments(parser)
    add_seed_argument(parser, default=None,
                      help="random seed; the same seed gives the same images (default: random, logged)")
    parser.add_argument("--intermediates", type=int_range(2, 1000), default=None, metavar="K",
                        help=f"denoising steps kept for --steps-figure/--gif (default: {defaults.num_intermediates})")
    parser.add_argument("--mixed-precision", action=OnOffAuto, default=defaults.mixed_precision,
                        help="run the network in bfloat16 ('auto': where the CPU does bfloat16 natively, AVX512-BF16 "
                             f"or AMX; docs/PERFORMANCE.md) (default: {defaults.mixed_precision})")
    parser.add_argument("--no-clip", action="store_true",
                        help="do not clip each step's estimate of the clean image to [-1, 1]")
    parser.add_argument("--out", type=suffix_path(FIGURE_SUFFIXES), metavar="FILE.png",
                        help="captioned grid of the generated images (this and/or --out-dir)")
    parser.add_argument("--out-dir", type=_folder, metavar="DIR", default=None,
                        help="one PNG per image, DIR/NNN_PROMPT_seedS.png, with the prompt (as typed and as "
                             "encoded), seed, steps, sampler, guidance, negative prompt and model in its text "
                             "chunks (a `parameters` chunk as the web UIs write it, and one chunk per key)")
    parser.add_argument("--steps-figure", type=suffix_path(FIGURE_SUFFIXES), metavar="FILE.png",
                        help="also write the denoising steps (rows = images, columns = t)")
    parser.add_argument("--gif", type=suffix_path((".gif",)), metavar="FILE.gif",
                        help="also write the denoising as an animated GIF")
    parser.add_argument("--init-image", metavar="FILE", default=None,
                        help="start from this picture instead of noise (image-to-image, SDEdit): it is "
                             "resized to the run's size, noised to --strength of T and denoised with the prompt")
    parser.add_argument("--strength", type=float_range(0.01, 1.0), default=None, metavar="S",
                        help="with --init-image: how much of the picture to redraw, 0.01 (keep it) ... "
                             "1 (start from noise) (default: 0.6)")
    parser.add_argument("--size", type=int_range(8, 1024), default=None, metavar="N",
                        help="image side: one of the run's sizes; a cascade run (RUN/cascade.json, or the shipped "
                             "model once it is one) gives its base's and each stage's (default: the largest; a "
                             "single run: its own); --init-image edits at the base's size, then the stages enlarge it")
    parser.add_argument("--text-encoder", metavar="SPEC", default=None,
                        help="where to load the run's text encoder from (default: the identity saved in "
                             "RUN/encoder.json); it must be the same encoder (identity and size)")
    add_enrich_argument(parser)
    parser.set_defaults(func=run)
    return parser


def _sample_config(args, timesteps: int) -> SampleConfig:
    """Check the flags against each other and the run's T; ConfigError names the flag.

    The DDIM range (1 to T) is the sampler's own check (``ddim_timesteps``), made here before
    any encoder loads; ``generate`` would otherwise clip a too-large --steps with a warning.
    ddpm's rules are about flags (``generate`` passes no steps or eta to the ddpm sampler).
    """
    from ..diffusion.steps import ddim_timesteps

    if args.sampler == "ddpm":
        if args.steps is not None and args.steps != timesteps:
            raise ConfigError(f"--steps {args.steps}: ddpm runs all T = {timesteps} steps of the run's "
                              "schedule; use --sampler ddim for fewer steps")
        if args.eta is not None:
            raise ConfigError(f"--eta {args.eta}: eta applies to --sampler ddim only")
        steps = timesteps
    else:
        steps = min(SampleConfig().steps, timesteps) if args.steps is None else args.steps
        ddim_timesteps(timesteps, steps)  # ConfigError "DDIM steps: got N; allowed: 1 to the schedule's T"
    return SampleConfig(sampler=args.sampler, steps=steps, guidance_scale=args.guidance,
                        eta=0.0 if args.eta is None else args.eta,
                        num_intermediates=SampleConfig().num_intermediates if args.intermediates is None
                        else args.intermediates, enrich=args.enrich,
                        clip_x0=not args.no_clip, seed=args.seed, negative_prompt=args.negative_prompt,
                        mixed_precision=args.mixed_precision, **variety_options(args))


def _check_edit_flags(args) -> None:
    """--init-image runs DDIM from a noised picture: no DDPM, no denoising figure or GIF."""
    if args.init_image is None:
        if args.strength is not None:
            raise ConfigError(f"--strength {args.strength}: applies with --init-image only")
        return
    if args.sampler == "ddpm":
        raise ConfigError("--init-image: got --sampler ddpm; allowed: ddim (the image edit is deterministic DDIM)")
    if args.eta is not None:
        raise ConfigError(f"--init-image: got --eta {args.eta}; allowed: no --eta (an edit is DDIM with eta 0)")
    for flag, value in (("--steps-figure", args.steps_figure), ("--gif", args.gif),
                        ("--intermediates", args.intermediates)):
        if value is not None:
            raise ConfigError(f"--init-image: got {flag} too; allowed: no {flag} (an edit keeps no denoising steps)")


def run(args) -> int:
    from ..generate import generate, save_outputs

    prompts = list(args.prompt)
    if args.out is None and args.out_dir is None:
        raise ConfigError("--out FILE.png / --out-dir DIR: got neither; allowed: either or both (a captioned grid, "
                          "one PNG per image)")
    _check_edit_flags(args)
    if len(prompts) * args.num > MAX_IMAGES:
        raise ConfigError(f"{len(prompts)} prompts x --num {args.num} = {len(prompts) * args.num} images; "
                          f"allowed: at most {MAX_IMAGES} per call")
    # 0. every output writable now: a read-only or full folder fails here, not after the sampling
    from ..atomic import check_writable

    for path in (args.out, args.steps_figure, args.gif, args.out_dir and Path(args.out_dir) / "000.png"):
        if path:
            check_writable(path)
    # 1. the run (EMA model, schedule) and the flags checked against it
    if args.run is None:
        from ..pretrained import load_pretrained

        loaded = load_pretrained(mixed_precision=args.mixed_precision)
        log.info("using the shipped reference model (pass --run RUN for your own)")
    else:
        from ..run_dir import load_run

        loaded = load_run(args.run, mixed_precision=args.mixed_precision)
    config = _sample_config(args, loaded.config.diffusion.timesteps)
    sizes = loaded.sizes
    if args.size is not None and args.size not in sizes:
        raise ConfigError(f"--size: got {args.size}; allowed: {' | '.join(map(str, sizes))} (the run's size"
                          f"{'s: base, then each stage' if len(sizes) > 1 else '; a cascade run gives more'})")
    # 2. encode with the run's own encoder (another one is refused before loading), then sample
    edited = {}  # an edit's settings, for the metadata of --out-dir's files
    if args.init_image is not None:
        from ..data.images import read_image
        from ..generate import edit

        size = loaded.config.model.image_size
        image = read_image(args.init_image, (size, size))  # DataError: missing, not a regular file (a FIFO), too large
        edited = {"strength": 0.6 if args.strength is None else args.strength, "init_image": Path(args.init_image).name}
        result, labels = edit(loaded, prompts, image, strength=edited["strength"], num=args.num, config=config,
                              text_encoder=args.text_encoder, size=args.size)
    else:
        result, labels = generate(loaded, prompts, num=args.num, config=config, text_encoder=args.text_encoder,
                                  size=args.size)
    log.info("seed %d (pass --seed %d to repeat)", result.seed, result.seed)
    # 3. the files, each written atomically
    save_outputs(result, labels, args.out, steps_figure=args.steps_figure, gif=args.gif)
    if args.out_dir is not None:
        from ..image_files import save_images
        from ..pretrained import model_name

        save_images(result, [p for p in prompts for _ in range(args.num)], args.out_dir, encoded=labels,
                    model=model_name(loaded), negative_prompt=config.negative_prompt, extra=edited)
    return 0
