"""``train --init``: a run starts from another run's (or the reference's) model and EMA weights."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.cli import main
from pokemon_diffusion.errors import CheckpointError, ConfigError, EncoderError
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.training.init_from import check_init, init_dir, load_init_weights
from pokemon_diffusion.training.loop import _encoder_of, train
from pokemon_diffusion.training.trainer import Trainer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), n=12, size=20, dim=8, pokemon=4)


@pytest.fixture(scope="module")
def source_run(data_dir, tmp_path_factory):
    """A tiny trained run (3 steps: raw and EMA weights differ)."""
    run = tmp_path_factory.mktemp("source") / "run"
    train(data_dir, run, tiny_config(steps=3, checkpoint_every=3, ema_decay=0.5, learning_rate=1e-2))
    return run


def _saved(run, prefix):
    path = tf.train.latest_checkpoint(str(run / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    names = sorted((n for n, _ in tf.train.list_variables(path) if n.startswith(prefix + "/")),
                   key=lambda n: int(n.split("/")[1]))
    return [reader.get_tensor(n) for n in names]


@pytest.mark.slow  # the source run's training (~13 s, shared by the module)
def test_weights_come_from_the_checkpoint_and_the_optimizer_is_fresh(source_run, data_dir):
    trainer = Trainer(tiny_config(), total_steps=10, strategy=tf.distribute.get_strategy())
    folder = check_init(source_run, tiny_config(), _encoder_of(data_dir))
    assert load_init_weights(trainer, folder).endswith("ckpt-3")
    raw, ema = _saved(source_run, "model_variables"), _saved(source_run, "ema_variables")
    assert len(raw) == len(trainer.model.variables) and not all(np.array_equal(a, b) for a, b in zip(raw, ema))
    for variable, value in zip(trainer.model.variables, raw):
        np.testing.assert_array_equal(variable.numpy(), value)
    for variable, value in zip(trainer.ema_model.variables, ema):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert int(trainer.step.numpy()) == 0 and int(trainer.optimizer.iterations.numpy()) == 0
    assert load_init_weights(trainer, None) is None


@pytest.mark.slow  # the source run's training (~13 s, shared by the module)
def test_a_folder_with_only_the_ema_model_gives_it_to_both(source_run, data_dir, tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in ("config.json", "encoder.json", "ema_model.keras"):
        shutil.copy(source_run / name, reference / name)
    trainer = Trainer(tiny_config(), total_steps=10, strategy=tf.distribute.get_strategy())
    load_init_weights(trainer, check_init(reference, tiny_config(), _encoder_of(data_dir)))
    expected = load_run(reference).model.get_weights()
    for model in (trainer.model, trainer.ema_model):
        for got, want in zip(model.get_weights(), expected):
            np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # the source run's training (~13 s, shared by the module)
def test_mismatches_are_refused_in_one_line(source_run, data_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"model.image_size: 16 in run, 32 now") as info:
        check_init(source_run, tiny_config(image_size=32), _encoder_of(data_dir))
    assert "\n" not in str(info.value)
    other = tmp_path / "other"
    shutil.copytree(source_run, other, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    (other / "encoder.json").write_text(json.dumps({"name": "another-encoder", "dim": 8}))
    with pytest.raises(EncoderError, match="another-encoder"):
        check_init(other, tiny_config(), _encoder_of(data_dir))
    with pytest.raises(CheckpointError, match="not a folder"):
        init_dir(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="holds no trained run"):
        init_dir(tmp_path)


def test_the_reference_is_a_valid_source():
    folder = init_dir("reference")
    assert (folder / "ema_model.keras").is_file() and (folder / "manifest.json").is_file()


@pytest.mark.slow
def test_cli_init_starts_at_step_0_from_the_source_and_refuses_another_size(source_run, data_dir, tmp_path, capsys):
    run = tmp_path / "tuned"
    # a learning rate of ~0: after one step the model is still the source's model
    code = main(["-q", "train", "--data", str(data_dir), "--out", str(run), "--init", str(source_run),
                 "--steps", "1", "--lr", "1e-8"])
    assert code == 0 and "step 1/1 (completed)" in capsys.readouterr().out
    from pokemon_diffusion.model.unet import build_unet

    trainable = [v.trainable for v in build_unet(tiny_config().model).variables]  # BatchNorm statistics move anyway
    pairs = zip(_saved(run, "model_variables"), _saved(source_run, "model_variables"), trainable)
    for got, want in (pair[:2] for pair in pairs if pair[2]):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert json.loads((run / "config.json").read_text())["model"] == \
        json.loads((source_run / "config.json").read_text())["model"]  # the source's model config by default
    code = main(["train", "--data", str(data_dir), "--out", str(tmp_path / "bad"), "--init", str(source_run),
                 "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "model.image_size" in err, err


def _grown(config, resolutions=(16,)):
    return config.replace(model=config.model.replace(attention_resolutions=resolutions))


@pytest.mark.slow  # the source run's training (~13 s, shared by the module)
def test_adding_attention_starts_from_the_source_function(source_run, data_dir):
    config = _grown(tiny_config())
    trainer = Trainer(config, total_steps=10, strategy=tf.distribute.get_strategy())
    assert load_init_weights(trainer, check_init(source_run, config, _encoder_of(data_dir))).endswith("ckpt-3")
    assert any("attn" in layer.name for layer in trainer.model.layers)
    source = load_run(source_run).model  # the source's EMA model
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((2, 16, 16, 3)).astype("float32"), np.array([3, 70], "int32"),
              rng.standard_normal((2, 8)).astype("float32")]
    # the added blocks' output projection is zero: the grown EMA model is the source's function
    np.testing.assert_allclose(trainer.ema_model(inputs, training=False).numpy(),
                               source(inputs, training=False).numpy(), atol=1e-5)
    raw = _saved(source_run, "model_variables")
    stem = trainer.model.get_layer("stem").get_weights()
    assert any(np.array_equal(stem[0], value) for value in raw)  # raw weights from the raw checkpoint


@pytest.mark.slow  # the source run's training (~13 s, shared by the module)
def test_only_added_attention_is_allowed(source_run, data_dir, tmp_path):
    encoder = _encoder_of(data_dir)
    with pytest.raises(ConfigError, match=r"model.dropout: 0.0 in run, 0.1 now") as info:
        check_init(source_run, _grown(tiny_config(dropout=0.1)), encoder)  # attention plus another change
    assert "attention_resolutions" in str(info.value) and "self-attention added" in str(info.value)
    with_attention = tmp_path / "run"
    shutil.copytree(source_run, with_attention, ignore=shutil.ignore_patterns("tensorboard"))
    saved = json.loads((with_attention / "config.json").read_text())
    saved["model"]["attention_resolutions"] = [16]
    (with_attention / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"model.attention_resolutions: \[16\] in run, \[\] now"):
        check_init(with_attention, tiny_config(), encoder)  # removing attention is not growing


def test_the_order_of_attention_resolutions_does_not_matter():
    from pokemon_diffusion.training.init_from import _adds_attention_only, _differences, _model_fields

    a, b = (tiny_config(channel_mults=(1, 2)).model.replace(attention_resolutions=r) for r in ((16, 8), (8, 16)))
    assert _model_fields(a) == _model_fields(b)
    grown = _differences(_model_fields(tiny_config(channel_mults=(1, 2)).model), _model_fields(b))
    assert _adds_attention_only(grown) and grown["attention_resolutions"] == ([], [16, 8])


def test_init_reference_gives_the_shipped_weights_to_both_models(tmp_path):
    # the path `make demo` takes (`train --init reference`), without the minute its training step would trace
    import argparse

    from pokemon_diffusion.commands.train import resolve_config
    from pokemon_diffusion.pretrained import load_pretrained
    from pokemon_diffusion.run_dir import EncoderInfo

    args = argparse.Namespace(out=str(tmp_path / "run"), config=None, resume=False, init="reference",
                              steps=1, epochs=None, **{dest: None for dest in ("image_size", "norm", "base_width",
                              "batch_size", "lr", "seed", "mixed_precision", "strategy", "time_limit",
                              "checkpoint_every", "eval_every", "log_every", "ema_decay", "remat")})
    config = resolve_config(args)  # the reference's model and diffusion configs, this run's training
    reference = load_pretrained()
    assert config.model == reference.config.model and config.diffusion == reference.config.diffusion
    assert config.train.steps == 1
    folder = check_init("reference", config, EncoderInfo(reference.encoder.name, reference.encoder.dim))
    trainer = Trainer(config, total_steps=1, strategy=tf.distribute.get_strategy())
    assert load_init_weights(trainer, folder) == str(folder / "ema_model.keras")
    expected = reference.model.get_weights()
    for model in (trainer.model, trainer.ema_model):
        got = model.get_weights()
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    assert int(trainer.step.numpy()) == 0 and int(trainer.optimizer.iterations.numpy()) == 0
    with pytest.raises(EncoderError):  # a dataset embedded with another encoder is refused
        check_init("reference", config, EncoderInfo("test-encoder", reference.encoder.dim))
