"""The cost of streaming: ``iter_sample(every=k)`` against ``sample()`` on the shipped reference model.

One 32x32 image, DDIM-50 with guidance (two U-Net passes per step, batched), the same seed.
Both run once to trace, then alternate A/B ``--rounds`` times in this process, so a load change
on the machine hits both alike. Prints one JSON object; ``overhead`` is median(iter) /
median(sample) − 1 (target: <= ~0.10 at k = 5), ``overhead_min`` the same from the fastest runs.

Usage:
    python benchmarks/bench_streaming.py                 # k = 5, 5 rounds
    python benchmarks/bench_streaming.py --every 1 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=5, help="steps between frames")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import numpy as np

    from pokemon_diffusion import load_pretrained
    from pokemon_diffusion.diffusion.samplers import sample
    from pokemon_diffusion.diffusion.streaming import iter_sample

    run = load_pretrained()
    size = run.config.model.image_size
    # any unit vector: speed does not depend on the prompt, and this keeps torch out of the process
    emb = np.random.default_rng(0).standard_normal(run.encoder.dim).astype(np.float32)
    emb /= np.linalg.norm(emb)
    kwargs = dict(schedule=run.schedule, sampler="ddim", steps=args.steps, guidance_scale=args.guidance,
                  seed=0, progress=False)
    shape = (1, size, size, run.config.model.channels)

    def plain():
        return sample(run.model, emb, shape, **kwargs).images

    def streamed():
        stream_kwargs = {k: v for k, v in kwargs.items() if k != "progress"}
        frames = 0
        for frame in iter_sample(run.model, emb, shape, every=args.every, **stream_kwargs):
            frames += 1
        return frame.result.images, frames

    # trace both once; they share one compiled loop, and must agree
    reference = plain()
    images, frames = streamed()
    assert np.array_equal(images, reference), "iter_sample's last frame differs from sample()"

    times = {"sample": [], "iter_sample": []}
    for _ in range(args.rounds):
        for name, fn in (("sample", plain), ("iter_sample", streamed)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({
        "model": "shipped reference (load_pretrained)", "image": f"1x{size}x{size}", "sampler": "ddim",
        "steps": args.steps, "guidance": args.guidance, "every": args.every, "frames": frames,
        "rounds": args.rounds, "seconds": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "overhead": round(med["iter_sample"] / med["sample"] - 1.0, 4),
        # the fastest of each: the least disturbed by other work on a shared machine
        "overhead_min": round(min(times["iter_sample"]) / min(times["sample"]) - 1.0, 4),
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
