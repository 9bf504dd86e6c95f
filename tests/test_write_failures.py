"""Full disks, read-only folders, a killed writer and odd bytes in metrics (issue 31, items 5, 6, 8, 11):
one line naming the file, exit 2, no temp file left, nothing already saved lost."""

import logging
import os
import signal

import numpy as np
import pytest
from PIL import Image

from helpers_faults import fill_up, full_disk, read_only
from pokemon_diffusion.cli import EXIT_TERMINATED, main
from pokemon_diffusion.collection.metadata import Entry, write_metadata
from pokemon_diffusion.errors import WriteError
from pokemon_diffusion.locks import folder_lock
from pokemon_diffusion.training.metrics import MetricsWriter, read_metrics
from test_sample_cli import HashEncoder, make_run


class _Encoder:
    name, dim = "test-zeros", 4

    def encode(self, texts, batch_size=64):
        return np.zeros((len(texts), self.dim), np.float32)


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or p.name.endswith("_temp"))


def test_a_lock_on_a_full_disk_is_one_line_for_collect(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (8, 8)).save(src / "0004_charmander.png")
    with full_disk(tmp_path / "disk", fill=False) as disk:
        (disk / "data").mkdir()
        fill_up(disk)
        with pytest.raises(WriteError, match=f"cannot write {disk / 'data' / '.lock'}: no space left"):
            with folder_lock(disk / "data", "embed"):
                pass
        capsys.readouterr()
        assert main(["collect", "--source", "folder", "--path", str(src), "--out", str(disk / "data")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: cannot write {disk / 'data' / '.lock'}: no space "
                                                       "left on the device; free space"), err


def test_an_embedding_write_on_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path):
    with full_disk(tmp_path / "disk", fill=False) as disk:
        root = disk / "data"
        (root / "pokemon_images").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "pokemon_images" / "0001_a.png")
        write_metadata(root, [Entry(name="A", image_path="pokemon_images/0001_a.png", caption="A, a Pokémon",
                                    source="test", dex=1)])
        (disk / "reserve").write_bytes(b"\0" * 4096)  # one page: room for the lock file's line, no more
        fill_up(disk)
        (disk / "reserve").unlink()
        from pokemon_diffusion.text.embeddings import embed_dataset

        with pytest.raises(WriteError) as info:
            embed_dataset(root, _Encoder())
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"cannot write {root / 'embeddings'}"), message
        assert ".npy: no space left on the device" in message
        assert _leftovers(disk) == [] and not (root / "embeddings.json").exists()


@pytest.mark.parametrize("flag", ["--out", "--gif"])
def test_sample_into_a_read_only_folder_fails_before_sampling(tmp_path, capsys, monkeypatch, flag):
    from pokemon_diffusion.text import registry

    run = make_run(tmp_path / "run")
    encoder = HashEncoder()
    monkeypatch.setattr(registry, "load_encoder_matching", lambda expected, spec: encoder)
    with read_only(tmp_path / "ro") as ro:
        out = {"--out": ro / "s.png", "--gif": tmp_path / "s.png"}[flag]
        argv = ["sample", "--run", str(run), "--prompt", "x", "--steps", "2", "--out", str(out)]
        argv += ["--gif", str(ro / "d.gif")] if flag == "--gif" else []
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        target = ro / ("s.png" if flag == "--out" else "d.gif")
        assert err.count("\n") == 1 and err.startswith(f"error: cannot write {target}: "), err
        assert ("read-only file system" in err) or ("permission denied" in err)
    assert encoder.seen == [] and not (tmp_path / "s.png").exists()  # refused before any sampling or writing


def test_a_sample_killed_while_writing_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    from pokemon_diffusion.text import registry

    run = make_run(tmp_path / "run")
    monkeypatch.setattr(registry, "load_encoder_matching", lambda expected, spec: HashEncoder())

    def killed_while_saving(self, path, **kwargs):
        with open(path, "wb"):  # the hidden temp file exists, empty, when `kill` arrives
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Figure, "savefig", killed_while_saving)
    out = tmp_path / "out"
    previous = signal.getsignal(signal.SIGTERM)
    assert main(["sample", "--run", str(run), "--prompt", "x", "--steps", "2", "--out", str(out / "s.png")]) == \
        EXIT_TERMINATED
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "error: terminated (SIGTERM); nothing half-written was left"
    assert list(out.iterdir()) == []  # no .s.png.<id>.tmp.png
    assert signal.getsignal(signal.SIGTERM) == previous  # main put the handler back


def test_metrics_with_bytes_that_are_not_utf8_are_read_and_kept_on_resume(tmp_path, caplog):
    from pokemon_diffusion.viz import plot_training_curves

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 0.5}\n{"step": 2, "lo\xff\xfess": 0.4}\n{"step": 3, "loss": 0.3}\n'
                     b'{"step": 4, "lo')  # a bad byte in the middle, a torn last line
    with caplog.at_level(logging.WARNING, "pokemon_diffusion.training.metrics"):
        assert [r["step"] for r in read_metrics(path)] == [1, 3]
    assert "skipped 1 unreadable line(s)" in caplog.text
    MetricsWriter(path, keep_until=3).close()  # what `train --resume` does first
    assert [r["step"] for r in read_metrics(path)] == [1, 3]
    assert plot_training_curves(tmp_path) is not None
