"""Checkpoint folders: relative paths, an unreadable index, a full disk (issue 31, items 1, 3 and 5)."""

import os

import pytest
import tensorflow as tf

from helpers_faults import full_disk
from pokemon_diffusion.errors import WriteError
from pokemon_diffusion.training.checkpoint import (TrainingCheckpoint, checkpoint_paths, latest_checkpoint_step,
                                                   newest_readable_checkpoint)
from test_checkpoint import _state, _truncate, _two_checkpoints, _Warnings


def test_a_relative_folder_restores_whatever_the_index_holds(tmp_path, monkeypatch):
    # `train --out runs/r2 --resume`: the index names "ckpt-4"; the folder must not be joined twice
    monkeypatch.chdir(tmp_path)
    _two_checkpoints("runs/r2/checkpoints")
    assert tf.train.get_checkpoint_state("runs/r2/checkpoints").all_model_checkpoint_paths[-1] == \
        "runs/r2/checkpoints/ckpt-4"  # TensorFlow already prefixes the folder
    assert checkpoint_paths("runs/r2/checkpoints") == [str(tmp_path / "runs/r2/checkpoints" / f"ckpt-{n}")
                                                       for n in (2, 4)]
    assert latest_checkpoint_step("runs/r2/checkpoints") == 4
    checkpoint = TrainingCheckpoint("runs/r2/checkpoints", **_state(1))
    with _Warnings("pokemon_diffusion.training.checkpoint") as warnings:
        assert checkpoint.restore_latest("runs/r2/checkpoints") == 4
    assert warnings == []
    # moved elsewhere and read from another working directory: the same files
    os.rename(tmp_path / "runs", tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    assert TrainingCheckpoint("r2/checkpoints", **_state(1)).restore_latest() == 4


@pytest.mark.parametrize("damage", [b"\xff\xfe not utf-8", b"model_checkpoint_path: {{{ cut sh", b""])
def test_an_unreadable_index_is_found_by_listing_and_rewritten(tmp_path, damage):
    _two_checkpoints(tmp_path)
    (tmp_path / "checkpoint").write_bytes(damage)
    with _Warnings("pokemon_diffusion.training.checkpoint") as warnings:
        assert latest_checkpoint_step(tmp_path) == 4  # `train` without --resume refuses to overwrite
        checkpoint = TrainingCheckpoint(tmp_path, **_state(1))  # rewrites the index from the files
        assert checkpoint.restore_latest() == 4  # not step 0
    assert warnings and all("checkpoint is unreadable" in w and "found ckpt-2, ckpt-4" in w for w in warnings)
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-4"]
    # the manager knows both: the next saves keep max_to_keep by deleting the oldest
    for step in (6, 8):
        checkpoint.step.assign(step)
        checkpoint.save()
    assert [os.path.basename(p) for p in checkpoint_paths(tmp_path)] == ["ckpt-4", "ckpt-6", "ckpt-8"]
    assert not (tmp_path / "ckpt-2.index").exists()


def test_listing_skips_damaged_checkpoints_too(tmp_path):
    _two_checkpoints(tmp_path)
    (tmp_path / "checkpoint").unlink()
    _truncate(tmp_path / "ckpt-4.data-00000-of-00001")
    with _Warnings("pokemon_diffusion.training.checkpoint") as warnings:
        assert newest_readable_checkpoint(tmp_path) == str(tmp_path / "ckpt-2")
    assert len(warnings) == 1 and "skipping damaged checkpoint" in warnings[0]
    assert newest_readable_checkpoint(tmp_path / "empty") is None


def test_a_save_on_a_full_disk_is_one_line_and_leaves_no_temp_files(tmp_path):
    with full_disk(tmp_path / "disk", size="1m", fill=False) as disk:
        folder = disk / "checkpoints"
        saved = _two_checkpoints(folder)
        before = sorted(p.name for p in folder.iterdir())
        from helpers_faults import fill_up

        fill_up(disk)
        checkpoint = TrainingCheckpoint(folder, **saved)
        checkpoint.step.assign(6)
        with pytest.raises(WriteError) as info:
            checkpoint.save()
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"cannot write {folder / 'ckpt-6'}: no space left")
        assert sorted(p.name for p in folder.iterdir()) == before  # no ckpt-6_temp, the others intact
        assert newest_readable_checkpoint(folder) == str(folder / "ckpt-4")
