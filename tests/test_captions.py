"""Visual captions: the figure mask, basic colour names, size words and the caption template."""

import numpy as np
import pytest

from pokemon_diffusion.collection.captions import (BASIC_COLOURS, colour_names, colour_shares, figure_mask,
                                                   image_colours, main_colours, make_caption, size_word)
from pokemon_diffusion.collection.images import prepare_image
from pokemon_diffusion.collection.pokedex import pokedex_records
from pokemon_diffusion.config import DataConfig
from pokemon_diffusion.errors import ConfigError


@pytest.fixture(scope="module")
def artwork():
    """The packaged official artwork of a national number, as the dataset stores it (RGB on white, square)."""
    records = {r.dex: r for r in pokedex_records()}
    return lambda dex: prepare_image(records[dex].read_image())


@pytest.mark.parametrize("dex, name, allowed_first", [
    (25, "Pikachu", {"yellow"}), (7, "Squirtle", {"blue"}), (1, "Bulbasaur", {"green", "blue"}),
    (4, "Charmander", {"orange"}), (94, "Gengar", {"purple"}), (39, "Jigglypuff", {"pink"}),
])
def test_main_colour_of_real_artworks(artwork, dex, name, allowed_first):
    colours = image_colours(artwork(dex))
    assert colours[0] in allowed_first, (name, colours)
    assert 1 <= len(colours) <= 2 and set(colours) <= set(BASIC_COLOURS)


def test_pokedex_heights_give_size_words():
    records = {r.dex: r for r in pokedex_records()}
    assert records[25].height_m == pytest.approx(0.4) and size_word(records[25].height_m) == "small"
    assert size_word(records[6].height_m) == "large"      # Charizard 1.7 m
    assert size_word(records[95].height_m) == "huge"      # Onix 8.8 m
    assert size_word(records[50].height_m) == "tiny"      # Diglett 0.2 m
    assert size_word(None) == "" and size_word(0.0) == ""


@pytest.mark.parametrize("rgb, name", [
    ((0, 0, 0), "black"), ((255, 255, 255), "white"), ((128, 128, 128), "grey"), ((220, 30, 30), "red"),
    ((245, 140, 30), "orange"), ((250, 220, 40), "yellow"), ((40, 170, 60), "green"), ((40, 90, 220), "blue"),
    ((130, 50, 170), "purple"), ((250, 160, 200), "pink"), ((120, 70, 30), "brown"), ((245, 205, 205), "pink"),
    ((112, 112, 150), "purple"), ((40, 40, 40), "black"),
])
def test_colour_names_of_typical_pixels(rgb, name):
    assert BASIC_COLOURS[colour_names(np.array([rgb], np.uint8))[0]] == name


def test_background_is_the_white_touching_the_border_and_white_figures_stay():
    image = np.full((20, 20, 3), 255, np.uint8)
    image[4:16, 4:16] = (20, 20, 20)     # a dark outline ...
    image[6:14, 6:14] = 255              # ... around a white body (Togepi-like)
    mask = figure_mask(image)
    assert not mask[0, 0] and not mask[2, 10] and mask[10, 10] and mask[4, 4]
    assert mask.sum() == 12 * 12
    shares = colour_shares(image)
    assert shares["white"] == pytest.approx(64 / 144) and main_colours(image) == ["black", "white"]
    assert main_colours(np.full((8, 8, 3), 255, np.uint8)) == ["white"]  # nothing but white: a white thing


def test_second_colour_needs_a_real_share():
    image = np.full((20, 20, 3), 255, np.uint8)
    image[2:18, 2:18] = (220, 30, 30)
    image[2:18, 2:8] = (40, 90, 220)     # 6 of 16 columns: 37.5 % blue
    assert main_colours(image) == ["red", "blue"]
    image[2:18, 2:4] = (220, 30, 30)     # 4 of 16 columns: 25 % blue, a third of the red
    assert main_colours(image) == ["red"]
    assert main_colours(image, max_colours=1) == ["red"]
    with pytest.raises(ValueError, match="uint8"):
        main_colours(image.astype(np.float32))


def test_caption_template_fills_and_drops_empty_parts():
    assert make_caption("Pikachu", ["Electric"], colours=["yellow"], size="small") == \
        "Pikachu, a small yellow Electric-type Pokémon"
    assert make_caption("Charmander", ["Fire"], colours=["orange"]) == "Charmander, an orange Fire-type Pokémon"
    assert make_caption("Vulpix", ["Ice"], "Alolan Form", colours=["white", "blue"], size="small") == \
        "Vulpix (Alolan Form), a small white and blue Ice-type Pokémon"
    assert make_caption("Koraidon", []) == "Koraidon, a Pokémon"
    assert make_caption("Eevee", ["Normal"], colours=["brown"], template="plain") == "Eevee, a Normal-type Pokémon"
    assert make_caption("Abra", ["Psychic"], colours=["yellow"], size="small",
                        template="{colours} {name} ({types}, {size})") == "yellow Abra (Psychic-type, small)"


@pytest.mark.parametrize("template, says", [("{nme}, a Pokémon", "unknown placeholder"),
                                            ("a {colours} Pokémon", "no {name}"), ("{name", "caption_template")])
def test_bad_caption_templates_are_refused_with_a_clear_error(template, says):
    with pytest.raises(ConfigError, match="DataConfig.caption_template") as info:
        DataConfig(caption_template=template)
    assert says in str(info.value) and "allowed: visual | plain" in str(info.value)
    assert DataConfig(caption_template="plain").caption_template == "plain"


def test_collect_flag_sets_the_template():
    import argparse

    from pokemon_diffusion.commands import collect

    parser = argparse.ArgumentParser()
    collect.add_parser(parser.add_subparsers())
    args = parser.parse_args(["collect", "--caption-template", "plain"])
    assert collect.config_from_args(args).caption_template == "plain"
    assert collect.config_from_args(parser.parse_args(["collect"])).caption_template == "visual"
