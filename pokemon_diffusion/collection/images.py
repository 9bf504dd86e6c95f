"""Images of the dataset: decode untrusted bytes safely, convert to RGB, name and write files.

* :func:`decode_image` refuses what is not an image, truncated files and decompression bombs
  (PIL's pixel limit, ``PIL.Image.MAX_IMAGE_PIXELS``, checked from the header before decoding);
* :func:`to_rgb` composites transparent artwork onto WHITE (a black background would teach the
  model black halos), and :func:`pad_to_square` centres it on a white square so a later resize
  to ``image_size x image_size`` does not squash it;
* :func:`safe_stem` and :class:`NameAllocator` turn untrusted names (``Nidoran♀``, ``Type: Null``,
  ``../../etc/passwd``) into short, portable, unique file names such as ``0004_charmander``;
* :func:`save_png_atomic` writes through a temporary file and a rename, so an interrupted run
  never leaves a half-written PNG under its final name.
"""

from __future__ import annotations

import io
import logging
import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Iterable, Optional, Set, Tuple

from PIL import Image, UnidentifiedImageError

from ..atomic import TMP_MARK, atomic_path
from ..errors import DataError
from ..imageio import ImageRejected, check_pixels

log = logging.getLogger(__name__)

WHITE: Tuple[int, int, int] = (255, 255, 255)
MAX_STEM_LENGTH = 80
# Formats PIL may decode here: the ones artwork and sprites come in. Anything else (PSD, EPS, ...)
# is refused rather than handed to a less-exercised decoder.
ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "MPO"})
# Windows refuses these as file names whatever the extension.
_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                       *(f"lpt{i}" for i in range(1, 10))})
_SYMBOLS = {"♀": " f", "♂": " m", "&": " and ", "+": " plus "}
TMP_SUFFIX = TMP_MARK


def decode_image(data: bytes, *, max_pixels: Optional[int] = None) -> Image.Image:
    """Decode untrusted image bytes completely.

    Args:
        data: the file's bytes.
        max_pixels: refuse images with more pixels than this; default PIL's
            ``Image.MAX_IMAGE_PIXELS`` (read at call time, so a caller's setting is honoured).

    Returns:
        A loaded PIL image (first frame of an animation), any mode.

    Raises:
        ImageRejected: not an image, a format outside :data:`ALLOWED_FORMATS`, truncated or corrupt
            data, or more pixels than allowed (decompression bomb). Truncation is detected as long
            as ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` keeps its default, False.
    """
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if not data:
        raise ImageRejected("empty file; allowed: a PNG/JPEG/GIF/WEBP/BMP/TIFF image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise ImageRejected(f"image format {image.format} is not allowed; allowed: "
                                    f"{', '.join(sorted(ALLOWED_FORMATS))}")
            width, height = image.size
            if limit and width * height > limit:
                raise ImageRejected(f"decompression bomb: {width}x{height} = {width * height:,} pixels; "
                                    f"allowed: at most {limit:,} (PIL.Image.MAX_IMAGE_PIXELS)")
            image.seek(0)
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        head = data[:16]
        raise ImageRejected(f"not an image ({len(data):,} bytes starting {head!r})") from None
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any decoder failure means "corrupt"
        # PIL signals truncated/corrupt data with OSError ("image file is truncated"), SyntaxError
        # (broken PNG chunks), ValueError, and for odd files struct.error or IndexError.
        raise ImageRejected(f"truncated or corrupt image ({type(exc).__name__}: {exc})") from None
    return image


def to_rgb(image: Image.Image, background: Tuple[int, int, int] = WHITE) -> Image.Image:
    """Convert any mode to RGB, compositing transparency onto ``background``.

    Handles RGBA, LA, PA, palette images with a transparent index, 16-bit and CMYK images.
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bit instead of clipping everything to white.
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype("uint8"), "L")
    return image.convert("RGB")


def pad_to_square(image: Image.Image, fill: Tuple[int, int, int] = WHITE) -> Image.Image:
    """Centre ``image`` on a ``fill``-coloured square whose side is its longer side."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), fill)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def prepare_image(data: bytes, *, max_pixels: Optional[int] = None, square: bool = True) -> Image.Image:
    """Untrusted bytes -> RGB image on white (padded to a square when ``square``).

    Raises:
        ImageRejected: see :func:`decode_image`; also a picture whose square would exceed the pixel
            limit (a 30000x1 strip is 30,000 pixels, but 900 million once padded).
    """
    image = decode_image(data, max_pixels=max_pixels)
    check_pixels(*image.size, aspect=1.0 if square else None, max_pixels=max_pixels)
    image = to_rgb(image)
    return pad_to_square(image) if square else image


def _slug(text: str) -> str:
    """ASCII lower-case words joined by ``_``: accents dropped, everything else a separator."""
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("'", "")  # Farfetch'd -> farfetchd, not farfetch_d
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def safe_stem(name: str, dex: Optional[int] = None, form: Optional[str] = None,
              max_length: int = MAX_STEM_LENGTH) -> str:
    """A portable file stem for a Pokémon: ``0004_charmander``, ``0019_rattata_alolan``.

    Only ``[a-z0-9_]`` survive, so path separators, ``..``, NUL and control characters can never
    reach the file system; the result is never empty, never a Windows reserved name and at most
    ``max_length`` characters. Uniqueness is the job of :class:`NameAllocator`.

    Example:
        >>> safe_stem("Nidoran♀", 29), safe_stem("Type: Null", 772), safe_stem("../../etc/passwd")
        ('0029_nidoran_f', '0772_type_null', 'etc_passwd')
    """
    parts = []
    if dex is not None and dex >= 0:
        parts.append(f"{dex:04d}")
    parts.append(_slug(name) or "pokemon")
    if form:
        form_slug = re.sub(r"_(form|forme)$", "", _slug(form))
        if form_slug:
            parts.append(form_slug)
    stem = "_".join(parts)[:max_length].strip("_") or "pokemon"
    if stem in _RESERVED:
        stem += "_"
    return stem


class NameAllocator:
    """Hands out unique file names in one folder: the second ``x`` becomes ``x_2``, then ``x_3``.

    Comparison ignores case, so the names also stay distinct on case-insensitive file systems.
    The same sequence of stems always gives the same names, which is what lets a second run
    find the files of the first.
    """

    def __init__(self, taken: Iterable[str] = ()):
        self._taken: Set[str] = {t.lower() for t in taken}

    def claim(self, stem: str, suffix: str = ".png") -> str:
        """Reserve and return a unique ``stem[_n] + suffix``."""
        candidate, n = stem, 1
        while (candidate + suffix).lower() in self._taken:
            n += 1
            tail = f"_{n}"
            candidate = stem[:MAX_STEM_LENGTH - len(tail)] + tail
        self._taken.add((candidate + suffix).lower())
        return candidate + suffix


def inside(root: os.PathLike | str, relative: str) -> Path:
    """``root / relative``, refusing anything that would resolve outside ``root``.

    Raises:
        DataError: absolute paths, ``..`` escapes or links leading out of ``root``.
    """
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise DataError(f"path {relative!r} leaves the dataset folder {base}; allowed: a path inside it")
    return target


def save_png_atomic(image: Image.Image, path: os.PathLike | str) -> Path:
    """Write ``image`` as PNG at ``path`` via a temporary file in the same folder and a rename."""
    with atomic_path(path, suffix="", fsync=True) as tmp, open(tmp, "wb") as fh:
        image.save(fh, format="PNG")
    return Path(path)


def remove_stale_temp_files(folder: os.PathLike | str) -> int:
    """Delete temporary files a killed run left in ``folder``; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for stale in folder.glob(f".*{TMP_SUFFIX}"):
        if stale.is_file():
            stale.unlink()
            count += 1
    return count


def is_valid_png(path: os.PathLike | str) -> bool:
    """True when ``path`` is a complete RGB PNG (what a previous run wrote), without decoding it fully."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.mode != "RGB":
                return False
            image.verify()  # walks every chunk and checks CRCs: catches truncation
        return True
    except Exception:  # any failure to read means "not valid": it will be fetched again
        return False
