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
    workers2     two worker processes on 127.0.0.1, each pinned to one core with one thread per op,
                 MultiWorkerMirroredStrategy (``--strategy multiworker`` with TF_CONFIG): the same
                 global batch as one process; the chief's img/s is reported
    procs2       two independent one-thread processes pinned one per core, each training its own
                 batch: the sum of their img/s, the ceiling of what both cores give (not one run)

A name ending in ``@fp32`` (``default@fp32``) runs that configuration in float32 whatever ``--mixed``
says, so a run can compare the package default against the float32 step of before; ``@b1`` runs it
with one step branch (``TrainConfig.branches = 1``, TensorFlow's default threads): the step before
branches; ``@moments`` traces it with the GroupNorm fast path off (Keras' moments, as before
issue 28). ``default@fp32@b1@moments`` is the reference's step as it was when issue 28 was filed;
``@batch`` swaps the model's GroupNorm for BatchNorm (whose "auto" branches are 1). ``default`` is the package default: "auto" branches,
whose thread pools the trainer sets itself (two branches: one thread per op, two ops at a time).

``--config pretrained|FILE`` measures that RunConfig's model (the shipped reference's: GroupNorm)
instead of the default one; ``--mixed on|off|auto`` its precision (default: the package's, "auto").

Usage:
    python benchmarks/bench_threads.py --size 32 --steps 8 --rounds 3 \
        --configs default 1x2 mirrored2 --peer ../shared/bench/peer_unet_step.py
    python benchmarks/bench_threads.py --config pretrained --configs default workers2 procs2
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
    if name in ("workers2", "procs2"):
        return {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    if name.startswith("mirrored"):
        replicas = int(name[len("mirrored"):] or cores)
        return {"TF_NUM_INTRAOP_THREADS": str(max(1, cores // replicas)), "TF_NUM_INTEROP_THREADS": str(replicas),
                "PD_CPU_REPLICAS": str(replicas)}
    intra, inter = (int(v) for v in name.split("x"))
    return {"TF_NUM_INTRAOP_THREADS": str(intra), "TF_NUM_INTEROP_THREADS": str(inter)}


def _precision(mixed: str):
    from pokemon_diffusion.config import TrainConfig

    return {"on": True, "off": False}.get(mixed, TrainConfig.mixed_precision)


def worker(size: int, batch: int, steps: int, config_spec=None, mixed: str = "auto", branches=None,
           moments: bool = False, norm=None) -> dict:
    """Time the trainer's step in this process, under the thread settings of its environment
    (``PD_PIN_CORE``: pin to that core; ``TF_CONFIG``: one worker of a multi-worker run)."""
    import numpy as np

    if os.environ.get("PD_PIN_CORE"):
        os.sched_setaffinity(0, {int(os.environ["PD_PIN_CORE"])})
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import _trainer, base_config

    strategy = "auto"
    replicas = int(os.environ.get("PD_CPU_REPLICAS", "0") or 0)
    if os.environ.get("TF_CONFIG"):
        from pokemon_diffusion.training.distribute import make_strategy
        make_strategy("multiworker")  # before anything else starts TensorFlow
        strategy = "multiworker"
    elif replicas > 1:
        from pokemon_diffusion.training.distribute import split_cpu
        split_cpu(replicas)
        strategy = "mirrored"
    if moments:  # before the trainer traces its step: the GroupNorm fast path is never taken
        from pokemon_diffusion.model import fast_norm
        fast_norm._group_fusable = lambda *a: False
    config = base_config(config_spec)
    if branches is not None:
        config = config.replace(train=config.train.replace(branches=branches))
    if norm is not None:
        config = config.replace(model=config.model.replace(norm=norm))
    trainer, batches = _trainer(size, batch, mixed=_precision(mixed), strategy=strategy, config=config)
    for _ in range(2):
        trainer.train_step(next(batches))
    float(trainer.step.numpy())  # wait for the warm-up steps
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step(next(batches))
    float(np.asarray(loss))
    wall = time.perf_counter() - start
    return {"img_per_s": batch * steps / wall, "replicas": trainer.replicas, "branches": trainer.branches,
            # TensorFlow reads these at start-up; its getters report 0 for "not set through the API"
            "intra": os.environ.get("TF_NUM_INTRAOP_THREADS", "default"),
            "inter": os.environ.get("TF_NUM_INTEROP_THREADS", "default")}


def _run(name: str, args) -> float:
    name, *suffixes = name.split("@")
    mixed = "off" if "fp32" in suffixes else args.mixed
    env = {**os.environ, **config_env(name, os.cpu_count() or 1)}
    if name == "peer":
        cmd = [sys.executable, args.peer, "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        return float(json.loads(out.strip().splitlines()[-1])["img_per_s"])
    cmd = [sys.executable, str(Path(__file__)), "--worker", "--size", str(args.size), "--batch", str(args.batch),
           "--steps", str(args.steps), "--mixed", mixed] + (["--config", args.config] if args.config else []) \
        + (["--branches", "1"] if "b1" in suffixes else []) + (["--moments"] if "moments" in suffixes else []) \
        + (["--norm", "batch"] if "batch" in suffixes else [])
    envs = [env]
    if name in ("workers2", "procs2"):
        envs = [{**env, "PD_PIN_CORE": str(i % (os.cpu_count() or 1))} for i in range(2)]
        if name == "workers2":
            from pokemon_diffusion.training.distribute import local_tf_configs

            for e, tf_config in zip(envs, local_tf_configs(2)):
                e["TF_CONFIG"] = tf_config
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e) for e in envs]
    rates = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"{name} worker failed: {err[-2000:]}")
        rates.append(float(json.loads(out.strip().splitlines()[-1])["img_per_s"]))
    # workers2: each worker times the same global steps, the chief's figure; procs2: independent runs, summed
    return sum(rates) if name == "procs2" else rates[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=["default", "1x2", "mirrored2"])
    parser.add_argument("--peer", default=None, help="the plain Keras U-Net script (../shared/bench/peer_unet_step.py)")
    parser.add_argument("--config", metavar="pretrained|FILE", help="measure this RunConfig's model (default: the default one)")
    parser.add_argument("--mixed", choices=("on", "off", "auto"), default="auto",
                        help="mixed precision (default: the package's default, 'auto')")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--branches", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--moments", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--norm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.size, args.batch, args.steps, args.config, args.mixed, args.branches, args.moments,
                                args.norm)),
              flush=True)
        return 0
    names = list(args.configs) + (["peer"] if args.peer else [])
    runs = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names:
            runs[name].append(_run(name, args))
            print(f"round {r + 1} {name}: {runs[name][-1]:.1f} img/s", file=sys.stderr, flush=True)
    first = names[0]
    result = {"size": args.size, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
              "config": args.config or "default ModelConfig", "mixed": args.mixed,
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
