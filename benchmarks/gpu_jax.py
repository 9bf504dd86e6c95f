"""The project's own JAX trainer on a GPU: step img/s, a bf16 matmul peak, then a 64x64 training run.

Runs where JAX (CUDA) is and TensorFlow is not: it imports no TensorFlow and reads the data from
packed .npz files (``pack_dataset.py``). One call does, within ``--seconds``:

1. the matmul peak (bf16 and float32, 8192²) as the yardstick;
2. ``JaxTrainer.train_step`` img/s of the default U-Net at 32² and 64², batch 128/256/512,
   float32 and mixed_bfloat16 (each cell: compile, 2 warm-up steps, ``--bench-steps`` timed; cells
   are skipped once ``--bench-share`` of the time is spent);
3. ``train --backend jax`` on the 64² pack for the rest of the time (``--time-limit``), with the
   step budget sized from the measured speed so the cosine schedule ends near the time limit.

It writes into ``--out``: ``gpu_jax.json`` (everything measured), and the run's ``ema_model.keras``,
``config.json``, ``encoder.json`` and ``metrics.jsonl`` (``sample``/``evaluate`` read them on
TensorFlow). The recipe (what to copy, the one command) is in docs/PERFORMANCE.md;
``gpu_jax.sh`` wraps it. ``--smoke`` rehearses everything on a CPU with tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from pokemon_diffusion.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from pokemon_diffusion.training.jax_data import load_training_data  # noqa: E402
from pokemon_diffusion.training.jax_trainer import JaxTrainer  # noqa: E402

SMOKE_MODEL = dict(base_width=8, channel_mults=(1, 2), num_res_blocks=1, norm_groups=4)


def log(message: str) -> None:
    print(message, flush=True)


def matmul_tflops(dtype: Any, n: int) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, b).block_until_ready()
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        out = mm(a, b)
    out.block_until_ready()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def run_config(size: int, batch: int, mixed: bool, dim: int, smoke: bool, recipe: Optional[Dict[str, Any]] = None,
               **train: Any) -> RunConfig:
    """The default U-Net at ``size``; ``recipe`` ({"model"|"diffusion"|"train": {...}}) changes the training run's."""
    recipe = recipe or {}
    model = ModelConfig(image_size=size, text_dim=dim, **{**(SMOKE_MODEL if smoke else {}), **recipe.get("model", {})})
    train = {**train, **recipe.get("train", {})}
    return RunConfig(model=model, diffusion=recipe.get("diffusion", {}),
                     train=TrainConfig(batch_size=batch, mixed_precision=mixed, strategy="one", **train))


def parse_recipe(text: str) -> Dict[str, Any]:
    """``--recipe``: inline JSON or a file, e.g. '{"diffusion": {"prediction": "v"}, "train": {"learning_rate": 1e-3}}'."""
    try:
        recipe = json.loads(text if text.lstrip().startswith("{") else Path(text).read_text())
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"got {text!r} ({exc}); allowed: a JSON object or a JSON file") from exc
    if not isinstance(recipe, dict) or set(recipe) - {"model", "diffusion", "train"}:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a JSON object with the keys model, diffusion, "
                                         "train")
    return recipe


def bench_cell(pack: Path, size: int, batch: int, mixed: bool, steps: int, smoke: bool) -> Dict[str, Any]:
    """img/s of the jitted step on real batches of the pack (compile excluded, reported apart)."""
    from pokemon_diffusion.training.jax_data import BatchStream

    probe = run_config(size, batch, mixed, 8, smoke)
    data = load_training_data(pack, probe)
    config = run_config(size, batch, mixed, data.encoder.dim, smoke)
    keras.utils.set_random_seed(0)
    trainer = JaxTrainer(config, 10_000)
    stream = BatchStream(data, batch, seed=0, flip=True)
    start = time.perf_counter()
    trainer.train_step(stream.next()).block_until_ready()
    compile_s = time.perf_counter() - start
    for step in (1, 2):
        loss = trainer.train_step(stream.next())
    loss.block_until_ready()
    start = time.perf_counter()
    for step in range(3, 3 + steps):
        loss = trainer.train_step(stream.next())
    loss.block_until_ready()
    seconds = time.perf_counter() - start
    params = int(sum(np.prod(v.shape) for v in trainer.model.trainable_variables))
    return {"size": size, "batch": batch, "policy": trainer.policy, "compile_s": round(compile_s, 2),
            "step_ms": round(1000 * seconds / steps, 2), "img_per_s": round(batch * steps / seconds, 1),
            "loss": float(loss), "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data32", type=Path, required=True, help="pack of 32x32 images")
    parser.add_argument("--data64", type=Path, required=True, help="pack of 64x64 images (also trained on)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=480, help="the whole budget of this call")
    parser.add_argument("--bench-share", type=float, default=0.4, help="share of --seconds for the step grid")
    parser.add_argument("--bench-steps", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--margin", type=float, default=45, help="seconds kept for the final save and copy")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes, for a CPU rehearsal")
    parser.add_argument("--recipe", type=parse_recipe, default={},
                        help="changes to the training run's config (not the step grid's), inline JSON or a file: "
                             '{"model": {...}, "diffusion": {...}, "train": {...}}')
    args = parser.parse_args()
    began = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    result: Dict[str, Any] = {"jax": jax.__version__, "keras": keras.__version__, "python": platform.python_version(),
                              "devices": [str(d) for d in jax.devices()], "tensorflow_loaded": "tensorflow" in sys.modules,
                              "argv": sys.argv, "train_steps": [], "smoke": args.smoke}

    def save() -> None:
        (args.out / "gpu_jax.json").write_text(json.dumps(result, indent=1) + "\n")

    n = 512 if args.smoke else 8192
    result["matmul_tflops"] = {"bfloat16": round(matmul_tflops(jnp.bfloat16, n), 2),
                               "float32": round(matmul_tflops(jnp.float32, n), 2)}
    log(json.dumps(result["matmul_tflops"]))
    save()
    # most wanted first (the training cell, then the training batch at the other settings, then bf16),
    # since cells stop when the grid's share of the time is spent
    others = [b for b in args.batches if b != args.train_batch]
    grid: List[tuple] = [(64, args.train_batch, True), (64, args.train_batch, False), (32, args.train_batch, True),
                         (32, args.train_batch, False)]
    grid += [(size, b, True) for b in others for size in (64, 32)] + [(size, b, False) for b in others for size in (64, 32)]
    packs = {32: args.data32, 64: args.data64}
    for size, batch, mixed in grid:
        if time.monotonic() - began > args.bench_share * args.seconds:
            log(f"step grid stopped: {args.bench_share:.0%} of the time spent")
            break
        cell = bench_cell(packs[size], size if not args.smoke else size // 2, batch, mixed, args.bench_steps,
                          args.smoke)
        result["train_steps"].append(cell)
        log(json.dumps(cell))
        save()

    # 3. train for the rest of the time; the step budget from the measured speed of that cell
    from pokemon_diffusion.training.jax_loop import train

    size = 64 if not args.smoke else 32
    measured = next((c for c in result["train_steps"] if (c["batch"], c["policy"]) == (args.train_batch,
                                                                                        "mixed_bfloat16")), None)
    seconds = args.seconds - (time.monotonic() - began) - args.margin
    steps_per_s = 1000.0 / measured["step_ms"] if measured else 1.0
    steps = max(10, int(0.85 * steps_per_s * seconds))  # evaluation and checkpoints take some of the time
    probe = run_config(size, args.train_batch, True, 8, args.smoke)
    dim = load_training_data(args.data64, probe).encoder.dim
    config = run_config(size, args.train_batch, True, dim, args.smoke, args.recipe, steps=steps, warmup_steps=min(200, steps // 10),
                        time_limit_minutes=max(seconds, 1.0) / 60.0, eval_every=max(50, steps // 10),
                        checkpoint_every=max(100, steps // 4), log_every=max(10, steps // 100), max_checkpoints=1)
    run_dir = Path(tempfile.mkdtemp(prefix="gpu_jax_run_")) / "run"
    log(f"training {steps} steps at {size}x{size}, batch {args.train_batch}, for at most {seconds:.0f} s")
    done = train(args.data64, run_dir, config, handle_signals=False)
    result["train_run"] = {"steps": done.step, "total_steps": done.total_steps, "stopped": done.stopped,
                           "loss": done.loss, "val_loss": done.val_loss, "elapsed_s": round(done.elapsed_s, 1),
                           "img_per_s": done.images_per_s, "config": config.to_dict()}
    for name in ("ema_model.keras", "config.json", "encoder.json", "metrics.jsonl"):
        shutil.copy2(run_dir / name, args.out / name)
    result["tensorflow_loaded"] = "tensorflow" in sys.modules
    result["wall_s"] = round(time.monotonic() - began, 1)
    save()
    log(json.dumps(result["train_run"]))


if __name__ == "__main__":
    main()
