"""The project's U-Net on a GPU through Keras 3's torch backend.

Why this script exists: the GPU machines lent to this project carry PyTorch but no TensorFlow,
and TensorFlow's wheels are far larger than what can be copied there. The U-Net
(``pokemon_diffusion.model``) uses only ``keras.ops``, so the same model runs unchanged on the
torch backend. This script measures what a GPU gives that model (training img/s at 32² and 64²,
float32 and mixed bfloat16, batch 32 and 256; DDIM-50 + guidance latency), and optionally trains
a 64² model for a fixed time on a packed dataset (``pack_dataset.py``), saving EMA weights as a
``.keras`` file the TensorFlow side loads (Keras files are backend-neutral).

It is NOT the project's trainer (``pokemon_diffusion.training`` is TensorFlow: tf.function,
tf.data, CheckpointManager); the loss, EMA and condition dropout here mirror it in a few lines.

Run (on a machine with torch and keras):
    KERAS_BACKEND=torch python benchmarks/bench_gpu_torch.py --data packed64.npz \
        --train-seconds 180 --out results_dir
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pokemon_diffusion.config import ModelConfig  # noqa: E402
from pokemon_diffusion.model.unet import build_unet  # noqa: E402

T = 1000
BETAS = np.linspace(1e-4, 0.02, T, dtype=np.float64)  # the project's linear schedule
ALPHA_BAR = np.cumprod(1.0 - BETAS)
#: option sets compared by --sweep (the first is the reference model's choice)
SWEEP = ({}, {"norm": "batch"}, {"lr": 2e-4}, {"lr": 1e-3}, {"base_width": 48}, {"norm": "batch", "lr": 1e-3})
DEVICE = "cuda"  # "cpu" with --smoke (a quick check of this script on a machine without a GPU)


def log(msg: str) -> None:
    print(msg, flush=True)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(dtype: torch.dtype, n: int = 8192) -> float:
    a = torch.randn(n, n, device=DEVICE, dtype=dtype)
    b = torch.randn(n, n, device=DEVICE, dtype=dtype)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    return 2 * n**3 * 10 / (time.perf_counter() - start) / 1e12


class DiffusionTrainer:
    """ε-prediction DDPM training on the GPU: q_sample, 10 % null condition, AdamW with EMA."""

    def __init__(self, size: int, policy: str, lr: float = 5e-4, ema: float = 0.999, norm: str = "group",
                 base_width: int = 32) -> None:
        keras.mixed_precision.set_dtype_policy(policy)
        keras.utils.set_random_seed(0)
        self.model = build_unet(ModelConfig(image_size=size, norm=norm, base_width=base_width, text_dim=384))
        keras.mixed_precision.set_dtype_policy("float32")
        self.model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=1e-4, clipnorm=1.0,
                                                            use_ema=True, ema_momentum=ema),
                           loss="mse")
        self.alpha_bar = torch.tensor(ALPHA_BAR, dtype=torch.float32, device=DEVICE)

    def noisy_batch(self, x0: torch.Tensor, emb: torch.Tensor):
        n = x0.shape[0]
        t = torch.randint(0, T, (n,), device=DEVICE)
        noise = torch.randn_like(x0)
        ab = self.alpha_bar[t].view(n, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        keep = (torch.rand(n, 1, device=DEVICE) >= 0.1).float()
        return [x_t, t.int(), emb * keep], noise

    def step(self, x0: torch.Tensor, emb: torch.Tensor) -> float:
        inputs, target = self.noisy_batch(x0, emb)
        return self.model.train_on_batch(inputs, target)


def bench_train(size: int, batch: int, policy: str, steps: int = 20) -> dict:
    trainer = DiffusionTrainer(size, policy)
    x0 = torch.randn(batch, size, size, 3, device=DEVICE).clamp(-1, 1)
    emb = torch.nn.functional.normalize(torch.randn(batch, 384, device=DEVICE), dim=1)
    for _ in range(1 if steps < 3 else 3):
        trainer.step(x0, emb)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.step(x0, emb)
    sync()
    seconds = (time.perf_counter() - start) / steps
    return {"size": size, "batch": batch, "policy": policy, "step_ms": round(seconds * 1e3, 2),
            "img_per_s": round(batch / seconds, 1), "loss": float(loss),
            "params": trainer.model.count_params()}


@torch.no_grad()
def ddim_sample(model, emb: torch.Tensor, size: int, steps: int = 50, guidance: float = 3.0, seed: int = 0):
    """DDIM (η = 0) with classifier-free guidance, one batched [cond; null] pass per step."""
    n = emb.shape[0]
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x = torch.randn(n, size, size, 3, device=DEVICE, generator=gen)
    ts = np.linspace(T - 1, 0, steps).round().astype(int)
    emb2 = torch.cat([emb, torch.zeros_like(emb)])
    for i, t in enumerate(ts):
        out = model([torch.cat([x, x]), torch.full((2 * n,), int(t), device=DEVICE, dtype=torch.int32), emb2],
                    training=False)
        eps_c, eps_u = out.float().chunk(2)
        eps = eps_u + guidance * (eps_c - eps_u)
        ab = float(ALPHA_BAR[t])
        ab_prev = float(ALPHA_BAR[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        x0 = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        x = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps
    return x


def bench_sampling(size: int, num: int, steps: int = 50) -> dict:
    model = build_unet(ModelConfig(image_size=size, norm="group", text_dim=384))
    emb = torch.nn.functional.normalize(torch.randn(num, 384, device=DEVICE), dim=1)
    ddim_sample(model, emb, size, steps=5)
    sync()
    start = time.perf_counter()
    ddim_sample(model, emb, size, steps=steps)
    sync()
    seconds = time.perf_counter() - start
    return {"size": size, "num": num, "sampler": f"ddim-{steps} + guidance 3", "seconds": round(seconds, 3),
            "seconds_per_image": round(seconds / num, 4)}


@torch.no_grad()
def val_loss(model, x0: torch.Tensor, emb: torch.Tensor, grid: int = 8) -> float:
    """Held-out ε-MSE on a fixed t grid with fixed noise (like the trainer's val_loss)."""
    gen = torch.Generator(device=DEVICE).manual_seed(1234)
    total = 0.0
    for t in np.linspace(0, T - 1, grid).round().astype(int):
        noise = torch.randn(x0.shape, device=DEVICE, generator=gen)
        ab = float(ALPHA_BAR[t])
        x_t = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * noise
        out = model([x_t, torch.full((x0.shape[0],), int(t), device=DEVICE, dtype=torch.int32), emb],
                    training=False)
        total += float(((out.float() - noise) ** 2).mean())
    return total / grid


def train_packed(path: Path, seconds: float, batch: int, policy: str, out: Optional[Path], **options) -> dict:
    data = np.load(path)
    images = torch.tensor(data["images"], device=DEVICE).float() / 127.5 - 1.0
    emb = torch.tensor(data["embeddings"], device=DEVICE)
    train_idx = torch.tensor(data["train"], device=DEVICE)
    val_idx = torch.tensor(data["val"], device=DEVICE)
    size = images.shape[1]
    trainer = DiffusionTrainer(size, policy, **options)
    curve, step, start = [], 0, time.perf_counter()
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    while time.perf_counter() - start < seconds:
        pick = train_idx[torch.randint(0, len(train_idx), (batch,), device=DEVICE, generator=gen)]
        x0 = images[pick]
        flip = torch.rand(batch, device=DEVICE, generator=gen) < 0.5
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(2), x0)
        loss = trainer.step(x0, emb[pick])
        step += 1
        if step % (1 if DEVICE == "cpu" else 200) == 0:
            curve.append({"step": step, "loss": round(float(loss), 5),
                          "elapsed_s": round(time.perf_counter() - start, 1)})
            log(json.dumps(curve[-1]))
    elapsed = time.perf_counter() - start
    raw_val = val_loss(trainer.model, images[val_idx], emb[val_idx])
    if out is None:  # a sweep: the raw weights' held-out loss is the figure
        return {"options": options, "steps": step, "seconds": round(elapsed, 1), "loss": round(float(loss), 5),
                "val_loss_raw": round(raw_val, 5)}
    trainer.model.optimizer.finalize_variable_values(trainer.model.trainable_variables)  # EMA weights in
    ema_val = val_loss(trainer.model, images[val_idx], emb[val_idx])
    out.mkdir(parents=True, exist_ok=True)
    plain = build_unet(ModelConfig(image_size=size, norm="group", text_dim=384))  # float32, no optimizer
    plain.set_weights(trainer.model.get_weights())
    plain.save(out / "ema_model.keras")
    return {"size": size, "batch": batch, "policy": policy, "steps": step, "seconds": round(elapsed, 1),
            "img_per_s": round(step * batch / elapsed, 1), "val_loss_raw": round(raw_val, 5),
            "val_loss_ema": round(ema_val, 5), "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="packed dataset (.npz from pack_dataset.py)")
    parser.add_argument("--train-seconds", type=float, default=0.0)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--train-policy", default="mixed_bfloat16")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--sweep", type=float, default=0.0, metavar="SECONDS",
                        help="only train each of SWEEP's option sets for SECONDS on --data and report held-out loss")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, to check the script")
    args = parser.parse_args()
    global DEVICE
    if args.smoke:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("error: no CUDA device visible to torch; this script measures a GPU (--smoke runs on CPU)")
    torch.set_default_device(DEVICE)
    sizes, batches, n = ((32,), (4,), 256) if args.smoke else ((32, 64), (32, 256), 8192)
    result = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", "torch": torch.__version__, "keras": keras.__version__,
              "backend": keras.backend.backend(),
              "matmul_tflops": {"float32": round(matmul_tflops(torch.float32, n), 3),
                                "bfloat16": round(matmul_tflops(torch.bfloat16, n), 3)},
              "train": [], "sampling": []}
    log(json.dumps(result))
    if args.sweep:
        result["sweep"] = [dict(train_packed(args.data, args.sweep, args.train_batch, "float32", None, **opts))
                           for opts in SWEEP]
        for row in result["sweep"]:
            log(json.dumps(row))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_sweep.json").write_text(json.dumps(result, indent=1))
        return
    for size in sizes:
        for batch in batches:
            for policy in ("float32", "mixed_bfloat16"):
                result["train"].append(bench_train(size, batch, policy, steps=1 if args.smoke else 20))
                log(json.dumps(result["train"][-1]))
    for size, num in ((32, 1),) if args.smoke else ((32, 1), (64, 1), (64, 16)):
        result["sampling"].append(bench_sampling(size, num, steps=3 if args.smoke else 50))
        log(json.dumps(result["sampling"][-1]))
    if args.data and args.train_seconds > 0:
        result["trained"] = train_packed(args.data, args.train_seconds, args.train_batch, args.train_policy,
                                         args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_torch.json").write_text(json.dumps(result, indent=1))
    log(json.dumps({k: v for k, v in result.get("trained", {}).items() if k != "curve"}))


if __name__ == "__main__":
    main()
