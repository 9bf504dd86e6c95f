"""Figures, GIF and training curves: content checked by decoding what was written."""

import json
import os
import types

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from pokemon_diffusion.errors import CheckpointError, DataError
from pokemon_diffusion.viz import (denoising_frames, image_grid, plot_denoising_steps, plot_samples,
                                   plot_training_curves, save_denoising_gif, save_figure, to_uint8)


def steps_array(k=4, b=3, size=8, channels=3, seed=0):
    """(K, B, H, W, C): noise fading to a per-sample constant colour, like a real run."""
    rng = np.random.default_rng(seed)
    final = np.linspace(-0.8, 0.8, b)[:, None, None, None] * np.ones((b, size, size, channels))
    noise = rng.normal(size=(b, size, size, channels))
    mix = np.linspace(1, 0, k)[:, None, None, None, None]
    return (mix * noise + (1 - mix) * final).astype(np.float32)


def test_to_uint8_maps_the_model_range_to_pixels():
    pixels = to_uint8(np.array([-1.0, 0.0, 1.0, -3.0, 2.0]))
    assert pixels.dtype == np.uint8
    assert pixels.tolist() == [0, 128, 255, 0, 255]


def test_image_grid_tiles_with_padding():
    images = np.zeros((5, 4, 6, 3), np.uint8)
    grid = image_grid(images, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3)  # 5 images -> 3 columns, 2 rows
    assert grid[0].min() == 255 and grid[1, 1].max() == 0


def test_denoising_steps_figure_has_a_row_per_sample_and_a_titled_column_per_step():
    result = types.SimpleNamespace(intermediates=steps_array(k=4, b=3), timesteps=np.array([20, 13, 7, 0]))
    figure = plot_denoising_steps(result, prompts=["a fire dragon", "a water turtle", "a grass frog"])
    assert isinstance(figure, Figure)
    axes = figure.get_axes()
    assert len(axes) == 12
    assert [ax.get_title() for ax in axes[:4]] == ["t = 20", "t = 13", "t = 7", "t = 0"]
    assert axes[4].get_ylabel() == "a water turtle"
    assert axes[0].images[0].get_array().shape == (8, 8, 3)


def test_denoising_steps_without_timesteps_numbers_the_columns_and_caps_rows():
    figure = plot_denoising_steps(steps_array(k=3, b=10, channels=1), max_samples=2)
    axes = figure.get_axes()
    assert len(axes) == 6 and axes[2].get_title() == "step 2"
    assert axes[0].images[0].get_array().shape == (8, 8)  # grey image shown as 2-D


def test_denoising_steps_refuses_wrong_lengths():
    with pytest.raises(ValueError, match="got 2 values for 4 steps"):
        plot_denoising_steps(steps_array(k=4), timesteps=[1, 0])
    with pytest.raises(ValueError, match="got 2 for 3 images"):
        plot_denoising_steps(steps_array(b=3), prompts=["a", "b"])
    with pytest.raises(ValueError, match=r"allowed: \(K, B, H, W, C\)"):
        plot_denoising_steps(np.zeros((4, 8, 8)))


def test_plot_samples_captions_each_image_and_saves_a_decodable_png(tmp_path):
    images = steps_array(b=6)[-1]
    figure = plot_samples(images, ["a fire dragon", "a ghost"])  # 2 prompts x 3 images
    axes = figure.get_axes()
    assert len(axes) == 8  # 2 rows of 4; the 2 spare axes are hidden
    assert [ax.get_title() for ax in axes[:6]] == ["a fire dragon"] * 3 + ["a ghost"] * 3
    assert not axes[7].axison
    path = save_figure(figure, tmp_path / "out" / "samples.png")
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (round(figure.get_figwidth() * 100), round(figure.get_figheight() * 100))
    assert sorted(p.name for p in path.parent.iterdir()) == ["samples.png"]  # no temp file left


def test_save_denoising_gif_writes_one_frame_per_step(tmp_path):
    steps = steps_array(k=5, b=4, size=8)
    path = save_denoising_gif(steps, tmp_path / "denoising.gif", frame_ms=100, final_ms=900)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5
        # 4 samples -> 8-px images upscaled x16 to 128-px tiles, a 2x2 grid with 4-px gaps
        assert gif.size == (2 * 132 + 4, 2 * 132 + 4)
        gif.seek(4)
        assert gif.info["duration"] == 900
        last = np.asarray(gif.convert("RGB"))
    # the last frame shows the final images: tile 0 is the constant colour of sample 0
    expected = to_uint8(steps[-1, 0, 0, 0])
    np.testing.assert_allclose(last[40, 40], expected, atol=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["denoising.gif"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "not the umask's mode (mkstemp's 0600?)"


def test_denoising_frames_accepts_one_sample_and_grey_images():
    frames = denoising_frames(steps_array(k=2, b=1, channels=1)[:, 0], min_tile=32)
    assert len(frames) == 2 and frames[0].shape == (32 + 8, 32 + 8)


def write_metrics(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_training_curves_plot_loss_and_held_out_loss(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0 / s, "lr": 1e-3}) for s in range(1, 40)]
    lines += [json.dumps({"step": s, "val_loss": 2.0 / s}) for s in (10, 20, 30)]
    lines.append('{"step": 41, "loss": 0.0')  # half-written last line of a running job
    write_metrics(tmp_path / "metrics.jsonl", lines)
    figure = plot_training_curves(tmp_path)
    ax = figure.get_axes()[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["loss", "loss (smoothed)", "held-out loss"]
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), [0.2, 0.1, 2 / 30])
    assert len(ax.get_lines()[0].get_xdata()) == 39


def test_training_curves_refuse_a_missing_or_empty_log(tmp_path):
    with pytest.raises(CheckpointError, match="no training metrics"):
        plot_training_curves(tmp_path)
    write_metrics(tmp_path / "metrics.jsonl", ['{"step": 1, "lr": 0.1}'])
    with pytest.raises(DataError, match="no finite 'loss' or 'val_loss'"):
        plot_training_curves(tmp_path / "metrics.jsonl")


def test_no_pyplot_figures_are_left_open():
    import matplotlib.pyplot as plt

    plot_samples(steps_array()[-1])
    assert plt.get_fignums() == []


def test_loss_smoothing_is_centred_and_does_not_lag():
    from pokemon_diffusion.viz import _smooth

    falling = 0.5 ** np.arange(40.0)  # a loss falling geometrically: the centred log-average is exact inside
    np.testing.assert_allclose(_smooth(falling, 5)[2:-2], falling[2:-2], rtol=1e-12)
    np.testing.assert_allclose(_smooth(np.full(9, 0.2)), 0.2)
    np.testing.assert_allclose(_smooth(np.array([1.0, -1.0, 1.0, -1.0]), 3), [0.0, 1 / 3, -1 / 3, 0.0])
