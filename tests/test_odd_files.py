"""Odd files in data folders and as --init-image (issue 31, items 2, 4, 10 and the symlinks of 11):
one image-opening helper refuses them in one line, before any pixel is decoded."""

import contextlib
import json
import os
import signal
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers_training import write_tiny_dataset
from pokemon_diffusion.cli import main
from pokemon_diffusion.collection.metadata import read_metadata
from pokemon_diffusion.data.dataset import load_examples
from pokemon_diffusion.data.images import read_image
from pokemon_diffusion.imageio import ImageRejected, read_image_file
from test_sample_cli import make_run


def strip_png(width=30000, height=1) -> bytes:
    """A valid grey PNG of ``width`` x ``height`` (a 30000x1 one is ~110 bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + b"\0" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


@contextlib.contextmanager
def no_hang(seconds=20):
    """A blocking open (a FIFO) fails the test instead of hanging the suite."""
    def expire(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_the_helper_refuses_strips_fifos_folders_and_links_out(tmp_path):
    (tmp_path / "strip.png").write_bytes(strip_png())
    with pytest.raises(ImageRejected, match=r"30000x1 pixels \(900,000,000 once padded to its shape\) is too "
                                            r"large; allowed: at most 89,478,485"):
        read_image_file(tmp_path / "strip.png")
    assert read_image_file(tmp_path / "strip.png", aspect=None)  # not padded: 30,000 pixels are fine
    os.mkfifo(tmp_path / "fifo.png")
    with no_hang(), pytest.raises(ImageRejected, match=r"fifo.png is not a regular file \(a FIFO\)"):
        read_image_file(tmp_path / "fifo.png")
    with pytest.raises(ImageRejected, match=r"is not a regular file \(a folder\)"):
        read_image_file(tmp_path)
    inner = tmp_path / "data"
    inner.mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "outside.png")
    (inner / "link.png").symlink_to(tmp_path / "outside.png")
    assert read_image_file(inner / "link.png")  # no root: a link is a file like another
    with pytest.raises(ImageRejected, match=r"link.png leads outside .*data \(a symbolic link to .*outside.png\)"):
        read_image_file(inner / "link.png", root=inner)


def test_collect_folder_skips_odd_files_with_one_warning_each_and_writes_the_metadata(tmp_path, package_log):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(src / "0004_charmander.png")
    (src / "strip.png").write_bytes(strip_png())  # padded to a square: 900 million pixels
    try:
        Image.new("RGB", (8, 8)).save(os.fsdecode(os.fsencode(str(src)) + b"/bad\xff\xfe.png"))  # not UTF-8
    except OSError as exc:
        pytest.skip(f"this file system refuses file names that are not UTF-8 ({exc})")
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere.png")
    (src / "link.png").symlink_to(tmp_path / "elsewhere.png")
    os.mkfifo(src / "pipe.png")
    out = tmp_path / "data"
    with no_hang():
        code = main(["collect", "--source", "folder", "--path", str(src), "--out", str(out)])
    assert code == 0  # one good image collected
    assert [e.name for e in read_metadata(out)] == ["Charmander"]
    log = package_log.text
    assert "skipped 1 file(s) whose names are not UTF-8: 'bad\\xff\\xfe.png'" in log
    assert f"skipped 1 symbolic link(s) leading out of {src}: link.png -> {tmp_path / 'elsewhere.png'}" in log
    assert "30000x1 pixels (900,000,000 once padded to its shape) is too large" in log
    assert not (out / "pokemon_images" / "strip.png").exists()


def test_training_skips_a_strip_and_a_link_out_of_the_dataset(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", n=4, size=20, dim=8, pokemon=2)
    images = data / "pokemon_images"
    entries = json.loads((data / "pokemon_metadata.json").read_text())
    (images / entries[0]["image_path"].split("/")[-1]).write_bytes(strip_png())
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    linked = images / entries[1]["image_path"].split("/")[-1]
    linked.unlink()
    linked.symlink_to(tmp_path / "secret.png")
    examples = load_examples(data, (8, 8))
    assert len(examples) == 2 and len(examples.skipped) == 2
    assert "is too large" in examples.skipped[0] and "leads outside" in examples.skipped[1]


def test_init_image_must_be_a_regular_image_file_of_sane_size(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    (tmp_path / "strip.png").write_bytes(strip_png())
    os.mkfifo(tmp_path / "fifo.png")
    for picture, message in ((tmp_path / "fifo.png", "is not a regular file (a FIFO)"),
                             (tmp_path / "strip.png", "30000x1 pixels (900,000,000 once padded")):
        with no_hang():
            code = main(["sample", "--run", str(run), "--prompt", "x", "--init-image", str(picture),
                         "--out", str(tmp_path / "s.png")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and message in err and str(picture) in err, err
    assert not (tmp_path / "s.png").exists()
    assert read_image(tmp_path / "run" / ".." / "strip.png", (1, 30000)).shape == (1, 30000, 3)  # its own shape
