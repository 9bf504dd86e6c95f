"""The dataset's image files as arrays: ``read_image`` decodes with OpenCV, composites transparency
on white, pads to the target aspect ratio with white and resizes (INTER_AREA when shrinking).

Opening goes through ``imageio.read_image_file`` (regular files only, a pixel limit), so a FIFO or
a decompression bomb is refused before any decoding.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import cv2
import numpy as np

from ..errors import DataError
from ..imageio import read_image_file


def check_shape(shape: Tuple[int, int]) -> Tuple[int, int]:
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise DataError(f"load_data.shape: got {shape!r}; allowed: (height, width) of positive integers") from None
    if height < 1 or width < 1:
        raise DataError(f"load_data.shape: got {shape!r}; allowed: (height, width) of positive integers")
    return height, width


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """16-bit PNGs (and other deep images) scaled down to 8 bits."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    scale = 255.0 / max(float(image.max()), 1.0) if np.issubdtype(image.dtype, np.integer) else 255.0
    return np.clip(image.astype(np.float32) * scale, 0, 255).astype(np.uint8)


def _to_rgb_on_white(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR / BGRA / gray to RGB uint8; transparent pixels become white, not black."""
    image = _to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha -> BGRA
        image = np.dstack([image[:, :, 0]] * 3 + [image[:, :, 1]])
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        # "over" on a white background: c = a·c + (1 − a)·255
        bgr = image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        image = np.clip(bgr + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)


def _pad_to_aspect(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad with white so the image has the target aspect ratio (no stretching of the artwork)."""
    h, w = image.shape[:2]
    target = width / height
    if abs(w / h - target) < 1e-6:
        return image
    if w / h < target:  # too narrow: pad left and right
        new_w = int(round(h * target))
        left = (new_w - w) // 2
        return cv2.copyMakeBorder(image, 0, 0, left, new_w - w - left, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    new_h = int(round(w / target))
    top = (new_h - h) // 2
    return cv2.copyMakeBorder(image, top, new_h - h - top, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def read_image(path: os.PathLike | str, shape: Tuple[int, int] = (32, 32), *,
               root: Optional[os.PathLike | str] = None) -> np.ndarray:
    """Read one image file as float32 RGB ``(H, W, 3)`` in [-1, 1].

    Args:
        path: an image file OpenCV can decode (PNG, JPEG, WebP, ...); transparency is composited on white.
        shape: ``(height, width)`` of the result; the image is padded with white to this aspect ratio,
            then resized with INTER_AREA when shrinking (no aliasing) or INTER_CUBIC when enlarging.
        root: refuse a file whose real path is outside this folder (a symbolic link out of the dataset).

    Returns:
        ``np.ndarray`` float32 of shape ``(height, width, 3)``: ``pixel / 127.5 - 1``.

    Raises:
        DataError: the file is missing, not a regular file, outside ``root``, too large once padded
            (``imageio.read_image_file``), or cannot be decoded.
    """
    height, width = check_shape(shape)
    # checked before decoding: regular file, inside root, pixel limit once padded to this shape
    raw = np.frombuffer(read_image_file(path, root=root, aspect=width / height), dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if image is None:
        raise DataError(f"cannot decode image {path} (not an image OpenCV can read)")
    image = _pad_to_aspect(_to_rgb_on_white(image), height, width)
    h, w = image.shape[:2]
    if (h, w) != (height, width):
        shrinking = h * w > height * width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return image.astype(np.float32) / 127.5 - 1.0
