"""`train --resume` over a damaged newest checkpoint: one warning, then the newest readable one."""

import pytest
import tensorflow as tf

from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.cli import main
from pokemon_diffusion.training.metrics import read_metrics
from test_checkpoint import _truncate, _Warnings


def _tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(str(prefix))
            if not n.startswith(("save_counter", "elapsed", "_CHECKPOINTABLE"))}


@pytest.mark.slow
def test_resume_skips_a_truncated_checkpoint_and_fails_in_one_line_when_none_is_left(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data", n=12, size=20, dim=8, pokemon=4)
    run = tmp_path / "run"
    config = tiny_config(steps=4, checkpoint_every=2, eval_every=100, deterministic=True).to_json()
    train = ["-q", "train", "--data", str(data), "--out", str(run), "--config", config]
    assert main(train) == 0
    ckpts = run / "checkpoints"
    straight = _tensors(ckpts / "ckpt-4")
    _truncate(ckpts / "ckpt-4.data-00000-of-00001")  # a full disk or a kill mid-copy

    capsys.readouterr()
    with _Warnings("pokemon_diffusion.training.checkpoint") as warnings:
        assert main(train + ["--resume"]) == 0
    assert len(warnings) == 1, warnings
    assert f"skipping damaged checkpoint {ckpts / 'ckpt-4'} (Read less bytes than requested)" in warnings[0]
    assert "resuming from ckpt-2" in warnings[0]
    assert "step 4/4 (completed)" in capsys.readouterr().out
    resumed = _tensors(ckpts / "ckpt-4")  # written again: steps 3 and 4 from the step-2 checkpoint
    assert resumed.keys() == straight.keys()
    for name in straight:  # deterministic ops on CPU: the same steps give the same bits
        assert (resumed[name] == straight[name]).all(), name
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]

    # issue 31, item 3: a damaged index does not restart the run at step 0 over its EMA model
    ema = (run / "ema_model.keras").read_bytes()
    (ckpts / "checkpoint").write_bytes(b"\xff\xfe damaged index")
    with _Warnings("pokemon_diffusion.training.checkpoint") as warnings:
        assert main(train + ["--resume"]) == 0
    assert "step 4/4 (completed)" in capsys.readouterr().out and "checkpoint is unreadable" in warnings[0]
    assert (run / "ema_model.keras").read_bytes() == ema
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3, 4]

    # issue 31, item 7: --init from a run whose newest checkpoint is cut short reads the one before
    _truncate(ckpts / "ckpt-4.data-00000-of-00001")
    init = ["-q", "train", "--data", str(data), "--config", config, "--init", str(run), "--steps", "1"]
    with _Warnings("pokemon_diffusion.training.checkpoint") as warnings:
        assert main(init + ["--out", str(tmp_path / "tuned")]) == 0
    assert len(warnings) == 1 and "ckpt-4 (Read less bytes than requested)" in warnings[0], warnings
    assert "reading from ckpt-2" in warnings[0]

    _truncate(ckpts / "ckpt-2.data-00000-of-00001")
    capsys.readouterr()
    assert main(init + ["--out", str(tmp_path / "tuned2")]) == 2  # none left: one line, no IndexError
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --init: no readable checkpoint in {ckpts}: "), err
    assert "allowed: --init from a run with a readable checkpoint" in err[0]
    assert main(train + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no readable checkpoint in {ckpts}: "), err
    assert "ckpt-4 (" in err[0] and "ckpt-2 (" in err[0] and "are damaged" in err[0]
