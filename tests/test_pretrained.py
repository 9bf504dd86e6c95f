"""The shipped reference model: manifest, checksums, loading, and a clear error when damaged."""

import shutil

import numpy as np
import pytest

from pokemon_diffusion.config import SampleConfig
from pokemon_diffusion.errors import CheckpointError
from pokemon_diffusion.generate import generate
from pokemon_diffusion.pretrained import (MANIFEST_FILE, OPTIONAL_FILES, SHIPPED_FILES, export_pretrained, load_pretrained,
                                          pretrained_dir, read_manifest)
from pokemon_diffusion.run_dir import keras_file_damage, load_run


def test_manifest_records_how_it_was_trained_and_checksums_match():
    manifest = read_manifest()  # verifies every SHA-256
    for key in ("name", "command", "steps", "wall_time_s", "machine", "final_loss", "val_loss", "sha256"):
        assert manifest.get(key) is not None, key
    assert "pokemon-diffusion train" in manifest["command"]
    assert manifest["steps"] > 0 and np.isfinite(manifest["val_loss"])
    base_files = {name for name in manifest["sha256"] if "/" not in name} - {"cascade.json"}  # a cascade: + stages
    assert base_files == set(SHIPPED_FILES) | set(OPTIONAL_FILES)  # the name table ships too
    size = sum((pretrained_dir() / name).stat().st_size for name in manifest["sha256"])
    assert size == manifest["bytes"] and size <= 40e6  # issue 29: all stages' weights within 40 MB


@pytest.fixture(scope="module")
def reference():
    return load_pretrained()


def test_reference_loads_and_generates(reference):
    assert reference.config.model.image_size == 32
    assert reference.encoder.dim == reference.config.model.text_dim == 384
    assert reference.encoder.name == "minilm:all-MiniLM-L6-v2"  # the offline encoder: usable anywhere
    result, labels = generate(reference, ["a"], config=SampleConfig(steps=3, seed=0),  # the base size: fast
                              embeddings=np.zeros((1, 384), np.float32), size=32)
    assert result.images.shape == (1, 32, 32, 3) and labels == ["a"]
    assert np.all(np.isfinite(result.images)) and np.abs(result.images).max() <= 1.0


@pytest.mark.parametrize("damage, message", [("flip", "is damaged: sha256"), ("delete", "is incomplete"),
                                             ("manifest", "no pretrained model")])
def test_a_damaged_copy_is_a_clear_error(tmp_path, damage, message):
    copy = tmp_path / "pretrained"
    shutil.copytree(pretrained_dir(), copy)
    if damage == "flip":
        data = bytearray((copy / "ema_model.keras").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (copy / "ema_model.keras").write_bytes(bytes(data))
    elif damage == "delete":
        (copy / "encoder.json").unlink()
    else:
        (copy / MANIFEST_FILE).unlink()
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(copy)


@pytest.mark.parametrize("checkpoints", [False, True])
def test_a_truncated_model_in_a_run_folder_says_damaged_not_missing(tmp_path, checkpoints):
    run = tmp_path / "run"
    shutil.copytree(pretrained_dir(), run)
    model = run / "ema_model.keras"
    with open(model, "r+b") as fh:
        fh.truncate(model.stat().st_size // 2)  # a full disk or a kill mid-copy
    if checkpoints:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    with pytest.raises(CheckpointError) as info:
        load_run(run)
    message = str(info.value)
    assert message.startswith(f"{model} is damaged: not a complete .keras (zip) archive")
    assert "not found" not in message.lower() and "\n" not in message
    assert ("train --resume" in message) == checkpoints
    with pytest.raises(CheckpointError, match="is damaged.*nothing exported"):
        export_pretrained(run, tmp_path / "export")
    assert not (tmp_path / "export" / MANIFEST_FILE).exists()


def test_a_model_member_failing_its_crc_is_damaged(tmp_path):
    import zipfile

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("model.weights.h5", b"x" * 1000)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # inside the stored member: the central directory is intact
    path.write_bytes(bytes(data))
    assert keras_file_damage(path) == "its member model.weights.h5 fails its CRC check"


def test_reference_gives_keras_groupnorm_outputs_and_gradients_through_the_fast_path(reference, monkeypatch):
    # the shipped GroupNorm model: fast_norm._group_norm (TensorFlow) against Keras' own layer
    import tensorflow as tf

    from pokemon_diffusion.model import fast_norm

    model, rng = reference.model, np.random.default_rng(0)
    size = reference.config.model.image_size
    x = tf.constant(rng.normal(size=(2, size, size, 3)).astype("float32"))
    t = tf.constant([10, 700])
    text = tf.constant(rng.normal(size=(2, reference.config.model.text_dim)).astype("float32"))

    def outputs():
        with tf.GradientTape() as tape:
            y = model([x, t, text], training=False)
            loss = tf.reduce_sum(tf.square(y))
        return [y] + tape.gradient(loss, model.trainable_variables)

    fast = outputs()
    monkeypatch.setattr(fast_norm, "_group_fusable", lambda layer, inputs: False)
    for got, want in zip(fast, outputs()):  # rounding, accumulated over the network: relative to the largest
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3, atol=1e-4 * np.abs(want.numpy()).max())
