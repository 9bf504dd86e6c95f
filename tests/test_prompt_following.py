"""Conditioning accuracy per split and colour prompt-following: pure NumPy, no model."""

import numpy as np
import pytest

from pokemon_diffusion.collection.captions import BASIC_COLOURS
from pokemon_diffusion.evaluation.conditioning import choose_split_prompts, split_accuracy
from pokemon_diffusion.evaluation.prompt_following import colour_following, colour_prompts

RGB = {"red": (220, 30, 30), "blue": (40, 90, 220), "yellow": (250, 220, 40), "green": (40, 170, 60)}


def _blob(colour, size=16):
    image = np.full((size, size, 3), 255, np.uint8)
    image[4:12, 4:12] = RGB[colour]
    return image


def test_split_prompts_are_half_held_out_seeded_and_sorted():
    train, held = np.arange(0, 90), np.arange(90, 100)
    index, mask = choose_split_prompts(train, held, 8, seed=1)
    assert len(index) == 8 and mask.sum() == 4 and np.all(np.diff(index) >= 0)
    assert np.array_equal(mask, index >= 90) and len(set(index[mask].tolist())) == 4
    again = choose_split_prompts(train, held, 8, seed=1)
    assert np.array_equal(again[0], index) and not np.array_equal(choose_split_prompts(train, held, 8, 2)[0], index)
    # more than a split holds: drawn again; no held-out split: all from training
    index, mask = choose_split_prompts(train, held[:2], 10, seed=0)
    assert mask.sum() == 5 and set(index[mask].tolist()) == {90, 91}
    index, mask = choose_split_prompts(train, [], 6, seed=0)
    assert len(index) == 6 and not mask.any()
    with pytest.raises(ValueError, match="no entries"):
        choose_split_prompts([], [], 2, 0)


def test_split_accuracy_scores_each_split_on_its_own():
    real = np.eye(6)  # six real images, one feature each
    prompt = np.array([0, 1, 4, 5])
    held = np.array([False, False, True, True])
    generated = real[[0, 1, 2, 3]]  # training prompts drawn right, held-out ones drawn as someone else
    types = [["Fire"], ["Water"], ["Fire"], ["Grass"], ["Fire"], ["Grass"]]
    out = split_accuracy(generated, real, prompt, held, types, real_labels=list("abcdef"), k=1)
    assert out["train"]["top1"] == 1.0 and out["heldout"]["top1"] == 0.0
    assert out["heldout"]["type_exact"] == 1.0  # 2 -> Fire for 4 (Fire), 3 -> Grass for 5 (Grass)
    assert out["train"]["num_samples"] == out["heldout"]["num_samples"] == 2
    assert out["train"]["chance"]["top1"] == pytest.approx(1 / 6)
    assert split_accuracy(generated, real, prompt, [False] * 4, types, k=1)["heldout"] == {"num_samples": 0}


def test_colour_prompts():
    prompts = colour_prompts(seeds=2)
    assert len(prompts) == 22 and prompts[:3] == ["a black Pokémon", "a black Pokémon", "a white Pokémon"]
    assert {p.split()[1] for p in prompts} == set(BASIC_COLOURS)
    with pytest.raises(ValueError, match="allowed: colours from black"):
        colour_prompts(["teal"])
    with pytest.raises(ValueError, match="seeds >= 1"):
        colour_prompts(seeds=0)


def test_colour_following_scores_and_its_chance_levels():
    prompted = ["red", "red", "blue", "blue"]
    right = np.stack([_blob(c) for c in prompted])
    out = colour_following(right, prompted)
    assert out["accuracy"] == out["accuracy_top2"] == 1.0 and out["num_samples"] == 4
    assert out["chance_uniform"] == 0.5 and out["chance_shuffled"] == 0.5
    assert out["per_colour"] == {"red": 1.0, "blue": 1.0} and out["drawn"]["blue"] == {"blue": 2}
    # a model that draws red whatever it is asked: half right, and exactly at the shuffled chance
    all_red = np.stack([_blob("red")] * 4)
    out = colour_following(all_red, prompted)
    assert out["accuracy"] == 0.5 and out["chance_shuffled"] == 0.5 and out["per_colour"]["blue"] == 0.0
    assert out["drawn"]["blue"] == {"red": 2}
    # two colours: the second one counts for accuracy_top2 only
    two = np.stack([_blob("yellow")] * 2)
    two[:, 4:12, 4:9] = RGB["green"]
    out = colour_following(two, ["yellow", "green"])
    assert out["accuracy"] == 0.5 and out["accuracy_top2"] == 1.0 and out["chance_shuffled_top2"] == 1.0
    with pytest.raises(ValueError, match="allowed: \\(N, H, W, 3\\)"):
        colour_following(right, ["red"])
