"""Where the train step's time goes: the step cut into cumulative stages, each compiled and timed.

Stages (batch 32, the default U-Net, one device), each a ``tf.function`` timed after warm-up:
  forward         model(x_t, t, text, training=True)
  + backward      the same under a GradientTape, gradients of the loss
  + optimizer     + global-norm clipping and the AdamW update
  full step       Trainer.train_step: + per-example random draws, q_sample, EMA of every
                  variable, loss bookkeeping
  optimizer only  the AdamW update alone, on fixed gradients
  ema only        the EMA update alone
The differences between stages are what each part costs. Run it on an idle machine:
    python benchmarks/bench_step_breakdown.py --sizes 32 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import timed, write_result  # noqa: E402
from bench_train import _trainer  # noqa: E402


def breakdown(size: int, batch: int, repeats: int) -> dict:
    import tensorflow as tf

    trainer, batches = _trainer(size, batch)
    model, optimizer = trainer.model, trainer.optimizer
    x = tf.random.normal([batch, size, size, 3])
    t = tf.random.uniform([batch], 0, 1000, tf.int32)
    text = tf.random.normal([batch, 384])
    variables = model.trainable_variables

    @tf.function(autograph=False)
    def forward():
        return tf.reduce_mean(model([x, t, text], training=True))

    @tf.function(autograph=False)
    def backward():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model([x, t, text], training=True) - x))
        # use every gradient: returning one would let the graph prune the other weight gradients
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, variables)])

    @tf.function(autograph=False)
    def optimize():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model([x, t, text], training=True) - x))
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 1.0)
        optimizer.apply(grads, variables)
        return loss

    fixed_grads = [tf.fill(v.shape, 1e-6) for v in variables]

    @tf.function(autograph=False)
    def optimizer_only():
        optimizer.apply(fixed_grads, variables)
        return optimizer.iterations

    @tf.function(autograph=False)
    def ema():
        trainer.ema.update(trainer.step)
        return trainer.step

    batch_data = next(batches)
    stages = {"forward": forward, "forward+backward": backward, "forward+backward+optimizer": optimize,
              "full train_step": lambda: trainer.train_step(batch_data), "optimizer only": optimizer_only,
              "ema only": ema}
    result = {"image_size": size, "batch": batch, "ms": {}}
    for name, fn in stages.items():
        seconds = timed(lambda: tf.nest.map_structure(lambda v: v.numpy(), fn()), warmup=2, repeats=repeats)
        result["ms"][name] = round(seconds * 1e3, 1)
        print(json.dumps({"size": size, "stage": name, "ms": result["ms"][name]}), flush=True)
    ms = result["ms"]
    result["share_of_full_step"] = {
        "forward": ms["forward"] / ms["full train_step"],
        "backward": (ms["forward+backward"] - ms["forward"]) / ms["full train_step"],
        "optimizer": (ms["forward+backward+optimizer"] - ms["forward+backward"]) / ms["full train_step"],
        "draws, EMA, bookkeeping": (ms["full train_step"] - ms["forward+backward+optimizer"]) / ms["full train_step"],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    results = [breakdown(size, args.batch, args.repeats) for size in args.sizes]
    path = write_result("step_breakdown", {"results": results})  # prints the JSON too
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
