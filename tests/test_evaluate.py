"""Feature extractors, evaluate() end to end on a tiny run, and the `evaluate` CLI."""

import numpy as np
import pytest

from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.evaluation import features as feats
from pokemon_diffusion.evaluation.features import (FeatureUnavailable, InceptionFeatures, pixel_features,
                                                   resolve_inception_weights, to_rgb_on_white, to_uint8)
from pokemon_diffusion.evaluation.metrics import fid_from_features, kernel_inception_distance


# ------------------------------------------------------------------------------------- images

def test_rgba_is_composited_on_white_and_converted_to_uint8():
    img = np.zeros((1, 1, 2, 4), np.float32)
    img[0, 0, 0] = [-1, -1, -1, 1]    # opaque black
    img[0, 0, 1] = [-1, -1, -1, -1]   # fully transparent -> white
    rgb = to_rgb_on_white(img)
    assert rgb.shape == (1, 1, 2, 3)
    assert rgb[0, 0, 0].tolist() == [0, 0, 0] and rgb[0, 0, 1].tolist() == [1, 1, 1]
    assert to_uint8(np.array([[[[-1.0, 0.0, 1.0]]]])).tolist() == [[[[0, 128, 255]]]]
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        to_rgb_on_white(np.zeros((2, 2, 3)))


def test_pixel_features_ignore_the_white_background_and_are_unit_length():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, 32, 32, 3)).astype(np.float32)
    f = pixel_features(images, size=8)
    assert f.shape == (3, 8 * 8 * 3) and f.dtype == np.float32
    assert np.linalg.norm(f, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    # an all-white image has no "ink": the zero vector
    assert not pixel_features(np.ones((1, 16, 16, 3)), size=8).any()
    # a blob on white and a copy with half its "ink" (halfway to white) point the same way
    canvas = np.ones((2, 16, 16, 3), np.float32)
    canvas[:, 4:12, 4:12] = [-1.0, 0.0, 0.5]
    canvas[1, 4:12, 4:12] = (canvas[0, 4:12, 4:12] + 1) / 2
    a, b = pixel_features(canvas, size=4)
    assert a @ b == pytest.approx(1.0, abs=1e-6)


def test_pixel_features_resize_when_the_size_does_not_divide():
    f = pixel_features(np.zeros((2, 20, 20, 3)), size=16)
    assert f.shape == (2, 16 * 16 * 3)
    assert f[0] == pytest.approx(np.full(768, 1 / np.sqrt(768)), abs=1e-6)


# ---------------------------------------------------------------------- InceptionV3 weights

@pytest.fixture
def empty_keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(feats, "keras_cache_candidates", lambda: [home / "models"])
    return home


def test_auto_weights_are_skipped_without_a_cached_file_and_never_download(empty_keras_home):
    with pytest.raises(FeatureUnavailable, match="--inception-weights PATH"):
        resolve_inception_weights(None, offline=False)
    with pytest.raises(FeatureUnavailable, match="network is off"):
        resolve_inception_weights("imagenet", offline=True)
    assert resolve_inception_weights("imagenet", offline=False) == "imagenet"
    assert resolve_inception_weights("random") == "random"


def test_cached_weights_are_found_and_used_before_any_download(empty_keras_home):
    cached = empty_keras_home / "models" / feats.INCEPTION_CACHE_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really weights")
    assert resolve_inception_weights(None) == str(cached)
    assert resolve_inception_weights("imagenet", offline=True) == str(cached)


def test_explicit_weight_paths_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        resolve_inception_weights(str(tmp_path / "missing.h5"))
    with pytest.raises(ConfigError, match="allowed: auto | imagenet | random"):
        resolve_inception_weights(str(tmp_path / "weights.bin"))
    good = tmp_path / "w.weights.h5"
    import h5py
    h5py.File(good, "w").close()
    assert resolve_inception_weights(str(good)) == str(good)


@pytest.mark.parametrize("name", ["bad.h5", "bad.keras"])
def test_a_damaged_weights_file_is_a_one_line_error_before_building_anything(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="is not an HDF5|is not a zip"):
        resolve_inception_weights(str(bad))
    with pytest.raises(ConfigError, match=name):
        InceptionFeatures.load(str(bad), input_size=75)


# -------------------------------------------------------------------- InceptionV3 features

class _CountingExtractor:
    def __init__(self, identity="fake:1"):
        self.identity, self.calls = identity, 0

    def __call__(self, images):
        self.calls += 1
        return images.reshape(len(images), -1)[:, :4].astype(np.float64) + self.calls


def test_cached_features_are_computed_once_per_images_and_extractor(tmp_path):
    images = np.random.default_rng(0).uniform(-1, 1, size=(3, 4, 4, 3)).astype(np.float32)
    extractor = _CountingExtractor()
    first = feats.cached_features(extractor, images, tmp_path)
    assert np.array_equal(feats.cached_features(extractor, images, tmp_path), first) and extractor.calls == 1
    feats.cached_features(extractor, images[:2], tmp_path)          # other images: computed
    feats.cached_features(_CountingExtractor("fake:2"), images, tmp_path)  # other weights: computed
    assert extractor.calls == 2 and len(list(tmp_path.glob("features_*.npy"))) == 3
    for path in tmp_path.glob("features_*.npy"):
        path.write_bytes(b"damaged")
    assert feats.cached_features(extractor, images, tmp_path).shape == (3, 4) and extractor.calls == 3
    assert feats.cached_features(extractor, images, None) is not None and extractor.calls == 4


@pytest.fixture(scope="module")
def small_random_inception():
    # 75x75 is InceptionV3's smallest input: same code path as 299, a fraction of the cost
    return InceptionFeatures.load("random", input_size=75, batch_size=2)


@pytest.mark.slow
def test_random_inception_features_are_reproducible_and_feed_fid_and_kid(small_random_inception):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, 16, 16, 3)).astype(np.float32)
    a = small_random_inception(images)
    assert a.shape == (3, 2048) and np.all(np.isfinite(a)) and a.std() > 0
    # the random kernels come from a seeded RNG: seeding again with the same seed changes nothing
    feats.seed_random_kernels(small_random_inception.model, seed=0)
    assert np.allclose(small_random_inception(images), a, atol=1e-5)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    b = small_random_inception(-images)
    assert fid_from_features(a, b) > 0 and np.isfinite(kernel_inception_distance(a, b).mean)
    assert "random weights" in small_random_inception.name


@pytest.mark.slow
def test_random_inception_at_299():
    extractor = InceptionFeatures.load("random")
    rng = np.random.default_rng(0)
    first, second = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)  # the extractor takes [-1, 1]
    out = extractor(np.stack([first, second, first]))
    assert out.shape == (3, 2048) and extractor.input_size == 299
    assert np.allclose(out[0], out[2], atol=1e-5)  # the same picture, the same features, wherever in the batch
    assert not np.allclose(out[0], out[1], atol=1e-3)  # another picture, other features


# ------------------------------------------------------------------------- evaluate() end to end

TEXT_DIM = 4
ENCODER = "test-encoder"
COLOURS = {"Charmander": ([230, 120, 40], ["Fire"]), "Squirtle": ([60, 140, 220], ["Water"]),
           "Bulbasaur": ([90, 180, 120], ["Grass", "Poison"]), "Pikachu": ([240, 220, 60], ["Electric"]),
           "Gastly": ([90, 60, 110], ["Ghost", "Poison"]), "Geodude": ([130, 120, 110], ["Rock", "Ground"])}


def _write_dataset(root, encoder=ENCODER, dim=TEXT_DIM):
    """A dataset folder as collect + embed write it: six 24x24 RGBA blobs on transparent canvases."""
    import json

    from PIL import Image

    from pokemon_diffusion.collection.metadata import Entry, make_caption, write_metadata

    (root / "pokemon_images").mkdir(parents=True)
    (root / "embeddings").mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for dex, (name, (rgb, types)) in enumerate(COLOURS.items(), start=1):
        stem = f"{dex:04d}_{name.lower()}"
        canvas = np.zeros((24, 24, 4), np.uint8)
        top, left = rng.integers(2, 10, size=2)
        canvas[top:top + 12, left:left + 12] = rgb + [255]
        Image.fromarray(canvas, "RGBA").save(root / "pokemon_images" / f"{stem}.png")
        np.save(root / "embeddings" / f"{stem}.npy", rng.normal(size=dim).astype(np.float32))
        entries.append(Entry(name=name, image_path=f"pokemon_images/{stem}.png", caption=make_caption(name, types),
                             source="folder", dex=dex, types=types, embedding_path=f"embeddings/{stem}.npy"))
    write_metadata(root, entries)
    (root / "embeddings.json").write_text(json.dumps({"name": encoder, "dim": dim}))
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder as `train` writes it (16x16, widths 8-16, T = 20) and its dataset."""
    import keras

    from pokemon_diffusion.config import DiffusionConfig, ModelConfig, RunConfig, TrainConfig
    from pokemon_diffusion.model.unet import build_unet
    from pokemon_diffusion.run_dir import EMA_MODEL_FILE, EncoderInfo, save_model_atomic, write_encoder_info

    root = tmp_path_factory.mktemp("eval")
    data = _write_dataset(root / "data")
    run = root / "run"
    model_config = ModelConfig(image_size=16, base_width=8, channel_mults=(1, 2), num_res_blocks=1,
                               dropout=0.0, text_dim=TEXT_DIM)
    RunConfig(model=model_config, diffusion=DiffusionConfig(timesteps=20),
              train=TrainConfig(steps=1, val_fraction=0.34, seed=0)).save(run / "config.json")
    write_encoder_info(run, EncoderInfo(ENCODER, TEXT_DIM))
    keras.utils.set_random_seed(0)
    model = build_unet(model_config)
    for weight in model.layers[-1].weights:  # the output conv starts at zero: make prompts matter
        weight.assign(np.random.default_rng(0).normal(0, 0.05, weight.shape).astype(np.float32))
    save_model_atomic(model, run / EMA_MODEL_FILE)
    return run, data


def _evaluate(run, data, **kwargs):
    from pokemon_diffusion.evaluation.evaluate import evaluate

    options = dict(num=4, seed=3, steps=3, guidance_scale=2.0, batch_size=3, inception_weights="random",
                   inception_input_size=75, kid_subsets=3, progress=False, prompt_forms=0)
    options.update(kwargs)
    return evaluate(run, data, **options)


@pytest.mark.slow
def test_evaluate_end_to_end_with_random_inception(tiny_run, empty_keras_home, tmp_path):
    import json

    run, data = tiny_run
    report = _evaluate(run, data, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("features_*.npy"))) == 1  # the real images' features
    json.dumps(report, allow_nan=False)  # strict JSON
    assert report["num_samples"] == 4 and report["num_real"] == 6
    assert report["sampling"] == {"sampler": "ddim", "steps": 3, "guidance_scale": 2.0, "eta": 0.0,
                                  "image_size": 16, "text_encoder": ENCODER, "cads_strength": 0.5,
                                  "cads_range": [0.3, 0.7], "cads_names": False, "guidance_interval": None}
    held = report["heldout_loss"]
    # val_fraction 0.34 of 6 one-image Pokémon: 3 held out; 8 grid points of t over T = 20
    assert held["num_images"] == 3 and held["timesteps"] == 8 and held["loss"] > 0
    cond = report["conditioning"]
    assert 0 <= cond["top1"] <= cond["top_k"] <= 1 and cond["k"] == 5
    assert cond["chance"]["top1"] == pytest.approx(1 / 6)
    assert len(cond["samples"]) == 4 and all(len(s["nearest"]) == 5 for s in cond["samples"])
    assert all(s["name"] in s["prompt"] for s in cond["samples"])
    assert "16x16" in cond["feature_space"]
    assert report["colour"]["bins"] == 8 and 0 <= report["colour"]["histogram_tv"] <= 1
    shape = report["silhouette"]
    assert shape["num_generated"] == 4 and shape["num_real"] == 6 and shape == report["guidance_sweep"][0]["silhouette"]
    assert all(0 <= shape[part][f] <= 1 for part in ("generated", "real") for f in ("area", "solidity"))
    rebuilt = report["reconstruction"]  # the 3 held-out images from 1/4, 1/2, 3/4 of T = 20
    assert list(rebuilt["levels"]) == ["5", "10", "14"] and rebuilt["num_images"] == 3
    assert rebuilt["chance_top1"] == pytest.approx(1 / 6)
    for level in rebuilt["levels"].values():
        assert 0 <= level["top1"] <= level["top_k"] <= 1 and level["feature_distance"] >= 0
    inc = report["inception"]
    assert inc["fid"] >= 0 and inc["kid"]["num_subsets"] == 3 and inc["kid"]["subset_size"] == 4
    assert inc["num_generated"] == 4 and inc["num_real"] == 6 and "random" in inc["warning"]
    # the same seed gives the same report (timings aside; FID/KID skipped here to save a network build)
    again = _evaluate(run, data, inception_weights=None)
    assert "skipped" in again["inception"]
    for key in ("heldout_loss", "conditioning", "colour", "reconstruction", "silhouette"):
        assert again[key] == report[key]


def test_evaluate_skips_fid_without_weights_and_prompts_follow_the_seed(tiny_run, empty_keras_home):
    run, data = tiny_run
    report = _evaluate(run, data, inception_weights=None, num=2, seed=0, guidance_scale=1.0)
    assert set(report["inception"]) == {"skipped"}
    assert "--inception-weights" in report["inception"]["skipped"]
    from pokemon_diffusion.data.dataset import split_by_pokemon
    from pokemon_diffusion.evaluation.conditioning import choose_split_prompts
    from pokemon_diffusion.evaluation.eval_data import load_eval_data

    train_idx, val_idx = split_by_pokemon(load_eval_data(data, 16).entries, 0.34, 0)
    chosen, held = choose_split_prompts(train_idx, val_idx, 2, 0)
    assert held.tolist() == [i in val_idx for i in chosen] and held.sum() == 1  # one of each split
    expected = [list(COLOURS)[i] for i in chosen]
    assert [s["name"] for s in report["conditioning"]["samples"]] == expected
    assert report["conditioning"]["train"]["num_samples"] == report["conditioning"]["heldout"]["num_samples"] == 1


class _HashEncoder:
    """Stands in for the run's text encoder: a fixed vector per text."""

    def encode(self, texts, batch_size=64):
        import zlib

        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=TEXT_DIM) for t in texts])


def test_colour_following_and_the_guidance_sweep(tiny_run, empty_keras_home):
    from pokemon_diffusion.evaluation.report import format_report

    run, data = tiny_run
    report = _evaluate(run, data, inception_weights=None, guidance_scales=[1.0, 2.0], colour_seeds=1,
                       prompt_encoder=_HashEncoder())
    sweep = report["guidance_sweep"]
    assert [p["guidance_scale"] for p in sweep] == [2.0, 1.0]  # the headline first, no repeat
    assert sweep[0]["conditioning"]["all"]["top1"] == report["conditioning"]["top1"]
    assert sweep[0]["conditioning"]["heldout"]["num_samples"] == 2 == report["conditioning"]["heldout"]["num_samples"]
    colour = report["colour_following"]
    assert colour == sweep[0]["colour_following"] and colour["num_samples"] == 11
    assert 0 <= colour["accuracy"] <= colour["accuracy_top2"] <= 1 and colour["chance_uniform"] == pytest.approx(1 / 11)
    assert sum(sum(d.values()) for d in colour["drawn"].values()) == 11 and "drawn" not in sweep[1]["colour_following"]
    text = format_report(report)
    for label in ("colour following", "top-1 / top-5 held-out", "guidance 1 ", "guidance 2 "):
        assert label in text, text
    with pytest.raises(ConfigError, match="guidance_scales"):
        _evaluate(run, data, guidance_scales=[60.0])


def test_variety_draws_several_seeds_of_the_first_headline_prompts(tiny_run, empty_keras_home):
    from pokemon_diffusion.evaluation.report import format_report

    run, data = tiny_run
    report = _evaluate(run, data, inception_weights=None, colour_seeds=0, variety_seeds=3, variety_prompts=2)
    variety = report["variety"]
    assert variety["num_prompts"] == 2 and variety["seeds"] == 3 and len(variety["per_prompt"]) == 2
    assert variety["prompts"] == [s["name"] for s in report["conditioning"]["samples"][:2]]
    assert variety["within_prompt"] > 0  # different noise, different images
    assert variety["ratio"] == pytest.approx(variety["within_prompt"] / variety["real_pairs"])
    assert "variety" in format_report(report) and "2 prompts x 3 seeds" in format_report(report)
    skipped = _evaluate(run, data, inception_weights=None, colour_seeds=0, variety_seeds=0)
    assert skipped["variety"] == {"skipped": "variety_seeds = 0"}
    for bad in (dict(variety_seeds=1), dict(variety_seeds=65), dict(variety_prompts=0)):
        with pytest.raises(ConfigError, match="variety_seeds"):
            _evaluate(run, data, **bad)


def test_prompt_forms_in_the_report(tiny_run, empty_keras_home):
    from pokemon_diffusion.evaluation.report import format_report

    run, data = tiny_run
    report = _evaluate(run, data, inception_weights=None, colour_seeds=0, variety_seeds=0, prompt_forms=1,
                       prompt_form_seeds=2, prompt_encoder=_HashEncoder())
    forms = report["prompt_forms"]
    assert {(r["split"], r["form"]) for r in forms["results"]} >= {("train", f) for f in
                                                                   ("name", "example", "caption", "description")}
    assert all(r["num_samples"] == 2 for r in forms["results"])
    assert "prompt forms (2 seeds per prompt" in format_report(report)
    with pytest.raises(ConfigError, match="prompt_form_seeds 1"):
        _evaluate(run, data, prompt_forms=1, prompt_form_seeds=1)


def test_ddpm_runs_all_steps_and_refuses_fewer(tiny_run, empty_keras_home):
    from pokemon_diffusion.evaluation.evaluate import evaluate

    run, data = tiny_run
    with pytest.raises(ConfigError, match="ddpm runs all T = 20"):
        evaluate(run, data, sampler="ddpm", steps=5)
    report = evaluate(run, data, num=2, sampler="ddpm", guidance_scale=1.0, progress=False)
    assert report["sampling"]["steps"] == 20 and report["sampling"]["eta"] == 1.0


def test_choose_prompts_is_seeded_and_covers_every_caption_when_asked_for_more():
    from pokemon_diffusion.evaluation.evaluate import choose_prompts

    assert choose_prompts(10, 4, 1).tolist() == choose_prompts(10, 4, 1).tolist()
    assert choose_prompts(10, 4, 1).tolist() != choose_prompts(10, 4, 2).tolist()  # the seed is used
    assert len(set(choose_prompts(10, 10, 2).tolist())) == 10
    more = choose_prompts(3, 7, 0)
    assert len(more) == 7 and set(more.tolist()) == {0, 1, 2}


def test_heldout_loss_is_skipped_when_the_run_held_nothing_out(tiny_run):
    from pokemon_diffusion.evaluation.eval_data import load_eval_data
    from pokemon_diffusion.evaluation.evaluate import heldout_loss
    from pokemon_diffusion.run_dir import load_run

    run, data = tiny_run
    loaded = load_run(run)
    loaded.config = loaded.config.replace(train=loaded.config.train.replace(val_fraction=0.0))
    assert "val_fraction = 0.0" in heldout_loss(loaded, load_eval_data(data, 16))["skipped"]


# ---------------------------------------------------------------------------------------- CLI

def test_cli_writes_the_report_and_prints_a_table(tiny_run, tmp_path, capsys, empty_keras_home):
    import json

    from pokemon_diffusion.cli import main

    run, data = tiny_run
    out = tmp_path / "sub" / "report.json"
    code = main(["evaluate", "--run", str(run), "--data", str(data), "--num", "2", "--steps", "2",
                 "--guidance", "1", "--seed", "1", "--eta", "0.5", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["num_samples"] == 2 and report["sampling"]["steps"] == 2 and report["sampling"]["eta"] == 0.5
    printed = capsys.readouterr().out
    for label in ("held-out loss", "top-1 / top-5", "type exact / overlap", "rebuilt from level", "silhouette", "variety",
                  "colour moments L2", "FID / KID",
                  "skipped", f"report: {out}"):
        assert label in printed
    # the run's (made-up) encoder cannot embed the colour prompts: skipped, saying why
    assert ENCODER in report["colour_following"]["skipped"]


@pytest.mark.parametrize("extra, message", [
    (["--steps", "21"], "allowed: 1 to the run's T = 20"),
    (["--inception-weights", "weights.bin"], "allowed: auto | imagenet | random"),
    (["--out", "report.txt"], "allowed: a file name ending in .json"),
    (["--num", "1"], "allowed: an integer from 2"),
    (["--guidance", "1,x"], "comma-separated list"),
    (["--guidance", "1,60"], "allowed: a number from 0 to 50"),
    (["--eta", "1.5"], "--eta"),
    (["--sampler", "ddpm", "--eta", "0.5"], "allowed: 0 for ddpm"),
    (["--variety-seeds", "1"], "allowed: 0 (skip) or 2 to 64 seeds"),
    (["--variety-seeds", "65"], "--variety-seeds"),
])
def test_cli_bad_values_are_one_line_errors(tiny_run, capsys, extra, message):
    from pokemon_diffusion.cli import main

    run, data = tiny_run
    try:
        code = main(["evaluate", "--run", str(run), "--data", str(data), *extra])
    except SystemExit as exc:  # argparse-level errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_cli_refuses_a_dataset_embedded_with_another_encoder(tiny_run, tmp_path, capsys):
    from pokemon_diffusion.cli import main

    run, _ = tiny_run
    other = _write_dataset(tmp_path / "other", encoder="another-encoder")
    assert main(["evaluate", "--run", str(run), "--data", str(other), "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "another-encoder" in err and ENCODER in err and err.count("\n") == 1


def test_cli_missing_run_is_a_one_line_error(tmp_path, capsys):
    from pokemon_diffusion.cli import main

    assert main(["evaluate", "--run", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    assert "run folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_heldout_loss_matches_the_val_loss_training_logged(tmp_path):
    from helpers_training import tiny_config, write_tiny_dataset

    from pokemon_diffusion.evaluation.eval_data import load_eval_data
    from pokemon_diffusion.evaluation.evaluate import heldout_loss
    from pokemon_diffusion.run_dir import load_run
    from pokemon_diffusion.training.metrics import read_metrics
    from pokemon_diffusion.training.loop import train

    data = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    train(data, run, tiny_config(steps=2, eval_every=2, timesteps=20), handle_signals=False)
    logged = [r["val_loss"] for r in read_metrics(run / "metrics.jsonl") if r.get("val_loss") is not None][-1]
    loaded = load_run(run)
    ours = heldout_loss(loaded, load_eval_data(data, loaded.config.model.image_size))
    assert ours["loss"] == pytest.approx(logged, rel=1e-5)
    assert ours["timesteps"] == 2 and ours["num_images"] == 3


def test_run_reference_names_the_shipped_model_and_its_report_goes_to_the_current_folder():
    from pokemon_diffusion.commands.evaluate import REFERENCE_REPORT, _run_folder
    from pokemon_diffusion.pretrained import pretrained_dir

    assert _run_folder("reference") == str(pretrained_dir()) and _run_folder("runs/x") == "runs/x"
    assert "/" not in REFERENCE_REPORT


def test_the_report_shows_the_held_out_loss_at_t0_apart():
    from pokemon_diffusion.evaluation.report import _heldout_text

    text = _heldout_text({"loss": 0.0875, "per_t": {"0": 0.5, "500": 0.2, "999": 0.1}})
    assert text.startswith("0.08750") and "t = 0: 0.5000" in text and "the other 2 t: 0.15000" in text
    assert _heldout_text({"loss": 0.1, "per_t": {"5": 0.1}}) == "0.10000"
    assert _heldout_text({"loss": None}) == "n/a"


def _oracle_run(run, data, shift):
    """The tiny run with its model replaced by an oracle: for each caption embedding it predicts the v of
    the dataset image ``shift`` places further on, exactly (so DDIM lands on that image, any t)."""
    import keras
    import tensorflow as tf

    from pokemon_diffusion.evaluation.eval_data import load_eval_data
    from pokemon_diffusion.run_dir import load_run

    loaded = load_run(run)
    eval_data = load_eval_data(data, loaded.config.model.image_size)
    targets = np.roll(eval_data.images, -shift, axis=0)

    class Oracle(keras.Model):
        def __init__(self):
            super().__init__()
            self.embeddings = tf.constant(eval_data.embeddings, tf.float32)
            self.targets = tf.constant(targets, tf.float32)
            self.abar = tf.constant(loaded.schedule.alphas_cumprod, tf.float32)

        def call(self, inputs, training=False):
            x_t, t, text = inputs
            nearest = tf.argmin(tf.reduce_sum((text[:, None, :] - self.embeddings[None]) ** 2, -1), axis=1)
            x0 = tf.gather(self.targets, nearest)
            abar = tf.gather(self.abar, tf.cast(t, tf.int32))[:, None, None, None]
            eps = (x_t - tf.sqrt(abar) * x0) / tf.sqrt(1.0 - abar)
            return tf.sqrt(abar) * eps - tf.sqrt(1.0 - abar) * x0  # v-prediction

    assert loaded.config.diffusion.prediction == "v"
    loaded.model = Oracle()
    return loaded


@pytest.mark.slow
@pytest.mark.parametrize("shift, top1, loss_is_zero", [(0, 1.0, True), (1, 0.0, False)])
def test_evaluate_gives_the_known_answer_of_a_rigged_model(tiny_run, empty_keras_home, monkeypatch,
                                                           shift, top1, loss_is_zero):
    # shift 0: a perfect model (every sample is its prompt's own Pokémon, no denoising error);
    # shift 1: every sample is exactly another Pokémon's picture
    from pokemon_diffusion import run_dir as run_dir_module

    run, data = tiny_run
    rigged = _oracle_run(run, data, shift)
    monkeypatch.setattr(run_dir_module, "load_run", lambda *args, **kwargs: rigged)
    report = _evaluate(run, data, inception_weights=None, guidance_scale=1.0, colour_seeds=0, variety_seeds=0,
                       num=6)
    cond = report["conditioning"]
    assert cond["top1"] == top1 and len(cond["samples"]) == 6
    held = report["heldout_loss"]["loss"]
    assert (held < 1e-6) if loss_is_zero else (held > 0.05), held
    for level in report["reconstruction"]["levels"].values():
        assert level["top1"] == top1
