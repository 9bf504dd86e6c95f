"""Fault fixtures: a full disk (a tiny tmpfs, root only) and a read-only folder that holds for root too."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def full_disk(where: Path, size: str = "256k", *, fill: bool = True) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (created), filled to the last byte when ``fill``.

    Skips the test where it cannot be mounted (not root, no mount permission in a container).
    """
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs, which only root can mount")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk: {done.stderr.strip()}")
    try:
        if fill:
            fill_up(where)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_up(folder: Path) -> None:
    """Write hidden filler files into ``folder`` until the file system is full (unbuffered, to the last byte)."""
    for chunk in (65536, 4096, 1):
        try:
            fd = os.open(folder / f".filler-{uuid.uuid4().hex[:6]}", os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            return
        try:
            while True:
                os.write(fd, b"\0" * chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)


@contextlib.contextmanager
def read_only(where: Path) -> Iterator[Path]:
    """``where`` (created) as a read-only bind mount: EROFS even for root. Skips where it cannot mount."""
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        where.chmod(0o555)  # enough for a normal user
        try:
            yield where
        finally:
            where.chmod(0o755)
        return
    steps = [["mount", "--bind", str(where), str(where)], ["mount", "-o", "remount,bind,ro", str(where)]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)
            pytest.skip(f"cannot make a read-only mount: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
