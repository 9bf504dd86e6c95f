"""Train-step throughput against this machine's own matmul peak, and where the step time goes.

For each image size: img/s of the project's compiled train step (``Trainer.train_step``, batch 32,
the default U-Net, or with ``--config pretrained|FILE`` the shipped reference's configuration or
any RunConfig JSON, an upsampler's included), FLOPs per image (forward counted from the graph;
training = 3x forward: forward + the two backward matmuls of every layer), achieved GFLOP/s as a
fraction of the float32 matmul peak and, for the ``mixed_bfloat16`` step, of the bfloat16 peak
(both measured in the same run), the same step eager and under XLA (``jit_compile=True``), and the
fraction of the step spent waiting for the tf.data pipeline. Peak RSS of a 64² batch-32 run, with and without
``--remat``, is measured in fresh subprocesses (``--rss-only``) so that other sizes do not inflate it.

Ratios: ``trainer / plain`` (the same model in a plain tf.function step, alternated with the
trainer's in the same process) and, with ``--peer FILE`` (the shared plain Keras U-Net script,
/work/shared/bench/peer_unet_step.py; ../shared/bench/ in CI), ``trainer / peer``: rounds alternate
one trainer measurement and one run of the peer script in a subprocess, and the medians of the
per-round ratios are reported, so that the machine's load cancels out.

Usage:
    python benchmarks/bench_train.py                       # 32 and 64, everything (~6 min on 2 cores)
    python benchmarks/bench_train.py --sizes 32 --steps 10 --skip-eager --skip-xla
    python benchmarks/bench_train.py --config pretrained --sizes 32 --skip-eager --skip-xla --skip-rss
    python benchmarks/bench_train.py --sizes 32 64 --skip-eager --skip-xla --skip-mixed \
        --peer /work/shared/bench/peer_unet_step.py --rounds 3
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import matmul_peak_gflops, peak_rss_mb, write_result  # noqa: E402


def base_config(spec=None):
    """The RunConfig to measure: ``None`` the default model, ``"pretrained"`` the shipped reference's
    configuration, else a RunConfig JSON file (a run's ``config.json``, an upsampler's included)."""
    from pokemon_diffusion.config import RunConfig

    if spec is None:
        return RunConfig()
    if spec == "pretrained":
        from pokemon_diffusion.pretrained import pretrained_dir
        spec = pretrained_dir() / "config.json"
    return RunConfig.load(spec)


def _trainer(size: int, batch: int, mixed=False, remat: bool = False, strategy: str = "auto", config=None,
             **model):
    """A Trainer of ``config`` (default: the default model) at ``size``, batch ``batch``, and its batches.

    ``model``: ModelConfig fields to change (e.g. ``norm="batch"``); ``mixed``: TrainConfig.mixed_precision.
    """
    import functools

    import numpy as np

    from pokemon_diffusion.data.dataset import make_dataset
    from pokemon_diffusion.data.pairs import pair_element
    from pokemon_diffusion.training.trainer import Trainer

    config = base_config() if config is None else config
    config = config.replace(model=config.model.replace(image_size=size, **model),
                            train=config.train.replace(steps=1000, epochs=None, batch_size=batch, mixed_precision=mixed,
                                                       remat=remat, strategy=strategy, crop_size=None))
    trainer = Trainer(config, total_steps=1000)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (256, size, size, 3)).astype(np.float32)
    embeddings = rng.standard_normal((256, config.model.text_dim)).astype(np.float32)
    low_res = config.model.low_res  # an upsampler: its (image, low-res condition) pairs made in the stream
    pair_fn = functools.partial(pair_element, low_res=low_res, crop=size, aug_max=config.train.aug_max,
                                seed=0) if low_res else None
    # as loop.train makes it: no drop_remainder, so the step's signature has a free batch axis
    batches = trainer.distribute(make_dataset(images, embeddings, batch, repeat=True, with_index=True,
                                              pair_fn=pair_fn))
    return trainer, iter(batches)


def plain_step(trainer):
    """The trainer's model in a plain step (uniform t, normal noise, ε-MSE, AdamW; nothing else)."""
    import keras
    import tensorflow as tf

    model, optimizer = trainer.model, keras.optimizers.AdamW(2e-4)
    optimizer.build(model.trainable_variables)
    alpha_bar = tf.constant(trainer.schedule.alphas_cumprod, tf.float32)

    @tf.function(autograph=False)
    def step(batch):
        x0, text = batch[0], batch[1]
        t = tf.random.uniform(tf.shape(x0)[:1], 0, trainer.schedule.timesteps, tf.int32)
        noise = tf.random.normal(tf.shape(x0))
        a = tf.gather(alpha_bar, t)[:, None, None, None]
        with tf.GradientTape() as tape:
            prediction = model([tf.sqrt(a) * x0 + tf.sqrt(1.0 - a) * noise, t, text], training=True)
            loss = tf.reduce_mean(tf.square(prediction - noise))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss
    return step


def _run_peer(peer: str, size: int, batch: int, steps: int) -> float:
    out = subprocess.run([sys.executable, peer, "--size", str(size), "--batch", str(batch), "--steps", str(steps)],
                         capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["img_per_s"])


def ratios(trainer, batches, batch: int, steps: int, rounds: int, peer=None, defaults=None) -> dict:
    """Alternate trainer / plain step / peer (subprocess) for ``rounds``; medians of per-round ratios.

    ``defaults``: ``(trainer, batches)`` of the package's default precision (``"auto"``) where it
    differs from float32 here, alternated too (``defaults_over_float32``, ``defaults_over_peer``)."""
    plain = plain_step(trainer)
    runs = {"trainer": [], "plain": [], "peer": [], "defaults": []}
    for _ in range(rounds):
        if defaults:
            runs["defaults"].append(_images_per_s(defaults[0].train_step, defaults[1], batch, steps, warmup=1)[0])
        runs["trainer"].append(_images_per_s(trainer.train_step, batches, batch, steps, warmup=1)[0])
        runs["plain"].append(_images_per_s(plain, batches, batch, steps, warmup=1)[0])
        if peer:
            runs["peer"].append(_run_peer(peer, trainer.image_shape[0], batch, steps))
    result = {"rounds": rounds, "load_average": os.getloadavg()[0],
              "img_per_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items() if vs},
              "trainer_over_plain": statistics.median(a / b for a, b in zip(runs["trainer"], runs["plain"]))}
    if peer:
        result["trainer_over_peer"] = statistics.median(a / b for a, b in zip(runs["trainer"], runs["peer"]))
    if defaults:
        result["defaults_policy"] = defaults[0].policy
        result["defaults_over_float32"] = statistics.median(a / b for a, b in zip(runs["defaults"], runs["trainer"]))
        if peer:
            result["defaults_over_peer"] = statistics.median(a / b for a, b in zip(runs["defaults"], runs["peer"]))
    print(json.dumps({"size": trainer.image_shape[0], **result}), flush=True)
    return result


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


def bench_size(size: int, batch: int, steps: int, peaks: dict, skip_eager: bool, skip_xla: bool,
               skip_mixed: bool, rounds: int = 0, peer=None, config=None) -> dict:
    import tensorflow as tf

    from pokemon_diffusion.model.unet import count_flops

    peak = peaks["float32"]
    trainer, batches = _trainer(size, batch, config=config)
    forward = count_flops(trainer.model, batch_size=1)
    result = {"image_size": size, "batch": batch, "forward_gflops_per_image": forward / 1e9,
              "train_gflops_per_image": 3 * forward / 1e9}
    ips, wait = _images_per_s(trainer.train_step, batches, batch, steps)
    achieved = 3 * forward * ips / 1e9
    result["tf_function"] = {"img_per_s": ips, "achieved_gflops": achieved, "fraction_of_matmul_peak": achieved / peak,
                             "data_wait_fraction": wait}
    if rounds and trainer.config.model.low_res is None:  # the plain step and the peer are base models
        from pokemon_diffusion.config import TrainConfig

        defaults = _trainer(size, batch, mixed=TrainConfig.mixed_precision, config=config)
        result["ratios"] = ratios(trainer, batches, batch, steps, rounds, peer,
                                  defaults if defaults[0].policy != "float32" else None)
        tf.keras.mixed_precision.set_global_policy("float32")
    if not skip_xla:
        xla = tf.function(trainer._train_step, jit_compile=True)
        start = time.perf_counter()
        xla(next(batches)).numpy()
        compile_s = time.perf_counter() - start
        ips, _ = _images_per_s(xla, batches, batch, steps)
        result["xla"] = {"img_per_s": ips, "fraction_of_matmul_peak": 3 * forward * ips / 1e9 / peak,
                         "first_step_s": compile_s}
    if not skip_eager:
        ips, _ = _images_per_s(trainer._train_step, batches, batch, max(2, steps // 4), warmup=1)
        result["eager"] = {"img_per_s": ips}
    if not skip_mixed:
        mixed, mixed_batches = _trainer(size, batch, mixed=True, config=config)
        ips, _ = _images_per_s(mixed.train_step, mixed_batches, batch, steps)
        result["mixed_bfloat16"] = {"img_per_s": ips, "fraction_of_bfloat16_matmul_peak":
                                    3 * forward * ips / 1e9 / peaks["bfloat16"]}
        tf.keras.mixed_precision.set_global_policy("float32")
    return result


def startup(data_dir: str, size: int = 16, steps: int = 6) -> dict:
    """Wall time of a short ``pokemon-diffusion train`` run, cut at the log lines it prints.

    Each output line is stamped on arrival: "loaded N images" (data read), "training on" (model,
    EMA, optimizer and checkpoint ready), "stopped" (last step, held-out loss and save done), the
    summary line, then the exit.
    ``metrics.jsonl`` gives the training seconds at step 1 (the first step, its trace included).
    """
    import tempfile

    from pokemon_diffusion.training.metrics import read_metrics

    out = Path(tempfile.mkdtemp(prefix="startup_run_")) / "run"
    argv = [sys.executable, "-m", "pokemon_diffusion", "train", "--data", data_dir, "--out", str(out),
            "--steps", str(steps), "--image-size", str(size), "--log-every", "1"]
    marks: dict = {}
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stdout:
        for key, text in (("data_loaded_s", "loaded "), ("trainer_ready_s", "training on "),
                          ("stopped_s", "stopped ("), ("summary_printed_s", "EMA model: ")):
            if text in line and key not in marks:
                marks[key] = time.perf_counter() - start
    if process.wait():
        raise RuntimeError(f"{' '.join(argv)} failed with exit code {process.returncode}")
    marks["wall_s"] = time.perf_counter() - start
    records = read_metrics(out / "metrics.jsonl")
    marks["first_step_s"] = records[0]["elapsed_s"]  # from the loop's start to step 1 (trace included)
    marks["steps_s"] = records[-1]["elapsed_s"] - records[0]["elapsed_s"]
    marks["after_stopped_s"] = marks["wall_s"] - marks.get("stopped_s", marks["wall_s"])
    marks = {k: round(v, 2) for k, v in marks.items()}
    print(json.dumps({"startup": marks, "argv": argv[2:]}), flush=True)
    return marks


def rss_only(size: int, batch: int, steps: int, remat: bool = False) -> None:
    trainer, batches = _trainer(size, batch, remat=remat)
    for _ in range(steps):
        trainer.train_step(next(batches)).numpy()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="pretrained|FILE",
                        help="measure the shipped reference's configuration or a RunConfig JSON (default: ModelConfig())")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sizes (default: 32 64, or the --config's)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip-eager", action="store_true")
    parser.add_argument("--skip-xla", action="store_true")
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds of the ratios (0: none)")
    parser.add_argument("--peer", metavar="FILE", help="the peer step script (peer_unet_step.py) to compare with")
    parser.add_argument("--remat", action="store_true", help="with --rss-only: rematerialised blocks")
    parser.add_argument("--startup", metavar="DATA", help="only time a 16x16 6-step CLI run on this dataset")
    parser.add_argument("--rss-only", type=int, metavar="SIZE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.startup:
        write_result("train_startup", {"startup": startup(args.startup), "load_average": os.getloadavg()[0]})
        return
    if args.rss_only:
        rss_only(args.rss_only, args.batch, args.steps, args.remat)
        return
    if args.peer and not Path(args.peer).is_file():
        parser.error(f"--peer: got {args.peer!r}; allowed: an existing peer_unet_step.py")
    if args.config and args.config != "pretrained" and not Path(args.config).is_file():
        parser.error(f"--config: got {args.config!r}; allowed: pretrained | an existing RunConfig JSON file")
    config = base_config(args.config)
    sizes = args.sizes or ([config.model.image_size] if args.config else [32, 64])
    peaks = {"float32": matmul_peak_gflops(), "bfloat16": matmul_peak_gflops(dtype="bfloat16")}
    print(json.dumps({"matmul_peak_gflops": peaks}), flush=True)
    results = {"config": args.config or "default", "matmul_peak_gflops": peaks["float32"],
               "bfloat16_matmul_peak_gflops": peaks["bfloat16"], "sizes": []}
    for size in sizes:
        results["sizes"].append(bench_size(size, args.batch, args.steps, peaks, args.skip_eager, args.skip_xla,
                                           args.skip_mixed, args.rounds, args.peer, config))
    if not args.skip_rss:
        for remat in (False, True):
            out = subprocess.run([sys.executable, __file__, "--rss-only", "64", "--batch", str(args.batch),
                                  "--steps", "5"] + (["--remat"] if remat else []),
                                 capture_output=True, text=True, check=True).stdout
            key = "peak_rss_mb_64px_batch32" + ("_remat" if remat else "")
            results[key] = json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]
            print(json.dumps({key: results[key]}), flush=True)
    write_result("train", results)


if __name__ == "__main__":
    main()
