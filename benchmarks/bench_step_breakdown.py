"""Where the trainer's step time goes: the real ``Trainer`` step with one feature removed at a time.

Every variant is the trainer's own ``_train_step`` (same model, optimizer, variables, batch), traced
while one of its parts is swapped out, and compiled like ``Trainer.train_step``; only the first
call of each variant runs Python, so the swaps cost nothing at run time. Variants:
  trainer          Trainer.train_step itself (free batch axis in the signature, everything on)
  - map_fn draws   t and ε from one batched stateless call keyed by the step only
  - EMA            no EMA update
  - clipping       no global-norm clipping
  - bookkeeping    no NaN guard / loss sums
  - strategy.run   _replica_step called directly (no tf.distribute wrapping)
  - free batch     traced for the concrete batch shape (no input_signature)
  - folded norm    the ResBlocks call the Keras norm layer, then scale and shift (the unfolded
                   form of ``fast_norm.modulated_norm``: four full-size passes instead of two)
  - fused norm     BatchNorm's batch statistics from moments and one multiply-add (the folded
                   form) instead of TensorFlow's fused kernel (``fast_norm._fused_batch_norm``)
  plain            the same model in a plain step: uniform t, normal noise, ε-MSE, AdamW (nothing else)
Rounds alternate the variants (A/B/C... A/B/C...) and report the median ms per step of each and
its ratio to ``trainer`` measured in the same round, so machine load cancels out. ``--profile``
also writes a ``tf.profiler`` trace of the trainer's step and prints its top ops.

    python benchmarks/bench_step_breakdown.py --sizes 32 --rounds 5 --profile
    python benchmarks/bench_step_breakdown.py --sizes 32 64 --variants "- fused norm" plain
"""

from __future__ import annotations

import argparse
import collections
import glob
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402
from bench_train import _trainer, plain_step  # noqa: E402


def _batched_draws(trainer):
    import tensorflow as tf

    def draws(key, index):
        n = tf.shape(index)[0]
        seeds = tf.random.experimental.stateless_split(key, 3)
        t = tf.random.stateless_uniform([n], seeds[0], 0, trainer.schedule.timesteps, tf.int32)
        noise = tf.random.stateless_normal(tf.concat([[n], trainer.image_shape], 0), seeds[1])
        return t, noise, tf.random.stateless_uniform([n], seeds[2]) < trainer.config.train.cond_drop
    return draws


def _unfolded_norm(layer, x, training, update_stats=True, *, scale=None, shift=None):
    """``modulated_norm``'s signature, computed the unfolded way (the ResBlock before the fold)."""
    from pokemon_diffusion.model.fast_norm import norm_then_modulate

    return norm_then_modulate(layer, x, training, scale=scale, shift=shift)


_VARIANTS = ("- map_fn draws", "- EMA", "- clipping", "- bookkeeping", "- strategy.run", "- folded norm",
             "- fused norm", "- free batch", "plain")


def _swaps(trainer) -> Dict[str, Dict[str, Any]]:
    """variant -> {attribute of the trainer ('ema.update'; 'module:NAME.attr' for a module's
    function): replacement while tracing}."""
    import tensorflow as tf

    return {
        "trainer": {},
        "- map_fn draws": {"_draws": _batched_draws(trainer)},
        "- EMA": {"ema.update": lambda step: step},
        "- clipping": {"_clip": lambda grads: (grads, tf.zeros([]))},
        "- bookkeeping": {"_bookkeeping": lambda loss, norm: None},
        "- strategy.run": {"strategy.run": lambda fn, args: fn(*args)},
        "- folded norm": {"module:pokemon_diffusion.model.layers.modulated_norm": _unfolded_norm},
        "- fused norm": {"module:pokemon_diffusion.model.fast_norm._fusable": lambda *args: False},
    }


def _traced_variant(trainer, swaps: Dict[str, Any], batch, signature: bool) -> Callable:
    """Compile trainer._train_step with ``swaps`` applied during its (single) trace."""
    import tensorflow as tf

    spec = [tf.nest.map_structure(lambda t: tf.TensorSpec([None] + t.shape[1:], t.dtype), batch)]
    fn = tf.function(trainer._train_step, input_signature=spec if signature else None, autograph=False)
    saved = {}
    for name, value in swaps.items():
        if name.startswith("module:"):
            module, attr = name[len("module:"):].rsplit(".", 1)
            owner = importlib.import_module(module)
        else:
            owner, attr = (trainer, name) if "." not in name else (getattr(trainer, name.split(".")[0]), name.split(".")[1])
        saved[(id(owner), attr)] = (owner, attr, getattr(owner, attr))
        setattr(owner, attr, value)
    try:
        fn(batch).numpy()  # the trace
    finally:
        for owner, attr, value in saved.values():
            setattr(owner, attr, value)
    return fn


def profile_top_ops(step: Callable, batch, steps: int = 3, top: int = 20) -> Dict[str, Any]:
    """Op time of ``step`` from a tf.profiler trace, by op type and by part (forward/backward/...)."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = tempfile.mkdtemp(prefix="step_trace_")
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        step(batch).numpy()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    by_type: Dict[str, float] = collections.Counter()
    by_part: Dict[str, float] = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "::" in name:  # executor bookkeeping, not an op
                    continue
                op, kind = name.rsplit(":", 1)
                ms = event.duration_ps / 1e9 / steps
                by_type[kind] += ms
                scope = op.split("/")[0]
                by_part["backward" if scope.startswith("gradient_tape") else
                        "forward" if scope.startswith("unet") else
                        "AdamW" if scope.startswith("adam") else
                        "draws (map_fn)" if scope == "map" else
                        # keras.ops inside the custom layers get no layer scope on TF (the blocks'
                        # swish and scale/shift), nor do the EMA, clipping, q_sample and bookkeeping
                        "unscoped ops"] += ms
    total = sum(by_type.values())
    return {"trace_dir": logdir, "op_ms_per_step": round(total, 1),
            "top_ops": [{"op": k, "ms": round(v, 1), "share": round(v / total, 3)} for k, v in
                        sorted(by_type.items(), key=lambda kv: -kv[1])[:top]],
            "parts": {k: round(v / total, 3) for k, v in sorted(by_part.items(), key=lambda kv: -kv[1])}}


def breakdown(size: int, batch_size: int, rounds: int, steps: int, profile: bool, only=None) -> dict:
    trainer, batches = _trainer(size, batch_size)
    batch = next(batches)
    trainer.train_step(batch).numpy()
    variants = {"trainer": trainer.train_step}
    wanted = (lambda name: True) if not only else (lambda name: name in only)
    for name, swaps in list(_swaps(trainer).items())[1:]:
        if wanted(name):
            variants[name] = _traced_variant(trainer, swaps, batch, signature=True)
    if wanted("- free batch"):
        variants["- free batch"] = _traced_variant(trainer, {}, batch, signature=False)
    if wanted("plain"):
        variants["plain"] = plain_step(trainer)
    ms: Dict[str, List[float]] = {name: [] for name in variants}
    ratio: Dict[str, List[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn(batch).numpy()
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = fn(batch)
            loss.numpy()
            ms[name].append((time.perf_counter() - start) / steps * 1e3)
        for name in variants:
            ratio[name].append(ms[name][-1] / ms["trainer"][-1])
    result = {"image_size": size, "batch": batch_size, "rounds": rounds, "steps_per_round": steps,
              "load_average": os.getloadavg()[0],
              "median_ms": {k: round(statistics.median(v), 1) for k, v in ms.items()},
              "median_ratio_to_trainer": {k: round(statistics.median(v), 3) for k, v in ratio.items()}}
    print(json.dumps(result), flush=True)
    if profile:
        result["profile"] = profile_top_ops(trainer.train_step, batch)
        print(json.dumps(result["profile"]), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument("--profile", action="store_true", help="also trace the trainer's step with tf.profiler")
    parser.add_argument("--variants", nargs="+", metavar="NAME",
                        help="only these variants beside the trainer (default: all)")
    args = parser.parse_args()
    known = set(_VARIANTS)
    if args.variants and not set(args.variants) <= known:
        parser.error(f"--variants: got {sorted(set(args.variants) - known)}; allowed: {sorted(known)}")
    results = [breakdown(size, args.batch, args.rounds, args.steps, args.profile, args.variants)
               for size in args.sizes]
    path = write_result("step_breakdown", {"results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
