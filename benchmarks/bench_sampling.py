"""Sampling latency: compiled DDIM / DDPM loops with guidance, and a per-step ``predict`` loop.

Prints one JSON object. The U-Net is the default ModelConfig (random weights: speed does not
depend on them). DDPM's cost per step does not depend on T, so ``--ddpm-timesteps 100`` measures
a T = 100 run and reports it scaled to 1000 steps (marked "extrapolated").

Usage:
    python benchmarks/bench_sampling.py --size 32 --batch 8
    python benchmarks/bench_sampling.py --size 64 --batch 4 --ddpm-timesteps 100 --skip-predict-loop
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def predict_loop_ddim(model, schedule, text_emb, shape, steps, guidance, seed):
    """The anti-pattern the samplers avoid: one eager ``model.predict`` call per step."""
    import numpy as np

    from pokemon_diffusion.diffusion.steps import ddim_timesteps

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    emb = np.repeat(np.asarray(text_emb, np.float32)[None], shape[0], 0)
    abar_all = schedule.alphas_cumprod.astype(np.float64)
    ts = ddim_timesteps(schedule.timesteps, steps)
    for i, t in enumerate(ts):
        batch_t = np.full(2 * shape[0], t, np.int32)
        out = model.predict([np.concatenate([x, x]), batch_t, np.concatenate([emb, np.zeros_like(emb)])],
                            verbose=0)
        cond, null = np.split(out, 2)
        eps = null + guidance * (cond - null)
        abar = abar_all[t]
        abar_prev = abar_all[ts[i + 1]] if i + 1 < len(ts) else 1.0
        x0 = np.clip((x - np.sqrt(1 - abar) * eps) / np.sqrt(abar), -1, 1)
        eps = (x - np.sqrt(abar) * x0) / np.sqrt(1 - abar)
        x = (np.sqrt(abar_prev) * x0 + np.sqrt(1 - abar_prev) * eps).astype(np.float32)
    return x


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--ddpm-timesteps", type=int, default=1000)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--skip-ddpm", action="store_true")
    parser.add_argument("--skip-predict-loop", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from pokemon_diffusion.config import DiffusionConfig, ModelConfig
    from pokemon_diffusion.diffusion.samplers import sample
    from pokemon_diffusion.diffusion.schedule import make_schedule
    from pokemon_diffusion.model.unet import build_unet

    config = ModelConfig(image_size=args.size)
    model = build_unet(config)
    emb = np.random.default_rng(0).normal(size=config.text_dim).astype(np.float32)
    shape = (args.batch, args.size, args.size, config.channels)
    schedule = make_schedule(DiffusionConfig(timesteps=1000))
    report = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "tensorflow": tf.__version__, "size": args.size, "batch": args.batch,
              "params": int(model.count_params()), "guidance": args.guidance}

    def ddim():
        return sample(model, emb, shape, schedule=schedule, steps=args.ddim_steps,
                      guidance_scale=args.guidance, seed=0, progress=False)

    first = timed(ddim)
    again = ddim().seconds
    report["ddim"] = {"steps": args.ddim_steps, "first_call_s": round(first, 2), "seconds": round(again, 2),
                      "seconds_per_image": round(again / args.batch, 3)}

    if not args.skip_ddpm:
        short = make_schedule(DiffusionConfig(timesteps=args.ddpm_timesteps))

        def ddpm():
            return sample(model, emb, shape, schedule=short, sampler="ddpm", guidance_scale=args.guidance,
                          seed=0, progress=False)

        ddpm()  # trace
        seconds = ddpm().seconds * 1000 / args.ddpm_timesteps
        report["ddpm_1000"] = {"seconds": round(seconds, 1), "seconds_per_image": round(seconds / args.batch, 2),
                               "extrapolated_from_T": args.ddpm_timesteps if args.ddpm_timesteps != 1000 else None}

    if not args.skip_predict_loop:
        predict_loop_ddim(model, schedule, emb, shape, 2, args.guidance, 0)  # warm up predict
        seconds = timed(lambda: predict_loop_ddim(model, schedule, emb, shape, args.ddim_steps,
                                                  args.guidance, 0))
        report["ddim_predict_loop"] = {"steps": args.ddim_steps, "seconds": round(seconds, 2),
                                       "seconds_per_image": round(seconds / args.batch, 3),
                                       "compiled_speedup": round(seconds / again, 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
