"""Folder locks: a second writer gets one line with the holder's pid; a dead holder's lock is taken over."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pokemon_diffusion.cli import main
from pokemon_diffusion.config import DataConfig
from pokemon_diffusion.errors import FolderBusyError
from pokemon_diffusion.locks import LOCK_FILE, folder_lock, lock_holder, reader_lock

ROOT = Path(__file__).resolve().parents[1]

HOLD = r"""
import sys, time
from pokemon_diffusion.locks import folder_lock
with folder_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of ``folder`` as ``what``; yields a function (folder, what) -> Popen."""
    started = []

    def start(folder, what="collect"):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], cwd=ROOT, stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        started.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_second_process_is_refused_with_the_holders_pid_until_the_holder_dies(tmp_path, holder):
    folder = tmp_path / "data"
    proc = holder(folder, "embed")
    assert lock_holder(folder) == f"{proc.pid} embed"
    with pytest.raises(FolderBusyError) as info:
        with folder_lock(folder, "collect"):
            pass
    message = str(info.value)
    assert "\n" not in message and str(folder) in message and f"pid {proc.pid} (embed)" in message
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up code runs: the kernel drops the flock
    proc.wait()
    assert (folder / LOCK_FILE).is_file()  # the dead holder's file is still there ...
    with folder_lock(folder, "collect") as path:  # ... and does not block
        assert path == folder / LOCK_FILE and lock_holder(folder) == f"{os.getpid()} collect"
    assert lock_holder(folder) is None  # emptied on release


def test_locks_are_released_on_errors_and_a_missing_folder_is_created_only_on_request(tmp_path):
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path / "run", "train"):
            raise RuntimeError("boom")
    with folder_lock(tmp_path / "run", "train"):  # taken again at once: nothing leaked
        pass
    with folder_lock(tmp_path / "missing", "embed", create=False) as path:
        assert path is None and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", ["collect", "embed", "train"])
def test_the_library_writers_refuse_a_busy_folder(tmp_path, holder, command, capsys):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "pokemon_metadata.json").write_text("[]")
    (folder / "embeddings.json").write_text(json.dumps({"name": "test-encoder", "dim": 8}))
    proc = holder(folder, "someone")
    if command == "collect":
        from pokemon_diffusion.collection.pipeline import collect

        call = lambda: collect(DataConfig(source="pokedex", out_dir=str(folder), limit=1))  # noqa: E731
        argv = ["collect", "--source", "pokedex", "--limit", "1", "--out", str(folder)]
    elif command == "embed":
        from pokemon_diffusion.text.embeddings import embed_dataset

        call = lambda: embed_dataset(folder, "minilm")  # noqa: E731
        argv = ["embed", "--data", str(folder), "--text-encoder", "minilm"]
    else:
        from helpers_training import tiny_config
        from pokemon_diffusion.training.loop import train

        call = lambda: train(folder, folder, tiny_config())  # noqa: E731  (the lock comes before any work)
        argv = ["train", "--data", str(folder), "--out", str(folder), "--steps", "1"]
    with pytest.raises(FolderBusyError, match=f"pid {proc.pid}"):
        call()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {folder} is being written by pid {proc.pid}")


def test_a_read_only_folder_gets_no_lock_instead_of_an_error(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    real_open = os.open

    def refused(path, flags, *args, **kwargs):  # what a read-only folder gives a normal user (root included here)
        if str(path).endswith(LOCK_FILE):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refused)
    with folder_lock(folder, "embed") as path:  # nothing can be written there: nothing to protect
        assert path is None
    with reader_lock(folder, "evaluate") as path:
        assert path is None
    assert not (folder / LOCK_FILE).exists()


def test_readers_share_the_lock_and_exclude_a_writer(tmp_path, holder):
    folder = tmp_path / "run"
    with reader_lock(folder / "missing", "evaluate") as path:  # no folder: nothing to lock
        assert path is None
    folder.mkdir()
    with reader_lock(folder, "evaluate") as first, reader_lock(folder, "evaluate") as second:
        assert first == second == folder / LOCK_FILE
        with pytest.raises(FolderBusyError, match="a reader such as evaluate"):
            with folder_lock(folder, "train"):
                pass
    proc = holder(folder, "train")
    with pytest.raises(FolderBusyError, match=f"is being written by pid {proc.pid} \\(train\\); evaluate reads"):
        with reader_lock(folder, "evaluate"):
            pass


def test_evaluate_refuses_a_run_being_trained_in_one_line(tmp_path, holder, capsys):
    run = tmp_path / "run"
    run.mkdir()
    proc = holder(run, "train")
    assert main(["evaluate", "--run", str(run), "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run} is being written by pid {proc.pid} (train); "
                                                   "evaluate reads it when that has finished"), err
