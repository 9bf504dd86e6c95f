"""The sampler maths (oracle), the compiled loop (no retrace, bounded intermediates), seeds,
guidance algebra and the refusals. Tiny shapes and short schedules keep this file fast."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from pokemon_diffusion.config import DiffusionConfig
from pokemon_diffusion.config import SAMPLERS
from pokemon_diffusion.diffusion.compiled import tracing_count
from pokemon_diffusion.diffusion.samplers import SampleResult, sample, sample_ddim, sample_ddpm
from pokemon_diffusion.diffusion.schedule import make_schedule, q_sample
from pokemon_diffusion.diffusion.steps import apply_guidance, ddim_step, ddim_timesteps, ddpm_step
from pokemon_diffusion.errors import ConfigError, EncoderError

# The oracle's x0 comes back to within float32 rounding; 1e-5 leaves room for the
# 1/√ᾱ_t amplification at the noisiest step without hiding a wrong coefficient (those err by >1e-3).
ORACLE_ATOL = 1e-5


class Oracle:
    """The optimal denoiser of a one-image dataset x0: ε = (x_t − √ᾱ_t·x0)/√(1−ᾱ_t) (or its v).

    Keras-callable (``model([x, t, emb], training=...)``) and counts its Python calls, which in
    a compiled loop happen only while tracing.
    """

    def __init__(self, schedule, x0):
        self.abar = tf.constant(schedule.alphas_cumprod)
        self.x0 = tf.constant(x0)
        self.prediction = schedule.prediction
        self.calls = 0

    def __call__(self, inputs, training=False):
        self.calls += 1
        x, t, _ = inputs
        abar = tf.reshape(tf.gather(self.abar, t), [-1, 1, 1, 1])
        eps = (x - tf.sqrt(abar) * self.x0) / tf.sqrt(1.0 - abar)
        if self.prediction == "v":
            return tf.sqrt(abar) * eps - tf.sqrt(1.0 - abar) * self.x0
        return eps


def tiny_model(size=8, channels=3, text_dim=4, timesteps=20, seed=0):
    """A small 3-input Keras model whose output depends on x, t and the text embedding."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((size, size, channels))
    t = keras.Input((), dtype="int32")
    e = keras.Input((text_dim,))
    cond = keras.layers.Concatenate()([keras.layers.Embedding(timesteps, 4)(t), e])
    shift = keras.layers.Reshape((1, 1, channels))(keras.layers.Dense(channels)(cond))
    out = keras.layers.Add()([keras.layers.Conv2D(channels, 3, padding="same")(x), shift])
    return keras.Model([x, t, e], out)


class Guided:
    """``model`` with guidance folded in: one call returns out_null + w·(out_cond − out_null)."""

    def __init__(self, model, w):
        self.model, self.w = model, w

    def __call__(self, inputs, training=False):
        x, t, e = inputs
        out_cond = self.model([x, t, e], training=training)
        out_null = self.model([x, t, tf.zeros_like(e)], training=training)
        return out_null + self.w * (out_cond - out_null)


@pytest.fixture(scope="module")
def small_schedule():
    return make_schedule(DiffusionConfig(timesteps=20, prediction="epsilon"))  # the step tests feed ε


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def one_image(size=8, seed=0):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, (1, size, size, 3)).astype(np.float32)


# ---- oracle ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_ddpm_driven_by_the_oracle_returns_x0(prediction, schedule_name):
    schedule = make_schedule(DiffusionConfig(timesteps=1000, schedule=schedule_name, prediction=prediction))
    x0 = one_image()
    images, steps = sample_ddpm(Oracle(schedule, x0), np.zeros(4), (2, 8, 8, 3), schedule=schedule,
                                seed=3, clip_x0=False)
    np.testing.assert_allclose(images, np.repeat(x0, 2, 0), atol=ORACLE_ATOL)
    assert np.std(steps[0]) > 0.9  # it started from noise, not from x0


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("steps, eta", [(50, 0.0), (7, 0.0), (25, 1.0), (1000, 0.5)])
def test_ddim_driven_by_the_oracle_returns_x0(prediction, steps, eta):
    schedule = make_schedule(DiffusionConfig(timesteps=1000, prediction=prediction))
    x0 = one_image(seed=1)
    images, _ = sample_ddim(Oracle(schedule, x0), np.zeros(4), (2, 8, 8, 3), schedule=schedule,
                            steps=steps, eta=eta, seed=4, clip_x0=True)
    np.testing.assert_allclose(images, np.repeat(x0, 2, 0), atol=ORACLE_ATOL)


def test_ddim_with_eta_one_on_every_step_is_the_ddpm_step(small_schedule):
    x0 = one_image()
    t = tf.constant([12])
    noise = tf.random.stateless_normal(x0.shape, seed=[0, 1])
    x_t = q_sample(small_schedule, x0, t, noise)
    output = tf.random.stateless_normal(x0.shape, seed=[0, 2])  # any network output
    z = tf.random.stateless_normal(x0.shape, seed=[0, 3])
    ddpm = ddpm_step(small_schedule, x_t, t, output, z, clip_x0=False)
    ddim = ddim_step(small_schedule, x_t, t, t - 1, output, z, eta=1.0, clip_x0=False)
    np.testing.assert_allclose(ddim.prev_sample, ddpm.prev_sample, atol=1e-5)
    np.testing.assert_allclose(ddim.pred_original_sample, ddpm.pred_original_sample, atol=1e-6)


def test_ddpm_step_is_eq_11_without_clipping(small_schedule):
    x_t = tf.random.stateless_normal([1, 4, 4, 3], seed=[1, 1])
    eps = tf.random.stateless_normal([1, 4, 4, 3], seed=[1, 2])
    z = tf.random.stateless_normal([1, 4, 4, 3], seed=[1, 3])
    t = 9
    beta, abar = small_schedule.betas[t], small_schedule.alphas_cumprod[t]
    expected = ((x_t - beta / np.sqrt(1 - abar) * eps) / np.sqrt(1 - beta)
                + np.sqrt(small_schedule.posterior_variance[t]) * z)
    got = ddpm_step(small_schedule, x_t, tf.constant([t]), eps, z, clip_x0=False).prev_sample
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_clip_x0_keeps_the_estimate_in_range(small_schedule):
    x_t = tf.fill([1, 4, 4, 3], 3.0)
    step = ddim_step(small_schedule, x_t, tf.constant([5]), tf.constant([2]), tf.fill([1, 4, 4, 3], -5.0),
                     tf.zeros([1, 4, 4, 3]), clip_x0=True)
    assert float(tf.reduce_max(tf.abs(step.pred_original_sample))) == pytest.approx(1.0)


def test_ddim_timesteps_start_at_pure_noise_and_end_at_zero():
    assert ddim_timesteps(1000, 5).tolist() == [999, 749, 500, 250, 0]
    assert ddim_timesteps(1000, 1).tolist() == [999]
    assert len(set(ddim_timesteps(20, 20))) == 20
    with pytest.raises(ConfigError, match="got 21; allowed: 1 to the schedule's T = 20"):
        ddim_timesteps(20, 21)


# ---- the compiled loop ------------------------------------------------------------------------

def test_second_call_with_the_same_shapes_does_not_retrace(model, small_schedule):
    emb = np.ones(4, np.float32)
    sample(model, emb, (2, 8, 8, 3), schedule=small_schedule, steps=5, seed=0, guidance_scale=2.0)
    traced = tracing_count(model)
    # other seed, guidance weight, eta, step count and intermediates: all tensors, no retrace
    sample(model, emb * 2, (2, 8, 8, 3), schedule=small_schedule, steps=9, eta=0.3, seed=1,
           guidance_scale=5.0, num_intermediates=4, progress=True)
    assert tracing_count(model) == traced


def test_the_model_is_traced_not_called_per_step():
    schedule = make_schedule(DiffusionConfig(timesteps=200))
    oracle = Oracle(schedule, one_image())
    sample_ddpm(oracle, np.zeros(4), (1, 8, 8, 3), schedule=schedule, seed=0)
    assert oracle.calls <= 2, "the loop called the model from Python on every step"


def test_a_cached_loop_does_not_keep_the_model_alive(small_schedule):
    oracle = Oracle(small_schedule, one_image())
    sample(oracle, np.zeros(4), (1, 8, 8, 3), schedule=small_schedule, steps=3)
    ref = weakref.ref(oracle)
    del oracle
    gc.collect()
    assert ref() is None


def test_shapes_and_bounded_evenly_spaced_intermediates(model, small_schedule):
    result = sample(model, np.ones((2, 4)), (4, 8, 8, 3), schedule=small_schedule, sampler="ddpm",
                    num_intermediates=5, seed=0)
    assert isinstance(result, SampleResult)
    assert result.images.shape == (4, 8, 8, 3) and result.images.dtype == np.float32
    assert result.intermediates.shape == (5, 4, 8, 8, 3)  # K states, never all T + 1
    assert result.timesteps.tolist() == [20, 15, 10, 5, 0]
    assert result.images.min() >= -1 and result.images.max() <= 1
    np.testing.assert_array_equal(result.intermediates[-1], result.images)
    # the first kept state is the starting noise x_T of this seed
    key = tf.random.experimental.stateless_fold_in(tf.constant([0, 0], tf.int64), 0)
    np.testing.assert_array_equal(result.intermediates[0], tf.random.stateless_normal((4, 8, 8, 3), key))


def test_ddim_intermediates_are_labelled_with_their_level(model, small_schedule):
    result = sample(model, np.ones(4), (1, 8, 8, 3), schedule=small_schedule, steps=4, num_intermediates=10)
    # a 4-step run has 5 states: all kept, labelled x_T, the levels DDIM visits, then x_0
    assert result.timesteps.tolist() == [20, 14, 7, 1, 0]
    assert result.intermediates.shape[0] == 5
    assert result.steps == 4 and result.sampler == "ddim"


def test_same_seed_same_images_other_seed_other_images(model, small_schedule):
    kwargs = dict(schedule=small_schedule, sampler="ddpm", guidance_scale=2.5)
    a = sample(model, np.ones(4), (2, 8, 8, 3), seed=7, **kwargs)
    b = sample(model, np.ones(4), (2, 8, 8, 3), seed=7, progress=True, **kwargs)  # other segmentation
    c = sample(model, np.ones(4), (2, 8, 8, 3), seed=8, **kwargs)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.intermediates, b.intermediates)
    assert not np.allclose(a.images, c.images)


def test_no_seed_draws_one_that_reproduces_the_run(model, small_schedule):
    first = sample(model, np.ones(4), (1, 8, 8, 3), schedule=small_schedule, steps=3, eta=1.0)
    again = sample(model, np.ones(4), (1, 8, 8, 3), schedule=small_schedule, steps=3, eta=1.0,
                   seed=first.seed)
    np.testing.assert_array_equal(first.images, again.images)


def test_each_prompt_row_conditions_its_own_images(model, small_schedule):
    emb = np.stack([np.zeros(4), np.full(4, 3.0)]).astype(np.float32)
    both = sample(model, emb, (4, 8, 8, 3), schedule=small_schedule, steps=4, seed=0, guidance_scale=2.0)
    first = sample(model, emb[0], (4, 8, 8, 3), schedule=small_schedule, steps=4, seed=0, guidance_scale=2.0)
    # prompt-major: images 0, 1 use row 0 and share the noise of images 0, 1 in the second run
    np.testing.assert_allclose(both.images[:2], first.images[:2], atol=1e-6)
    assert not np.allclose(both.images[2:], first.images[2:], atol=1e-3)


# ---- guidance ---------------------------------------------------------------------------------

def test_apply_guidance_algebra():
    cond, null = tf.constant([2.0, -1.0]), tf.constant([1.0, 1.0])
    np.testing.assert_allclose(apply_guidance(cond, null, 1.0), cond)
    np.testing.assert_allclose(apply_guidance(cond, null, 0.0), null)
    np.testing.assert_allclose(apply_guidance(cond, null, 3.0), [4.0, -5.0])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_batched_guidance_equals_the_guided_formula(model, small_schedule, sampler):
    emb = np.linspace(-1, 1, 4).astype(np.float32)
    kwargs = dict(schedule=small_schedule, sampler=sampler, seed=11, clip_x0=False)
    if sampler == "ddim":
        kwargs.update(steps=6, eta=0.5)
    batched = sample(model, emb, (2, 8, 8, 3), guidance_scale=3.0, **kwargs)
    reference = sample(Guided(model, 3.0), emb, (2, 8, 8, 3), guidance_scale=1.0, **kwargs)
    np.testing.assert_allclose(batched.images, reference.images, atol=1e-4)


def test_guidance_one_is_conditional_and_zero_is_unconditional(model, small_schedule):
    emb = np.full(4, 2.0, np.float32)
    kwargs = dict(schedule=small_schedule, steps=5, seed=2, clip_x0=False)
    w0 = sample(model, emb, (1, 8, 8, 3), guidance_scale=0.0, **kwargs)
    null = sample(model, np.zeros(4), (1, 8, 8, 3), guidance_scale=1.0, **kwargs)
    w1 = sample(model, emb, (1, 8, 8, 3), guidance_scale=1.0, **kwargs)
    cond_only = sample(Guided(model, 1.0), emb, (1, 8, 8, 3), guidance_scale=1.0, **kwargs)
    np.testing.assert_allclose(w0.images, null.images, atol=1e-6)
    np.testing.assert_allclose(w1.images, cond_only.images, atol=1e-5)
    assert not np.allclose(w0.images, w1.images, atol=1e-3)


# ---- negative prompt: its embedding takes the null embedding's place -------------------------

class Recorder:
    """``model`` that records every text embedding it is run with (in the compiled loop too)."""

    def __init__(self, model):
        self.model, self.inputs, self.seen = model, model.inputs, []

    def _keep(self, e):
        self.seen.append(e.numpy())
        return e

    def __call__(self, inputs, training=False):
        x, t, e = inputs
        e = tf.py_function(self._keep, [e], tf.float32)
        return self.model([x, t, tf.ensure_shape(e, [None, 4])], training=training)


class NegativeGuided(Guided):
    """``out_neg + w·(out_cond − out_neg)`` in one call: the formula with the negative embedding."""

    def __init__(self, model, w, negative):
        super().__init__(model, w)
        self.negative = tf.constant(negative, tf.float32)

    def __call__(self, inputs, training=False):
        x, t, e = inputs
        out_cond = self.model([x, t, e], training=training)
        out_neg = self.model([x, t, tf.zeros_like(e) + self.negative], training=training)
        return out_neg + self.w * (out_cond - out_neg)


def test_a_zero_negative_embedding_is_the_null_condition(model, small_schedule):
    emb = np.linspace(-1, 1, 4).astype(np.float32)
    kwargs = dict(schedule=small_schedule, steps=4, seed=5, guidance_scale=3.0)
    today = sample(model, emb, (2, 8, 8, 3), **kwargs)
    zeros = sample(model, emb, (2, 8, 8, 3), negative_emb=np.zeros(4), **kwargs)
    np.testing.assert_array_equal(zeros.images, today.images)


def test_the_split_guided_pass_gives_the_batched_passes_images(model, small_schedule, monkeypatch):
    from pokemon_diffusion.diffusion import compiled

    emb, negative = np.linspace(-1, 1, 4).astype(np.float32), np.full(4, 0.5, np.float32)
    kwargs = dict(schedule=small_schedule, steps=3, seed=5, guidance_scale=3.0, negative_emb=negative)
    results = {}
    for split in (False, True):
        monkeypatch.setattr(compiled, "split_guided_pass", lambda split=split, **kw: split)
        recorder = Recorder(model)
        results[split] = (sample(recorder, emb, (2, 8, 8, 3), **kwargs).images, recorder.seen)
    np.testing.assert_allclose(results[True][0], results[False][0], atol=1e-5)
    split_seen = results[True][1]
    assert len(split_seen) == 6  # two passes per step (run side by side: in either order)
    assert sorted(tuple(np.asarray(s)[0]) for s in split_seen) == sorted([tuple(emb)] * 3 + [tuple(negative)] * 3)
    assert all(np.asarray(s).shape == (2, 4) for s in split_seen)


def test_the_unconditional_branch_receives_the_negative_embedding(model, small_schedule, one_pass):
    emb, negative = np.linspace(-1, 1, 4).astype(np.float32), np.full(4, 0.5, np.float32)
    recorder = Recorder(model)
    kwargs = dict(schedule=small_schedule, steps=3, seed=5, clip_x0=False)
    guided = sample(recorder, emb, (2, 8, 8, 3), guidance_scale=3.0, negative_emb=negative, **kwargs)
    assert len(recorder.seen) == 3  # one batched pass per step: [cond; negative]
    for seen in recorder.seen:
        np.testing.assert_array_equal(seen, np.stack([emb, emb, negative, negative]))
    reference = sample(NegativeGuided(model, 3.0, negative), emb, (2, 8, 8, 3), guidance_scale=1.0, **kwargs)
    np.testing.assert_allclose(guided.images, reference.images, atol=1e-4)
    today = sample(model, emb, (2, 8, 8, 3), guidance_scale=3.0, **kwargs)
    assert not np.allclose(guided.images, today.images, atol=1e-3)


def test_guidance_one_ignores_the_negative_and_zero_is_the_negative_alone(model, small_schedule):
    emb, negative = np.linspace(-1, 1, 4).astype(np.float32), np.full(4, 0.5, np.float32)
    kwargs = dict(schedule=small_schedule, steps=3, seed=5)
    w1 = sample(model, emb, (1, 8, 8, 3), guidance_scale=1.0, negative_emb=negative, **kwargs)
    np.testing.assert_array_equal(w1.images, sample(model, emb, (1, 8, 8, 3), guidance_scale=1.0, **kwargs).images)
    w0 = sample(model, emb, (1, 8, 8, 3), guidance_scale=0.0, negative_emb=negative, **kwargs)
    np.testing.assert_array_equal(w0.images, sample(model, negative, (1, 8, 8, 3), guidance_scale=1.0, **kwargs).images)


@pytest.mark.parametrize("negative, error, message", [
    (np.zeros(5), EncoderError, "has 5 values but the model expects 4"),
    (np.zeros((3, 4)), ConfigError, "negative_emb: got 3 embeddings for a batch of 2"),
    (np.full(4, np.inf), ConfigError, "negative_emb: got NaN or infinite"),
])
def test_a_bad_negative_embedding_is_refused_before_any_compute(model, small_schedule, negative, error, message):
    with pytest.raises(error, match=message):
        sample(NeverCalled(model), np.zeros(4), (2, 8, 8, 3), schedule=small_schedule, negative_emb=negative)


# ---- refusals, before any compute -------------------------------------------------------------

class NeverCalled:
    """A model stand-in that fails the test if sampling gets as far as calling it."""

    def __init__(self, model):
        self.inputs = model.inputs

    def __call__(self, *args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("the model was called before the arguments were checked")


def test_wrong_text_dim_is_refused_naming_both_sizes(model, small_schedule):
    with pytest.raises(EncoderError, match="has 5 values but the model expects 4"):
        sample(NeverCalled(model), np.zeros(5), (1, 8, 8, 3), schedule=small_schedule)
    with pytest.raises(EncoderError, match="has 384 values but the model expects 4"):
        sample_ddpm(NeverCalled(model), np.zeros((2, 384)), (2, 8, 8, 3), schedule=small_schedule)


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape=(1, 16, 16, 3)), "got height 16; the model takes images of 8x8x3"),
    (dict(shape=(1, 8, 8)), "allowed: 4 positive sizes"),
    (dict(text_emb=np.zeros((3, 4)), shape=(4, 8, 8, 3)), "got 3 embeddings for a batch of 4"),
    (dict(text_emb=np.zeros((1, 1, 4))), r"allowed: \(dim,\) or \(n, dim\)"),
    (dict(text_emb=np.full(4, np.nan)), "NaN or infinite"),
    (dict(sampler="euler"), "got 'euler'; allowed: ddim | ddpm"),
    (dict(steps=21), "allowed: 1 to the schedule's T = 20"),
    (dict(steps=2.5), "got 2.5; allowed: 1 to the schedule's T = 20"),
    (dict(sampler="ddpm", steps=5), "ddpm runs all T = 20 steps"),
    (dict(sampler="ddpm", eta=0.5), "eta applies to ddim only"),
    (dict(eta=1.5), "got 1.5; allowed: 0 to 1"),
    (dict(num_intermediates=1), "got 1; allowed: an integer >= 2"),
    (dict(seed=-1), "allowed: an integer from 0 to 2147483647"),
    (dict(guidance_scale=float("inf")), "allowed: a finite number"),
])
def test_bad_arguments_are_refused_before_any_compute(model, small_schedule, kwargs, message):
    args = dict(text_emb=np.zeros(4), shape=(1, 8, 8, 3), schedule=small_schedule)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message):
        sample(NeverCalled(model), args.pop("text_emb"), args.pop("shape"), **args)


def test_config_errors_are_value_errors():
    assert issubclass(ConfigError, ValueError)


def test_timesteps_builds_the_default_schedule_when_none_is_given():
    schedule = make_schedule(DiffusionConfig(timesteps=30))
    x0 = one_image()
    oracle = Oracle(schedule, x0)
    images, steps = sample_ddpm(oracle, np.zeros(4), (1, 8, 8, 3), 30, seed=0, num_intermediates=31)
    assert steps.shape[0] == 31  # all 30 steps + the noise: the schedule had T = 30
    np.testing.assert_allclose(images, x0, atol=ORACLE_ATOL)
    assert SAMPLERS == ("ddim", "ddpm")


def test_a_schedule_wins_over_timesteps_and_an_odd_value_is_flagged(small_schedule, caplog):
    oracle = Oracle(small_schedule, one_image())
    _, steps = sample_ddpm(oracle, np.zeros(4), (1, 8, 8, 3), schedule=small_schedule, seed=0,
                           num_intermediates=100)
    assert steps.shape[0] == 21 and not caplog.records  # T = 20 from the schedule, default 1000 silent
    sample_ddim(oracle, np.zeros(4), (1, 8, 8, 3), 50, schedule=small_schedule, steps=2, seed=0)
    assert "timesteps=50 ignored: the schedule given has T = 20" in caplog.text
