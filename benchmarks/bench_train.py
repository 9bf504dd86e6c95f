"""Train-step throughput against this machine's own matmul peak, and where the step time goes.

For each image size: img/s of the project's compiled train step (``Trainer.train_step``, batch 32,
the default U-Net), FLOPs per image (forward counted from the graph; training = 3x forward:
forward + the two backward matmuls of every layer), achieved GFLOP/s / measured matmul GFLOP/s,
the same step eager and under XLA (``jit_compile=True``), mixed precision, and the fraction of
the step spent waiting for the tf.data pipeline. Peak RSS of a 64² batch-32 run is measured in
a fresh subprocess (``--rss-only``) so that other sizes do not inflate it.

Usage:
    python benchmarks/bench_train.py                       # 32 and 64, everything (~6 min on 2 cores)
    python benchmarks/bench_train.py --sizes 32 --steps 10 --skip-eager --skip-xla
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import matmul_peak_gflops, peak_rss_mb, write_result  # noqa: E402


def _trainer(size: int, batch: int, mixed: bool = False):
    import numpy as np

    from pokemon_diffusion.config import ModelConfig, RunConfig, TrainConfig
    from pokemon_diffusion.data.dataset import make_dataset
    from pokemon_diffusion.training.trainer import Trainer

    config = RunConfig(model=ModelConfig(image_size=size),
                       train=TrainConfig(steps=1000, batch_size=batch, mixed_precision=mixed))
    trainer = Trainer(config, total_steps=1000)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (256, size, size, 3)).astype(np.float32)
    embeddings = rng.standard_normal((256, 384)).astype(np.float32)
    batches = trainer.distribute(make_dataset(images, embeddings, batch, repeat=True, with_index=True,
                                              drop_remainder=True))
    return trainer, iter(batches)


def _images_per_s(step, batches, batch: int, steps: int, warmup: int = 2):
    """(img/s, fraction of wall time spent in next(batches))."""
    for _ in range(warmup):
        step(next(batches)).numpy()
    waiting = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        batch_data = next(batches)
        waiting += time.perf_counter() - t0
        step(batch_data).numpy()  # .numpy() blocks: the step has finished
    wall = time.perf_counter() - start
    return batch * steps / wall, waiting / wall


def bench_size(size: int, batch: int, steps: int, peak: float, skip_eager: bool, skip_xla: bool,
               skip_mixed: bool) -> dict:
    import tensorflow as tf

    from pokemon_diffusion.model.unet import count_flops

    trainer, batches = _trainer(size, batch)
    forward = count_flops(trainer.model, batch_size=1)
    result = {"image_size": size, "batch": batch, "forward_gflops_per_image": forward / 1e9,
              "train_gflops_per_image": 3 * forward / 1e9}
    ips, wait = _images_per_s(trainer.train_step, batches, batch, steps)
    achieved = 3 * forward * ips / 1e9
    result["tf_function"] = {"img_per_s": ips, "achieved_gflops": achieved, "fraction_of_matmul_peak": achieved / peak,
                             "data_wait_fraction": wait}
    if not skip_xla:
        xla = tf.function(trainer._train_step, jit_compile=True)
        ips, _ = _images_per_s(xla, batches, batch, steps)
        result["xla"] = {"img_per_s": ips, "fraction_of_matmul_peak": 3 * forward * ips / 1e9 / peak}
    if not skip_eager:
        ips, _ = _images_per_s(trainer._train_step, batches, batch, max(2, steps // 4), warmup=1)
        result["eager"] = {"img_per_s": ips}
    if not skip_mixed:
        mixed, mixed_batches = _trainer(size, batch, mixed=True)
        ips, _ = _images_per_s(mixed.train_step, mixed_batches, batch, steps)
        result["mixed_bfloat16"] = {"img_per_s": ips}
        tf.keras.mixed_precision.set_global_policy("float32")
    return result


def rss_only(size: int, batch: int, steps: int) -> None:
    trainer, batches = _trainer(size, batch)
    for _ in range(steps):
        trainer.train_step(next(batches)).numpy()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip-eager", action="store_true")
    parser.add_argument("--skip-xla", action="store_true")
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rss-only", type=int, metavar="SIZE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_only:
        rss_only(args.rss_only, args.batch, args.steps)
        return
    peak = matmul_peak_gflops()
    results = {"matmul_peak_gflops": peak, "sizes": []}
    for size in args.sizes:
        results["sizes"].append(bench_size(size, args.batch, args.steps, peak, args.skip_eager, args.skip_xla,
                                           args.skip_mixed))
    if not args.skip_rss:
        out = subprocess.run([sys.executable, __file__, "--rss-only", "64", "--batch", str(args.batch),
                              "--steps", "5"], capture_output=True, text=True, check=True).stdout
        results["peak_rss_mb_64px_batch32"] = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
    write_result("train", results)


if __name__ == "__main__":
    main()
