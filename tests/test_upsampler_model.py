"""The upsampler model kind: ModelConfig.low_res, the five-input U-Net, its .keras round trip."""

import json

import keras
import numpy as np
import pytest

from pokemon_diffusion.config import ModelConfig, RunConfig
from pokemon_diffusion.errors import ConfigError
from pokemon_diffusion.model.unet import INPUT_NAMES, UPSAMPLER_INPUTS, build_unet

TEXT_DIM = 12


def tiny_upsampler(**changes) -> ModelConfig:
    base = dict(image_size=32, low_res=16, base_width=8, channel_mults=(1, 2), num_res_blocks=1,
                text_dim=TEXT_DIM, dropout=0.0)
    base.update(changes)
    return ModelConfig(**base)


def inputs_for(size: int, batch: int = 2, seed: int = 0, aug=(0.0, 0.3)):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    low = rng.uniform(-1, 1, size=(batch, size, size, 3)).astype("float32")
    t = rng.integers(0, 1000, size=(batch,)).astype("int32")
    e = rng.normal(size=(batch, TEXT_DIM)).astype("float32")
    return [x, t, e, low, np.asarray(aug, "float32")]


def randomise_output_conv(model: keras.Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for w in model.get_layer("out_conv").weights:
        w.assign(rng.normal(scale=0.1, size=w.shape).astype("float32"))


def test_low_res_is_validated_and_a_base_config_json_is_unchanged():
    assert ModelConfig().low_res is None
    assert "low_res" not in ModelConfig().to_dict()  # the base model's config.json keeps its keys
    assert tiny_upsampler().to_dict()["low_res"] == 16
    run = RunConfig(model=tiny_upsampler())
    assert RunConfig.from_json(run.to_json()) == run
    old = {"image_size": 32, "base_width": 8}  # a config.json written before upsamplers: the base model
    assert ModelConfig.from_dict(old).low_res is None
    for bad in (12, 32, 64, 4):
        with pytest.raises(ConfigError, match=r"ModelConfig\.low_res: got .*divisor of image_size 32"):
            tiny_upsampler(low_res=bad)
    with pytest.raises(ConfigError, match="low_res.*without attention_resolutions"):
        tiny_upsampler(attention_resolutions=(16,))
    with pytest.raises(ConfigError, match="low_res.*type"):
        ModelConfig.from_dict(json.loads('{"low_res": "16"}'))


def test_contract_any_crop_size_and_zero_output_at_init():
    keras.utils.set_random_seed(0)
    model = build_unet(tiny_upsampler())
    assert model.name == "upsampler"
    assert [t.name for t in model.inputs] == list(INPUT_NAMES + UPSAMPLER_INPUTS)
    for size in (16, 32, 48):  # fully convolutional: trains on crops, samples at the full size
        out = model(inputs_for(size), training=False)
        assert tuple(out.shape) == (2, size, size, 3) and out.numpy().dtype == np.float32
        assert not np.any(out.numpy())


def test_low_res_image_and_augmentation_level_reach_the_output():
    keras.utils.set_random_seed(1)
    model = build_unet(tiny_upsampler())
    randomise_output_conv(model)
    data = inputs_for(16)
    base = model(data, training=False).numpy()
    changed_low = list(data)
    changed_low[3] = -data[3]
    assert np.abs(model(changed_low, training=False).numpy() - base).max() > 1e-4
    changed_aug = list(data)
    changed_aug[4] = np.asarray([0.9, 0.0], "float32")
    diff = np.abs(model(changed_aug, training=False).numpy() - base).reshape(2, -1).max(axis=1)
    assert diff.min() > 1e-5


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_keras_round_trip_gives_identical_outputs(tmp_path, norm):
    keras.utils.set_random_seed(2)
    model = build_unet(tiny_upsampler(norm=norm, norm_groups=4, dropout=0.1))
    randomise_output_conv(model)
    data = inputs_for(16)
    model(data, training=True)
    before = model(data, training=False).numpy()
    path = tmp_path / "upsampler.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded(data, training=False).numpy(), before)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    assert [t.name for t in loaded.inputs] == list(INPUT_NAMES + UPSAMPLER_INPUTS)
