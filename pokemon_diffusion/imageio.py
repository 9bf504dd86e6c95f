"""The one way this package opens an image file it did not write itself.

``collect --source folder``, the training data (``data.images.read_image``) and ``sample
--init-image`` all read through :func:`read_image_file`, which refuses, before any pixel is
decoded, with one :class:`ImageRejected` line naming the file:

* anything but a regular file (a FIFO would block forever, a device never ends, a folder);
  the file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on that same descriptor;
* with ``root``: a file whose real path (symlinks followed) is outside ``root`` (a data folder
  with a link to ``/etc/...`` or another user's files);
* more than ``max_bytes``;
* a picture that is not an image PIL can identify, or whose pixels *once padded to the shape it
  is used at* (a square for the dataset) exceed the pixel limit, ``PIL.Image.MAX_IMAGE_PIXELS``
  (read at call time). A 167-byte 30000x1 PNG is 30,000 pixels, but 900 million once padded to
  a square: it is refused from its header.

Example:
    >>> data = read_image_file("squirtle.png")   # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import stat
from typing import Optional, Tuple, Union

from .errors import DataError

PathLike = Union[str, os.PathLike]
MAX_FILE_BYTES = 64 * 1024 * 1024  # no artwork comes near; a limit on what a bad file can make us read


class ImageRejected(DataError):
    """Bytes or a file that are not an acceptable image (garbage, truncated, bomb, not a regular file)."""


def padded_pixels(width: int, height: int, aspect: Optional[float] = 1.0) -> int:
    """Pixels of a ``width x height`` picture once padded to ``aspect`` (width / height; None: not padded).

    Example:
        >>> padded_pixels(30000, 1), padded_pixels(30000, 1, None), padded_pixels(4, 2, 2.0)
        (900000000, 30000, 8)
    """
    if aspect is None:
        return width * height
    return max(width, int(round(height * aspect))) * max(height, int(round(width / aspect)))


def check_pixels(width: int, height: int, *, aspect: Optional[float] = 1.0, max_pixels: Optional[int] = None,
                 where: str = "") -> None:
    """Refuse a picture whose padded size exceeds the pixel limit (default ``PIL.Image.MAX_IMAGE_PIXELS``).

    Raises:
        ImageRejected: naming ``where``, the size, what it becomes and the limit.
    """
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    needed = padded_pixels(width, height, aspect)
    if limit and needed > limit:
        padded = f" ({needed:,} once padded to its shape)" if needed != width * height else ""
        prefix = f"{where}: " if where else ""
        raise ImageRejected(f"{prefix}{width}x{height} pixels{padded} is too large; allowed: at most {limit:,} "
                            "pixels (PIL.Image.MAX_IMAGE_PIXELS)")


def inside(path: PathLike, root: PathLike) -> bool:
    """Whether ``path``'s real location (symlinks followed) is inside ``root``'s."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def read_file(path: PathLike, *, root: Optional[PathLike] = None, max_bytes: Optional[int] = MAX_FILE_BYTES,
              what: str = "image") -> bytes:
    """The bytes of a regular file, refusing FIFOs, devices, folders, links out of ``root`` and huge files.

    Raises:
        ImageRejected: see the module docstring (one line naming ``path``).
        DataError: the file cannot be read (missing, no permission).
    """
    if root is not None and not inside(path, root):
        raise ImageRejected(f"{what} {path} leads outside {root} (a symbolic link to "
                            f"{os.path.realpath(path)}); allowed: files inside the folder")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected(f"{what} {path} is not a regular file ({_kind(info.st_mode)}); allowed: an "
                                "image file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ImageRejected(f"{what} {path} is too large: {info.st_size:,} bytes; allowed: at most "
                                f"{max_bytes:,}")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(max_bytes + 1 if max_bytes is not None else -1)
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def image_size(data: bytes) -> Tuple[int, int]:
    """``(width, height)`` from an image's header, nothing decoded.

    Raises:
        ImageRejected: PIL does not recognise the bytes as an image.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"not an image ({len(data):,} bytes starting {data[:16]!r}: "
                            f"{type(exc).__name__})") from None


def read_image_file(path: PathLike, *, root: Optional[PathLike] = None, aspect: Optional[float] = 1.0,
                    max_pixels: Optional[int] = None, max_bytes: Optional[int] = MAX_FILE_BYTES,
                    what: str = "image") -> bytes:
    """The bytes of an image file, checked as the module docstring says, ready to decode.

    Args:
        path: the file.
        root: refuse a file whose real path is outside this folder (symlinks followed).
        aspect: the width/height it will be padded to (1.0: a square); None when it is not padded.
        max_pixels: the pixel limit (default ``PIL.Image.MAX_IMAGE_PIXELS``).
        max_bytes: the file size limit.
        what: how messages name the file ("image", "--init-image").

    Raises:
        ImageRejected: not a regular file, outside ``root``, too large, not an image, too many pixels.
        DataError: the file cannot be read.
    """
    data = read_file(path, root=root, max_bytes=max_bytes, what=what)
    if not data:
        raise ImageRejected(f"{what} {path} is empty; allowed: a PNG/JPEG/GIF/WEBP/BMP/TIFF image")
    try:
        width, height = image_size(data)
    except ImageRejected as exc:
        raise ImageRejected(f"cannot decode {what} {path}: {exc}") from None
    check_pixels(width, height, aspect=aspect, max_pixels=max_pixels, where=f"{what} {path}")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


__all__ = ["ImageRejected", "MAX_FILE_BYTES", "check_pixels", "image_size", "inside", "padded_pixels", "read_file",
           "read_image_file"]
