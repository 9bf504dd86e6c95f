"""How TensorFlow's thread pools (and a two-replica CPU split) change the trainer's step on this CPU.

Each configuration runs the trainer's compiled step (``Trainer.train_step``, batch 32, the default
U-Net) in a fresh subprocess, because TensorFlow fixes its thread pools when it starts. Rounds
alternate the configurations (and, with ``--peer``, the shared plain Keras U-Net script under
TensorFlow's defaults), so the machine's load drifts over all of them alike; the medians of the
per-round ratios to the first configuration are reported.

Configurations (``--configs``), ``NAME`` = ``INTRAxINTER`` or ``mirroredN``:
    default      TensorFlow's choice (intra = inter = cores)
    1x2          TF_NUM_INTRAOP_THREADS=1, TF_NUM_INTEROP_THREADS=2: one thread per op, two ops at a time
    2x1          two threads per op, one op at a time
    mirrored2    two logical CPU devices, MirroredStrategy, one thread per op, two ops at a time
                 (``TrainConfig.strategy = "mirrored"``, ``PD_CPU_REPLICAS=2``)

Usage:
    python benchmarks/bench_threads.py --size 32 --steps 8 --rounds 3 \
        --configs default 1x2 mirrored2 --peer ../shared/bench/peer_unet_step.py
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def config_env(name: str, cores: int) -> dict:
    """The environment variables of a configuration name (see the module docstring)."""
    if name in ("default", "peer"):
        return {}
    if name.startswith("mirrored"):
        replicas = int(name[len("mirrored"):] or cores)
        return {"TF_NUM_INTRAOP_THREADS": str(max(1, cores // replicas)), "TF_NUM_INTEROP_THREADS": str(replicas),
                "PD_CPU_REPLICAS": str(replicas)}
    intra, inter = (int(v) for v in name.split("x"))
    return {"TF_NUM_INTRAOP_THREADS": str(intra), "TF_NUM_INTEROP_THREADS": str(inter)}


def worker(size: int, batch: int, steps: int) -> dict:
    """Time the trainer's step in this process, under the thread settings of its environment."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import _trainer

    replicas = int(os.environ.get("PD_CPU_REPLICAS", "0") or 0)
    if replicas > 1:
        from pokemon_diffusion.training.distribute import split_cpu
        split_cpu(replicas)
    trainer, batches = _trainer(size, batch, strategy="mirrored" if replicas > 1 else "auto")
    for _ in range(2):
        trainer.train_step(next(batches))
    float(trainer.step.numpy())  # wait for the warm-up steps
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step(next(batches))
    float(np.asarray(loss))
    wall = time.perf_counter() - start
    return {"img_per_s": batch * steps / wall, "replicas": trainer.replicas,
            # TensorFlow reads these at start-up; its getters report 0 for "not set through the API"
            "intra": os.environ.get("TF_NUM_INTRAOP_THREADS", "default"),
            "inter": os.environ.get("TF_NUM_INTEROP_THREADS", "default")}


def _run(name: str, args) -> float:
    env = {**os.environ, **config_env(name, os.cpu_count() or 1)}
    if name == "peer":
        cmd = [sys.executable, args.peer, "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps)]
    else:
        cmd = [sys.executable, str(Path(__file__)), "--worker", "--size", str(args.size), "--batch", str(args.batch),
               "--steps", str(args.steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return float(json.loads(out.strip().splitlines()[-1])["img_per_s"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=["default", "1x2", "mirrored2"])
    parser.add_argument("--peer", default=None, help="the plain Keras U-Net script (../shared/bench/peer_unet_step.py)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.size, args.batch, args.steps)), flush=True)
        return 0
    names = list(args.configs) + (["peer"] if args.peer else [])
    runs = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names:
            runs[name].append(_run(name, args))
            print(f"round {r + 1} {name}: {runs[name][-1]:.1f} img/s", file=sys.stderr, flush=True)
    first = names[0]
    result = {"size": args.size, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
              "img_per_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
              f"ratio_to_{first}": {k: round(statistics.median(a / b for a, b in zip(vs, runs[first])), 3)
                                    for k, vs in runs.items()}}
    if args.peer:
        result["ratio_to_peer"] = {k: round(statistics.median(a / b for a, b in zip(vs, runs["peer"])), 3)
                                   for k, vs in runs.items() if k != "peer"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
