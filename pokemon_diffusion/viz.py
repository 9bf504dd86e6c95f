"""Figures and animations of samples, denoising steps and training curves.

Every plotting function returns a :class:`matplotlib.figure.Figure` drawn on the Agg canvas,
never touching ``pyplot`` (no global figure list to leak, no display needed); save one with
:func:`save_figure`, which writes atomically. Images are float arrays in [-1, 1], shaped
(B, H, W, C); intermediates are (K, B, H, W, C) as returned by the samplers.

Example:
    >>> from pokemon_diffusion.diffusion.samplers import sample
    >>> result = sample(model, embeddings, (4, 32, 32, 3), seed=0)      # doctest: +SKIP
    >>> save_figure(plot_samples(result.images, prompts), "samples.png") # doctest: +SKIP
    >>> save_denoising_gif(result.intermediates, "denoising.gif")       # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import atomic_path
from .errors import CheckpointError, DataError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
GIF_MIN_TILE = 128  # pixels: 32x32 samples are upscaled (nearest) so the animation is visible


# ---- array helpers ---------------------------------------------------------------------------

def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map float images in [-1, 1] to uint8 pixels: ``(x + 1) · 127.5``, rounded and clipped."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _as_batch(images: Any, what: str) -> np.ndarray:
    """(B, H, W, C) float array from (B, H, W, C) or one (H, W, C) image."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[0] < 1 or array.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"{what}: got shape {np.shape(images)}; allowed: (B, H, W, C) or (H, W, C) "
                         "with 1 to 4 channels")
    return array


def _as_steps(intermediate_images: Any) -> np.ndarray:
    """(K, B, H, W, C) from (K, B, H, W, C), (K, H, W, C) or a SampleResult."""
    array = np.asarray(getattr(intermediate_images, "intermediates", intermediate_images), dtype=np.float32)
    if array.ndim == 4:
        array = array[:, None]
    if array.ndim != 5 or array.shape[0] < 1 or array.shape[1] < 1 or array.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"intermediate_images: got shape {array.shape}; allowed: (K, B, H, W, C) "
                         "or (K, H, W, C) with 1 to 4 channels")
    return array


def _displayable(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) → what ``imshow`` and Pillow take: (H, W) for 1 or 2 channels."""
    return pixels[..., 0] if pixels.shape[-1] in (1, 2) else pixels


def _expand_prompts(prompts: Optional[Union[str, Sequence[str]]], count: int) -> List[Optional[str]]:
    """One caption per image. ``n`` prompts for ``count`` images (n dividing count) are repeated
    prompt-major, as the samplers repeat embeddings."""
    if prompts is None:
        return [None] * count
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts or count % len(prompts):
        raise ValueError(f"prompts: got {len(prompts)} for {count} images; allowed: one per image, "
                         "or a number that divides the image count")
    return [p for p in prompts for _ in range(count // len(prompts))]


def image_grid(images: np.ndarray, ncols: Optional[int] = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 (B, H, W, C) images into one (rows·H, cols·W, C) array with ``pad`` white pixels."""
    batch, height, width, channels = images.shape
    ncols = ncols or math.ceil(math.sqrt(batch))
    nrows = math.ceil(batch / ncols)
    grid = np.full((nrows * (height + pad) + pad, ncols * (width + pad) + pad, channels), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)  # Agg, whatever backend pyplot would choose
    return figure


def _show(ax, pixels: np.ndarray) -> None:
    ax.imshow(_displayable(pixels), cmap="gray" if pixels.shape[-1] in (1, 2) else None,
              vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# ---- figures ---------------------------------------------------------------------------------

def plot_denoising_steps(intermediate_images: Any, timesteps: Optional[Sequence[int]] = None,
                         prompts: Optional[Union[str, Sequence[str]]] = None, *,
                         max_samples: int = 8) -> Figure:
    """The reverse process as a grid: one row per sample, one column per kept step.

    Args:
        intermediate_images: (K, B, H, W, C) or (K, H, W, C) in [-1, 1], or a ``SampleResult``
            (whose ``timesteps`` are then used when ``timesteps`` is None).
        timesteps: (K,) noise level of each column, shown as the column title "t = …";
            None and no SampleResult: columns are titled "step k".
        prompts: caption of each row (one per sample, or fewer repeated prompt-major).
        max_samples: rows drawn at most (the first ones).

    Returns:
        Figure.

    Raises:
        ValueError: bad shapes, or ``timesteps``/``prompts`` of the wrong length.
    """
    steps = _as_steps(intermediate_images)
    if timesteps is None:
        timesteps = getattr(intermediate_images, "timesteps", None)
    count, batch = steps.shape[:2]
    if timesteps is not None and len(timesteps) != count:
        raise ValueError(f"timesteps: got {len(timesteps)} values for {count} steps; allowed: one per step")
    captions = _expand_prompts(prompts, batch)
    rows = min(batch, max_samples)
    pixels = to_uint8(steps[:, :rows])
    label_space = 1.6 if prompts is not None else 0.0
    figure = _new_figure(1.25 * count + label_space, 1.3 * rows + 0.3)
    axes = figure.subplots(rows, count, squeeze=False)
    for r in range(rows):
        for k in range(count):
            ax = axes[r][k]
            _show(ax, pixels[k, r])
            if r == 0:
                ax.set_title(f"t = {int(timesteps[k])}" if timesteps is not None else f"step {k}", fontsize=9)
        if captions[r]:
            axes[r][0].set_ylabel(textwrap.fill(captions[r], 18), fontsize=8, rotation=0,
                                  ha="right", va="center", labelpad=6)
    figure.subplots_adjust(left=label_space / figure.get_figwidth() if prompts is not None else 0.01,
                           right=0.99, top=1 - 0.35 / figure.get_figheight(), bottom=0.01,
                           wspace=0.05, hspace=0.08)
    return figure


def plot_samples(images: Any, prompts: Optional[Union[str, Sequence[str]]] = None, *,
                 ncols: Optional[int] = None) -> Figure:
    """A grid of images, each captioned with its prompt.

    Args:
        images: (B, H, W, C) or (H, W, C) in [-1, 1].
        prompts: one caption per image, or n prompts repeated prompt-major (n dividing B).
        ncols: grid width; None = min(B, 4).

    Returns:
        Figure.

    Raises:
        ValueError: bad shape or prompt count.
    """
    batch_images = _as_batch(images, "images")
    batch = batch_images.shape[0]
    captions = _expand_prompts(prompts, batch)
    ncols = max(1, min(batch, ncols or 4))
    nrows = math.ceil(batch / ncols)
    caption_space = 0.5 if prompts is not None else 0.0
    figure = _new_figure(2.2 * ncols, (2.2 + caption_space) * nrows)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    pixels = to_uint8(batch_images)
    for i, ax in enumerate(axes.flat):
        if i >= batch:
            ax.set_axis_off()
            continue
        _show(ax, pixels[i])
        if captions[i]:
            ax.set_title(textwrap.fill(captions[i], 26), fontsize=8)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.95 if prompts is None else 0.9,
                           wspace=0.08, hspace=0.35 if prompts is not None else 0.08)
    return figure


def _read_metrics(path: Path) -> List[Dict[str, Any]]:
    """The JSON objects of ``metrics.jsonl``; unreadable lines (e.g. a half-written last line of a
    run still going) are skipped with a warning."""
    records, bad = [], 0
    with open(path, "rb") as fh:  # bytes: a line that is not UTF-8 is one bad line, not a traceback
        for line in fh:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                bad += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
                records.append(record)
            else:
                bad += 1
    if bad:
        log.warning("%s: skipped %d line(s) that are not JSON objects with a 'step'", path, bad)
    return records


def _series(records: List[Dict[str, Any]], key: str):
    points = [(r["step"], r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    points.sort()
    return np.array([p[0] for p in points]), np.array([p[1] for p in points], dtype=np.float64)


def _smooth(values: np.ndarray, window: Optional[int] = None) -> np.ndarray:
    """Centred moving average (geometric when every value is positive), window shrinking at the ends.

    Centred rather than exponential: a trailing average lags far behind a loss that falls by
    orders of magnitude in its first hundred steps. The default window is ~1/20 of the points.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    half = (window or max(3, n // 20)) // 2
    positive = bool(np.all(values > 0))
    series = np.log(values) if positive else values
    sums = np.concatenate([[0.0], np.cumsum(series)])
    index = np.arange(n)
    lo, hi = np.clip(index - half, 0, n), np.clip(index + half + 1, 0, n)
    mean = (sums[hi] - sums[lo]) / (hi - lo)
    return np.exp(mean) if positive else mean


def plot_training_curves(run_dir: PathLike) -> Figure:
    """Training loss (raw and smoothed) and held-out loss against the step.

    Args:
        run_dir: a run folder holding ``metrics.jsonl`` (one JSON object per line with "step",
            "loss" and optionally "val_loss"), or the path of that file.

    Returns:
        Figure, log-scaled when every loss is positive.

    Raises:
        CheckpointError: no metrics file.
        DataError: the file holds no finite "loss" or "val_loss" values.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise CheckpointError(f"no training metrics at {path} (written by `pokemon-diffusion train`)")
    records = _read_metrics(path)
    steps, loss = _series(records, "loss")
    val_steps, val_loss = _series(records, "val_loss")
    if not len(loss) and not len(val_loss):
        raise DataError(f"{path}: got {len(records)} records with no finite 'loss' or 'val_loss'; "
                        "allowed: lines like {\"step\": 50, \"loss\": 0.12}")
    figure = _new_figure(7.0, 4.0)
    ax = figure.subplots()
    if len(loss):
        ax.plot(steps, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
        if len(loss) > 2:
            ax.plot(steps, _smooth(loss), color="tab:blue", linewidth=1.6, label="loss (smoothed)")
    if len(val_loss):
        ax.plot(val_steps, val_loss, color="tab:orange", marker="o", markersize=3, linewidth=1.4,
                label="held-out loss")
    if np.all(np.concatenate([loss, val_loss]) > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"training curves: {path.parent.name}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return figure


# ---- writing files ---------------------------------------------------------------------------

def save_figure(figure: Figure, path: PathLike, *, dpi: int = 100) -> Path:
    """Save ``figure`` atomically (temp file + rename); the format follows the suffix (.png, .pdf, .svg)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=dpi)
    return Path(path)


def denoising_frames(intermediate_images: Any, *, max_samples: int = 16,
                     min_tile: int = GIF_MIN_TILE) -> List[np.ndarray]:
    """One uint8 frame per kept step: the samples, upscaled (nearest neighbour, integer factor) to
    at least ``min_tile`` pixels wide, tiled in a square-ish grid with 4-pixel gaps."""
    steps = _as_steps(intermediate_images)[:, :max_samples]
    height = steps.shape[2]
    scale = max(1, math.ceil(min_tile / height))
    # upscale before tiling so that the white gaps between tiles stay thin
    big = np.repeat(np.repeat(to_uint8(steps), scale, axis=2), scale, axis=3)
    return [_displayable(image_grid(state, pad=4)) for state in big]


def save_denoising_gif(intermediate_images: Any, path: PathLike, *, frame_ms: int = 250,
                       final_ms: int = 1500, max_samples: int = 16) -> Path:
    """Write the denoising as a looping GIF: noise first, the final images held longer.

    Args:
        intermediate_images: (K, B, H, W, C) or (K, H, W, C) in [-1, 1], or a ``SampleResult``.
        path: the .gif to write (atomically: temp file + rename).
        frame_ms: duration of each step's frame.
        final_ms: duration of the last frame.
        max_samples: samples shown per frame at most.

    Returns:
        The path written.

    Raises:
        ValueError: bad shape or durations.
    """
    from PIL import Image

    if frame_ms < 10 or final_ms < 10:
        raise ValueError(f"frame durations: got {frame_ms} and {final_ms} ms; allowed: 10 ms or more")
    images = [Image.fromarray(frame) for frame in denoising_frames(intermediate_images, max_samples=max_samples)]
    durations = [frame_ms] * (len(images) - 1) + [final_ms]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                       loop=0, optimize=False)
    return Path(path)
