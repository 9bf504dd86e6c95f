"""TrainingCheckpoint: restores current checkpoints and ones written before the stream position existed."""

import keras
import numpy as np
import tensorflow as tf

from pokemon_diffusion.training.checkpoint import TrainingCheckpoint


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
