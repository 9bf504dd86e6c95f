"""Prompt enrichment: names found in what people type get the run's description of that Pokémon."""

import json

import numpy as np
import pytest

from pokemon_diffusion.collection.metadata import Entry
from pokemon_diffusion.errors import CheckpointError
from pokemon_diffusion.prompts import (NAMES_FILE, NameTable, enrich_prompt, enrich_prompts, read_name_table,
                                       write_name_table)


def _entry(name, caption, dex, form=None):
    return Entry(name=name, image_path=f"p/{dex}.png", caption=caption, source="test", dex=dex, form=form)


ENTRIES = [
    _entry("Pikachu", "Pikachu, a small yellow Electric-type Pokémon", 25),
    _entry("Charizard", "Charizard, a large orange and blue Fire/Flying-type Pokémon", 6),
    _entry("Mew", "Mew, a tiny pink Psychic-type Pokémon", 151),
    _entry("Mewtwo", "Mewtwo, a large white and grey Psychic-type Pokémon", 150),
    _entry("Mr. Mime", "Mr. Mime, a large white Psychic/Fairy-type Pokémon", 122),
    _entry("Farfetch'd", "Farfetch'd, a small grey and brown Normal/Flying-type Pokémon", 83),
    _entry("Flabébé", "Flabébé, a tiny white Fairy-type Pokémon", 669),
    _entry("Gloom", "Gloom, a small blue and red Grass/Poison-type Pokémon", 44),
    _entry("Vulpix", "Vulpix (Alolan Form), a small white Ice-type Pokémon", 37, form="Alolan Form"),
]
TABLE = NameTable.from_entries(ENTRIES)


@pytest.mark.parametrize("typed, encoded", [
    # a name alone, in any case, and the README/app example form become the Pokémon's caption
    ("Pikachu", "Pikachu, a small yellow Electric-type Pokémon"),
    ("  pIKACHU. ", "Pikachu, a small yellow Electric-type Pokémon"),
    ("Pikachu, an Electric-type Pokémon", "Pikachu, a small yellow Electric-type Pokémon"),
    ("Charizard, a Fire-type Pokémon", "Charizard, a large orange and blue Fire/Flying-type Pokémon"),
    ("a yellow pikachu", "Pikachu, a small yellow Electric-type Pokémon"),
    # other words are kept, the description added
    ("Pikachu in the snow", "Pikachu in the snow, a small yellow Electric-type Pokémon"),
    ("Pikachu's tail", "Pikachu's tail, a small yellow Electric-type Pokémon"),
    ("Pikachu and Charizard.", "Pikachu and Charizard, a small yellow Electric-type Pokémon and "
                               "a large orange and blue Fire/Flying-type Pokémon"),
    # names with punctuation, typographic apostrophes, accents typed or not; the longest name wins
    ("mr. mime", "Mr. Mime, a large white Psychic/Fairy-type Pokémon"),
    ("Farfetch’d", "Farfetch'd, a small grey and brown Normal/Flying-type Pokémon"),
    ("flabebe", "Flabébé, a tiny white Fairy-type Pokémon"),
    ("MEWTWO", "Mewtwo, a large white and grey Psychic-type Pokémon"),
    ("vulpix", "Vulpix (Alolan Form), a small white Ice-type Pokémon"),
    # no known name, a name inside another word, or the description already there: unchanged
    ("a cute yellow electric mouse", "a cute yellow electric mouse"),
    ("a gloomy forest", "a gloomy forest"),
    ("Pikachu, a small yellow Electric-type Pokémon in space", "Pikachu, a small yellow Electric-type Pokémon in space"),
])
def test_enrich_prompt(typed, encoded):
    result = enrich_prompt(typed, TABLE)
    assert result.text == encoded and result.prompt == typed
    assert result.changed == (encoded != typed)


def test_enrichment_off_or_without_a_table_keeps_the_prompt(caplog):
    assert enrich_prompt("Pikachu", None).text == "Pikachu"
    assert [e.text for e in enrich_prompts(["Pikachu"], TABLE, enrich=False)] == ["Pikachu"]
    with caplog.at_level("INFO"):
        assert enrich_prompts(["Pikachu"], TABLE)[0].names == ["Pikachu"]
    assert "'Pikachu' -> 'Pikachu, a small yellow" in caplog.text and "--no-enrich" in caplog.text


def test_name_table_round_trip_and_damage(tmp_path):
    path = write_name_table(tmp_path, ENTRIES)
    assert path.name == NAMES_FILE
    table = read_name_table(tmp_path)
    assert [k.name for k in table.known] == [k.name for k in TABLE.known]
    assert table.find("pikachu")[0].description == "a small yellow Electric-type Pokémon"
    assert read_name_table(tmp_path / "missing") is None  # runs from before tables: no enrichment
    path.write_text(json.dumps({"names": [{"name": "x"}]}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=f"cannot read .*{NAMES_FILE}.*delete it"):
        read_name_table(tmp_path)


def test_the_shipped_reference_has_a_table_of_its_training_data():
    from pokemon_diffusion.pretrained import pretrained_dir

    table = read_name_table(pretrained_dir())
    assert len(table) == 1008
    assert enrich_prompt("Pikachu", table).text == "Pikachu, a small yellow Electric-type Pokémon"
    assert enrich_prompt("Mr. Mime", table).text.startswith("Mr. Mime, a ")


def test_generate_encodes_the_enriched_prompt_unless_told_not_to(tmp_path, monkeypatch):
    import importlib

    gen = importlib.import_module("pokemon_diffusion.generate")  # the module (the package exports the function)
    from pokemon_diffusion.config import SampleConfig
    from pokemon_diffusion.pretrained import load_pretrained

    run = load_pretrained()
    seen = []
    monkeypatch.setattr(gen, "encode_prompts",
                        lambda run, prompts, **kw: (seen.append(list(prompts)), np.zeros((len(prompts), 384),
                                                                                        np.float32))[1])
    _, labels = gen.generate(run, ["Pikachu"], config=SampleConfig(steps=1, seed=0), size=32)  # the base: fast
    assert seen[-1] == ["Pikachu, a small yellow Electric-type Pokémon"] and labels == seen[-1]
    _, labels = gen.generate(run, ["Pikachu"], config=SampleConfig(steps=1, seed=0, enrich=False), size=32)
    assert seen[-1] == ["Pikachu"] and labels == ["Pikachu"]
