"""evaluation/upsampler.py on synthetic images: bicubic against a perfect oracle, the figures' sense."""

import numpy as np
import pytest

from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.evaluation.upsampler import (area_down, chain, evaluate_upsampler, high_frequency_share,
                                                    psnr, ssim)


def synthetic(n=4, size=32, seed=0):
    """Discs with fine stripes: detail above what a 16² image keeps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = []
    for _ in range(n):
        cy, cx, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(6, 10)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2).astype(np.float32)
        stripes = 0.4 * np.sign(np.sin(xx * rng.uniform(1.8, 2.6)))
        colour = rng.uniform(-1, 0.5, 3)
        images.append(np.clip(1 - disc[..., None] * (1 - colour + stripes[..., None]), -1, 1))
    return np.stack(images).astype(np.float32)


def test_metric_basics():
    a = synthetic()
    assert psnr(a, a) == 100.0 and ssim(a, a) == pytest.approx(1.0)
    noisy = a + 0.1 * np.random.default_rng(1).normal(size=a.shape).astype(np.float32)
    assert 15 < psnr(noisy, a) < 30 and ssim(noisy, a) < 0.95
    assert area_down(a, 16).shape == (4, 16, 16, 3)
    flat = np.zeros((1, 16, 16, 3), np.float32)
    assert high_frequency_share(flat, 0.25) == 0.0
    checker = np.indices((16, 16)).sum(axis=0) % 2 * 2.0 - 1
    assert high_frequency_share(np.repeat(checker[None, ..., None], 3, -1), 0.25) == pytest.approx(1.0)


def test_a_perfect_oracle_beats_bicubic_and_bicubic_lacks_high_frequencies():
    real = synthetic()
    oracle = [real[:2], real[2:]]  # the real images, batch by batch
    report = evaluate_upsampler(lambda degraded: oracle.pop(0), real, 16, batch_size=2)
    model, bicubic = report["model"], report["bicubic"]
    assert model["psnr"] == 100.0 and model["ssim"] == pytest.approx(1.0) and model["hf_ratio"] == pytest.approx(1.0)
    assert bicubic["psnr"] < 30 and bicubic["ssim"] < model["ssim"]
    assert bicubic["hf_ratio"] < 0.5  # bicubic's spectrum is far below the real images' above the cut
    assert model["consistency_psnr"] == 100.0 and bicubic["consistency_psnr"] > 30  # bicubic roughly keeps the input
    assert report["num_images"] == 4 and (report["low_res"], report["size"]) == (16, 32)
    blurred = evaluate_upsampler(lambda low: np.zeros((len(low), 32, 32, 3), np.float32), real, 16)
    assert blurred["model"]["consistency_psnr"] < bicubic["consistency_psnr"]  # a grey output ignores its input


def test_bad_images_are_refused():
    with pytest.raises(ConfigError, match="allowed: .* a multiple of low_res 16"):
        evaluate_upsampler(lambda x: x, np.zeros((1, 24, 24, 3), np.float32), 16)


def test_the_model_gets_the_low_resolution_images_and_a_chain_runs_stages_in_order():
    real = synthetic(n=2, size=32)
    seen = []

    def double(low):  # a 2x "stage": pixel repetition
        seen.append(low.shape[1])
        return np.repeat(np.repeat(low, 2, axis=1), 2, axis=2)

    report = evaluate_upsampler(chain([double, double]), real, 8)
    assert seen == [8, 16] and (report["low_res"], report["size"]) == (8, 32)
    assert report["model"]["consistency_psnr"] > 90  # repetition keeps the block means (to rounding)
