"""Per-prompt variety: pairwise RMS distances between a prompt's seeds, on the scale of two real images."""

import numpy as np
import pytest

from pokemon_diffusion.evaluation.variety import (real_pair_distance, rms_distance, variety_report,
                                                  within_prompt_distances)

BLACK = np.zeros((4, 4, 3), np.uint8)
WHITE = np.full((4, 4, 3), 255, np.uint8)
HALF = np.zeros((4, 4, 3), np.uint8)
HALF[:2] = 255  # half the pixels white


def test_rms_distance_is_in_units_of_the_full_range():
    assert rms_distance(BLACK, BLACK) == 0.0
    assert rms_distance(BLACK, WHITE) == pytest.approx(1.0)
    assert rms_distance(BLACK, HALF) == pytest.approx(np.sqrt(0.5))


def test_within_prompt_distances_average_every_pair_of_each_group():
    images = np.stack([BLACK, BLACK, BLACK,  # one prompt, the same picture for every seed
                       BLACK, WHITE, HALF])  # another: pairs 1.0, √0.5, √0.5
    got = within_prompt_distances(images, seeds=3)
    np.testing.assert_allclose(got, [0.0, (1.0 + 2 * np.sqrt(0.5)) / 3])


@pytest.mark.parametrize("count, seeds", [(6, 1), (6, 4), (0, 2)])
def test_within_prompt_distances_refuses_groups_that_do_not_fit(count, seeds):
    with pytest.raises(ValueError, match="allowed: 2 or more, dividing the count"):
        within_prompt_distances(np.zeros((count, 4, 4, 3), np.uint8), seeds)


def test_real_pairs_are_never_an_image_with_itself_and_are_seeded():
    two = np.stack([BLACK, WHITE])
    assert real_pair_distance(two, pairs=50, seed=3) == pytest.approx(1.0)  # only the one distinct pair
    many = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3)).astype(np.uint8)
    assert real_pair_distance(many, seed=1) == real_pair_distance(many, seed=1)
    assert real_pair_distance(many, pairs=5, seed=1) != real_pair_distance(many, pairs=5, seed=2)  # the seed is used
    with pytest.raises(ValueError, match="2 or more"):
        real_pair_distance(many[:1])


def test_report_ratio_is_zero_for_a_model_that_ignores_the_noise():
    real = np.stack([BLACK, WHITE, HALF])
    same = variety_report(np.stack([HALF] * 4), 2, real)
    assert same["within_prompt"] == 0.0 and same["ratio"] == 0.0 and same["num_prompts"] == 2 and same["seeds"] == 2
    varied = variety_report(np.stack([BLACK, WHITE, WHITE, BLACK]), 2, real)
    assert varied["per_prompt"] == [1.0, 1.0] and varied["ratio"] == pytest.approx(1.0 / varied["real_pairs"])
