"""One writer per folder: ``train`` locks its run folder, ``collect`` and ``embed`` their data folder.

The lock is ``fcntl.flock`` on ``FOLDER/.lock``, a file that holds the holder's pid (for the
message a second writer gets). The kernel drops a flock when its process ends in any way, ``kill
-9`` included, so a lock of a dead process never blocks: the file it leaves behind is just taken
over. The file is never deleted: removing it would let a third process lock a fresh file while a
second one still holds the old one. ``evaluate`` takes the run's lock in shared mode
(:func:`reader_lock`): it waits for no one, but refuses a run being trained (a moving target),
and ``train`` refuses a run being evaluated. Other readers (``sample``, ``train`` reading its
data folder) take no lock: they read files that are only ever replaced whole.

A lock file that cannot be written for a reason the user can fix (a full disk) is one
:class:`~pokemon_diffusion.errors.WriteError` naming it.

Where ``fcntl`` does not exist (Windows) or the lock file cannot be created (a read-only folder:
nothing can be written there anyway), the lock is skipped.

Example:
    >>> with folder_lock("runs/demo", "train"):   # doctest: +SKIP
    ...     ...                                    # a second writer gets FolderBusyError
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Iterator, Optional, Union

from .errors import FolderBusyError, write_failed

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


def lock_holder(folder: Union[str, os.PathLike]) -> Optional[str]:
    """What the lock file of ``folder`` says about its last holder ("PID WHAT"), or None.

    The file outlives its holder: this says who locked last, not whether the lock is held.
    """
    try:
        return (Path(folder) / LOCK_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


@contextlib.contextmanager
def folder_lock(folder: Union[str, os.PathLike], what: str, *, create: bool = True) -> Iterator[Optional[Path]]:
    """Hold the write lock of ``folder`` (created if missing) for the ``with`` block.

    Args:
        folder: the run or data folder.
        what: who is writing, for the message a second writer gets ("train", "collect", "embed").
        create: create ``folder`` when it is missing (else a missing folder gets no lock, and the
            caller reports it).

    Yields:
        The lock file's path, or None when no lock could be taken (no fcntl, read-only folder).

    Raises:
        FolderBusyError: another process holds the lock (the message names the folder and its pid).
    """
    folder = Path(folder)
    fd = _open(folder, create) if fcntl is not None else None
    if fd is None:
        yield None
        return
    try:
        _take(fd, folder, fcntl.LOCK_EX)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        except OSError as exc:  # a full disk: one line, not a traceback
            error = write_failed(folder / LOCK_FILE, exc)
            if error is None:
                raise
            raise error from None
        logger.debug("locked %s for %s", folder, what)
        try:
            yield folder / LOCK_FILE
        finally:
            # empty before unlocking, so a later reader sees no holder; closing drops the lock
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _take(fd: int, folder: Path, mode: int, reading: Optional[str] = None) -> None:
    """``flock`` without waiting; FolderBusyError naming the holder when another process has it."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise _busy(folder, fd, reading=reading) from None


@contextlib.contextmanager
def reader_lock(folder: Union[str, os.PathLike], what: str) -> Iterator[Optional[Path]]:
    """Hold ``folder``'s lock in shared mode for the ``with`` block: readers run side by side, a writer
    (``train``) neither runs nor starts meanwhile.

    The lock file is created when the folder is writable and has none; where it cannot be (a
    read-only folder, no fcntl) no lock is taken, as for writers.

    Raises:
        FolderBusyError: a writer holds the lock (the message names it), e.g. ``train`` is writing
            the run ``evaluate`` was asked to read.
    """
    folder = Path(folder)
    fd = _open_shared(folder) if fcntl is not None else None
    if fd is None:
        yield None
        return
    try:
        _take(fd, folder, fcntl.LOCK_SH, reading=what)
        logger.debug("locked %s for %s (shared)", folder, what)
        yield folder / LOCK_FILE
    finally:
        os.close(fd)


def _busy(folder: Path, fd: int, reading: Optional[str] = None) -> FolderBusyError:
    holder = _read(fd).split(" ", 1)
    if not holder[0]:  # readers write no pid: a shared holder, or a writer between its flock and its pid
        return FolderBusyError(f"{folder} is in use by another process (a reader such as evaluate, or a writer "
                               "just starting); wait for it to finish, or choose another folder")
    pid = f"pid {holder[0]}"
    busy = f" ({holder[1]})" if len(holder) > 1 else ""
    if reading:
        return FolderBusyError(f"{folder} is being written by {pid}{busy}; {reading} reads it when that has "
                               "finished (or stop it)")
    return FolderBusyError(f"{folder} is being written by {pid}{busy}; wait for it to finish or stop it, "
                           f"or choose another folder")


@contextlib.contextmanager
def writer_lock(folder: Union[str, os.PathLike], what: str) -> Iterator[Optional[Path]]:
    """:func:`folder_lock` for a writer that may create ``folder``: when the ``with`` block fails
    and this call created the folder, the folder is removed again if only the lock is in it, so a
    failed start (bad data, bad config) leaves no empty run folder behind."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        with folder_lock(folder, what) as lock:
            yield lock
    except BaseException:
        if created:
            remove_if_only_lock(folder)
        raise


def remove_if_only_lock(folder: Union[str, os.PathLike]) -> bool:
    """Remove ``folder`` when it holds nothing but its (released) lock file; True if removed.

    For a writer that created the folder and then failed before writing anything into it, so a
    bad command leaves no empty run folder behind.
    """
    folder = Path(folder)
    try:
        if {p.name for p in folder.iterdir()} != {LOCK_FILE}:
            return False
        (folder / LOCK_FILE).unlink()
        folder.rmdir()
    except OSError:
        return False
    logger.debug("removed %s: the failed writer left only its lock there", folder)
    return True


def _open(folder: Path, create: bool) -> Optional[int]:
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # read-only, not a folder, no permission: the writes would fail too, and say why
        logger.debug("no lock on %s: %s", folder, exc.strerror)
        return None


def _open_shared(folder: Path) -> Optional[int]:
    try:
        return os.open(folder / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.debug("no lock on %s: %s", folder, exc.strerror)
        return None
    if not folder.is_dir():
        return None
    return _open(folder, create=False)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
