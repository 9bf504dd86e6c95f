"""Ctrl-C during `train` saves a checkpoint and the EMA model, and exits cleanly (the README's promise)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.cli import EXIT_INTERRUPTED
from pokemon_diffusion.training.checkpoint import latest_checkpoint_step, newest_readable_checkpoint
from pokemon_diffusion.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_ema_model_then_exits_130(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", n=8, size=20, dim=8, pokemon=4)
    # checkpoints far apart and eval off: whatever is saved, Ctrl-C saved it
    config = tiny_config(steps=100_000, checkpoint_every=50_000, eval_every=50_000, log_every=1).to_json()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "POKEMON_DIFFUSION_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "pokemon_diffusion", "-q", "train", "--data", "data", "--out",
                             "runs/r1", "--config", config], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs/r1/metrics.jsonl"
    try:
        deadline = time.monotonic() + 240
        while not read_metrics(metrics) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the first step is logged: the loop (and its signal handler) is running
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, (out, err)
    assert "Traceback" not in err
    step = latest_checkpoint_step(tmp_path / "runs/r1/checkpoints")
    assert step is not None and step >= 1 and step == read_metrics(metrics)[-1]["step"]
    assert newest_readable_checkpoint(tmp_path / "runs/r1/checkpoints").endswith(f"ckpt-{step}")
    assert (tmp_path / "runs/r1/ema_model.keras").stat().st_size > 0
    assert f"step {step}/100000 (interrupted)" in out
    assert "continue with: pokemon-diffusion train --data data --out runs/r1 --resume" in out
    assert not [p for p in (tmp_path / "runs/r1").rglob("*") if ".tmp" in p.name or p.name.endswith("_temp")]
