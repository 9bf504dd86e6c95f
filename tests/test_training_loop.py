"""train() end to end on a tiny dataset: run folder, exact resume after SIGTERM, NaN guard, CLI."""

import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.cli import main
from pokemon_diffusion.errors import CheckpointError, EncoderError
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.training import loop as loop_module
from pokemon_diffusion.training.metrics import read_metrics
from pokemon_diffusion.training.loop import train
from pokemon_diffusion.training.trainer import TrainingDivergedError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), n=12, size=20, dim=8, pokemon=4)


def _checkpoint_tensors(run_dir):
    path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    names = [n for n, _ in tf.train.list_variables(path)
             if not n.startswith(("save_counter", "elapsed", "_CHECKPOINTABLE"))]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.slow
def test_resume_after_sigterm_equals_training_straight_through(data_dir, tmp_path):
    # dropout and BatchNorm on: seed states and moving statistics must survive the resume too
    config = tiny_config(steps=6, dropout=0.1, checkpoint_every=4, deterministic=True)
    straight = train(data_dir, tmp_path / "straight", config)
    assert straight.stopped == "completed" and straight.step == 6

    def terminate_at_3(step, loss):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: stop after this step and save

    first = train(data_dir, tmp_path / "resumed", config, on_step=terminate_at_3)
    assert (first.stopped, first.step) == ("interrupted", 3)
    assert first.checkpoint.endswith("ckpt-3") and (tmp_path / "resumed" / "ema_model.keras").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    second = train(data_dir, tmp_path / "resumed", config, resume=True)
    assert (second.stopped, second.step) == ("completed", 6)

    a, b = _checkpoint_tensors(tmp_path / "straight"), _checkpoint_tensors(tmp_path / "resumed")
    assert a.keys() == b.keys() and any("ema_variables" in k for k in a) and any("generator" in k for k in a)
    for name in a:
        # tolerance: none. With deterministic ops on CPU the 3 + 3 run is bit-identical to the 6-step run
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    steps = [r["step"] for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]  # no step logged twice


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    real_make_dataset = loop_module.make_dataset

    def poisoned(*args, **kwargs):  # NaN images from step 4 on (batch 4: stream elements 12+)
        ds = real_make_dataset(*args, **kwargs)
        return ds.map(lambda x, e, i: (tf.where(tf.reshape(i >= 12, [-1, 1, 1, 1]), np.nan, x), e, i))

    monkeypatch.setattr(loop_module, "make_dataset", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"NaN/inf at step 4; stopped at step 4 without saving; "
                                                    r"the last good checkpoint is .*ckpt-2"):
        train(data_dir, run, tiny_config(steps=6, checkpoint_every=2, log_every=1))
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-2")
    loaded = load_run(run)  # the EMA model of step 2 is intact
    assert all(np.isfinite(v.numpy()).all() for v in loaded.model.variables if v.dtype == "float32")
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]


def test_an_existing_run_needs_resume_and_the_same_model(data_dir, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    (run / "checkpoints" / "ckpt-5.index").write_bytes(b"")
    with pytest.raises(CheckpointError, match="already holds a run .*step 5.*--resume"):
        train(data_dir, run, tiny_config())
    tiny_config(image_size=32).save(run / "config.json")
    with pytest.raises(CheckpointError, match=r"model.image_size: 32 in the run, 16 now"):
        train(data_dir, run, tiny_config(), resume=True)
    (run / "encoder.json").write_text(json.dumps({"name": "other-encoder", "dim": 8}))
    with pytest.raises(EncoderError, match="'test-encoder' but the model was trained with 'other-encoder'"):
        train(data_dir, run, tiny_config(), resume=True)


def test_a_jax_run_folder_is_refused_by_name_and_left_as_it_was(data_dir, tmp_path):
    run = tmp_path / "jax_run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "jax-ckpt-40.npz").write_bytes(b"state")
    (run / "config.json").write_text("{}")
    for resume in (False, True):
        with pytest.raises(CheckpointError, match="holds JAX checkpoints; continue that run with --backend jax"):
            train(data_dir, run, tiny_config(), resume=resume)
    assert (run / "config.json").read_text() == "{}"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["jax-ckpt-40.npz"]


def test_a_failed_start_leaves_no_empty_run_folder(data_dir, tmp_path):
    from pokemon_diffusion.errors import DataError

    run = tmp_path / "new" / "run"
    with pytest.raises(DataError, match="dataset folder not found"):
        train(tmp_path / "no-such-data", run, tiny_config())
    assert not run.exists()
    kept = tmp_path / "kept"  # a folder that was there before keeps what it had
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(DataError):
        train(tmp_path / "no-such-data", kept, tiny_config())
    assert (kept / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_cli_trains_until_the_time_limit_and_writes_the_run_folder(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    config = tiny_config(sample_every=0).to_json()
    code = main(["-q", "train", "--data", str(data_dir), "--out", str(run), "--config", config,
                 "--steps", "500", "--time-limit", "0.0001", "--norm", "group", "--ema-decay", "0.9", "--remat"])
    assert code == 0
    out = capsys.readouterr().out
    assert "step 1/500 (time_limit)" in out and "ema_model.keras" in out
    for name in ("config.json", "encoder.json", "ema_model.keras", "checkpoints", "metrics.jsonl", "tensorboard"):
        assert (run / name).exists(), name
    loaded = load_run(run)
    assert loaded.config.model.norm == "group" and loaded.config.train.ema_decay == 0.9
    assert loaded.config.train.remat  # trained with rematerialised blocks; the exported model is plain
    assert not any(layer.get_config().get("remat") for layer in loaded.model.layers)
    assert loaded.encoder.name == "test-encoder" and loaded.encoder.dim == 8
    assert loaded.model.dtype_policy.name == "float32"
    out = loaded.model([np.zeros((2, 16, 16, 3), np.float32), np.zeros(2, np.int32), np.zeros((2, 8), np.float32)])
    assert out.shape == (2, 16, 16, 3)
    (record,) = read_metrics(run / "metrics.jsonl")
    assert {"step", "loss", "lr", "img_per_s", "elapsed_s"} <= record.keys() and record["step"] == 1
    assert np.isfinite(record["val_loss"])  # the last record of a run carries the held-out loss
    scalars = {}  # read the TensorBoard events back: tags, values and the plugin that shows them
    for events in (run / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                scalars[value.tag] = (value.metadata.plugin_data.plugin_name, tf.make_ndarray(value.tensor))
    assert scalars["loss"][0] == "scalars" and float(scalars["loss"][1]) == pytest.approx(record["loss"])
    assert {"lr", "elapsed_s"} <= scalars.keys()


@pytest.mark.parametrize("argv, message", [
    (["--steps", "5", "--epochs", "2"], "not allowed with argument"),
    (["--image-size", "20"], "ModelConfig.image_size: got 20"),
    (["--lr", "2"], "--lr: got '2'"),
    (["--config", "{\"train\": {\"warmup\": 1}}"], "unknown field(s) warmup"),
])
def test_cli_rejects_bad_options_in_one_line(argv, message, tmp_path, capsys):
    try:
        code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


