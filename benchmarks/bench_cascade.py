"""Warm time from a prompt to a PNG file: one image at each size of a cascade (default: the shipped model).

Per size: the prompt encoded with the run's text encoder, sampled with the defaults (DDIM-50, guidance
3; a cascade's stages with their ``stage_steps``) and written as one PNG with its metadata
(``image_files.save_images``, what ``sample --out-dir`` writes). One warm-up call per size traces the
compiled loops and loads the encoder; then ``--repeats`` timed calls. Prints a table (best and median
seconds, the sampling part alone) and the threads TensorFlow used; ``--json PATH`` writes the figures.
The target: one 128x128 image in at most 5 s warm on a 2-core CPU.

Usage:
    python benchmarks/bench_cascade.py                          # the shipped model, 5 repeats
    python benchmarks/bench_cascade.py --run runs/cascade --repeats 3 --json benchmarks/results/cascade.json
    python benchmarks/bench_cascade.py --threads 1              # TensorFlow on one thread
    python benchmarks/bench_cascade.py --tf-pools --one-pass    # the threads and guided pass of before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TARGET_SIZE, TARGET_S = 128, 5.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a cascade (or single run) folder (default: the shipped model)")
    parser.add_argument("--prompt", default="Pikachu")
    parser.add_argument("--steps", type=int, default=50, help="the base's DDIM steps (default: %(default)s)")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per size after the warm-up")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow intra-op threads, one op at a time (default: as `sample` sets them)")
    parser.add_argument("--tf-pools", action="store_true",
                        help="leave TensorFlow's own thread pools (every core per op) instead of setting them as `sample` does")
    parser.add_argument("--one-pass", action="store_true",
                        help="the guided step as one batched pass [cond; uncond] (a GPU's form) instead of two branches")
    parser.add_argument("--no-encoder", action="store_true",
                        help="a fixed unit embedding instead of encoding the prompt (runs without its encoder)")
    parser.add_argument("--float32", action="store_true",
                        help="load the network in float32 (default: as `sample` does, SampleConfig.mixed_precision)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif not args.tf_pools:  # as the `sample` command sets them (threads.py)
        from pokemon_diffusion.threads import configure_for_sampling

        configure_for_sampling()
    if args.one_pass:
        from pokemon_diffusion.diffusion import compiled

        compiled.split_guided_pass = lambda **kwargs: False
    from pokemon_diffusion.config import SampleConfig
    from pokemon_diffusion.generate import generate
    from pokemon_diffusion.image_files import save_images
    from pokemon_diffusion.pretrained import load_pretrained, model_name
    from pokemon_diffusion.run_dir import load_run

    from pokemon_diffusion.config import SampleConfig

    precision = False if args.float32 else SampleConfig().mixed_precision  # what `sample` and the app use
    run = (load_pretrained(mixed_precision=precision) if args.run is None
           else load_run(args.run, mixed_precision=precision))
    sizes = list(getattr(run, "sizes", [run.config.model.image_size]))
    config = SampleConfig(steps=min(args.steps, run.config.diffusion.timesteps), guidance_scale=args.guidance, seed=0)
    if args.no_encoder:
        emb = np.random.default_rng(0).standard_normal((1, run.encoder.dim)).astype(np.float32)
        options = dict(embeddings=emb / np.linalg.norm(emb))
    else:
        from pokemon_diffusion.text.registry import load_encoder_matching

        options = dict(encoder=load_encoder_matching(run.encoder))
    name = model_name(run)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cascade-") as folder:
        def once(size):
            started = time.perf_counter()
            result, labels = generate(run, [args.prompt], size=size, config=config, **options)
            written, = save_images(result, [args.prompt], Path(folder) / str(size), encoded=labels, model=name)
            return time.perf_counter() - started, result.seconds, result.steps, written

        for size in sizes:
            warm_up, *_ = once(size)
            timed = [once(size) for _ in range(args.repeats)]
            totals, sampling = [t[0] for t in timed], [t[1] for t in timed]
            rows.append({"size": size, "steps": timed[-1][2], "warm_up_s": round(warm_up, 3),
                         "best_s": round(min(totals), 3), "median_s": round(statistics.median(totals), 3),
                         "sampling_median_s": round(statistics.median(sampling), 3),
                         "png_bytes": timed[-1][3].stat().st_size})
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    threads = {"tf_intra_op": intra or f"0 (TensorFlow's default: {os.cpu_count()} cores)",
               "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
               "cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
               "load_average": [round(x, 2) for x in os.getloadavg()]}
    report = {"model": name, "sizes": sizes, "prompt": args.prompt, "base_steps": config.steps,
              "guidance": args.guidance, "repeats": args.repeats, "encoder": "none (fixed embedding)"
              if args.no_encoder else run.encoder.name, "threads": threads, "rows": rows}
    target = next((r for r in rows if r["size"] == TARGET_SIZE), None)
    if target is not None:
        report["target"] = {"size": TARGET_SIZE, "seconds": TARGET_S, "met": target["best_s"] <= TARGET_S}
    print(f"{name}: prompt {args.prompt!r} -> one PNG, DDIM-{config.steps} base, guidance {args.guidance:g}, "
          f"{args.repeats} repeats after a warm-up")
    print(f"{'size':>9} {'steps':>6} {'best s':>8} {'median s':>9} {'sampling s':>11} {'warm-up s':>10}")
    for r in rows:
        print(f"{r['size']:>4}x{r['size']:<4} {r['steps']:>6} {r['best_s']:>8.2f} {r['median_s']:>9.2f} "
              f"{r['sampling_median_s']:>11.2f} {r['warm_up_s']:>10.2f}")
    print(f"threads: TensorFlow intra-op {threads['tf_intra_op']}, inter-op {threads['tf_inter_op']}; "
          f"{threads['affinity']} of {threads['cpu_count']} cores usable; load average {threads['load_average']}")
    if target is not None:
        print(f"target: {TARGET_SIZE}x{TARGET_SIZE} in <= {TARGET_S:g} s warm: "
              f"{'met' if report['target']['met'] else 'NOT met'} (best {target['best_s']:.2f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
