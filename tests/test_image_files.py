"""One PNG per image with its recipe in PNG text chunks (`sample --out-dir`), and images a user can save."""

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.cli import main
from pokemon_diffusion.config import SampleConfig
from pokemon_diffusion.diffusion.samplers import SampleResult
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.image_files import PNG_KEYS, image_metadata, save_images, slug, to_pil
from test_sample_cli import encoder, one_line_error, run_dir  # noqa: F401 (fixtures)


def fake_result(batch=2, channels=3, seed=7):
    images = np.linspace(-1, 1, batch * 4 * 4 * channels, dtype=np.float32).reshape(batch, 4, 4, channels)
    return SampleResult(images=images, intermediates=images[None], timesteps=np.array([0]), seed=seed,
                        sampler="ddim", steps=12, guidance_scale=3.0, eta=0.0, seconds=0.1)


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB"), (4, "RGBA")])
def test_results_give_uint8_arrays_and_pil_images(channels, mode):
    result = fake_result(channels=channels)
    pixels = result.to_uint8()
    assert pixels.dtype == np.uint8 and pixels.shape == result.images.shape
    assert pixels.min() == 0 and pixels.max() == 255
    pictures = result.to_pil()
    assert [p.mode for p in pictures] == [mode, mode] and pictures[0].size == (4, 4)
    np.testing.assert_array_equal(np.asarray(pictures[1]).reshape(4, 4, channels), pixels[1])
    with pytest.raises(ConfigError, match="allowed: \\(B, H, W, C\\) or \\(H, W, C\\), 1 to 4 channels"):
        to_pil(np.zeros((1, 4, 4, 5)))


def test_each_image_is_a_png_with_its_recipe_in_text_chunks(tmp_path):
    result = fake_result()
    paths = save_images(result, ["Pikachu", "ピカチュウ"], tmp_path / "out",
                        encoded=["Pikachu, a small yellow Electric-type Pokémon", "ピカチュウ"],
                        model="tiny-run", negative_prompt="blurry, dark")
    assert [p.name for p in paths] == ["000_pikachu_seed7.png", "001_image_seed7.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]  # no temp files
    with Image.open(paths[0]) as png:
        text = dict(png.text)
        np.testing.assert_array_equal(np.asarray(png), result.to_uint8()[0])
    assert set(text) == set(PNG_KEYS)
    assert text["parameters"] == ("Pikachu\nNegative prompt: blurry, dark\n"
                                  "Steps: 12, Sampler: DDIM, CFG scale: 3, Seed: 7, Size: 4x4, Model: tiny-run")
    assert (text["prompt"], text["encoded_prompt"], text["negative_prompt"]) == \
        ("Pikachu", "Pikachu, a small yellow Electric-type Pokémon", "blurry, dark")
    assert (text["seed"], text["batch_index"], text["batch_size"], text["steps"], text["sampler"],
            text["guidance_scale"], text["eta"], text["model"]) == ("7", "0", "2", "12", "ddim", "3", "0", "tiny-run")
    with Image.open(paths[1]) as png:  # beyond Latin-1: an iTXt chunk, read back as typed
        assert png.text["prompt"] == "ピカチュウ" and png.text["batch_index"] == "1"


def test_metadata_without_a_negative_prompt_and_with_an_edits_settings():
    text = image_metadata(fake_result(), 0, "a ghost", extra={"strength": 0.3, "init_image": "squirtle.png"})
    assert text["parameters"] == ("a ghost\nSteps: 12, Sampler: DDIM, CFG scale: 3, Seed: 7, Size: 4x4, "
                                  "strength: 0.3, init_image: squirtle.png")
    assert text["negative_prompt"] == "" and text["encoded_prompt"] == "a ghost" and text["strength"] == "0.3"


def test_a_prompt_count_that_does_not_match_the_images_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="got 1 prompts and 1 encoded ones for 2 images"):
        save_images(fake_result(), ["one"], tmp_path)


def test_file_names_are_safe_and_the_shipped_model_is_named_by_its_manifest():
    from types import SimpleNamespace

    from pokemon_diffusion.pretrained import model_name, pretrained_dir, read_manifest

    assert slug("../../etc/passwd") == "etc-passwd" and slug("Mr. Mime") == "mr-mime" and slug("?") == "image"
    assert model_name(SimpleNamespace(path=pretrained_dir())) == read_manifest()["name"]
    assert model_name(SimpleNamespace(path="runs/r1")) == "r1"


# ---- sample --out-dir ------------------------------------------------------------------------

def test_sample_out_dir_writes_one_png_per_image_without_a_grid(run_dir, encoder, tmp_path):  # noqa: F811
    from pokemon_diffusion.generate import generate
    from pokemon_diffusion.run_dir import load_run

    out = tmp_path / "pngs"
    assert main(["sample", "--run", str(run_dir), "--prompt", "a ghost", "--prompt", "a fire dragon", "--num", "2",
                 "--steps", "3", "--seed", "5", "--guidance", "2", "--negative-prompt", "dark",
                 "--out-dir", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000_a-ghost_seed5.png", "001_a-ghost_seed5.png", "002_a-fire-dragon_seed5.png",
                     "003_a-fire-dragon_seed5.png"]
    assert list(tmp_path.iterdir()) == [out]  # no grid
    # the CLI's default precision ("auto": bfloat16 where the CPU has it), so the same pixels
    loaded = load_run(run_dir, mixed_precision=SampleConfig().mixed_precision)
    expected, _ = generate(loaded, ["a ghost", "a fire dragon"], num=2,
                           config=SampleConfig(steps=3, seed=5, guidance_scale=2.0, negative_prompt="dark"))
    with Image.open(out / names[2]) as png:
        np.testing.assert_array_equal(np.asarray(png), expected.to_uint8()[2])
        assert png.text["parameters"] == ("a fire dragon\nNegative prompt: dark\nSteps: 3, Sampler: DDIM, "
                                          f"CFG scale: 2, Seed: 5, Size: 16x16, Model: {run_dir.name}")


def test_sample_out_and_out_dir_together_and_neither(run_dir, encoder, tmp_path, capsys):  # noqa: F811
    base = ["sample", "--run", str(run_dir), "--prompt", "a ghost", "--steps", "2"]
    assert main([*base, "--out", str(tmp_path / "grid.png"), "--out-dir", str(tmp_path / "d")]) == 0
    assert (tmp_path / "grid.png").is_file() and len(list((tmp_path / "d").iterdir())) == 1
    capsys.readouterr()  # the successful call's log lines
    assert main(base) == 2
    assert "--out FILE.png / --out-dir DIR: got neither; allowed: either or both" in one_line_error(capsys)
    assert main([*base, "--out-dir", str(tmp_path / "grid.png")]) == 2  # a file, not a folder: before sampling
    assert "is a file, not a folder" in one_line_error(capsys)
    with pytest.raises(SystemExit):
        main([*base, "--out-dir", " "])
    assert "--out-dir: got ' '; allowed: a folder name" in one_line_error(capsys)
