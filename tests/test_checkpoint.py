"""TrainingCheckpoint: restores current checkpoints, ones written before the stream position existed,
and skips damaged ones."""

import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.errors import CheckpointError
from pokemon_diffusion.training.checkpoint import TrainingCheckpoint, checkpoint_damage


def _state(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    ema = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return dict(model=model, ema_model=ema, optimizer=optimizer, step=tf.Variable(0, dtype=tf.int64),
                generator=tf.random.Generator.from_seed(seed), elapsed=tf.Variable(0.0, dtype=tf.float64),
                examples_seen=tf.Variable(0, dtype=tf.int64))


def test_round_trip_restores_the_stream_position(tmp_path):
    saved = _state(0)
    saved["step"].assign(7)
    saved["examples_seen"].assign(230)
    TrainingCheckpoint(tmp_path, **saved).save()
    loaded = _state(1)
    checkpoint = TrainingCheckpoint(tmp_path, **loaded)
    assert checkpoint.restore_latest() == 7
    assert checkpoint.restored_examples_seen and int(loaded["examples_seen"].numpy()) == 230
    np.testing.assert_array_equal(loaded["model"].variables[0].numpy(), saved["model"].variables[0].numpy())


def test_a_checkpoint_without_the_stream_position_still_restores(tmp_path):
    old = _state(0)
    old["step"].assign(5)
    legacy = tf.train.Checkpoint(step=old["step"], elapsed=old["elapsed"], generator=old["generator"],
                                 model_variables=list(old["model"].variables),
                                 ema_variables=list(old["ema_model"].variables),
                                 optimizer_variables=list(old["optimizer"].variables))
    tf.train.CheckpointManager(legacy, str(tmp_path), max_to_keep=1, step_counter=old["step"],
                               checkpoint_name="ckpt").save(checkpoint_number=5)
    loaded = _state(1)
    checkpoint = TrainingCheckpoint(tmp_path, **loaded)
    assert checkpoint.restore_latest() == 5
    assert not checkpoint.restored_examples_seen and int(loaded["examples_seen"].numpy()) == 0
    np.testing.assert_array_equal(loaded["model"].variables[0].numpy(), old["model"].variables[0].numpy())


def _two_checkpoints(directory):
    saved = _state(0)
    checkpoint = TrainingCheckpoint(directory, **saved)
    for step in (2, 4):
        saved["step"].assign(step)
        saved["model"].variables[0].assign(saved["model"].variables[0] + 1.0)  # each checkpoint differs
        checkpoint.save()
    return saved


def _truncate(path):
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)  # a full disk or a kill mid-copy leaves this


class _Warnings(logging.Handler):
    """Warnings of one module's logger (the CLI's handler stops propagation to caplog's root handler)."""

    def __init__(self, name):
        super().__init__(logging.WARNING)
        self.messages, self.logger = [], logging.getLogger(name)

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self)
        return self.messages

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def test_a_damaged_newest_checkpoint_is_skipped_with_one_warning(tmp_path):
    _two_checkpoints(tmp_path)
    _truncate(tmp_path / "ckpt-4.data-00000-of-00001")
    assert checkpoint_damage(str(tmp_path / "ckpt-4")) == "Read less bytes than requested"
    assert checkpoint_damage(str(tmp_path / "ckpt-2")) is None
    loaded = _state(1)
    checkpoint = TrainingCheckpoint(tmp_path, **loaded)
    with _Warnings("pokemon_diffusion.training.checkpoint") as warnings:
        assert checkpoint.restore_latest() == 2
    assert len(warnings) == 1 and str(tmp_path / "ckpt-4") in warnings[0] and "resuming from ckpt-2" in warnings[0]
    assert checkpoint.latest == str(tmp_path / "ckpt-2")  # what a diverged run would name as the good one
    # the step-2 weights, not a mix: a fresh model of seed 0 plus one
    expected = _state(0)["model"].variables[0].numpy() + 1.0
    np.testing.assert_allclose(loaded["model"].variables[0].numpy(), expected)
    loaded["step"].assign(4)
    assert checkpoint.save().endswith("ckpt-4") and checkpoint_damage(str(tmp_path / "ckpt-4")) is None


def test_no_readable_checkpoint_is_one_checkpoint_error(tmp_path):
    _two_checkpoints(tmp_path)
    _truncate(tmp_path / "ckpt-4.data-00000-of-00001")
    _truncate(tmp_path / "ckpt-2.index")
    checkpoint = TrainingCheckpoint(tmp_path, **_state(1))
    with pytest.raises(CheckpointError) as info:
        checkpoint.restore_latest()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"no readable checkpoint in {tmp_path}")
    assert "ckpt-4 (Read less bytes than requested)" in message and "ckpt-2 (" in message


def test_a_readable_checkpoint_of_another_model_is_not_skipped(tmp_path):
    _two_checkpoints(tmp_path)
    other = _state(0)
    other["model"] = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    with pytest.raises(CheckpointError, match="does not match this model"):
        TrainingCheckpoint(tmp_path, **other).restore_latest()
