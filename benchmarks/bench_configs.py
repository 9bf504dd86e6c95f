"""The trainer's step for variants of one configuration, alternated in one process: norms and precision.

Every variant is a full ``Trainer`` (its own model, optimizer, EMA) built from the same base
configuration (``--config``: the shipped reference's by default) with one thing changed:
  group            the configuration as it is (GroupNorm through ``fast_norm._group_norm``)
  group moments    the same trainer's step traced with the GroupNorm fast path off (Keras' moments
                   form folded into one multiply-add, TensorFlow's own gradient: before issue 28)
  batch            norm = "batch" (the fused ``FusedBatchNormV3`` path), otherwise the same
  group bf16       mixed_precision = true (mixed_bfloat16 on CPU)
  batch bf16       norm = "batch" and mixed_precision = true
Rounds run each variant for ``--steps`` steps on one fixed batch, in turn (A B C ... A B C ...),
and report the median ms per step and the median of the per-round ratios to ``group`` (or to the
first variant named), so that the machine's load cancels out.

    python benchmarks/bench_configs.py --sizes 32 64 --rounds 6 --steps 3
    python benchmarks/bench_configs.py --variants group "group bf16" --config runs/up/config.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402
from bench_step_breakdown import _traced_variant  # noqa: E402
from bench_train import _trainer, base_config  # noqa: E402

VARIANTS = {  # name -> (ModelConfig changes, mixed precision, GroupNorm fast path)
    "group": ({}, False, True),
    "group moments": ({}, False, False),
    "batch": ({"norm": "batch"}, False, True),
    "group bf16": ({}, True, True),
    "batch bf16": ({"norm": "batch"}, True, True),
}


def compare(config, size: int, batch: int, rounds: int, steps: int, names: List[str]) -> dict:
    import tensorflow as tf

    trainers: Dict[tuple, tuple] = {}
    fns: Dict[str, Callable] = {}
    batches: Dict[str, object] = {}
    for name in names:
        changes, mixed, fast = VARIANTS[name]
        key = (tuple(sorted(changes.items())), mixed)
        if key not in trainers:  # "group" and "group moments" share one trainer
            trainer, stream = _trainer(size, batch, mixed=mixed, config=config, **changes)
            trainers[key] = (trainer, next(stream))
        trainer, batches[name] = trainers[key]
        swaps = {} if fast else {"module:pokemon_diffusion.model.fast_norm._group_fusable": lambda *a: False}
        fns[name] = _traced_variant(trainer, swaps, batches[name], signature=True)
    tf.keras.mixed_precision.set_global_policy("float32")
    ms: Dict[str, List[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            fns[name](batches[name]).numpy()  # one untimed step: the caches of the previous variant
            start = time.perf_counter()
            for _ in range(steps):
                loss = fns[name](batches[name])
            loss.numpy()
            ms[name].append((time.perf_counter() - start) / steps * 1e3)
    first = names[0]
    result = {"image_size": size, "batch": batch, "rounds": rounds, "steps_per_round": steps,
              "load_average": os.getloadavg()[0],
              "median_ms": {k: round(statistics.median(v), 1) for k, v in ms.items()},
              f"median_speed_over_{first.replace(' ', '_')}": {
                  k: round(statistics.median(a / b for a, b in zip(ms[first], v)), 3) for k, v in ms.items()}}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pretrained",
                        help="'pretrained' (the shipped reference's), 'default' (ModelConfig()) or a RunConfig JSON file")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes (default: the configuration's)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME",
                        help=f"which, the first is the yardstick (default: all: {', '.join(VARIANTS)})")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: got {unknown}; allowed: {' | '.join(VARIANTS)}")
    if args.config not in ("pretrained", "default") and not Path(args.config).is_file():
        parser.error(f"--config: got {args.config!r}; allowed: pretrained | default | an existing RunConfig JSON file")
    config = base_config(None if args.config == "default" else args.config)
    sizes = args.sizes or [config.model.image_size]
    results = [compare(config, size, args.batch, args.rounds, args.steps, args.variants) for size in sizes]
    path = write_result("configs", {"config": args.config, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
