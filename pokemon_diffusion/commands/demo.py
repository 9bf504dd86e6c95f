"""`pokemon-diffusion demo`: the whole pipeline on the offline defaults (what `make demo` runs)."""

from __future__ import annotations

import logging

from ..cli_args import add_seed_argument, float_range, int_range

log = logging.getLogger(__name__)


def add_parser(subparsers):
    from ..demo import DEFAULT_MINUTES

    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on the offline defaults",
        description="Collect the packaged Pokédex, embed its captions (auto encoder), fine-tune the shipped "
                    "reference model (32x32) on them for a time budget (--from-scratch: random weights), then "
                    "sample 8 prompts with DDIM + guidance from this run and from the reference model. The "
                    "report gives the held-out loss before and after. A second run reuses the data and "
                    "continues training.")
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
    parser.add_argument("--from-scratch", action="store_true",
                        help="train the demo's run from random weights instead of fine-tuning the reference")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..config import SampleConfig
    from ..demo import run_demo

    report = run_demo(args.out, data_dir=args.data, minutes=args.minutes, text_encoder=args.text_encoder,
                      limit=args.limit, sample_config=SampleConfig(seed=args.seed),
                      use_pretrained=not args.no_pretrained, init=None if args.from_scratch else "reference")
    train, heldout = report["train"], report["heldout_loss"]
    val = " -> ".join(f"{v:.4f}" if v is not None else "-" for v in (heldout["before"], heldout["after"]))
    start = ("continuing the earlier demo run" if train.get("resumed")
             else f"from {train['init']}" if train.get("init") else "from scratch")
    print(f"demo: trained {train['step']} steps {start} ({train['stopped']}), held-out loss {val}; "
          f"figures in {args.out}/")
    return 0
