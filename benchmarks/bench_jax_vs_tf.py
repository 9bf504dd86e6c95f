"""CPU img/s of the JAX train step beside the TensorFlow one: same U-Net, same batch, alternating.

Keras fixes its backend per process, so each measurement is a child process (``--child tf|jax``);
the parent alternates them (TF, JAX, TF, JAX, ...) so that a machine's drift hits both alike,
and reports each run and the median ratio. Both steps are the projects' own: ``Trainer.train_step``
(tf.function) on a ``make_dataset`` stream and ``JaxTrainer.train_step`` (jax.jit) on a
``BatchStream``; the default ModelConfig, float32.

    python benchmarks/bench_jax_vs_tf.py --size 32 --batch 32 --steps 20 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config(size: int, batch: int):
    from pokemon_diffusion.config import ModelConfig, RunConfig, TrainConfig

    return RunConfig(model=ModelConfig(image_size=size), train=TrainConfig(steps=1000, batch_size=batch, strategy="one"))


def _data(size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (256, size, size, 3)).astype(np.uint8), rng.standard_normal((256, 384)).astype(np.float32)


def child_tf(size: int, batch: int, steps: int) -> float:
    from pokemon_diffusion.data.dataset import make_dataset
    from pokemon_diffusion.training.trainer import Trainer

    pixels, text = _data(size)
    trainer = Trainer(_config(size, batch), total_steps=1000)
    batches = iter(trainer.distribute(make_dataset(pixels / 127.5 - 1.0, text, batch, repeat=True, with_index=True,
                                                   drop_remainder=True)))
    for _ in range(2):
        trainer.train_step(next(batches)).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(next(batches)).numpy()
    return batch * steps / (time.perf_counter() - start)


def child_jax(size: int, batch: int, steps: int) -> float:
    import numpy as np

    from pokemon_diffusion.run_dir import EncoderInfo
    from pokemon_diffusion.training.jax_data import BatchStream, TrainingData
    from pokemon_diffusion.training.jax_trainer import JaxTrainer

    pixels, text = _data(size)
    data = TrainingData(pixels, text, np.arange(256), np.zeros(0, np.int64), EncoderInfo("bench", 384))
    trainer = JaxTrainer(_config(size, batch), 1000)
    stream = BatchStream(data, batch, seed=0, flip=True)
    for step in range(2):
        trainer.train_step(stream.next()).block_until_ready()
    start = time.perf_counter()
    for step in range(2, 2 + steps):
        loss = trainer.train_step(stream.next())
        float(loss)  # a sync per step, as the TF loop's .numpy()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=("tf", "jax"))
    args = parser.parse_args()
    if args.child:
        fn = child_tf if args.child == "tf" else child_jax
        print(json.dumps({"img_per_s": fn(args.size, args.batch, args.steps)}))
        return
    runs = {"tf": [], "jax": []}
    for _ in range(args.rounds):
        for backend in ("tf", "jax"):
            env = dict(os.environ, KERAS_BACKEND="jax" if backend == "jax" else "tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            out = subprocess.run([sys.executable, __file__, "--child", backend, "--size", str(args.size), "--batch",
                                  str(args.batch), "--steps", str(args.steps)], env=env, capture_output=True,
                                 text=True, check=True).stdout
            runs[backend].append(round(json.loads(out.strip().splitlines()[-1])["img_per_s"], 1))
            print(backend, runs[backend][-1], flush=True)
    ratios = [j / t for t, j in zip(runs["tf"], runs["jax"])]
    print(json.dumps({"size": args.size, "batch": args.batch, "steps": args.steps, "tf_img_per_s": runs["tf"],
                      "jax_img_per_s": runs["jax"], "jax_over_tf_median": round(statistics.median(ratios), 3)}))


if __name__ == "__main__":
    main()
