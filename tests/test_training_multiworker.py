"""`--strategy multiworker`: two worker processes on 127.0.0.1 train exactly what one process does.

Each worker is the same `pokemon-diffusion train` command with its own TF_CONFIG (the cluster of
two workers and its own index), as on real hosts. Worker 0 is the chief: only it writes a run
folder; worker 1 saves its checkpoints (the save is a collective step) to a temporary folder that
it removes. GroupNorm and no dropout, as in test_training_mirrored.py: BatchNorm statistics are
per replica by design.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.training.distribute import local_tf_configs
from pokemon_diffusion.training.metrics import read_metrics
from test_resume_damaged import _tensors

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 420


def _command(data, out, config):
    return [sys.executable, "-m", "pokemon_diffusion", "train", "--data", str(data), "--out", str(out),
            "--config", config]


@pytest.mark.slow
def test_two_workers_match_one_process_and_only_the_chief_writes(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", n=12, size=20, dim=8, pokemon=4)
    config = tiny_config(norm="group", dropout=0.0, steps=3, batch_size=4, checkpoint_every=2, eval_every=100,
                         grad_clip_norm=0.05, cond_drop=0.5).to_json()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "POKEMON_DIFFUSION_PROGRESS": "0"}
    tf_configs = local_tf_configs(2)
    runs, temps, procs = [tmp_path / "chief", tmp_path / "worker1"], [tmp_path / "tmp0", tmp_path / "tmp1"], []
    for index in range(2):
        temps[index].mkdir()
        tf_config = tf_configs[index]
        procs.append(subprocess.Popen(_command(data, runs[index], config) + ["--strategy", "multiworker"], cwd=ROOT,
                                      env={**env, "TF_CONFIG": tf_config, "TMPDIR": str(temps[index])},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [proc.communicate(timeout=TIMEOUT_S) for proc in procs]
    finally:
        for proc in procs:  # one worker failing leaves the other waiting on its collectives
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    single = subprocess.run(_command(data, tmp_path / "single", config), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    assert single.returncode == 0, single.stderr[-3000:]

    # 1. two replicas in all, and the same steps as one process on the same global batch
    assert "2 replica(s) in all" in outputs[0][1] and "x2" in outputs[0][1]
    chief, alone = read_metrics(runs[0] / "metrics.jsonl"), read_metrics(tmp_path / "single" / "metrics.jsonl")
    assert [r["step"] for r in chief] == [r["step"] for r in alone] == [1, 2, 3]
    for a, b in zip(chief, alone):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert chief[-1]["val_loss"] == pytest.approx(alone[-1]["val_loss"], rel=1e-5)
    two, one = _tensors(runs[0] / "checkpoints" / "ckpt-3"), _tensors(tmp_path / "single" / "checkpoints" / "ckpt-3")
    weights = [n for n in one if n.startswith(("model_variables", "ema_variables"))]
    assert weights and two.keys() == one.keys()
    moved = _tensors(tmp_path / "single" / "checkpoints" / "ckpt-2")
    step_change = max(abs(one[n] - moved[n]).max() for n in weights)
    difference = max(abs(two[n] - one[n]).max() for n in weights)
    print(f"losses {[r['loss'] for r in chief]} vs {[r['loss'] for r in alone]}; weight difference {difference:.2g}, "
          f"step-3 change {step_change:.2g}")  # shown with pytest -s
    assert step_change > 1e-5  # step 3 did change the weights, so the comparison means something
    assert difference < 1e-6  # as in test_training_mirrored.py

    # 2. only the chief wrote a run folder; worker 1 saved to a temporary folder, removed at the end
    assert {p.name for p in (runs[0] / "checkpoints").iterdir()} == {
        "checkpoint", "ckpt-2.index", "ckpt-2.data-00000-of-00001", "ckpt-3.index", "ckpt-3.data-00000-of-00001"}
    assert (runs[0] / "ema_model.keras").is_file() and (runs[0] / "config.json").is_file()
    assert not runs[1].exists()
    (private,) = re.findall(r"checkpoints go to (\S+) \(removed at the end\)", outputs[1][1])
    assert Path(private).parent == temps[1] and not Path(private).exists()
    assert list(temps[1].iterdir()) == [] and "checkpoints go to" not in outputs[0][1]
