"""Train a small text-conditioned DDPM for a few minutes, then show where everything went.

Usage:
    python examples/04_train.py [DATA_DIR] [--out runs/example] [--minutes 5] [--resume]

Ctrl-C stops after the current step and saves a checkpoint; run again with --resume to continue.
Ten CPU minutes at 32x32 give coloured blobs, not Pokémon (see docs/TRAINING.md).
"""

import argparse
import json
import logging
from pathlib import Path

from pokemon_diffusion.config import ModelConfig, RunConfig, TrainConfig
from pokemon_diffusion.logging_utils import setup_logging
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.training.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="data/pokemon")
    parser.add_argument("--out", default="runs/example")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    setup_logging()
    log = logging.getLogger("pokemon_diffusion.example")  # shown by setup_logging

    config = RunConfig(
        model=ModelConfig(image_size=32, base_width=32, norm="batch"),
        train=TrainConfig(steps=20_000, batch_size=32, learning_rate=5e-4, warmup_steps=200,
                          time_limit_minutes=args.minutes, log_every=25, eval_every=250,
                          checkpoint_every=250, sample_every=500),
    )
    result = train(args.data, args.out, config, resume=args.resume)
    log.info("stopped (%s) at step %d of %d; loss %s, held-out loss %s, %.1f img/s",
             result.stopped, result.step, result.total_steps, result.loss, result.val_loss,
             result.images_per_s or 0.0)

    run = load_run(args.out)  # what `pokemon-diffusion sample` loads
    log.info("EMA model %s for %s (%d-d captions)", run.model.name, run.encoder.name, run.encoder.dim)
    lines = (Path(args.out) / "metrics.jsonl").read_text().splitlines()
    log.info("last metrics line: %s", json.loads(lines[-1]) if lines else None)


if __name__ == "__main__":
    main()
