"""The evaluation maths against hand-computed values (pokemon_diffusion.evaluation.metrics)."""

import numpy as np
import pytest

from pokemon_diffusion.evaluation.conditioning import nearest_neighbour_accuracy, nearest_neighbours
from pokemon_diffusion.evaluation.metrics import (colour_distance, colour_statistics, fid_from_features,
                                                  frechet_distance, gaussian_stats, kernel_inception_distance,
                                                  mmd2_unbiased, polynomial_kernel)


def _rotation(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


# ------------------------------------------------------------------------------------------ FID

@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form(method):
    # ‖μ₁−μ₂‖² = 3² + 4² = 25; for diagonal Σ the trace term is Σ(√a − √b)² = (1−2)² + (2−3)² = 2
    d = frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([3.0, 4.0]), np.diag([4.0, 9.0]),
                         method=method)
    assert d == pytest.approx(27.0, abs=1e-9)


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_distance_with_a_rotated_covariance(method):
    # Σ₁ = I, Σ₂ = R diag(4, 9) Rᵀ: Tr(Σ₁ + Σ₂ − 2 Σ₂^½) = 2 + 13 − 2·(2 + 3) = 5
    rot = _rotation(0.7)
    sigma2 = rot @ np.diag([4.0, 9.0]) @ rot.T
    d = frechet_distance(np.ones(2), np.eye(2), np.ones(2), sigma2, method=method)
    assert d == pytest.approx(5.0, abs=1e-9)


def test_frechet_distance_methods_agree_on_non_commuting_and_singular_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    # rank-2 covariances in 6-d: sqrtm needs its eps·I guard, eigh clamps; both stay finite and agree
    low1, low2 = np.cov(rng.normal(size=(3, 6)), rowvar=False), np.cov(rng.normal(size=(3, 6)), rowvar=False)
    guarded = frechet_distance(mu1, low1, mu2, low2, method="sqrtm")
    assert np.isfinite(guarded)
    assert frechet_distance(mu1, low1, mu2, low2) == pytest.approx(guarded, rel=1e-4)


def test_fid_low_rank_route_equals_the_covariance_route():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(6, 10)), rng.normal(size=(9, 10)) * 2 + 1  # fewer samples than dims
    expected = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-8)


def test_fid_of_identical_sets_is_zero_even_when_covariance_is_singular():
    rng = np.random.default_rng(1)
    few = rng.normal(size=(5, 32))  # 5 samples in 32-d: rank-4 covariance
    assert fid_from_features(few, few) == pytest.approx(0.0, abs=1e-5)
    many = rng.normal(size=(200, 3))
    assert fid_from_features(many, many.copy()) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_one_dimensional_sets_is_mean_and_std_gap():
    x = np.array([[0.0], [2.0]])            # mean 1, unbiased std √2
    y = np.array([[3.0], [5.0], [7.0]])     # mean 5, unbiased std 2
    assert fid_from_features(x, y) == pytest.approx(16 + (np.sqrt(2) - 2) ** 2)


def test_fid_of_shifted_samples_is_close_to_the_shift():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 4))
    y = rng.normal(size=(4000, 4)) + np.array([1.0, 0.0, 0.0, 2.0])
    assert fid_from_features(x, y) == pytest.approx(5.0, abs=0.2)


def test_gaussian_stats_and_fid_reject_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        gaussian_stats(np.zeros(3))
    with pytest.raises(ValueError, match="sizes differ"):
        fid_from_features(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        fid_from_features(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="eigh | sqrtm"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="svd")


# ------------------------------------------------------------------------------------------ KID

def test_mmd2_unbiased_hand_computed():
    # k(a, b) = (ab + 1)³ in 1-d. xx off-diagonal: 2·k(0,1)/2 = 1; yy: 2·k(1,2)/2 = 27;
    # xy: k(0,1)+k(0,2)+k(1,1)+k(1,2) = 1+1+8+27 = 37 -> 2·37/4 = 18.5. MMD² = 1 + 27 − 18.5
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert mmd2_unbiased(x, y) == pytest.approx(9.5)
    assert polynomial_kernel(x, y)[1, 1] == pytest.approx(27.0)


def test_kid_near_zero_for_same_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = kernel_inception_distance(a, b, num_subsets=20, subset_size=100, seed=0)
    shifted = kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=100, seed=0)
    assert abs(same.mean) < 3 * same.std + 0.01
    assert shifted.mean > 10 * max(abs(same.mean), same.std)
    assert shifted.num_subsets == 20 and shifted.subset_size == 100


def test_kid_is_seeded_and_shrinks_subsets_to_the_data():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(12, 5)) + 0.5
    r1 = kernel_inception_distance(a, b, num_subsets=5, subset_size=1000, seed=7)
    r2 = kernel_inception_distance(a, b, num_subsets=5, subset_size=1000, seed=7)
    assert r1 == r2 and r1.subset_size == 12
    whole = kernel_inception_distance(b, b[::-1] + 1, num_subsets=9)
    assert whole.num_subsets == 1 and whole.std == 0.0
    assert whole.mean == pytest.approx(mmd2_unbiased(b, b + 1))
    assert set(r1.to_dict()) == {"mean", "std", "num_subsets", "subset_size"}
    with pytest.raises(ValueError, match="num_subsets"):
        kernel_inception_distance(a, b, num_subsets=0)


# ---------------------------------------------------------------------------- colour statistics

def _solid(rgb, n=2, size=4):
    return np.broadcast_to(np.array(rgb, np.uint8), (n, size, size, 3)).copy()


def test_colour_statistics_of_a_two_colour_image():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[0, 0] = 255  # top row white, bottom row black
    stats = colour_statistics(img, bins=2)
    assert stats.mean == pytest.approx([127.5] * 3) and stats.std == pytest.approx([127.5] * 3)
    assert stats.histogram.shape == (8,)
    assert stats.histogram[0] == 0.5 and stats.histogram[7] == 0.5  # cells (0,0,0) and (1,1,1)


def test_colour_distance_same_and_disjoint_colours():
    red, blue = _solid([255, 0, 0]), _solid([0, 0, 255], n=3)
    same = colour_distance(red, red.copy())
    assert same["moments_l2"] == 0.0 and same["histogram_tv"] == 0.0
    apart = colour_distance(red, blue)
    assert apart["mean_abs_diff"] == [255.0, 0.0, 255.0] and apart["std_abs_diff"] == [0.0, 0.0, 0.0]
    assert apart["moments_l2"] == pytest.approx(255 * np.sqrt(2))
    assert apart["histogram_tv"] == pytest.approx(1.0)
    # half the generated pixels in the right colour cell: TV = 0.5
    mixed = np.concatenate([red[:1], blue[:1]])
    assert colour_distance(mixed, red)["histogram_tv"] == pytest.approx(0.5)


def test_colour_distance_rejects_the_minus_one_to_one_scale():
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        colour_distance(np.full((1, 2, 2, 3), -1.0), _solid([0, 0, 0]))
    with pytest.raises(ValueError, match="RGB"):
        colour_statistics(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="bins"):
        colour_statistics(_solid([0, 0, 0]), bins=0)


# -------------------------------------------------------------------- nearest-neighbour accuracy

def test_nearest_neighbours_order_and_ties():
    refs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    out = nearest_neighbours(np.array([[0.9, 0.0], [4.0, 4.0]]), refs, k=3)
    assert out.tolist() == [[1, 2, 0], [3, 1, 2]]


def test_nearest_neighbour_accuracy_on_a_constructed_example():
    # four real images on a line; labels make images 2 and 3 two forms of the same Pokémon
    real = np.array([[0.0], [10.0], [20.0], [21.0]])
    types = [["Fire"], ["Water"], ["Grass", "Poison"], ["Grass"]]
    labels = ["charmander", "squirtle", "bulbasaur", "bulbasaur"]
    gen = np.array([[1.0],    # prompted 0: nearest 0               -> top-1 hit, types exact
                    [19.0],   # prompted 1: nearest 2, then 3, then 1 -> miss top-1, hit top-3
                    [20.9],   # prompted 2: nearest 3 (same label)  -> hit; types overlap, not exact
                    [9.0]])   # prompted 3: nearest 1, 2nd 0, 3rd 2 -> hit in top-3 by label
    prompt = [0, 1, 2, 3]
    out = nearest_neighbour_accuracy(gen, real, prompt, types, real_labels=labels, k=3)
    assert out["top1"] == pytest.approx(2 / 4)
    assert out["top_k"] == pytest.approx(4 / 4) and out["k"] == 3
    assert out["type_exact"] == pytest.approx(1 / 4)
    assert out["type_overlap"] == pytest.approx(2 / 4)
    assert out["neighbours"].tolist() == [[0, 1, 2], [2, 3, 1], [3, 2, 1], [1, 0, 2]]
    chance = out["chance"]
    # P(uniform image has the prompted label): (1/4 + 1/4 + 2/4 + 2/4) / 4
    assert chance["top1"] == pytest.approx(0.375)
    # top-3 of 4 without replacement: miss prob = (R−c)/R·… -> 1/4 for c=1 and 0 for c=2
    assert chance["top_k"] == pytest.approx((0.75 + 0.75 + 1 + 1) / 4)
    assert chance["type_exact"] == pytest.approx(1 / 4)
    assert chance["type_overlap"] == pytest.approx((1 + 1 + 2 + 2) / 16)
    # without labels, only the very image counts
    plain = nearest_neighbour_accuracy(gen, real, prompt, types, k=1)
    assert plain["top1"] == pytest.approx(1 / 4) and plain["top_k"] == plain["top1"]


def test_nearest_neighbour_accuracy_rejects_mismatches():
    real, gen = np.zeros((3, 2)), np.zeros((2, 2))
    types = [[], [], []]
    with pytest.raises(ValueError, match="one per sample"):
        nearest_neighbour_accuracy(gen, real, [0], types)
    with pytest.raises(ValueError, match="allowed: 0 to 2"):
        nearest_neighbour_accuracy(gen, real, [0, 3], types)
    with pytest.raises(ValueError, match="real_types"):
        nearest_neighbour_accuracy(gen, real, [0, 1], types[:2])
