import json

import pytest

from pokemon_diffusion.collection.metadata import (Entry, make_caption, metadata_problems, read_metadata,
                                             write_metadata)
from pokemon_diffusion.errors import DataError


def _entry(name, path):
    return Entry(name=name, image_path=path, caption=make_caption(name, ["Fire"]), source="test", dex=4,
                 types=["Fire"])


def test_round_trip_is_a_plain_json_list(tmp_path):
    (tmp_path / "pokemon_images").mkdir()
    (tmp_path / "pokemon_images" / "a.png").write_bytes(b"x")
    path = write_metadata(tmp_path, [_entry("Charmander", "pokemon_images/a.png")])
    items = json.loads(path.read_text())
    assert [item["name"] for item in items] == ["Charmander"]  # the seed's `for item in metadata`
    assert items[0]["caption"] == "Charmander, a Fire-type Pokémon"
    assert read_metadata(tmp_path)[0] == _entry("Charmander", "pokemon_images/a.png")


def test_validator_reports_every_problem_at_once(tmp_path):
    items = [
        {"name": "A", "image_path": "missing.png", "caption": "a", "source": "s"},
        {"name": "B", "image_path": "missing.png", "caption": "b", "source": "s", "dex": "7"},
        {"name": "C", "image_path": "../../etc/passwd", "caption": "c", "source": "s"},
        {"image_path": "x.png", "caption": "d", "source": "s", "types": "Fire"},
    ]
    problems = metadata_problems(items, tmp_path)
    text = "\n".join(problems)
    assert "'missing.png' does not exist" in text
    assert "duplicates entry 0" in text
    assert "field 'dex' got str" in text
    assert "must be relative and inside" in text
    assert "missing field 'name'" in text and "field 'types' got str" in text
    (tmp_path / "pokemon_metadata.json").write_text(json.dumps(items))
    with pytest.raises(DataError, match=r"problem\(s\)"):
        read_metadata(tmp_path)


def test_missing_file_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match="run `pokemon-diffusion collect` first"):
        read_metadata(tmp_path)


def test_caption_articles_and_forms():
    assert make_caption("Eevee", ["Normal"]) == "Eevee, a Normal-type Pokémon"
    assert make_caption("Vulpix", ["Ice"], "Alolan Form") == "Vulpix (Alolan Form), an Ice-type Pokémon"
    assert make_caption("Missingno", []) == "Missingno, a Pokémon"
