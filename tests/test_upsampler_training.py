"""An upsampler on the shared run loop: pairs (data/pairs.py), the trainer's input hook, resume, CLI."""

import json

import numpy as np
import pytest
import tensorflow as tf

from helpers_training import tiny_config, write_tiny_dataset
from pokemon_diffusion.cli import main
from pokemon_diffusion.data.dataset import make_dataset
from pokemon_diffusion.data.pairs import degrade, pair_element
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.training.loop import train
from pokemon_diffusion.training.metrics import read_metrics
from pokemon_diffusion.training.trainer import Trainer


def upsampler_config(**train):
    config = tiny_config(image_size=32, **{"crop_size": 16, "aug_max": 0.3, **train})
    return config.replace(model=config.model.replace(low_res=16))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), n=12, size=40, dim=8, pokemon=4)


def test_degrade_is_area_down_then_bicubic_up():
    rng = np.random.default_rng(0)
    flat = np.full((1, 32, 32, 3), 0.25, np.float32)
    np.testing.assert_allclose(np.asarray(degrade(flat, 8)), flat, atol=1e-6)  # a constant image stays itself
    image = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    out = np.asarray(degrade(image, 16))
    assert out.shape == image.shape and out.dtype == np.float32
    blocks = image.reshape(2, 16, 2, 16, 2, 3).mean(axis=(2, 4))  # what survives: the 2x2 block means
    again = np.asarray(degrade(image + np.repeat(np.repeat(blocks * 0, 2, 1), 2, 2), 16))
    np.testing.assert_array_equal(out, again)
    sharp = image - np.repeat(np.repeat(blocks, 2, 1), 2, 2)  # zero block means: nothing survives
    np.testing.assert_allclose(np.asarray(degrade(sharp, 16)), 0.0, atol=1e-5)


def test_pairs_are_keyed_by_position_and_cropped_consistently():
    rng = np.random.default_rng(1)
    image = tf.constant(rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32))
    full_low = np.asarray(degrade(image[None], 16))[0]
    crops = set()
    for index in range(6):
        hr, low, level = pair_element(image, tf.constant(index, tf.int64), low_res=16, crop=16, aug_max=0.0, seed=3)
        assert hr.shape == (16, 16, 3) and low.shape == (16, 16, 3) and float(level) == 0.0
        hits = [(r, c) for r in range(17) for c in range(17)
                if np.array_equal(image.numpy()[r:r + 16, c:c + 16], hr.numpy())]
        (r, c), = hits
        np.testing.assert_allclose(low.numpy(), full_low[r:r + 16, c:c + 16], atol=1e-6)  # the same window
        crops.add((r, c))
    assert len(crops) > 1
    a = pair_element(image, tf.constant(7, tf.int64), low_res=16, crop=16, aug_max=0.5, seed=3)
    b = pair_element(image, tf.constant(7, tf.int64), low_res=16, crop=16, aug_max=0.5, seed=3)
    c = pair_element(image, tf.constant(8, tf.int64), low_res=16, crop=16, aug_max=0.5, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert 0.0 <= float(a[2]) <= 0.5 and float(a[2]) != float(c[2])


def test_the_stream_carries_the_pairs_after_the_index():
    images = np.random.default_rng(2).uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
    ds = make_dataset(images, np.zeros((5, 8), np.float32), 4, repeat=True, with_index=True,
                      pair_fn=lambda x, i: pair_element(x, i, low_res=16, crop=16, aug_max=0.2, seed=0))
    hr, text, index, low, level = next(iter(ds))
    assert hr.shape == (4, 16, 16, 3) and low.shape == (4, 16, 16, 3) and level.shape == (4,)
    assert text.shape == (4, 8) and list(index.numpy()) == [0, 1, 2, 3]


def test_crop_size_is_checked():
    two_levels = upsampler_config().model.replace(channel_mults=(1, 2))
    for crop in (17, 48):
        with pytest.raises(ConfigError, match=r"TrainConfig.crop_size: got \d+; allowed: a multiple of 2 "
                                              r"\(2 \*\* \(levels - 1\)\) up to image_size 32"):
            Trainer(upsampler_config(crop_size=crop).replace(model=two_levels), 1)
    with pytest.raises(ConfigError, match="crop_size: got 16; allowed: None for a base model"):
        Trainer(tiny_config(crop_size=16), 1)


def tensors(run):
    path = tf.train.latest_checkpoint(str(run / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path)
            if not n.startswith(("save_counter", "elapsed", "_CHECKPOINTABLE"))}


@pytest.mark.slow
def test_an_upsampler_trains_resumes_bit_exact_and_its_keras_file_loads(data_dir, tmp_path):
    config = upsampler_config(steps=4, dropout=0.0, checkpoint_every=2, deterministic=True)
    straight = train(data_dir, tmp_path / "straight", config, handle_signals=False)
    first = train(data_dir, tmp_path / "resumed", config, handle_signals=False, on_step=lambda step, loss: step == 2)
    second = train(data_dir, tmp_path / "resumed", config, handle_signals=False, resume=True)
    assert (straight.step, first.step, second.step) == (4, 2, 4)
    a, b = tensors(tmp_path / "straight"), tensors(tmp_path / "resumed")
    assert sorted(a) == sorted(b) and [k for k in a if not np.array_equal(a[k], b[k])] == []
    records = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4] and np.isfinite(records[-1]["val_loss"])
    loaded = load_run(tmp_path / "resumed")
    assert loaded.config.model.low_res == 16 and loaded.config.train.crop_size == 16
    x = np.zeros((2, 32, 32, 3), np.float32)
    out = loaded.model([x, np.zeros(2, np.int32), np.zeros((2, 8), np.float32), x, np.zeros(2, np.float32)])
    assert out.shape == (2, 32, 32, 3)
    # evaluate: PSNR/SSIM/spectrum against bicubic on the held-out images (evaluation/upsampler.py)
    report_path = tmp_path / "eval.json"
    code = main(["-q", "evaluate", "--run", str(tmp_path / "resumed"), "--data", str(data_dir), "--num", "2",
                 "--steps", "2", "--out", str(report_path)])
    report = json.loads(report_path.read_text())
    assert code == 0 and report["num_images"] == 2 and (report["low_res"], report["size"]) == (16, 32)
    assert set(report["model"]) == set(report["bicubic"]) == {"psnr", "ssim", "hf_share", "hf_ratio",
                                                             "consistency_psnr"}


@pytest.mark.parametrize("argv, message", [
    (["--upsample-from", "12", "--image-size", "32"], "--upsample-from: got 12; allowed: None (the base model) or"),
    (["--crop-size", "8"], "--crop-size: got 8; allowed: 16 to 128"),
    (["--aug-max", "2"], "--aug-max: got 2.0; allowed: 0.0 to 1.0"),
])
def test_cli_rejects_bad_upsampler_options_in_one_line(argv, message, tmp_path, capsys):
    try:
        code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
