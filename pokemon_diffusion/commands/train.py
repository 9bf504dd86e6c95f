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
from pathlib import Path
from typing import Any, Dict

from ..config import NORMS, STRATEGIES, RunConfig
from ..cli import EXIT_INTERRUPTED
from ..errors import ConfigError
from ._args import add_seed_argument, choice_help, float_range, int_range, positive_int

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax")


# flag dest -> (config part, field)
_OVERRIDES = {
    "image_size": ("model", "image_size"),
    "norm": ("model", "norm"),
    "base_width": ("model", "base_width"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "learning_rate"),
    "seed": ("train", "seed"),
    "mixed_precision": ("train", "mixed_precision"),
    "strategy": ("train", "strategy"),
    "time_limit": ("train", "time_limit_minutes"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "eval_every": ("train", "eval_every"),
    "log_every": ("train", "log_every"),
    "ema_decay": ("train", "ema_decay"),
    "remat": ("train", "remat"),
}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train", help="train the text-conditioned diffusion model on a dataset folder",
        description="Train the U-Net DDPM on DIR (made by `collect` and `embed`) and write the run folder "
                    "RUN: config.json, encoder.json, ema_model.keras, checkpoints/, metrics.jsonl, tensorboard/. "
                    "Ctrl-C stops after the current step and saves a checkpoint; continue with --resume.")
    parser.add_argument("--data", required=True, metavar="DIR", help="dataset folder (pokemon_metadata.json, "
                        "pokemon_images/, embeddings/, embeddings.json)")
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
    budget.add_argument("--steps", type=int_range(1, 10_000_000), help="training steps (default 10000)")
    budget.add_argument("--epochs", type=int_range(1, 100_000), help="passes over the training images")
    parser.add_argument("--image-size", type=int_range(16, 128), metavar="N", help="image side in pixels (default 32)")
    parser.add_argument("--batch-size", type=int_range(1, 4096), metavar="N", help="global batch size (default 32)")
    parser.add_argument("--lr", type=float_range(1e-8, 1.0), metavar="X", help="peak learning rate (default 5e-4)")
    add_seed_argument(parser, default=None, help="seed of init, data order, noise")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed_float16 with loss scaling on GPU, mixed_bfloat16 on CPU")
    parser.add_argument("--strategy", choices=STRATEGIES, metavar="S",
                        help=f"tf.distribute strategy: {choice_help(STRATEGIES)} (default auto)")
    parser.add_argument("--time-limit", type=float_range(0.0001, 1e7), metavar="MIN",
                        help="stop (and save) after this many minutes of training")
    parser.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="steps between checkpoints")
    parser.add_argument("--eval-every", type=positive_int, metavar="N", help="steps between held-out losses")
    parser.add_argument("--log-every", type=positive_int, metavar="N", help="steps between metrics lines")
    parser.add_argument("--norm", choices=NORMS, help=f"normalisation in the U-Net: {choice_help(NORMS)}")
    parser.add_argument("--base-width", type=int_range(4, 1024), metavar="N", help="channels of the first level")
    parser.add_argument("--ema-decay", type=float_range(0.0, 0.999999), metavar="X",
                        help="maximum EMA decay (warmed up as (1+n)/(10+n)); default 0.999")
    parser.add_argument("--remat", action=argparse.BooleanOptionalAction, default=None,
                        help="recompute each ResBlock in the backward pass instead of keeping its activations: "
                             "~half the peak memory at 64x64, a slower step (default off)")
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
    for dest, (part, name) in _OVERRIDES.items():
        value = getattr(args, dest, None)
        if value is not None:
            changes[part][name] = value
    if args.steps is not None:
        changes["train"].update(steps=args.steps, epochs=None)
    if args.epochs is not None:
        changes["train"].update(epochs=args.epochs, steps=None)
    return config.replace(model=config.model.replace(**changes["model"]),
                          train=config.train.replace(**changes["train"]))


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


def run(args) -> int:
    config = resolve_config(args)  # bad options fail here, before TensorFlow is imported
    if getattr(args, "backend", "tensorflow") == "jax":
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
    result = train(args.data, args.out, config, resume=args.resume, **options)
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
