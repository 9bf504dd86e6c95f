"""Evaluating an upsampler (a cascade stage): held-out real images degraded and brought back.

Each held-out image at the stage's size is degraded exactly as training and sampling degrade
(``data/pairs.degrade``: area-down to ``low_res``, bicubic back up); that is the **bicubic**
baseline and, with the fixed sampling augmentation level, the model's input. Figures, each for the
model and for bicubic (:func:`upsampler_figures`):

- ``psnr`` (dB, data range 2 for [-1, 1]) and ``ssim`` (Wang et al. 2004: Gaussian window
  σ = 1.5, 11 taps, C1 = (0.01·L)², C2 = (0.03·L)², per channel, averaged) against the real image;
- ``hf_share``: the share of the spectrum's power (grey level, mean removed) above the frequency
  the degradation keeps (``0.5 / factor`` cycles per pixel), next to the real images' (``hf_ratio``
  = output's / real's: 1 is right, bicubic is far below);
- ``consistency_psnr``: the output area-downsampled against the real image area-downsampled (the
  clean low-resolution input): an upsampler should keep what it was given.

The model is any callable ``(low-resolution images) -> images``; :func:`stage_upsampler` makes one
from an upsampler's ``LoadedRun`` (DDIM through the compiled loop, as a cascade samples), and
:func:`chain` one from a cascade's stages (``evaluate --run CASCADE``: from the base's size to the
last stage's, e.g. 32 -> 128 through 64).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from ..config import CASCADE_AUG_LEVEL, CASCADE_STAGE_STEPS, SampleConfig
from ..errors import ConfigError, DataError

DATA_RANGE = 2.0  # images are in [-1, 1]


def area_down(images: np.ndarray, low_res: int) -> np.ndarray:
    """``(B, H, H, C)`` -> ``(B, low_res, low_res, C)``: the mean of each block (as ``pairs.degrade``)."""
    b, h, w, c = images.shape
    f = h // low_res
    return images.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the PSNR in dB (data range 2); an exact match counts as 100 dB."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.mean(np.where(mse > 0, 10 * np.log10(DATA_RANGE ** 2 / np.maximum(mse, 1e-20)), 100.0)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over images and channels (Gaussian window σ 1.5, 11 taps)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    blur = lambda x: gaussian_filter(x, sigma=(0, 1.5, 1.5, 0), truncate=3.5)  # noqa: E731 (window 11)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(value.mean())


def high_frequency_share(images: np.ndarray, cutoff: float) -> float:
    """Share of the grey-level power spectrum (mean removed) above ``cutoff`` cycles per pixel."""
    grey = np.asarray(images, np.float64).mean(axis=-1)
    grey = grey - grey.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(grey)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[1]), np.fft.fftfreq(grey.shape[2]), indexing="ij")
    high = np.hypot(fy, fx) > cutoff
    total = power.sum()
    return float(power[:, high].sum() / total) if total > 0 else 0.0


def upsampler_figures(outputs: np.ndarray, real: np.ndarray, low_res: int) -> Dict[str, float]:
    """PSNR, SSIM, high-frequency share (and its ratio to the real images') and consistency of ``outputs``."""
    cutoff = 0.5 * low_res / real.shape[1]
    real_hf = high_frequency_share(real, cutoff)
    hf = high_frequency_share(outputs, cutoff)
    return {"psnr": psnr(outputs, real), "ssim": ssim(outputs, real), "hf_share": hf,
            "hf_ratio": hf / real_hf if real_hf > 0 else float("nan"),
            "consistency_psnr": psnr(area_down(outputs, low_res), area_down(real, low_res))}


def evaluate_upsampler(upsample_fn: Callable[[np.ndarray], np.ndarray], real: np.ndarray, low_res: int,
                       batch_size: int = 16) -> Dict[str, Any]:
    """The report for ``upsample_fn`` on ``real`` images (see the module docstring).

    Args:
        upsample_fn: low-resolution images ``(B, low_res, low_res, C)`` (the real ones area-downsampled,
            as ``pairs.degrade`` does) -> images ``(B, H, H, C)``: one stage, or a chain of stages.
        real: float32 ``(N, H, H, C)`` in [-1, 1], ``H`` a multiple of ``low_res``.

    Returns:
        ``{"model": figures, "bicubic": figures, "real": {"hf_share"}, "num_images", "low_res", "size"}``.

    Raises:
        ConfigError: no images, or a size that is not a multiple of ``low_res``.
    """
    from ..data.pairs import upsample

    real = np.asarray(real, np.float32)
    if real.ndim != 4 or not len(real) or real.shape[1] != real.shape[2] or real.shape[1] % low_res:
        raise ConfigError(f"evaluate_upsampler: got images {real.shape}; allowed: (N >= 1, H, H, C) with H a "
                          f"multiple of low_res {low_res}")
    low = area_down(real, low_res)
    outputs = np.concatenate([np.asarray(upsample_fn(low[i:i + batch_size]), np.float32)
                              for i in range(0, len(real), batch_size)])
    bicubic = np.clip(np.asarray(upsample(low, real.shape[1])), -1.0, 1.0)
    return {"model": upsampler_figures(np.clip(outputs, -1.0, 1.0), real, low_res),
            "bicubic": upsampler_figures(bicubic, real, low_res),
            "real": {"hf_share": high_frequency_share(real, 0.5 * low_res / real.shape[1])},
            "num_images": int(len(real)), "low_res": int(low_res), "size": int(real.shape[1])}


def stage_upsampler(run: Any, embeddings: np.ndarray, *, steps: int = CASCADE_STAGE_STEPS,
                    aug_level: float = CASCADE_AUG_LEVEL, guidance_scale: float = SampleConfig.guidance_scale,
                    seed: int = 0, stage: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """An upsampler run as ``upsample_fn``: each call takes the next rows of ``embeddings`` (the
    images' own captions), brings its low-resolution images up with ``pairs.upsample`` (bicubic, as
    training and a cascade do), adds the augmentation noise of ``aug_level`` (keyed by ``seed``,
    ``stage`` and the row) and runs DDIM (η = 0) through the compiled loop."""
    import tensorflow as tf

    from ..diffusion.cascade import plan_upsampling

    state = {"next": 0}

    def upsample_fn(low: np.ndarray) -> np.ndarray:
        start, batch = state["next"], len(low)
        state["next"] = start + batch
        sampling = plan_upsampling(run, low, embeddings[start:start + batch],
                                   key=tf.constant([seed, (stage << 32) + start], tf.int64), steps=steps,
                                   aug_level=aug_level, guidance_scale=guidance_scale, seed=seed)
        return np.clip(sampling.run(sampling.x_T, 0, sampling.num_steps)[0].numpy(), -1.0, 1.0)

    return upsample_fn


def chain(fns: Sequence[Callable[[np.ndarray], np.ndarray]]) -> Callable[[np.ndarray], np.ndarray]:
    """Stages one after the other: a cascade's way from its base size to its last stage's."""
    def upsample_fn(low: np.ndarray) -> np.ndarray:
        for fn in fns:
            low = fn(low)
        return low

    return upsample_fn


def evaluate_upsampler_run(run_dir: os.PathLike | str, data_dir: os.PathLike | str, *, num: int = 64,
                           seed: int = 0, steps: Optional[int] = None, aug_level: Optional[float] = None,
                           guidance_scale: float = SampleConfig.guidance_scale, batch_size: int = 16) -> Dict[str, Any]:
    """``evaluate`` for an upsampler run, or for a cascade folder (its stages chained, from the base's
    size to the last stage's): the first ``num`` held-out images (the last stage's split, whole
    Pokémon) at the final size, each with its own caption; :func:`evaluate_upsampler`'s report plus
    the settings. ``steps`` and ``aug_level`` None: the cascade's own, else ``config.CASCADE_STAGE_STEPS``
    / ``CASCADE_AUG_LEVEL``; a cascade's ``stage_guidance``, when it fixes one, replaces ``guidance_scale``.

    Raises:
        ConfigError: neither an upsampler nor a cascade. DataError: it held out no images.
        EncoderError, CheckpointError: as ``evaluation.evaluate``.
    """
    from ..data.dataset import split_by_pokemon
    from ..run_dir import CascadeRun, load_run
    from .eval_data import check_dataset_encoder, load_eval_data

    run = load_run(run_dir)
    if isinstance(run, CascadeRun):
        stages, low_res = list(run.stages), run.config.model.image_size
        aug_level = run.aug_level if aug_level is None else aug_level
        steps = run.stage_steps if steps is None else steps
        guidance_scale = guidance_scale if run.stage_guidance is None else run.stage_guidance
    elif run.config.model.low_res is not None:
        stages, low_res = [run], run.config.model.low_res
    else:
        raise ConfigError(f"evaluate_upsampler_run: {run_dir} is a base model (no model.low_res); allowed: an "
                          "upsampler run (`train --upsample-from`) or a cascade folder (cascade.json)")
    aug_level = CASCADE_AUG_LEVEL if aug_level is None else float(aug_level)
    steps = CASCADE_STAGE_STEPS if steps is None else int(steps)
    model, tc = stages[-1].config.model, stages[-1].config.train
    check_dataset_encoder(data_dir, run.encoder)
    data = load_eval_data(data_dir, model.image_size)
    _, val_idx = split_by_pokemon(data.entries, tc.val_fraction, tc.seed)
    if not len(val_idx):
        raise DataError(f"{run_dir} held out no images (train.val_fraction = {tc.val_fraction}); an upsampler is "
                        "measured on held-out images only")
    idx = val_idx[:num]
    upsample_fn = chain([stage_upsampler(s, data.embeddings[idx], steps=steps, aug_level=aug_level, seed=seed,
                                         guidance_scale=guidance_scale, stage=i) for i, s in enumerate(stages)])
    report = evaluate_upsampler(upsample_fn, data.images[idx], low_res, batch_size=batch_size)
    report.update({"run": str(run_dir), "stages": [s.config.model.image_size for s in stages],
                   "steps": int(min(steps, stages[-1].config.diffusion.timesteps)),
                   "aug_level": float(aug_level), "seed": int(seed), "guidance_scale": float(guidance_scale),
                   "split": f"whole Pokémon held out: train.val_fraction = {tc.val_fraction}, seed {tc.seed}"})
    return report


def format_upsampler_report(report: Dict[str, Any]) -> str:
    """A few text lines: each figure for the model and for bicubic."""
    lines: List[str] = [f"upsampler {report['low_res']} -> {report['size']} on {report['num_images']} held-out "
                        f"images (real high-frequency share {report['real']['hf_share']:.4f})"]
    for key in ("psnr", "ssim", "hf_share", "hf_ratio", "consistency_psnr"):
        lines.append(f"  {key:<17} model {report['model'][key]:9.4f}   bicubic {report['bicubic'][key]:9.4f}")
    return "\n".join(lines)
