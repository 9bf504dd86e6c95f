"""The train step under MirroredStrategy on 2 logical CPUs (made by distribute.split_cpu) gives the
single-device result.

Logical devices must be configured before TensorFlow initialises, so the comparison runs in a
fresh interpreter. GroupNorm and no dropout: BatchNorm statistics and dropout masks are per
replica by design (each replica normalises its own half batch), so they cannot match exactly.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import tensorflow as tf
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.training.distribute import split_cpu
split_cpu(2)
assert len(tf.config.list_logical_devices("CPU")) == 2  # this starts TensorFlow's context
split_cpu(2)  # the same split once started: a no-op
try:
    split_cpu(3)
except ConfigError as exc:
    assert "split before it starts" in str(exc), exc
else:
    raise AssertionError("split_cpu(3) after the start must be refused")
import keras, numpy as np
sys.path.insert(0, "tests")
from helpers_training import tiny_config
from pokemon_diffusion.data.dataset import make_dataset
from pokemon_diffusion.training.distribute import make_strategy
from pokemon_diffusion.training.trainer import Trainer

rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (10, 16, 16, 3)).astype(np.float32)
text = rng.standard_normal((10, 8)).astype(np.float32)

def run(strategy, norm, dropout, steps=3):
    keras.utils.set_random_seed(0)
    # a small clip norm so that clipping is active: it must use the full-batch gradient norm
    config = tiny_config(norm=norm, dropout=dropout, batch_size=5, grad_clip_norm=0.05, cond_drop=0.5)
    trainer = Trainer(config, total_steps=10, strategy=strategy)
    start = [v.numpy().copy() for v in trainer.model.variables]
    batches = iter(trainer.distribute(make_dataset(images, text, 5, repeat=True, with_index=True)))
    losses = [float(trainer.train_step(next(batches))) for _ in range(steps)]
    weights = [v.numpy() for v in trainer.model.variables]
    ema = [v.numpy() for v in trainer.ema_model.variables]
    return trainer.replicas, losses, start, weights, ema

one = run(tf.distribute.get_strategy(), "group", 0.0)
two = run(make_strategy("mirrored"), "group", 0.0)
bn = run(make_strategy("mirrored"), "batch", 0.1, steps=2)  # the same strategy object again
diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
print(json.dumps({
    "replicas": [one[0], two[0]], "loss_one": one[1], "loss_two": two[1],
    "init_diff": diff(one[2], two[2]), "weight_diff": diff(one[3], two[3]), "ema_diff": diff(one[4], two[4]),
    "moved": diff(one[2], one[3]), "bn_losses": bn[1],
    "bn_finite": all(np.isfinite(w).all() for w in bn[3] if w.dtype == np.float32),
}))
"""


@pytest.mark.slow
def test_mirrored_step_matches_the_single_device_step():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [1, 2]
    assert result["init_diff"] == 0.0
    # float32 sums in another order (two half-batch sums + all-reduce): agreement to ~1e-6 relative
    assert result["loss_one"] == pytest.approx(result["loss_two"], rel=1e-5)
    assert result["moved"] > 1e-4  # the weights did change, so the comparison means something
    assert result["weight_diff"] < 1e-6 and result["ema_diff"] < 1e-6  # measured: 3e-8
    assert all(abs(x) < 10 for x in result["bn_losses"]) and result["bn_finite"]
