"""The offline source: the PyPI `pokemon` package's database, read through importlib.resources."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.config import DataConfig
from pokemon_diffusion.collection import pokedex
from pokemon_diffusion.collection.pipeline import collect
from pokemon_diffusion.collection.metadata import read_metadata
from pokemon_diffusion.errors import DataError


def test_packaged_pokedex_has_1008_entries_with_artwork():
    records = pokedex.pokedex_records()
    assert len(records) == 1008
    assert [r.dex for r in records] == list(range(1, 1009))
    charmander = records[3]
    assert (charmander.dex, charmander.name, charmander.types) == (4, "Charmander", ("Fire",))
    assert records[0].types == ("Grass", "Poison")  # the package says "grass": capitalised for captions
    assert all(r.image.is_file() for r in records)
    assert {"Nidoran♀", "Nidoran♂", "Farfetch'd", "Mr. Mime", "Type: Null", "Flabébé"} <= {r.name for r in records}


def test_no_site_packages_path_is_assumed():
    source = Path(pokedex.__file__).read_text(encoding="utf-8")
    assert "site-packages" not in source and "importlib" in source


def test_missing_package_is_a_clear_error():
    with pytest.raises(DataError, match=r"'no_such_dex_pkg'.*not installed.*--source bulbapedia"):
        pokedex.pokedex_records("no_such_dex_pkg")


def _fake_package(root: Path, index, images, name: str) -> str:
    """A package ``name`` (unique per test: imported modules are cached) with a database/ folder."""
    package = root / name
    (package / "database" / "images").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "database" / "pokemons.json").write_text(json.dumps(index), encoding="utf-8")
    for file_name, image in images.items():
        image.save(package / "database" / "images" / file_name)
    return name


def test_bad_entries_are_skipped_and_transparency_goes_onto_white(tmp_path, monkeypatch):
    sprite = Image.new("RGBA", (8, 4), (0, 0, 0, 0))
    sprite.putpixel((4, 2), (200, 10, 10, 255))
    index = {
        "1": {"id": 1, "name": "Clearmon", "type": ["fire"]},
        "2": {"id": 2, "name": "Noimagemon", "type": ["water"]},
        "3": {"id": "three", "name": "Badidmon", "type": []},
        "4": {"id": 4, "name": ""},
    }
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _fake_package(tmp_path, index, {"1.png": sprite, "3.png": sprite, "4.png": sprite},
                            "fakedex_skips")
    records = pokedex.pokedex_records(package)
    assert [(r.dex, r.name, r.types) for r in records] == [(1, "Clearmon", ("Fire",))]

    monkeypatch.setattr(pokedex, "pokedex_records", lambda: records)
    out = tmp_path / "out"
    summary = collect(DataConfig(source="pokedex", out_dir=str(out)))
    assert (summary.found, summary.downloaded) == (1, 1)
    rgb = np.asarray(Image.open(out / "pokemon_images" / "0001_clearmon.png"))
    assert rgb.shape == (8, 8, 3)  # padded to a square
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[4, 4]) == (200, 10, 10)


def test_index_that_is_not_an_object_is_refused(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    package = _fake_package(tmp_path, ["not", "a", "mapping"], {}, "fakedex_list")
    with pytest.raises(DataError, match="got a JSON list"):
        pokedex.pokedex_records(package)


def test_collect_pokedex_then_resume_then_force(tmp_path):
    config = DataConfig(source="pokedex", out_dir=str(tmp_path), limit=3)
    first = collect(config)
    assert (first.found, first.downloaded, first.skipped, first.failed) == (3, 3, 0, 0)
    entries = read_metadata(tmp_path)  # validates: files exist, types right, paths unique
    assert [e.image_path for e in entries] == ["pokemon_images/0001_bulbasaur.png",
                                               "pokemon_images/0002_ivysaur.png",
                                               "pokemon_images/0003_venusaur.png"]
    assert entries[0].caption == "Bulbasaur, a small green Grass/Poison-type Pokémon"  # 0.7 m, green artwork
    assert entries[0].source == "pokedex" and entries[0].source_url is None and entries[0].dex == 1
    with Image.open(tmp_path / entries[0].image_path) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.width == image.height

    stamp = (tmp_path / entries[0].image_path).stat().st_mtime_ns
    second = collect(config)
    assert (second.downloaded, second.skipped) == (0, 3)
    assert (tmp_path / entries[0].image_path).stat().st_mtime_ns == stamp

    forced = collect(config.replace(force=True))
    assert (forced.downloaded, forced.skipped) == (3, 0)
