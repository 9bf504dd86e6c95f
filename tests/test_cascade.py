"""A cascade run (cascade.json): loading, sampling base + stages, the compiled hook, generate, figures, CLI."""

import json

import keras
import numpy as np
import pytest

from pokemon_diffusion.cli import main
from pokemon_diffusion.config import DiffusionConfig, ModelConfig, RunConfig, SampleConfig
from pokemon_diffusion.errors import CheckpointError, ConfigError
from pokemon_diffusion.generate import generate, save_outputs
from pokemon_diffusion.model.unet import build_unet
from pokemon_diffusion.run_dir import CascadeRun, load_run
from pokemon_diffusion.diffusion.samplers import plan, sample, sample_ddpm

DIM = 8


def write_run(folder, model_config, seed):
    keras.utils.set_random_seed(seed)
    model = build_unet(model_config)
    rng = np.random.default_rng(seed)
    for w in model.get_layer("out_conv").weights:
        w.assign(rng.normal(scale=0.1, size=w.shape).astype("float32"))
    folder.mkdir(parents=True)
    RunConfig(model=model_config, diffusion=DiffusionConfig(timesteps=20)).save(folder / "config.json")
    (folder / "encoder.json").write_text(json.dumps({"name": "test-encoder", "dim": DIM}))
    model.save(folder / "ema_model.keras")


def tiny(**changes):
    return ModelConfig(**{**dict(image_size=16, base_width=8, channel_mults=(1, 2), num_res_blocks=1,
                                 text_dim=DIM, dropout=0.0), **changes})


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    write_run(root / "base", tiny(), 0)
    write_run(root / "up32", tiny(image_size=32, low_res=16), 1)
    (root / "cascade.json").write_text(json.dumps({"base": "base", "stages": ["up32"], "stage_steps": 3,
                                                   "aug_level": 0.1}))
    return root


@pytest.fixture(scope="module")
def cascade(cascade_dir):
    return load_run(cascade_dir)


EMB = np.random.default_rng(5).normal(size=(1, DIM)).astype(np.float32)


def test_load_cascade(cascade, cascade_dir):
    assert isinstance(cascade, CascadeRun) and cascade.sizes == [16, 32]
    assert cascade.stage_steps == 3 and cascade.aug_level == 0.1 and cascade.base.path == cascade_dir / "base"
    assert cascade.config.model.image_size == 16 and cascade.encoder.dim == DIM


def test_sample_ddpm_with_a_cascade_gives_the_large_image_deterministically(cascade):
    images, steps = sample_ddpm(cascade, EMB, shape=(2, 32, 32, 3), seed=3, num_intermediates=4, progress=False)
    assert images.shape == (2, 32, 32, 3) and np.all(np.abs(images) <= 1.0)
    assert steps.shape == (5, 2, 32, 32, 3)  # 4 base states enlarged, then the stage's final image
    np.testing.assert_array_equal(steps[-1], images)
    again, _ = sample_ddpm(cascade, EMB, shape=(2, 32, 32, 3), seed=3, num_intermediates=4, progress=False)
    np.testing.assert_array_equal(again, images)
    other, _ = sample_ddpm(cascade, EMB, shape=(2, 32, 32, 3), seed=4, num_intermediates=4, progress=False)
    assert np.abs(other - images).max() > 1e-3


def test_the_base_size_is_the_base_alone_and_other_sizes_are_refused(cascade):
    result = sample(cascade, EMB, (1, 16, 16, 3), steps=4, seed=1, progress=False)
    alone = sample(cascade.base.model, EMB, (1, 16, 16, 3), schedule=cascade.base.schedule, steps=4, seed=1,
                   progress=False)
    np.testing.assert_array_equal(result.images, alone.images)
    with pytest.raises(ConfigError, match=r"shape: got 64x64; allowed: the cascade's sizes 16x16 \| 32x32"):
        sample(cascade, EMB, (1, 64, 64, 3), steps=4, seed=1)


def test_the_low_res_conditioning_reaches_the_stage_model_in_the_compiled_loop(cascade):
    stage = cascade.stages[0]
    low = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    outs = []
    for cond, level in ((low, 0.0), (-low, 0.0), (low, 0.5)):
        run = plan(stage.model, EMB, (1, 32, 32, 3), schedule=stage.schedule, sampler="ddim", steps=3, eta=0.0,
                   guidance_scale=3.0, seed=0, num_intermediates=2, clip_x0=True,
                   extra=(cond, np.full((1,), level, np.float32)))
        outs.append(run.run(run.x_T, 0, run.num_steps)[0].numpy())
    assert np.abs(outs[0] - outs[1]).max() > 1e-4 and np.abs(outs[0] - outs[2]).max() > 1e-5


def test_generate_and_the_figures_cover_the_cascade(cascade, tmp_path):
    result, labels = generate(cascade, ["a test"], num=2, embeddings=EMB, config=SampleConfig(seed=0, steps=4))
    assert result.images.shape == (2, 32, 32, 3) and labels == ["a test", "a test"]
    assert list(result.timesteps[-2:]) == [0, 0]  # the base's final state, then the stage's
    small, _ = generate(cascade, ["a test"], embeddings=EMB, config=SampleConfig(seed=0, steps=4), size=16)
    assert small.images.shape == (1, 16, 16, 3)
    written = save_outputs(result, labels, tmp_path / "grid.png", steps_figure=tmp_path / "steps.png",
                           gif=tmp_path / "steps.gif")
    assert [p.name for p in written] == ["grid.png", "steps.png", "steps.gif"]


def test_bad_cascade_files_are_one_line_errors(cascade_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cascade.json").write_text(json.dumps({"base": "x"}))
    with pytest.raises(CheckpointError, match=r"cascade.json: 'stages'; allowed: \{\"base\": RUN"):
        load_run(bad)
    (bad / "cascade.json").write_text(json.dumps({"base": str(cascade_dir / "base"),
                                                  "stages": [str(cascade_dir / "base")]}))
    with pytest.raises(CheckpointError, match="stage .* upsamples from None; allowed: an upsampler from 16"):
        load_run(bad)


def test_cli_size_must_be_one_of_the_runs_sizes(cascade_dir, tmp_path, capsys):
    code = main(["sample", "--run", str(cascade_dir), "--prompt", "x", "--out", str(tmp_path / "a.png"),
                 "--size", "64"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--size: got 64; allowed: 16 | 32 (the run's sizes" in err, err
    code = main(["sample", "--run", str(cascade_dir / "base"), "--prompt", "x", "--out", str(tmp_path / "a.png"),
                 "--size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "--size: got 32; allowed: 16 (the run's size; a cascade run gives more)" in err, err


# ---- streaming: every stage live, the same images as sample_cascade -----------------------------

def test_iter_sample_streams_the_base_then_each_stage_and_ends_with_sample_cascades_images(cascade):
    from pokemon_diffusion.diffusion.streaming import iter_sample

    kwargs = dict(steps=4, seed=7, guidance_scale=2.0, num_intermediates=3)
    frames = list(iter_sample(cascade, EMB, (2, 32, 32, 3), every=2, **kwargs))
    assert [(f.stage, f.step, f.steps) for f in frames] == [(0, 2, 4), (0, 4, 4), (1, 2, 3), (1, 3, 3)]
    assert all(f.stages == 1 and f.x.shape == f.x0.shape == (2, 32, 32, 3) for f in frames)
    assert [f.done for f in frames] == [False, False, False, True]
    last = frames[-1]
    expected = sample(cascade, EMB, (2, 32, 32, 3), progress=False, **kwargs)
    np.testing.assert_array_equal(last.result.images, expected.images)
    np.testing.assert_array_equal(last.x, expected.images)
    np.testing.assert_array_equal(last.result.intermediates, expected.intermediates)
    assert list(last.result.timesteps) == list(expected.timesteps) and last.result.steps == expected.steps == 7
    # the base's last frame is its final image, shown by pixel repetition at the final size
    np.testing.assert_array_equal(frames[1].x[:, ::2, ::2], expected.intermediates[len(expected.timesteps) - 2][:, ::2, ::2])
    # at the base size: the base's frames only, as the base alone streams them
    small = list(iter_sample(cascade, EMB, (1, 16, 16, 3), every=2, **kwargs))
    assert [(f.stage, f.stages) for f in small] == [(0, 0), (0, 0)]
    np.testing.assert_array_equal(small[-1].result.images,
                                  sample(cascade, EMB, (1, 16, 16, 3), progress=False, **kwargs).images)
    with pytest.raises(ConfigError, match="shape: got 64x64; allowed: the cascade's sizes"):
        iter_sample(cascade, EMB, (1, 64, 64, 3))  # checked at the call, before any frame


def test_a_cascade_whose_base_is_the_folder_itself_loads(cascade_dir, tmp_path):
    import shutil

    folder = tmp_path / "flat"
    shutil.copytree(cascade_dir / "base", folder)
    shutil.copytree(cascade_dir / "up32", folder / "up32")
    (folder / "cascade.json").write_text(json.dumps({"base": ".", "stages": ["up32"]}))
    run = load_run(folder)
    assert isinstance(run, CascadeRun) and run.sizes == [16, 32] and run.base.path == folder
    assert not isinstance(run.base, CascadeRun)


def test_an_image_edit_of_a_cascade_runs_its_stages_on_the_edited_image(cascade, cascade_dir, tmp_path, monkeypatch):
    from PIL import Image

    from pokemon_diffusion import generate as generate_module
    from pokemon_diffusion.config import SampleConfig
    from pokemon_diffusion.diffusion.cascade import run_stages

    picture = np.random.default_rng(0).uniform(-1, 1, (16, 16, 3)).astype(np.float32)
    config = SampleConfig(seed=4, steps=6)
    small, _ = generate_module.edit(cascade, ["x"], picture, embeddings=EMB, config=config, size=16)
    big, labels = generate_module.edit(cascade, ["x"], picture, embeddings=EMB, config=config)  # the largest
    assert small.images.shape == (1, 16, 16, 3) and big.images.shape == (1, 32, 32, 3) and labels == ["x"]
    # the base's edit first (enlarged), then the stage run on it, as a cascade sample runs its stages
    np.testing.assert_array_equal(big.intermediates[0][:, ::2, ::2], small.images)
    finals, _ = run_stages(cascade, small.images, EMB, 1, seed=4, guidance_scale=3.0, clip_x0=True)
    np.testing.assert_array_equal(big.images, finals[-1])
    with pytest.raises(ConfigError, match="size: got 64; allowed: 16 | 32"):
        generate_module.edit(cascade, ["x"], picture, embeddings=EMB, config=config, size=64)
    # the CLI: --size 32 (and no --size) gives the stage's size
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "in.png")
    monkeypatch.setattr("pokemon_diffusion.text.registry.load_encoder_matching", lambda *a, **k: _Encoder())
    code = main(["sample", "--run", str(cascade_dir), "--prompt", "x", "--out-dir", str(tmp_path / "d"),
                 "--init-image", str(tmp_path / "in.png"), "--size", "32", "--steps", "4", "--seed", "1"])
    assert code == 0
    with Image.open(next((tmp_path / "d").glob("*.png"))) as png:
        assert png.size == (32, 32)


class _Encoder:
    """Any prompt -> the test embedding (the cascade's encoder is a name only)."""

    name, dim = "test-encoder", DIM

    def encode(self, texts, **kwargs):
        return np.repeat(EMB, len(texts), 0)


def test_a_stage_guidance_fixed_by_the_cascade_replaces_the_requests(cascade, tmp_path):
    import dataclasses

    from pokemon_diffusion.diffusion.cascade import plan_stage

    low = np.zeros((1, 16, 16, 3), np.float32)
    assert cascade.stage_guidance is None
    assert plan_stage(cascade, 0, low, EMB, seed=0, guidance_scale=3.0, clip_x0=True).guidance_scale == 3.0
    fixed = dataclasses.replace(cascade, stage_guidance=1.0)
    assert plan_stage(fixed, 0, low, EMB, seed=0, guidance_scale=3.0, clip_x0=True).guidance_scale == 1.0
    spec = json.loads((cascade.path / "cascade.json").read_text())
    for bad in (-1, "loud"):
        (tmp_path / "cascade.json").write_text(json.dumps({**spec, "base": str(cascade.path / "base"),
                                                           "stages": [str(cascade.path / "up32")], "stage_guidance": bad}))
        with pytest.raises(CheckpointError, match="stage_guidance"):
            load_run(tmp_path)
    (tmp_path / "cascade.json").write_text(json.dumps({**spec, "base": str(cascade.path / "base"),
                                                       "stages": [str(cascade.path / "up32")], "stage_guidance": 1}))
    assert load_run(tmp_path).stage_guidance == 1.0
