"""`pokemon-diffusion demo`: the whole pipeline on the offline defaults (what `make demo` runs)."""

from __future__ import annotations

import logging

from ._args import add_seed_argument, float_range, int_range

log = logging.getLogger(__name__)


def add_parser(subparsers):
    from ..demo import DEFAULT_MINUTES

    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on the offline defaults",
        description="Collect the packaged Pokédex, embed its captions (auto encoder), train at 32x32 for "
                    "a time budget, then sample 8 prompts with DDIM + guidance from this run and from "
                    "the shipped reference model. A second run reuses the data and continues training.")
    parser.add_argument("--out", default="outputs/demo", metavar="DIR",
                        help="figures, report.json and the run (default: %(default)s)")
    parser.add_argument("--data", default="data/pokemon", metavar="DIR",
                        help="dataset folder, reused when present (default: %(default)s)")
    parser.add_argument("--minutes", type=float_range(0.05, 24 * 60), default=DEFAULT_MINUTES, metavar="M",
                        help="training time budget in minutes (default: %(default)s)")
    parser.add_argument("--text-encoder", default="auto", metavar="SPEC",
                        help="auto | clip | minilm | hub id | path (default: %(default)s)")
    parser.add_argument("--limit", type=int_range(1, 100_000), default=None, metavar="N",
                        help="use only the first N Pokémon (default: all)")
    add_seed_argument(parser, default=0, help="sampling seed (default: %(default)s)")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="do not sample the shipped reference model")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..config import SampleConfig
    from ..demo import run_demo

    report = run_demo(args.out, data_dir=args.data, minutes=args.minutes, text_encoder=args.text_encoder,
                      limit=args.limit, sample_config=SampleConfig(seed=args.seed),
                      use_pretrained=not args.no_pretrained)
    train = report["train"]
    val = f"{train['val_loss']:.4f}" if train.get("val_loss") is not None else "not measured"
    print(f"demo: trained {train['step']} steps ({train['stopped']}), held-out loss {val}; figures in {args.out}/")
    return 0
