"""iter_sample: frames every k steps from the compiled loop, and a last frame equal to sample()'s."""

import numpy as np
import pytest

import pokemon_diffusion
from pokemon_diffusion.config import DiffusionConfig
from pokemon_diffusion.diffusion.compiled import tracing_count
from pokemon_diffusion.diffusion.samplers import sample
from pokemon_diffusion.diffusion.schedule import make_schedule
from pokemon_diffusion.diffusion.streaming import StreamFrame, iter_sample
from pokemon_diffusion.errors import ConfigError
from test_samplers import NeverCalled, Oracle, one_image, tiny_model


@pytest.fixture(scope="module")
def schedule():
    return make_schedule(DiffusionConfig(timesteps=20))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("kwargs", [
    dict(sampler="ddim", steps=10, guidance_scale=3.0, every=3),
    dict(sampler="ddim", steps=7, eta=0.5, guidance_scale=1.0, every=1, num_intermediates=4),
    dict(sampler="ddpm", guidance_scale=2.0, every=5, clip_x0=False),
    dict(sampler="ddim", steps=5, guidance_scale=3.0, every=2, negative_emb=np.full(4, 0.5, np.float32)),
])
def test_the_last_frame_is_what_sample_returns(model, schedule, kwargs):
    every = kwargs.pop("every")
    emb = np.linspace(-1, 1, 4).astype(np.float32)
    reference = sample(model, emb, (2, 8, 8, 3), schedule=schedule, seed=13, **kwargs)
    frames = list(iter_sample(model, emb, (2, 8, 8, 3), schedule=schedule, seed=13, every=every, **kwargs))
    last = frames[-1]
    assert last.done and not any(f.done for f in frames[:-1])
    np.testing.assert_array_equal(last.x, reference.images)
    np.testing.assert_array_equal(last.result.images, reference.images)
    np.testing.assert_array_equal(last.result.intermediates, reference.intermediates)
    np.testing.assert_array_equal(last.result.timesteps, reference.timesteps)
    assert (last.result.seed, last.result.steps, last.result.eta) == (13, reference.steps, reference.eta)


def test_frames_come_every_k_steps_with_their_level(model, schedule):
    frames = list(iter_sample(model, np.ones(4), (1, 8, 8, 3), schedule=schedule, steps=10, every=3, seed=1))
    assert [f.step for f in frames] == [3, 6, 9, 10]
    assert all(isinstance(f, StreamFrame) and f.steps == 10 and f.seed == 1 for f in frames)
    # DDIM over T = 20 in 10 steps visits 19, 17, ...; the state after step k sits at the next level
    levels = np.append(np.round(np.linspace(19, 0, 10)).astype(int) + 1, 0)
    assert [f.t for f in frames] == [levels[3], levels[6], levels[9], 0]
    # the picture changes between frames: what a live view needs
    for a, b in zip(frames, frames[1:]):
        assert not np.allclose(a.x, b.x, atol=1e-4)
        assert a.x.shape == a.x0.shape == (1, 8, 8, 3)


def test_each_frame_carries_the_models_estimate_of_x0():
    # the oracle predicts the one training image exactly, so every x̂_0 is that image
    schedule = make_schedule(DiffusionConfig(timesteps=50))
    x0 = one_image()
    frames = list(iter_sample(Oracle(schedule, x0), np.zeros(4), (1, 8, 8, 3), schedule=schedule,
                              steps=12, every=4, seed=2, clip_x0=False))
    assert len(frames) == 3
    for frame in frames:
        np.testing.assert_allclose(frame.x0, x0, atol=1e-4)
    assert np.abs(frames[0].x - x0).max() > 0.05  # the state itself is still noisy at the first frame


def test_streaming_reuses_the_compiled_loop_and_never_calls_the_model_per_step(schedule):
    oracle = Oracle(schedule, one_image())
    sample(oracle, np.zeros(4), (1, 8, 8, 3), schedule=schedule, sampler="ddpm", seed=0)
    traced, calls = tracing_count(oracle), oracle.calls
    for every in (1, 4, 20):
        frames = list(iter_sample(oracle, np.zeros(4), (1, 8, 8, 3), schedule=schedule, sampler="ddpm",
                                  seed=every, every=every))
        assert len(frames) == -(-20 // every)
    assert tracing_count(oracle) == traced and oracle.calls == calls


@pytest.mark.parametrize("kwargs, message", [
    (dict(every=0), "every: got 0; allowed: an integer >= 1"),
    (dict(every=2.5), "every: got 2.5"),
    (dict(sampler="euler"), "got 'euler'; allowed: ddim | ddpm"),
    (dict(steps=21), "allowed: 1 to the schedule's T = 20"),
])
def test_bad_arguments_are_refused_when_called_not_when_iterated(model, schedule, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        iter_sample(NeverCalled(model), np.zeros(4), (1, 8, 8, 3), schedule=schedule, **kwargs)


def test_iter_sample_is_exported_lazily():
    assert pokemon_diffusion.iter_sample is iter_sample
    assert "iter_sample" in dir(pokemon_diffusion)
