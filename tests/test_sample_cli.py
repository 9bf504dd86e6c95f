"""`pokemon-diffusion sample` end to end on a tiny run folder built here: real files decoded back."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.cli import main
from pokemon_diffusion.text import registry as text_module
from pokemon_diffusion.config import DiffusionConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from pokemon_diffusion.run_dir import EMA_MODEL_FILE, EncoderInfo, save_model_atomic, write_encoder_info

TEXT_DIM = 4
ENCODER_NAME = "test-hash-encoder"


class HashEncoder:
    """A deterministic stand-in text encoder: a vector per prompt from its SHA-256."""

    def __init__(self, name=ENCODER_NAME, dim=TEXT_DIM):
        self.name, self.dim = name, dim
        self.seen = []

    def encode(self, texts):
        self.seen.extend(texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], np.uint8) for t in texts]
        return (np.stack(rows).astype(np.float32) / 127.5 - 1.0).reshape(len(texts), self.dim)


def make_run(run, *, text_dim=TEXT_DIM, encoder_name=ENCODER_NAME):
    """A run folder as `train` writes it: config.json, encoder.json, ema_model.keras (16x16, T = 20)."""
    import keras

    from pokemon_diffusion.model.unet import build_unet

    model_config = ModelConfig(image_size=16, base_width=8, channel_mults=(1, 2), num_res_blocks=1,
                               dropout=0.0, text_dim=text_dim)
    RunConfig(model=model_config, diffusion=DiffusionConfig(timesteps=20), train=TrainConfig(steps=1)).save(
        run / "config.json")
    write_encoder_info(run, EncoderInfo(encoder_name, text_dim))
    keras.utils.set_random_seed(0)
    model = build_unet(model_config)
    # the output conv starts at zero; give it weights so that prompts and seeds matter
    for weight in model.layers[-1].weights:
        weight.assign(np.random.default_rng(0).normal(0, 0.05, weight.shape).astype(np.float32))
    save_model_atomic(model, run / EMA_MODEL_FILE)
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture
def encoder(monkeypatch):
    fake = HashEncoder()
    specs = []

    def load(expected, spec):
        specs.append((expected.name, spec))
        return fake

    monkeypatch.setattr(text_module, "load_encoder_matching", load)
    fake.specs = specs
    return fake


def test_sample_writes_grid_steps_figure_and_gif(run_dir, encoder, tmp_path):
    out, steps_png, gif = tmp_path / "o" / "samples.png", tmp_path / "steps.png", tmp_path / "d.gif"
    code = main(["sample", "--run", str(run_dir), "--prompt", "a fire dragon", "--prompt", "a ghost",
                 "--num", "2", "--steps", "3", "--guidance", "2", "--seed", "5", "--out", str(out),
                 "--steps-figure", str(steps_png), "--gif", str(gif)])
    assert code == 0
    assert encoder.specs == [(ENCODER_NAME, None)] and encoder.seen == ["a fire dragon", "a ghost"]
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == (4 * 220, round((2.2 + 0.5) * 100))  # 4 images, 1 row
    with Image.open(steps_png) as png:
        assert png.format == "PNG" and png.size[0] > png.size[1]  # 4 columns (3 steps + noise), 4 rows
    with Image.open(gif) as animation:
        # 3 DDIM steps -> 4 states; 4 images of 16 px upscaled x8 -> 2x2 tiles of 128 px, 4-px gaps
        assert animation.n_frames == 4 and animation.size == (268, 268)
    assert not [p for p in tmp_path.rglob(".*")], "a temp file was left behind"


def test_same_seed_gives_the_same_gif(run_dir, encoder, tmp_path):
    frames = []
    for name in ("a.gif", "b.gif"):
        assert main(["sample", "--run", str(run_dir), "--prompt", "a ghost", "--sampler", "ddpm",
                     "--seed", "3", "--intermediates", "3", "--out", str(tmp_path / "x.png"),
                     "--gif", str(tmp_path / name)]) == 0
        with Image.open(tmp_path / name) as animation:
            assert animation.n_frames == 3  # DDPM: all 20 steps run, 3 states kept
            animation.seek(2)
            frames.append(np.asarray(animation.convert("RGB")))
    np.testing.assert_array_equal(frames[0], frames[1])


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_an_encoder_of_another_size_is_refused(run_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(text_module, "load_encoder_matching", lambda expected, spec: HashEncoder(dim=384))
    code = main(["sample", "--run", str(run_dir), "--prompt", "x", "--out", str(tmp_path / "s.png")])
    assert code == 2
    assert "gives 384-d embeddings but the model expects 4-d" in one_line_error(capsys)
    assert not (tmp_path / "s.png").exists()


def test_an_encoder_with_another_identity_is_refused(run_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(text_module, "load_encoder_matching", lambda expected, spec: HashEncoder(name="clip"))
    code = main(["sample", "--run", str(run_dir), "--prompt", "x", "--text-encoder", "clip",
                 "--out", str(tmp_path / "s.png")])
    assert code == 2
    assert f"is 'clip' but the model was trained with '{ENCODER_NAME}'" in one_line_error(capsys)


@pytest.mark.parametrize("extra, message", [
    (["--sampler", "ddpm", "--steps", "5"], "ddpm runs all T = 20 steps"),
    (["--sampler", "ddpm", "--eta", "0.5"], "eta applies to --sampler ddim only"),
    (["--steps", "21"], "DDIM steps: got 21; allowed: 1 to the schedule's T = 20"),
])
def test_flags_that_do_not_fit_the_run_are_refused(run_dir, encoder, tmp_path, capsys, extra, message):
    code = main(["sample", "--run", str(run_dir), "--prompt", "x", "--out", str(tmp_path / "s.png"), *extra])
    assert code == 2
    assert message in one_line_error(capsys)


def test_a_missing_run_is_one_line(tmp_path, capsys):
    code = main(["sample", "--run", str(tmp_path / "nope"), "--prompt", "x", "--out", str(tmp_path / "s.png")])
    assert code == 2
    assert "run folder not found" in one_line_error(capsys)


@pytest.mark.parametrize("argv, message", [
    (["--out", "samples.txt"], "allowed: a file name ending in .png"),
    (["--out", "s.png", "--gif", "d.png"], "allowed: a file name ending in .gif"),
    (["--out", "s.png", "--num", "0"], "allowed: an integer from 1 to 256"),
    (["--out", "s.png", "--guidance", "-1"], "allowed: a number from 0.0 to 50.0"),
    (["--out", "s.png", "--sampler", "euler"], "invalid choice: 'euler'"),
    (["--out", "s.png", "--prompt", "  "], "allowed: a non-empty prompt"),
])
def test_bad_flag_values_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--run", "r", "--prompt", "x", *argv])
    assert info.value.code == 2
    assert message in one_line_error(capsys)


@pytest.mark.slow
def test_prompts_go_through_the_runs_real_encoder(tmp_path, capsys):
    from tiny_text_models import build_tiny_clip

    from pokemon_diffusion.text.embeddings import load_text_encoder

    clip = load_text_encoder(str(build_tiny_clip(tmp_path / "clip", projection_dim=8)))
    run = make_run(tmp_path / "run", text_dim=clip.dim, encoder_name=clip.name)
    out = tmp_path / "s.png"
    assert main(["sample", "--run", str(run), "--prompt", "fire", "--steps", "2", "--out", str(out)]) == 0
    with Image.open(out) as png:
        assert png.format == "PNG"
    capsys.readouterr()  # drop the save progress bars of transformers
    # another encoder is refused by its identity, before it is loaded
    code = main(["sample", "--run", str(run), "--prompt", "fire", "--text-encoder", "minilm",
                 "--out", str(tmp_path / "t.png")])
    assert code == 2
    assert "is 'minilm:all-MiniLM-L6-v2' but the model was trained with 'clip:" in one_line_error(capsys)


def test_sample_without_run_uses_the_shipped_reference_model(monkeypatch, tmp_path):
    class Constant:
        def __init__(self, name, dim):
            self.name, self.dim = name, dim

        def encode(self, texts):
            return np.full((len(texts), self.dim), 0.05, np.float32)

    monkeypatch.setattr(text_module, "load_encoder_matching", lambda expected, spec: Constant(expected.name, expected.dim))
    import importlib
    import json

    from pokemon_diffusion.pretrained import pretrained_dir

    generate_module = importlib.import_module("pokemon_diffusion.generate")  # the module, not the function

    real, used = generate_module.generate, []  # what `sample` hands to the sampler

    def spy(run, prompts, **kwargs):
        result = real(run, prompts, **kwargs)
        used.append((run, result[0].images))
        return result

    monkeypatch.setattr(generate_module, "generate", spy)
    out = tmp_path / "reference.png"
    # --size 32: the base's size, fast whatever sizes the shipped model gives (a cascade's largest is the default)
    assert main(["sample", "--prompt", "a ghost", "--steps", "2", "--seed", "0", "--size", "32", "--out", str(out)]) == 0
    with Image.open(out) as png:
        assert png.format == "PNG"
    # the shipped reference was the model: its config, encoder and every weight, read here from the file
    (run, images), = used
    assert run.config == RunConfig.load(pretrained_dir() / "config.json")
    assert run.encoder.name == json.loads((pretrained_dir() / "encoder.json").read_text())["name"]
    assert sorted(_digests(run.model.get_weights())) == sorted(_digests(_keras_file_weights(
        pretrained_dir() / EMA_MODEL_FILE)))
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()


def _digests(arrays):
    return [hashlib.sha256(np.ascontiguousarray(a, np.float32).tobytes()).hexdigest() + str(a.shape) for a in arrays]


def _keras_file_weights(path):
    """Every weight array stored in a .keras file, read without Keras (h5py on the zip's weights file)."""
    import io
    import zipfile

    import h5py

    arrays = []
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            weights.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def _picture(path, colour=(200, 40, 40)):
    image = np.full((40, 40, 3), 255, np.uint8)
    image[8:32, 10:30] = colour  # a red block on white
    Image.fromarray(image).save(path)
    return path


def test_init_image_edits_a_picture_and_the_strength_sets_how_much(run_dir, encoder, tmp_path):
    from pokemon_diffusion.data.images import read_image
    from pokemon_diffusion.generate import edit
    from pokemon_diffusion.run_dir import load_run

    picture = _picture(tmp_path / "in.png")
    out = tmp_path / "edits.png"
    argv = ["sample", "--run", str(run_dir), "--prompt", "a ghost", "--num", "2", "--init-image", str(picture),
            "--strength", "0.5", "--seed", "4", "--out", str(out)]
    assert main(argv) == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] == 2 * 220
    run = load_run(run_dir)
    image = read_image(picture, (16, 16))
    kept, _ = edit(run, ["a ghost"], image, strength=0.05, num=2, encoder=encoder)
    redrawn, labels = edit(run, ["a ghost"], image, strength=1.0, num=2, encoder=encoder)
    assert labels == ["a ghost", "a ghost"] and kept.images.shape == (2, 16, 16, 3)
    assert np.abs(kept.images - image).mean() < 0.05 < np.abs(redrawn.images - image).mean()
    assert not np.array_equal(redrawn.images[0], redrawn.images[1])  # each image its own noise
    again, _ = edit(run, ["a ghost"], image, strength=1.0, num=2, encoder=encoder,
                    config=SampleConfig(seed=redrawn.seed))
    np.testing.assert_array_equal(again.images, redrawn.images)


@pytest.mark.parametrize("extra, message", [
    (["--strength", "0.5"], "--strength 0.5: applies with --init-image only"),
    (["--init-image", "IMG", "--sampler", "ddpm"], "--init-image: got --sampler ddpm; allowed: ddim"),
    (["--init-image", "IMG", "--gif", "x.gif"], "--init-image: got --gif too; allowed: no --gif"),
    (["--init-image", "IMG", "--intermediates", "4"], "--init-image: got --intermediates too"),
    (["--init-image", "IMG", "--eta", "0"], "--init-image: got --eta 0.0; allowed: no --eta"),
    (["--init-image", "missing.png"], "cannot read image missing.png"),
])
def test_image_edit_flags_are_checked(run_dir, encoder, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    picture = str(_picture(tmp_path / "in.png"))
    extra = [picture if value == "IMG" else value for value in extra]
    code = main(["sample", "--run", str(run_dir), "--prompt", "x", "--out", str(tmp_path / "s.png"), *extra])
    assert code == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "s.png").exists()


# ---- --negative-prompt ------------------------------------------------------------------------

@pytest.fixture
def sampler_spy(monkeypatch):
    """Records what `generate` hands to the sampler (the negative embedding) and what came back."""
    from pokemon_diffusion.diffusion import samplers

    real, calls = samplers.sample, []

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((kwargs.get("negative_emb"), result.images))
        return result

    monkeypatch.setattr(samplers, "sample", spy)
    return calls


def test_negative_prompt_is_encoded_as_typed_and_replaces_the_null_condition(run_dir, encoder, sampler_spy,
                                                                            tmp_path, monkeypatch):
    import importlib

    generate_module = importlib.import_module("pokemon_diffusion.generate")
    real_texts = generate_module.prompt_texts
    monkeypatch.setattr(generate_module, "prompt_texts", lambda run, prompts, enrich=True: [
        p + ", enriched" for p in real_texts(run, prompts, enrich)])  # enrichment applies to prompts only
    base = ["sample", "--run", str(run_dir), "--prompt", "a ghost", "--steps", "3", "--seed", "5",
            "--out", str(tmp_path / "s.png")]
    assert main([*base, "--guidance", "3"]) == 0
    assert main([*base, "--guidance", "3", "--negative-prompt", "blurry, dark"]) == 0
    assert encoder.seen == ["a ghost, enriched", "a ghost, enriched", "blurry, dark"]  # one encode call each
    (none, plain), (negative, guided) = sampler_spy
    assert none is None
    np.testing.assert_array_equal(negative, HashEncoder().encode(["blurry, dark"])[0])
    assert not np.allclose(plain, guided, atol=1e-4)
    # guidance 1 is the conditional model alone: the negative prompt changes nothing
    assert main([*base, "--guidance", "1"]) == 0
    assert main([*base, "--guidance", "1", "--negative-prompt", "blurry, dark"]) == 0
    np.testing.assert_array_equal(sampler_spy[2][1], sampler_spy[3][1])


def test_negative_prompt_in_the_api_and_config(run_dir, encoder, sampler_spy):
    from pokemon_diffusion.errors import ConfigError
    from pokemon_diffusion.generate import generate
    from pokemon_diffusion.run_dir import load_run

    run = load_run(run_dir)
    config = SampleConfig(steps=2, seed=1, negative_prompt="blurry")
    by_config, _ = generate(run, ["a ghost"], config=config)
    by_argument, _ = generate(run, ["a ghost"], config=SampleConfig(steps=2, seed=1), negative_prompt="blurry")
    np.testing.assert_array_equal(by_config.images, by_argument.images)
    # precomputed embeddings: the negative prompt is still encoded, with the run's encoder
    generate(run, ["ignored"], config=config, embeddings=HashEncoder().encode(["a ghost"]))
    np.testing.assert_array_equal(sampler_spy[-1][1], by_config.images)
    for bad in ("", "   "):
        with pytest.raises(ConfigError, match="negative_prompt: got .*allowed: None or a non-empty text"):
            generate(run, ["a ghost"], negative_prompt=bad)


def test_a_blank_negative_prompt_flag_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--prompt", "x", "--out", "s.png", "--negative-prompt", " "])
    assert info.value.code == 2 and "--negative-prompt: got ' '; allowed: a non-empty prompt" in one_line_error(capsys)
