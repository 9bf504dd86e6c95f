"""Training throughput: img/s of the compiled train step (AdamW, EMA, CFG dropout) and peak RSS.

Prints one JSON object. The U-Net is the default ModelConfig unless overridden; the data are
random (speed does not depend on them). Tracing is timed separately from the steady state.

Usage:
    python benchmarks/bench_train.py --size 32 --batch 32
    python benchmarks/bench_train.py --size 64 --batch 32 --steps 10
    python benchmarks/bench_train.py --size 32 --batch 32 --mixed-precision
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps after 2 warm-up steps")
    parser.add_argument("--base-width", type=int, default=None)
    parser.add_argument("--norm", choices=("batch", "group"), default="batch")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--strategy", default="auto")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from pokemon_diffusion.config import ModelConfig, RunConfig, TrainConfig
    from pokemon_diffusion.data.dataset import make_dataset
    from pokemon_diffusion.model.unet import model_summary_line
    from pokemon_diffusion.training.trainer import Trainer

    model = ModelConfig(image_size=args.size, norm=args.norm,
                        **({"base_width": args.base_width} if args.base_width else {}))
    config = RunConfig(model=model, train=TrainConfig(batch_size=args.batch, mixed_precision=args.mixed_precision,
                                                      strategy=args.strategy))
    trainer = Trainer(config, total_steps=10_000)
    rng = np.random.default_rng(0)
    n = max(4 * args.batch, 128)
    images = rng.uniform(-1, 1, (n, args.size, args.size, 3)).astype(np.float32)
    text = rng.standard_normal((n, model.text_dim)).astype(np.float32)
    batches = iter(trainer.distribute(make_dataset(images, text, args.batch, repeat=True, with_index=True)))

    start = time.perf_counter()
    float(trainer.train_step(next(batches)))  # traces
    trace_s = time.perf_counter() - start
    float(trainer.train_step(next(batches)))
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = trainer.train_step(next(batches))
    float(loss)  # wait for the device
    seconds = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "train_step", "image_size": args.size, "batch_size": args.batch, "norm": args.norm,
        "policy": trainer.policy, "strategy": type(trainer.strategy).__name__, "replicas": trainer.replicas,
        "model": model_summary_line(trainer.model), "steps": args.steps,
        "img_per_s": round(args.steps * args.batch / seconds, 2),
        "s_per_step": round(seconds / args.steps, 4), "first_step_s (trace)": round(trace_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "tensorflow": tf.__version__, "gpus": len(tf.config.list_physical_devices("GPU"))},
    }, indent=2))


if __name__ == "__main__":
    main()
