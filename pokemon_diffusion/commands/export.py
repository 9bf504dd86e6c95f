"""`pokemon-diffusion export`: a run as a model folder to share, with a model card.

Example::

    pokemon-diffusion export runs/r1 share/r1        # then upload share/r1 as a Hub model repo
    pokemon-diffusion export reference share/ref     # the shipped reference model
    pokemon-diffusion export runs/r1 serve/r1 --format saved_model   # for TF Serving / tf.saved_model.load
"""

from __future__ import annotations

from ..config import EXPORT_FORMATS


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="write a run's model folder with a model card (README.md), ready to share",
        description="Copy a run's sampling files (config.json, encoder.json, ema_model.keras, prompt_names.json "
                    "when present) to DIR with their SHA-256 manifest and a model card README.md (model, data, "
                    "training, metrics, a training-curve figure when the run logged metrics, licence note). "
                    "The folder loads with --run DIR, app --model DIR, or --run hf://OWNER/REPO once uploaded.")
    parser.add_argument("run", metavar="RUN", help="run folder written by `train`, a cascade folder (cascade.json: DIR "
                                                   "gets the base's files, each stage's in DIR/upSIZE/), or 'reference' "
                                                   "(the shipped model)")
    parser.add_argument("dir", metavar="DIR", help="a new or empty folder to write")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="the model's name in the card (default: the run's manifest name, else DIR's name)")
    parser.add_argument("--force", action="store_true", help="write into a folder that holds files (same names replaced)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0],
                        help="folder: the model folder with its card; saved_model: a TensorFlow SavedModel whose "
                             "serving_default signature takes text_emb [N, dim], seed, steps, guidance and returns "
                             "images (float32 in [-1, 1] and uint8) from the compiled DDIM sampler "
                             "(default: %(default)s)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..export import export_run

    source = args.run
    if source == "reference":
        from ..pretrained import pretrained_dir

        source = pretrained_dir()
    if args.format == "saved_model":
        from ..saved_model import export_saved_model

        export_saved_model(source, args.dir, force=args.force)
        return 0
    export_run(source, args.dir, name=args.name, force=args.force)
    return 0
