"""TensorFlow train() end to end on a tiny dataset: run folder, CLI (the loop on both backends: test_run_loop.py)."""

import numpy as np
import pytest
import tensorflow as tf

from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.cli import main
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.training.metrics import read_metrics
from pokemon_diffusion.training.loop import train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), n=12, size=20, dim=8, pokemon=4)


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
    (["--image-size", "20"], "--image-size: got 20; allowed: a multiple of 8"),
    (["--lr", "2"], "--lr: got 2.0; allowed: 0 < learning_rate <= 1 (TrainConfig.learning_rate)"),
    (["--lr", "x"], "--lr: got 'x'; allowed: a number"),
    (["--config", "{\"train\": {\"warmup\": 1}}"], "unknown field(s) warmup"),
])
def test_cli_rejects_bad_options_in_one_line(argv, message, tmp_path, capsys):
    try:
        code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


