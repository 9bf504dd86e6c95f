"""Sampling in float32 against bfloat16 (``SampleConfig.mixed_precision``), the shipped model, same process.

Loads the shipped model twice (``load_pretrained(mixed_precision=False)`` and ``=True``) and times,
alternating the two ``--repeats`` times after a warm-up, prompt embedding to images:
32² base (DDIM-50, guidance 3) at batch 1 and ``--batch``, and one 128² image from the cascade.
Reports the medians, their ratio, and how far the bfloat16 images are from the float32 ones
(mean and largest absolute difference in [0, 255] steps; same seed, same noise). One JSON line.

Usage:
    python benchmarks/bench_sampling_precision.py --repeats 3
    taskset -c 1 env TF_NUM_INTRAOP_THREADS=1 python benchmarks/bench_sampling_precision.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("POKEMON_DIFFUSION_PROGRESS", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--skip-cascade", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from pokemon_diffusion.diffusion.samplers import sample
    from pokemon_diffusion.hardware import cpu_flags, native_bfloat16
    from pokemon_diffusion.pretrained import load_pretrained

    runs = {"float32": load_pretrained(mixed_precision=False), "bfloat16": load_pretrained(mixed_precision=True)}
    emb = np.random.default_rng(0).standard_normal((args.batch, runs["float32"].encoder.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)  # unit norm, as MiniLM's
    cases = {"base_32_batch1": (1, 32), f"base_32_batch{args.batch}": (args.batch, 32)}
    if not args.skip_cascade and len(getattr(runs["float32"], "sizes", [32])) > 1:
        cases["cascade_128_batch1"] = (1, runs["float32"].sizes[-1])
    report = {"cpu_bfloat16": native_bfloat16(cpu_flags()), "threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
              "cases": {}}
    for case, (batch, size) in cases.items():
        times = {name: [] for name in runs}
        images = {}
        for rep in range(args.repeats + 1):  # the first round warms both up (traces, oneDNN kernels)
            for name, run in runs.items():
                model = run if size > 32 else getattr(run, "base", run).model
                start = time.perf_counter()
                result = sample(model, emb[:batch], (batch, size, size, 3), schedule=run.schedule, steps=50,
                                guidance_scale=3.0, seed=1, progress=False)
                if rep:
                    times[name].append(time.perf_counter() - start)
                images[name] = np.asarray(result.images, np.float64)
        diff = np.abs(images["float32"] - images["bfloat16"]) * 127.5  # [-1, 1] -> [0, 255] steps
        medians = {name: statistics.median(t) for name, t in times.items()}
        report["cases"][case] = {"median_s": medians, "speedup": medians["float32"] / medians["bfloat16"],
                                 "mean_abs_diff_255": float(diff.mean()), "max_abs_diff_255": float(diff.max())}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
