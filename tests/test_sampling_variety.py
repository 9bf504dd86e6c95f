"""Sampling's variety settings: condition-annealed sampling (CADS, Sadat et al. 2024) — the annealing
maths, the loop's use of it (only the conditional half, only early steps, keyed by the seed) — and
the guidance interval (Kynkäänniemi et al. 2024); their refusals, config fields and CLI flags."""

import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.config import DiffusionConfig, SampleConfig
from pokemon_diffusion.diffusion.compiled import tracing_count
from pokemon_diffusion.diffusion.samplers import sample
from pokemon_diffusion.diffusion.schedule import make_schedule
from pokemon_diffusion.diffusion.steps import ConditionAnnealing, anneal_condition
from pokemon_diffusion.errors import ConfigError
from test_sample_cli import encoder, make_run, one_line_error  # noqa: F401 (encoder: a fixture)
from test_samplers import Recorder, tiny_model

DIM = 4


@pytest.fixture(scope="module")
def schedule():
    return make_schedule(DiffusionConfig(timesteps=20, prediction="epsilon"))


@pytest.fixture(scope="module")
def model():
    return tiny_model(text_dim=DIM)


def _anneal(cond, level, noise, **settings):
    out = anneal_condition(tf.constant(cond, tf.float32), tf.constant(level, tf.float32),
                           tf.constant(noise, tf.float32), tf.constant(ConditionAnnealing(**settings).as_row()))
    return out.numpy()


def test_the_prompt_is_clean_below_start_and_pure_rescaled_noise_above_end():
    rng = np.random.default_rng(0)
    cond, noise = rng.standard_normal((3, 64)).astype(np.float32), rng.standard_normal((3, 64)).astype(np.float32)
    window = dict(start=0.6, end=0.9)
    np.testing.assert_allclose(_anneal(cond, 0.5, noise, strength=1.0, **window), cond, atol=1e-5)  # γ = 1
    top = _anneal(cond, 0.95, noise, strength=1.0, **window)  # γ = 0: the noise, with the prompt's row statistics
    np.testing.assert_allclose(top.mean(1), cond.mean(1), atol=1e-5)
    np.testing.assert_allclose(top.std(1), cond.std(1), rtol=1e-4)
    for row_top, row_noise in zip(top, noise):
        assert np.corrcoef(row_top, row_noise)[0, 1] > 0.999
    # in between, eq. 3 before rescaling (mix 0): √γ·y + s·√(1−γ)·rms(y)·n with γ = (0.9 − 0.75) / 0.3
    gamma, rms = 0.5, np.sqrt(np.mean(cond ** 2, axis=1, keepdims=True))
    np.testing.assert_allclose(_anneal(cond, 0.75, noise, strength=0.3, mix=0.0, **window),
                               np.sqrt(gamma) * cond + 0.3 * np.sqrt(1 - gamma) * rms * noise, atol=1e-5)


def test_the_null_condition_stays_zeros():
    out = _anneal(np.zeros((2, 8)), 1.0, np.random.default_rng(1).standard_normal((2, 8)), strength=2.0)
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("settings, message", [
    (dict(strength=-0.1), "strength"), (dict(strength=11.0), "strength"), (dict(start=0.9, end=0.6), "range"),
    (dict(end=1.5), "range"), (dict(mix=2.0), "mix"), (dict(strength=float("nan")), "finite"),
    (dict(strength=True), "finite")])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        ConditionAnnealing(**settings)


def test_strength_zero_is_the_plain_sampler_bit_for_bit(model, schedule):
    emb = np.linspace(-1, 1, DIM).astype(np.float32)
    kwargs = dict(schedule=schedule, steps=5, seed=3, guidance_scale=3.0)
    plain = sample(model, emb, (2, 8, 8, 3), **kwargs)
    off = sample(model, emb, (2, 8, 8, 3), annealing=ConditionAnnealing(strength=0.0), **kwargs)
    np.testing.assert_array_equal(off.images, plain.images)


def test_annealing_changes_the_images_reproducibly_without_retracing(model, schedule):
    emb = np.linspace(-1, 1, DIM).astype(np.float32)
    kwargs = dict(schedule=schedule, steps=5, seed=3, guidance_scale=3.0, clip_x0=False)
    plain = sample(model, emb, (2, 8, 8, 3), **kwargs)
    first = sample(model, emb, (2, 8, 8, 3), annealing=ConditionAnnealing(strength=0.5), **kwargs)
    traced = tracing_count(model)
    again = sample(model, emb, (2, 8, 8, 3), annealing=ConditionAnnealing(strength=0.5), **kwargs)
    other = sample(model, emb, (2, 8, 8, 3), annealing=ConditionAnnealing(strength=1.0, start=0.3), **kwargs)
    assert tracing_count(model) == traced  # the settings are a tensor: no new trace
    np.testing.assert_array_equal(again.images, first.images)
    assert not np.allclose(first.images, plain.images, atol=1e-4)
    assert not np.allclose(other.images, first.images, atol=1e-4)


def test_only_the_conditional_half_of_early_steps_is_noised(model, schedule, one_pass):
    emb, negative = np.linspace(-1, 1, DIM).astype(np.float32), np.full(DIM, 0.5, np.float32)
    recorder = Recorder(model)
    # DDIM-5 over T = 20 visits levels (t + 1) / T = 1.0, 0.75, 0.5, 0.3, 0.05: annealed while above 0.6
    sample(recorder, emb, (2, 8, 8, 3), schedule=schedule, steps=5, seed=1, guidance_scale=3.0, negative_emb=negative,
           annealing=ConditionAnnealing(strength=1.0, start=0.6, end=0.9))
    assert len(recorder.seen) == 5
    for i, seen in enumerate(recorder.seen):
        np.testing.assert_array_equal(seen[2:], np.stack([negative, negative]))  # the unconditional half: untouched
        if i < 2:
            assert not np.allclose(seen[:2], emb, atol=1e-3)
            assert not np.allclose(seen[0], seen[1], atol=1e-3)  # each image its own noise
        else:
            np.testing.assert_allclose(seen[:2], np.stack([emb, emb]), atol=1e-5)


def test_annealing_per_prompt_leaves_the_other_prompts_clean(model, schedule, one_pass):
    emb = np.stack([np.linspace(-1, 1, DIM), np.linspace(1, -1, DIM)]).astype(np.float32)
    recorder = Recorder(model)
    sample(recorder, emb, (4, 8, 8, 3), schedule=schedule, steps=5, seed=1, guidance_scale=3.0,
           annealing=[None, ConditionAnnealing(strength=1.0)])  # prompt-major: images 0-1 prompt 0, 2-3 prompt 1
    first = recorder.seen[0]
    np.testing.assert_array_equal(first[:2], np.stack([emb[0], emb[0]]))  # exactly the prompt
    assert not np.allclose(first[2:4], np.stack([emb[1], emb[1]]), atol=1e-3)
    with pytest.raises(ConfigError, match="one \\(or None\\) per prompt \\(2\\)"):
        sample(model, emb, (4, 8, 8, 3), schedule=schedule, steps=2, annealing=[ConditionAnnealing(strength=1.0)])


def test_guidance_zero_never_sees_the_prompt(model, schedule):
    emb = np.linspace(-1, 1, DIM).astype(np.float32)
    kwargs = dict(schedule=schedule, steps=4, seed=2, guidance_scale=0.0)
    np.testing.assert_array_equal(
        sample(model, emb, (1, 8, 8, 3), annealing=ConditionAnnealing(strength=1.0), **kwargs).images,
        sample(model, emb, (1, 8, 8, 3), **kwargs).images)


def test_a_wrong_type_is_refused_before_any_compute(model, schedule):
    with pytest.raises(ConfigError, match="annealing"):
        sample(model, np.zeros(DIM), (1, 8, 8, 3), schedule=schedule, steps=2, annealing=0.5)


def test_sample_config_fields_validate_and_build_the_settings():
    config = SampleConfig(cads_strength=0.5, cads_range=(0.5, 1.0))
    assert ConditionAnnealing.from_config(config) == ConditionAnnealing(strength=0.5, start=0.5, end=1.0)
    assert ConditionAnnealing.from_config(SampleConfig(cads_strength=0.0)) is None
    with pytest.raises(ConfigError, match="cads_range"):
        SampleConfig(cads_range=(0.9, 0.2))
    with pytest.raises(ConfigError, match="cads_strength"):
        SampleConfig(cads_strength=-1.0)


# ---- guidance interval ------------------------------------------------------------------------

def test_an_interval_covering_every_level_is_the_plain_sampler(model, schedule):
    emb = np.linspace(-1, 1, DIM).astype(np.float32)
    kwargs = dict(schedule=schedule, steps=5, seed=3, guidance_scale=3.0)
    plain = sample(model, emb, (2, 8, 8, 3), **kwargs)
    np.testing.assert_array_equal(sample(model, emb, (2, 8, 8, 3), guidance_interval=(0.0, 1.0), **kwargs).images,
                                  plain.images)


def test_outside_the_interval_the_step_is_the_conditional_output(model, schedule):
    emb = np.linspace(-1, 1, DIM).astype(np.float32)
    kwargs = dict(schedule=schedule, steps=5, seed=3, clip_x0=False)
    conditional = sample(model, emb, (2, 8, 8, 3), guidance_scale=1.0, **kwargs).images
    guided = sample(model, emb, (2, 8, 8, 3), guidance_scale=3.0, **kwargs).images
    # DDIM-5 over T = 20 visits levels 1.0, 0.75, 0.5, 0.3, 0.05: (0.9, 1.0] holds only the first,
    # (0.99, 1.0] too; an interval between two visited levels guides none of them
    none = sample(model, emb, (2, 8, 8, 3), guidance_scale=3.0, guidance_interval=(0.76, 0.99), **kwargs).images
    np.testing.assert_allclose(none, conditional, atol=1e-5)
    first = sample(model, emb, (2, 8, 8, 3), guidance_scale=3.0, guidance_interval=(0.9, 1.0), **kwargs).images
    assert not np.allclose(first, conditional, atol=1e-4) and not np.allclose(first, guided, atol=1e-4)


@pytest.mark.parametrize("interval", [(0.5, 0.5), (0.8, 0.2), (-0.1, 0.5), (0.0, 1.5), "all", (0.1,)])
def test_a_bad_interval_is_refused_before_any_compute(model, schedule, interval):
    with pytest.raises(ConfigError, match="guidance_interval"):
        sample(model, np.zeros(DIM), (1, 8, 8, 3), schedule=schedule, steps=2, guidance_interval=interval)


# ---- CLI ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("variety_run"))


def _pixels(path):
    from PIL import Image

    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"))


def test_the_sample_flags_change_the_images_reproducibly(run_dir, encoder, tmp_path):
    from pokemon_diffusion.cli import main

    base = ["sample", "--run", str(run_dir), "--prompt", "a ghost", "--num", "2", "--steps", "4", "--seed", "1"]
    outs = {}
    for name, extra in (("plain", ["--cads", "0"]), ("cads", ["--cads", "2", "--cads-range", "0.2,1"]),
                        ("cads_again", ["--cads", "2", "--cads-range", "0.2,1"]),
                        ("interval", ["--cads", "0", "--guidance-interval", "0,0.5"]),
                        ("all", ["--cads", "0", "--guidance-interval", "all"])):
        outs[name] = tmp_path / f"{name}.png"
        assert main(base + extra + ["--out", str(outs[name])]) == 0
    plain = _pixels(outs["plain"])
    np.testing.assert_array_equal(_pixels(outs["cads_again"]), _pixels(outs["cads"]))
    np.testing.assert_array_equal(_pixels(outs["all"]), plain)
    assert not np.array_equal(_pixels(outs["cads"]), plain) and not np.array_equal(_pixels(outs["interval"]), plain)


@pytest.mark.parametrize("argv, message", [
    (["--cads", "-1"], "--cads: got '-1'; allowed: a number from 0.0 to 10.0"),
    (["--cads-range", "0.9,0.2"], "--cads-range: got '0.9,0.2'; allowed: LOW,HIGH with 0 <= LOW < HIGH <= 1"),
    (["--guidance-interval", "half"], "--guidance-interval: got 'half'; allowed: LOW,HIGH"),
    (["--cads-range", "all"], "--cads-range: got 'all'; allowed: LOW,HIGH"),
])
def test_bad_variety_flags_are_one_line_errors(argv, message, capsys):
    from pokemon_diffusion.cli import main

    with pytest.raises(SystemExit) as info:
        main(["sample", "--run", "r", "--prompt", "x", "--out", "s.png", *argv])
    assert info.value.code == 2 and message in one_line_error(capsys)


# ---- which prompts are annealed -----------------------------------------------------------------

def test_prompts_naming_a_known_pokemon_keep_a_clean_embedding():
    from types import SimpleNamespace

    from pokemon_diffusion.generate import prompt_annealing
    from pokemon_diffusion.prompts import Known, NameTable

    run = SimpleNamespace(name_table=NameTable([Known("Pikachu", "Pikachu, a small yellow Electric-type Pokémon",
                                                      "a small yellow Electric-type Pokémon")]))
    prompts = ["Pikachu", "pikachu in the snow", "a cute yellow electric mouse"]
    on = ConditionAnnealing.from_config(SampleConfig(cads_strength=0.5))
    assert prompt_annealing(run, prompts, SampleConfig(cads_strength=0.5)) == [None, None, on]
    assert prompt_annealing(run, prompts, SampleConfig(cads_strength=0.5, cads_names=True)) == [on] * 3
    assert prompt_annealing(run, prompts, SampleConfig(cads_strength=0.0)) is None
    assert prompt_annealing(SimpleNamespace(name_table=None), prompts, SampleConfig(cads_strength=0.5)) == [on] * 3
