"""`pokemon-diffusion export`: a run as a model folder to share, with a model card.

Example::

    pokemon-diffusion export runs/r1 share/r1        # then upload share/r1 as a Hub model repo
    pokemon-diffusion export reference share/ref     # the shipped reference model
"""

from __future__ import annotations


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="write a run's model folder with a model card (README.md), ready to share",
        description="Copy a run's sampling files (config.json, encoder.json, ema_model.keras, prompt_names.json "
                    "when present) to DIR with their SHA-256 manifest and a model card README.md (model, data, "
                    "training, metrics, a training-curve figure when the run logged metrics, licence note). "
                    "The folder loads with --run DIR, app --model DIR, or --run hf://OWNER/REPO once uploaded.")
    parser.add_argument("run", metavar="RUN", help="run folder written by `train`, or 'reference' (the shipped model)")
    parser.add_argument("dir", metavar="DIR", help="a new or empty folder to write")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="the model's name in the card (default: the run's manifest name, else DIR's name)")
    parser.add_argument("--force", action="store_true", help="write into a folder that holds files (same names replaced)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..export import export_run

    source = args.run
    if source == "reference":
        from ..pretrained import pretrained_dir

        source = pretrained_dir()
    export_run(source, args.dir, name=args.name, force=args.force)
    return 0
