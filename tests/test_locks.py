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
from pokemon_diffusion.locks import LOCK_FILE, folder_lock, lock_holder

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


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_a_read_only_folder_gets_no_lock_instead_of_an_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with folder_lock(folder, "embed") as path:  # nothing can be written there: nothing to protect
            assert path is None
    finally:
        folder.chmod(0o755)
