"""`pokemon-diffusion evaluate`: measure a trained run against its dataset; write a JSON report.

Example::

    pokemon-diffusion evaluate --run runs/demo --data data/pokemon --num 64 --seed 0 \\
        --inception-weights ~/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 --out report.json

See docs/EVALUATION.md for what each figure is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

from ..cli_args import (add_sampler_arguments, add_seed_argument, add_variety_arguments, float_range, int_range,
                    suffix_path, variety_options)

log = logging.getLogger(__name__)

MAX_SAMPLES = 10_000
CACHE_DIR = "eval_cache"  # inside the run folder: the real images' Inception features
REFERENCE_REPORT = "reference_evaluation.json"  # --run reference without --out: in the current folder


def _weights(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: auto | imagenet | random | a .h5 file path")
    return text.strip()


def _weights_list(text: str):
    """``--guidance``: one weight or a comma-separated sweep, e.g. ``1,3,6``."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(0.0 <= v <= 50.0 for v in values):
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a number from 0 to 50 or a comma-separated "
                                         "list of them (e.g. 1,3,6)")
    return values


def _run_folder(text: str) -> str:
    """``--run reference`` is the shipped reference model's folder."""
    if text == "reference":
        from ..pretrained import pretrained_dir

        return str(pretrained_dir())
    return text


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="measure a trained run: held-out loss, conditioning accuracy, colours, FID/KID",
        description="Sample from a trained run with N captions of the dataset and measure: the held-out "
                    "denoising loss on a fixed t grid, nearest-neighbour conditioning accuracy (top-1/top-5, "
                    "type agreement), the colour statistics distance, and KID/FID with InceptionV3 when its "
                    "weights are available. Writes a JSON report and prints a short table.")
    parser.add_argument("--run", required=True, metavar="RUN", type=_run_folder,
                        help="run folder written by `train`, or 'reference' (the shipped reference model)")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="dataset folder (pokemon_metadata.json, images, embeddings) the run was trained on")
    parser.add_argument("--num", type=int_range(2, MAX_SAMPLES), default=64, metavar="N",
                        help="images to generate, one per randomly chosen caption (default: %(default)s)")
    add_seed_argument(parser, default=0,
                      help="seeds the caption choice, the sampling noise and KID's subsets (default: %(default)s)")
    add_sampler_arguments(parser, steps_help="DDIM steps, at most the run's T (default: {default}, or T if "
                                             "smaller; ddpm runs all T)")
    guidance = next(a for a in parser._actions if a.dest == "guidance")  # evaluate also takes a sweep
    guidance.type, guidance.metavar = _weights_list, "W[,W...]"
    guidance.help += "; a comma-separated list (e.g. 1,3,6) adds a guidance sweep, the first is the headline"
    parser.add_argument("--eta", type=float_range(0.0, 1.0), default=0.0, metavar="X",
                        help="DDIM eta: 0 deterministic ... 1 stochastic, for every sampled figure except the "
                             "reconstruction (always DDIM-20, eta 0); ddim only (default: %(default)s)")
    add_variety_arguments(parser)
    parser.add_argument("--colour-seeds", type=int_range(0, 1000), default=4, metavar="S",
                        help="samples per colour of the colour prompt-following test, 'a {colour} Pokémon' for "
                             "the 11 basic colours (0 = skip; default: %(default)s)")
    parser.add_argument("--variety-seeds", type=int_range(0, 64), default=4, metavar="K",
                        help="seeds per prompt of the variety figure (the first 8 headline prompts, K images "
                             "each; 0 = skip, else at least 2; default: %(default)s)")
    from ..evaluation.prompt_forms import POKEMON_PER_SPLIT, SEEDS

    parser.add_argument("--prompt-forms", type=int_range(0, 256), default=POKEMON_PER_SPLIT, metavar="P",
                        help="Pokémon per split (training, held out) of the prompt-form figures: the name alone, "
                             "'NAME, a TYPE-type Pokémon', the caption and the name-free description, as typed "
                             "and enriched (0 = skip; default: %(default)s)")
    parser.add_argument("--prompt-form-seeds", type=int_range(2, 64), default=SEEDS, metavar="K",
                        help="images per prompt of the prompt-form figures (default: %(default)s)")
    parser.add_argument("--batch-size", type=int_range(1, 1024), default=16, metavar="B",
                        help="images per sampling / feature batch (default: %(default)s)")
    parser.add_argument("--inception-weights", type=_weights, default="auto", metavar="PATH|auto|imagenet|random",
                        help="InceptionV3 weights for FID/KID: a .h5 file; 'auto' = Keras' cached ImageNet file "
                             "if present, never a download; 'imagenet' = cached, else Keras downloads it; "
                             "'random' = random weights (tests only: the numbers mean nothing) "
                             "(default: %(default)s; without weights FID/KID are skipped with a reason)")
    parser.add_argument("--offline", action="store_true",
                        help="never download (also implied by HF_HUB_OFFLINE=1)")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not keep the real images' Inception features in RUN/eval_cache/ between runs")
    parser.add_argument("--out", type=suffix_path((".json",)), default=None, metavar="REPORT.json",
                        help=f"where to write the report (default: RUN/evaluation.json; {REFERENCE_REPORT} "
                             "for --run reference)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..locks import reader_lock
    from ..pretrained import pretrained_dir

    guidance = args.guidance if isinstance(args.guidance, list) else [args.guidance]
    # the shipped reference's folder is part of the installed package: write nothing into it
    shipped = Path(args.run).resolve() == pretrained_dir().resolve()
    with contextlib.ExitStack() as stack:
        if not shipped:  # a run being trained is a moving target: refused in one line (locks.reader_lock)
            stack.enter_context(reader_lock(args.run, "evaluate"))
        return _evaluate(args, guidance, shipped)


def _is_upsampler(run: str) -> bool:
    """A local run folder whose config.json describes an upsampler (``model.low_res``), or a cascade
    folder (``cascade.json``: its stages are measured chained)."""
    from ..config import RunConfig
    from ..errors import ConfigError
    from ..run_dir import CASCADE_FILE

    if (Path(run) / CASCADE_FILE).is_file():
        return True
    try:
        return RunConfig.load(Path(run) / "config.json").model.low_res is not None
    except ConfigError:
        return False


def _evaluate(args, guidance, shipped: bool) -> int:
    from ..atomic import atomic_write_text

    if not shipped and _is_upsampler(args.run):  # PSNR/SSIM/spectrum against bicubic on held-out images (evaluation/upsampler.py)
        from ..evaluation.upsampler import evaluate_upsampler_run, format_upsampler_report

        report = evaluate_upsampler_run(args.run, args.data, num=args.num, seed=args.seed, batch_size=args.batch_size,
                                        guidance_scale=guidance[0],
                                        **({} if args.steps is None else {"steps": args.steps}))
        out = args.out or Path(args.run) / "evaluation.json"
        atomic_write_text(out, json.dumps(report, indent=2, allow_nan=True) + "\n")
        print(format_upsampler_report(report))
        print(f"report: {out}")
        return 0
    from ..config import SampleConfig
    from ..evaluation.evaluate import evaluate
    from ..evaluation.report import format_report

    report = evaluate(args.run, args.data, num=args.num, seed=args.seed, sampler=args.sampler,
                      steps=args.steps, eta=args.eta, guidance_scale=guidance[0], guidance_scales=guidance[1:],
                      colour_seeds=args.colour_seeds, variety_seeds=args.variety_seeds, batch_size=args.batch_size,
                      prompt_forms=args.prompt_forms, prompt_form_seeds=args.prompt_form_seeds,
                      variety_options=SampleConfig(**variety_options(args)),
                      inception_weights=args.inception_weights, offline=True if args.offline else None,
                      cache_dir=None if args.no_cache or shipped else Path(args.run) / CACHE_DIR)
    out = args.out or (Path(REFERENCE_REPORT) if shipped else Path(args.run) / "evaluation.json")
    atomic_write_text(out, json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    print(format_report(report))
    print(f"report: {out}")
    return 0
