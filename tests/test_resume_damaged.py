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

    for name in ("ckpt-2.data-00000-of-00001", "ckpt-4.data-00000-of-00001"):
        _truncate(ckpts / name)
    assert main(train + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no readable checkpoint in {ckpts}: "), err
    assert "ckpt-4 (" in err[0] and "ckpt-2 (" in err[0] and "are damaged" in err[0]
