"""Write-then-rename, the one way this package writes a file that someone may be reading.

A crash, a full disk or Ctrl-C leaves either the old file or the new one under the final name,
never half of one. The temporary file lives in the same folder (``os.replace`` is atomic only
within a file system), starts with a dot, and is created by the writer itself (not pre-created
with ``mkstemp``'s 0600 mode), so the result gets the usual permissions of the user's umask.

A write that fails for a reason the user can fix (a full disk, a read-only file system, no
permission) becomes one :class:`~pokemon_diffusion.errors.WriteError` naming the final file, and
the temporary file is removed (:func:`writing` gives the same translation to other writers).
"""

from __future__ import annotations

import errno
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from .errors import WriteError, write_failed

PathLike = Union[str, os.PathLike]
TMP_MARK = ".tmp"


def temp_name(path: PathLike, suffix: Optional[str] = None) -> Path:
    """A fresh hidden name beside ``path``: ``.NAME.<random>.tmp`` + ``suffix`` (default: ``path``'s suffix)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{TMP_MARK}{suffix}")


@contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Turn a failed write in the ``with`` block (ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EFBIG) into one
    :class:`~pokemon_diffusion.errors.WriteError` naming ``path``; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        error = write_failed(path, exc)
        if error is None:
            raise
        raise error from None


@contextmanager
def atomic_path(path: PathLike, *, suffix: Optional[str] = None, fsync: bool = False) -> Iterator[str]:
    """Yield a temporary file name to write; on success it is renamed over ``path``.

    Args:
        path: the final file; its folder is created when missing.
        suffix: the temporary name's ending (default ``path``'s own, which writers such as
            ``keras.Model.save`` or ``Figure.savefig`` read the format from).
        fsync: flush the file to disk before the rename (metadata and manifests).

    Example:
        >>> with atomic_path("out/model.keras") as tmp:   # doctest: +SKIP
        ...     model.save(tmp)
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(path, suffix)
        try:
            yield str(tmp)
            if fsync:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            _remove(tmp)


def check_writable(path: PathLike) -> Path:
    """Fail now, in one line, if ``path`` could not be written later: its folder is created when
    missing and a hidden probe file is created and removed there.

    For commands that work minutes before they write (``sample``): a read-only or full output
    folder is refused before the work, not after it.

    Raises:
        WriteError: the folder cannot be created or written (full disk, read-only, no permission).
    """
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        raise WriteError(f"cannot write {path}: {path.parent} is a file, not a folder; allowed: a file in a "
                         "writable folder", errno.ENOTDIR)
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            probe = temp_name(path)
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(probe)
    except OSError as exc:  # a parent that is a file, a name too long: still one line before the work
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}; allowed: a file in a writable folder",
                         exc.errno) from None
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder; allowed: a file name", errno.EISDIR)
    return path


def _remove(tmp: Path) -> None:
    """Delete a temporary file or folder (some writers make one) left by a failed write."""
    try:
        if tmp.is_dir() and not tmp.is_symlink():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()
    except OSError:
        pass


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, fsync=fsync) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, *, fsync: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)
