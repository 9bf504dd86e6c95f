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

@pytest.fixture(scope="module")
def small_random_inception():
    # 75x75 is InceptionV3's smallest input: same code path as 299, a fraction of the cost
    return InceptionFeatures.load("random", input_size=75, batch_size=2)


def test_random_inception_features_are_reproducible_and_feed_fid_and_kid(small_random_inception):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, 16, 16, 3)).astype(np.float32)
    a = small_random_inception(images)
    assert a.shape == (3, 2048) and np.all(np.isfinite(a)) and a.std() > 0
    # the random kernels come from a seeded RNG: another seed changes them, the same seed restores them
    feats.seed_random_kernels(small_random_inception.model, seed=1)
    assert not np.allclose(small_random_inception(images), a, atol=1e-3)
    feats.seed_random_kernels(small_random_inception.model, seed=0)
    assert np.allclose(small_random_inception(images), a, atol=1e-5)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(a, small_random_inception(-images)) > 0
    assert np.isfinite(kernel_inception_distance(a, small_random_inception(-images)).mean)
    assert "random weights" in small_random_inception.name


@pytest.mark.slow
def test_random_inception_at_299():
    extractor = InceptionFeatures.load("random")
    out = extractor(np.zeros((2, 32, 32, 3), np.float32))
    assert out.shape == (2, 2048) and extractor.input_size == 299
    assert np.allclose(out[0], out[1])
