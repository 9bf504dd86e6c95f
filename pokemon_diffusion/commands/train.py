"""`pokemon-diffusion train`: train the text-conditioned DDPM on a dataset folder.

Options start from the defaults of the configs (or ``--config``, or on ``--resume`` the run's own
``config.json``); each flag given on the command line overrides one field.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Dict

from ..cli import EXIT_INTERRUPTED
from ..config import CHOICES, SAMPLE_GRID_IMAGES, RunConfig
from ..errors import ConfigError
from ..hardware import AUTO
from ..cli_args import OnOffAuto, choice_help

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax")

# Flags that set one config field: (flag, part, field, metavar, help). Each flag's type, choices
# and shown default come from the field; its allowed values are the config's own checks.
FIELD_FLAGS = (
    ("--steps", "train", "steps", "N", "training steps"),
    ("--epochs", "train", "epochs", "N", "passes over the training images"),
    ("--image-size", "model", "image_size", "N", "image side in pixels"),
    ("--upsample-from", "model", "low_res", "N", "train an upsampler (a cascade stage) from this size to "
                                                 "--image-size (TensorFlow backend; docs/TRAINING.md)"),
    ("--crop-size", "train", "crop_size", "N", "an upsampler's random training crops (none: whole images)"),
    ("--aug-max", "train", "aug_max", "X", "an upsampler's conditioning augmentation: noise std drawn "
                                           "from [0, X] per example"),
    ("--caption-weights", "train", "caption_weights", "FORM=W,...", "weigh the draw of each image's caption by its "
     "form (main, name, plain, description, colour, type, abilities; others weigh 1), e.g. name=3,plain=2"),
    ("--embedding-noise", "train", "embedding_noise", "X", "Gaussian noise on each drawn caption embedding, "
                                                           "its norm about X times the embedding's"),
    ("--caption-neighbours", "train", "caption_neighbours", "K", "each training image also draws the descriptions "
     "of its K nearest same-colour training Pokémon (caption form 'neighbour'; weigh it with --caption-weights), "
     "so that seeds of a description differ"),
    ("--batch-size", "train", "batch_size", "N", "global batch size"),
    ("--lr", "train", "learning_rate", "X", "peak learning rate"),
    ("--seed", "train", "seed", "S", "seed of init, data order, noise"),
    ("--mixed-precision", "train", "mixed_precision", None,
     "mixed_float16 with loss scaling on GPU, mixed_bfloat16 on CPU; '--mixed-precision auto': only where "
     "measured faster (a GPU, a CPU with AMX)"),
    ("--strategy", "train", "strategy", "S", "tf.distribute strategy"),
    ("--branches", "train", "branches", "N|auto", "split each step's batch into N branches run side by side, each "
                                                 "on its share of the CPU cores; auto: 2 on a CPU with 2+ cores and "
                                                 "GroupNorm, else 1 (docs/PERFORMANCE.md)"),
    ("--time-limit", "train", "time_limit_minutes", "MIN", "stop (and save) after this many minutes of training"),
    ("--checkpoint-every", "train", "checkpoint_every", "N", "steps between checkpoints"),
    ("--eval-every", "train", "eval_every", "N", "steps between held-out losses"),
    ("--log-every", "train", "log_every", "N", "steps between metrics lines"),
    ("--norm", "model", "norm", None, "normalisation in the U-Net"),
    ("--base-width", "model", "base_width", "N", "channels of the first level"),
    ("--ema-decay", "train", "ema_decay", "X", "maximum EMA decay (warmed up as (1+n)/(10+n))"),
    ("--remat", "train", "remat", None, "recompute each ResBlock in the backward pass instead of keeping its "
                                        "activations: ~half the peak memory at 64x64, a slower step"),
)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _parse_weights(text: str) -> Dict[str, float]:
    """argparse type of ``--caption-weights``: ``FORM=W,FORM=W`` (empty: uniform)."""
    weights: Dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        form, eq, value = part.partition("=")
        try:
            weights[form.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not form.strip():
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: FORM=WEIGHT pairs separated by commas, "
                                             "e.g. name=3,plain=2")
    return weights


_parse_weights.__name__ = "FORM=WEIGHT pairs"


def _parse_count_or_auto(text: str):
    """argparse type of ``--branches``: ``auto`` or an integer (its range is the config's)."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: an integer, or auto") from None


_parse_count_or_auto.__name__ = "N|auto"


def _parse(kind: type):
    """argparse type: ``int`` or ``float`` with a one-line message; ranges are the config's."""
    what = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {what}") from None

    parse.__name__ = what
    return parse


def _add_field_flag(parser, flag: str, part: str, name: str, metavar, text: str) -> None:
    config = getattr(RunConfig(), part)
    kind = typing.get_type_hints(type(config))[name]
    kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # Optional[X] -> X
    default = getattr(config, name)
    if default is None or isinstance(default, bool):
        shown = {None: "none", True: "on", False: "off"}[default]
    else:
        shown = f"{default:g}" if isinstance(default, float) else default
    options: Dict[str, Any] = {"dest": _dest(flag), "default": None}
    if name == "caption_weights":
        shown = ",".join(f"{k}={v:g}" for k, v in default.items()) or "uniform"
        options.update(type=_parse_weights, metavar=metavar)
    elif name == "mixed_precision":  # on | off | auto
        shown = {True: "on", False: "off"}.get(default, default)
        options["action"] = OnOffAuto
    elif name == "branches":  # N | auto
        options.update(type=_parse_count_or_auto, metavar=metavar)
    elif kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif name in CHOICES:
        options.update(choices=CHOICES[name], metavar=metavar)
        text = f"{text}: {choice_help(CHOICES[name])}"
    else:
        options.update(type=_parse(kind), metavar=metavar)
    parser.add_argument(flag, help=f"{text} (default: {shown})", **options)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train", help="train the text-conditioned diffusion model on a dataset folder",
        description="Train the U-Net DDPM on DIR (made by `collect` and `embed`) and write the run folder "
                    "RUN: config.json, encoder.json, ema_model.keras, checkpoints/, metrics.jsonl, tensorboard/. "
                    "Ctrl-C stops after the current step and saves a checkpoint; continue with --resume. "
                    "Defaults shown are the configs'; --config, --resume and --init bring their own.")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder (pokemon_metadata.json, "
                        "pokemon_images/, embeddings/, embeddings.json), or a plain folder of your images with "
                        "metadata.jsonl (file_name, text) or captions.csv: collected and embedded into RUN/data "
                        "first (with the --init source's text encoder, else auto)")
    parser.add_argument("--validation-prompt", action="append", default=None, metavar="TEXT",
                        dest="validation_prompt",
                        help=f"a prompt of the TensorBoard sample grid (repeatable, up to {SAMPLE_GRID_IMAGES}; "
                             "encoded with the dataset's encoder; default: the first held-out captions)")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    parser.add_argument("--config", metavar="JSON", help="a RunConfig JSON file (e.g. another run's config.json) "
                        "or inline JSON; flags override it")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in RUN from its newest checkpoint (with its config.json)")
    parser.add_argument("--init", metavar="reference|RUN", default=None,
                        help="fine-tune: start from trained weights (model and EMA; optimizer fresh, step 0) of the "
                             "shipped reference model or a run folder; its model and diffusion configs are the "
                             "defaults")
    budget = parser.add_mutually_exclusive_group()
    for flag, part, name, metavar, text in FIELD_FLAGS:
        _add_field_flag(budget if name in ("steps", "epochs") else parser, flag, part, name, metavar, text)
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow",
                        help="tensorflow (default), or jax: Keras 3 on JAX, for machines with JAX and no "
                             "TensorFlow; DIR may then also be a packed .npz (benchmarks/pack_dataset.py); "
                             "the run folder is the same, its checkpoints are .npz files")
    parser.set_defaults(func=run)
    return parser


def _load_config_arg(text: str) -> RunConfig:
    """``--config``: inline JSON when it starts with '{', else a file path."""
    if text.lstrip().startswith("{"):
        return RunConfig.from_json(text)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"--config: got {text!r}; allowed: a RunConfig JSON file or inline JSON object")
    return RunConfig.load(path)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig a `train` invocation means (see the module docstring)."""
    saved = Path(args.out) / "config.json"
    if args.config:
        config = _load_config_arg(args.config)
    elif args.resume and saved.is_file():
        config = RunConfig.load(saved)
    elif getattr(args, "init", None):
        from ..training.init_from import init_config

        source = init_config(args.init)
        config = RunConfig(model=source.model, diffusion=source.diffusion)
    else:
        config = RunConfig()
    changes: Dict[str, Dict[str, Any]] = {"model": {}, "train": {}}
    flags = {}
    for flag, part, name, _, _ in FIELD_FLAGS:
        value = getattr(args, _dest(flag), None)
        if value is not None:
            changes[part][name] = value
            flags[f"{type(getattr(config, part)).__name__}.{name}"] = flag
    if getattr(args, "steps", None) is not None:
        changes["train"]["epochs"] = None
    if getattr(args, "epochs", None) is not None:
        changes["train"]["steps"] = None
    try:
        return config.replace(model=config.model.replace(**changes["model"]),
                              train=config.train.replace(**changes["train"]))
    except ConfigError as exc:  # name the flag when one set the refused field
        field, _, rest = str(exc).partition(": ")
        if field in flags:
            raise ConfigError(f"{flags[field]}: {rest} ({field})") from None
        raise


class _NoTensorFlow:
    """An import hook that makes ``import tensorflow`` fail, for ``--backend jax`` processes.

    Why: Keras on JAX imports TensorFlow when it is installed (``tf.available`` checks while
    saving a model): seconds of start-up, its memory and its C++ log lines, in a process that
    must run where TensorFlow is absent. Keras treats the ImportError as "not installed".
    """

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("TensorFlow is kept out of `train --backend jax` processes")
        return None


def _on_jax_already() -> bool:
    """Keras fixes its backend at import: JAX in this process only if it is (or will be) Keras' backend."""
    if os.environ.get("KERAS_BACKEND") != "jax":
        return False
    keras = sys.modules.get("keras")
    return keras is None or keras.backend.backend() == "jax"


def _rerun_on_jax(args, config: RunConfig) -> int:
    """Run this command again in a child process with ``KERAS_BACKEND=jax`` and the resolved config.

    The child owns the terminal's Ctrl-C (it saves a checkpoint); a SIGTERM sent to this process is
    passed on to it. Returns the child's exit code.
    """
    verbosity = ["-q"] if args.quiet else ["-v"] * args.verbose
    argv = [sys.executable, "-m", "pokemon_diffusion", *verbosity, "train", "--backend", "jax", "--data",
            str(args.data), "--out", str(args.out), "--config", config.to_json()] + (["--resume"] if args.resume else [])
    env = dict(os.environ, KERAS_BACKEND="jax")
    log.debug("re-running on JAX: %s", " ".join(argv[:8]))
    child = subprocess.Popen(argv, env=env)
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _prepare_data(args, prompts, options: Dict[str, Any]) -> str:
    """A plain image folder is collected and embedded into RUN/data first (``own_data.py``); the
    validation prompts are encoded with the dataset's encoder into ``options``."""
    from ..own_data import encoder_for, is_plain_folder, prepare_folder

    data = str(args.data)
    if is_plain_folder(data):
        data = str(prepare_folder(data, args.out, encoder=encoder_for(getattr(args, "init", None))))
    if prompts:
        from ..text.embeddings import dataset_encoder_info
        from ..text.registry import load_encoder_matching

        encoder = load_encoder_matching(dataset_encoder_info(data))
        options["sample_embeddings"] = encoder.encode(list(prompts))
    return data


def run(args) -> int:
    config = resolve_config(args)  # bad options fail here, before TensorFlow is imported
    prompts = getattr(args, "validation_prompt", None) or []
    if len(prompts) > SAMPLE_GRID_IMAGES or any(not p.strip() for p in prompts):
        raise ConfigError(f"--validation-prompt: got {len(prompts)} prompt(s); allowed: 1 to {SAMPLE_GRID_IMAGES} "
                          "non-empty prompts")
    if getattr(args, "backend", "tensorflow") == "jax":
        if prompts:
            raise ConfigError("--validation-prompt: got it with --backend jax; allowed: the tensorflow backend "
                              "(the JAX path draws no sample grid)")
        if config.train.branches not in (AUTO, 1):
            raise ConfigError(f"--branches: got {config.train.branches} with --backend jax; allowed: auto or 1 there "
                              "(the JAX step is one XLA program, which XLA schedules on the cores itself)")
        if args.init is not None:
            raise ConfigError("--init: got it with --backend jax; allowed: --init with the tensorflow backend "
                              "(fine-tuning from a run is not on the JAX path yet)")
        if not _on_jax_already():
            return _rerun_on_jax(args, config)
        if "tensorflow" not in sys.modules:
            sys.meta_path.insert(0, _NoTensorFlow())
        from ..training.jax_loop import train
    else:
        from ..training.loop import train

    log.debug("config: %s", json.dumps(config.to_dict()))
    options = {} if getattr(args, "backend", "tensorflow") == "jax" else {"init": args.init}
    data = _prepare_data(args, prompts, options)
    result = train(data, args.out, config, resume=args.resume, **options)
    minutes = result.elapsed_s / 60.0
    summary = f"step {result.step}/{result.total_steps} ({result.stopped}) after {minutes:.1f} min"
    if result.loss is not None:
        summary += f"; loss {result.loss:.4f}"
    if result.val_loss is not None:
        summary += f", held-out loss {result.val_loss:.4f}"
    print(f"{summary}; EMA model: {result.model_path}")
    if result.stopped == "interrupted":
        backend = " --backend jax" if getattr(args, "backend", "tensorflow") == "jax" else ""
        print(f"interrupted: checkpoint saved; continue with: pokemon-diffusion train --data {args.data} "
              f"--out {args.out} --resume{backend}")
        return EXIT_INTERRUPTED
    return 0
