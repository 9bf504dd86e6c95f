import json

import pytest

from pokemon_diffusion.config import (DataConfig, DiffusionConfig, ModelConfig, RunConfig,
                                      SampleConfig, TrainConfig)
from pokemon_diffusion.errors import ConfigError

ALL = [DataConfig, ModelConfig, DiffusionConfig, TrainConfig, SampleConfig, RunConfig]


@pytest.mark.parametrize("cls", ALL)
def test_defaults_round_trip_through_json(cls, tmp_path):
    config = cls()
    assert cls.from_json(config.to_json()) == config
    config.save(tmp_path / "c.json")
    assert cls.load(tmp_path / "c.json") == config
    assert not list(tmp_path.glob(".*.tmp")), "atomic save left a temp file"


def test_lists_from_json_become_tuples():
    config = ModelConfig.from_dict({"channel_mults": [1, 2], "attention_resolutions": [16]})
    assert config.channel_mults == (1, 2) and config.attention_resolutions == (16,)
    assert hash(config)  # frozen and hashable


@pytest.mark.parametrize("cls, changes, field, allowed", [
    (ModelConfig, {"image_size": 33}, "image_size", "multiple of 8"),
    (ModelConfig, {"image_size": 256}, "image_size", "from 16 to 128"),
    (ModelConfig, {"norm": "layer"}, "norm", "batch | group"),
    (ModelConfig, {"dropout": 1.0}, "dropout", "0 <= dropout < 1"),
    (ModelConfig, {"norm": "group", "base_width": 12}, "norm_groups", "divisor"),
    (ModelConfig, {"attention_resolutions": (5,)}, "attention_resolutions", "[32, 16, 8, 4]"),
    (ModelConfig, {"base_width": "32"}, "base_width", "type int"),
    (ModelConfig, {"num_res_blocks": True}, "num_res_blocks", "type int"),
    (DiffusionConfig, {"schedule": "quadratic"}, "schedule", "linear | cosine"),
    (DiffusionConfig, {"beta_end": 1e-5}, "beta_end", "beta_start < beta_end"),
    (DiffusionConfig, {"timesteps": 1}, "timesteps", "2 to 10000"),
    (TrainConfig, {"batch_size": 0}, "batch_size", "1 to 4096"),
    (TrainConfig, {"epochs": 3}, "steps", "exactly one of steps and epochs"),
    (TrainConfig, {"learning_rate": -1.0}, "learning_rate", "0 < learning_rate"),
    (TrainConfig, {"strategy": "tpu"}, "strategy", "auto | one | mirrored | multiworker"),
    (TrainConfig, {"cond_drop": 1.5}, "cond_drop", "0 <= cond_drop < 1"),
    (SampleConfig, {"sampler": "euler"}, "sampler", "ddim | ddpm"),
    (SampleConfig, {"guidance_scale": -1.0}, "guidance_scale", "0.0 to 50.0"),
    (DataConfig, {"source": "web"}, "source", "pokedex | bulbapedia | folder"),
    (DataConfig, {"source": "folder"}, "path", "required when source is 'folder'"),
    (DataConfig, {"url": "ftp://x"}, "url", "http(s) URL"),
])
def test_bad_values_name_field_value_and_allowed(cls, changes, field, allowed):
    with pytest.raises(ConfigError) as info:
        cls(**changes)
    message = str(info.value)
    assert message.startswith(f"{cls.__name__}.{field}: got ")
    assert allowed in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)  # callers catching ValueError keep working


def test_unknown_keys_are_refused_with_the_allowed_list():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) widthh; allowed: image_size"):
        ModelConfig.from_dict({"widthh": 3})


def test_invalid_json_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid JSON"):
        TrainConfig.from_json("{not json")


def test_run_config_nests_and_validates_parts():
    run = RunConfig(model=ModelConfig(image_size=16, channel_mults=(1, 2)))
    data = json.loads(run.to_json())
    assert data["model"]["image_size"] == 16 and data["train"]["batch_size"] == 32
    assert RunConfig.from_dict(data) == run
    with pytest.raises(ConfigError, match="ModelConfig.norm"):
        RunConfig.from_dict({"model": {"norm": "nope"}})


def test_remat_is_an_optional_boolean_that_round_trips():
    assert TrainConfig().remat is False
    config = RunConfig(train=TrainConfig(remat=True))
    assert RunConfig.from_json(config.to_json()).train.remat is True
    assert RunConfig.from_dict({"train": {"steps": 5}}).train.remat is False  # older config.json files
    with pytest.raises(ConfigError, match="TrainConfig.remat: got 'yes'; allowed: a value of type bool"):
        TrainConfig(remat="yes")


def test_model_widths_follow_multipliers():
    assert ModelConfig(base_width=16, channel_mults=(1, 2, 4)).widths == (16, 32, 64)
