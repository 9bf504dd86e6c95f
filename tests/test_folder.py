"""The folder source: names from file names, captions.csv, bad files skipped, output folder left out."""


import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.config import DataConfig
from pokemon_diffusion.collection.pipeline import collect
from pokemon_diffusion.collection.folder import folder_records, name_from_file, read_captions
from pokemon_diffusion.collection.metadata import read_metadata
from pokemon_diffusion.errors import DataError


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    Image.new("RGBA", (10, 6), (0, 0, 0, 0)).save(folder / "0004_charmander.png")
    Image.new("RGB", (8, 8), (0, 128, 0)).save(folder / "sub" / "leaf.jpg")
    Image.new("RGB", (8, 8)).save(folder / ".hidden" / "secret.png")
    (folder / "broken.png").write_bytes(b"not really a png")
    (folder / "notes.txt").write_text("ignored")
    return folder


@pytest.mark.parametrize("stem, expected", [
    ("0004_charmander", (4, "Charmander")),
    ("025-pikachu", (25, "Pikachu")),
    ("mr._mime", (None, "Mr. Mime")),
    ("Porygon-Z", (None, "Porygon-Z")),
    ("ho-oh", (None, "Ho-oh")),
    ("1234", (None, "1234")),
])
def test_names_from_file_names(stem, expected):
    assert name_from_file(stem) == expected


def test_records_without_captions(photos):
    records = folder_records(photos)
    assert [(r.relative, r.dex, r.name) for r in records] == [
        ("0004_charmander.png", 4, "Charmander"), ("broken.png", None, "Broken"), ("sub/leaf.jpg", None, "Leaf")]


def test_captions_csv_overrides_names_types_and_caption(photos, package_log):
    (photos / "captions.csv").write_text(
        "file,name,types,caption,dex\n"
        "sub/leaf.jpg,Bulbasaur,Grass/Poison,,1\n"
        "0004_charmander.png,,Fire,\"a small orange lizard, tail aflame\",\n"
        "gone.png,Nobody,,,\n", encoding="utf-8")
    by_path = {r.relative: r for r in folder_records(photos)}
    leaf = by_path["sub/leaf.jpg"]
    assert (leaf.name, leaf.dex, leaf.types, leaf.caption) == ("Bulbasaur", 1, ("Grass", "Poison"), None)
    charmander = by_path["0004_charmander.png"]
    assert charmander.name == "Charmander" and charmander.caption == "a small orange lizard, tail aflame"
    assert "gone.png" in package_log.text  # a row for a missing file is reported


def test_captions_csv_problems_are_listed_at_once(tmp_path):
    bad = tmp_path / "captions.csv"
    bad.write_text("name,caption\nA,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"required: a 'file' column"):
        read_captions(bad)
    bad.write_text("file,dex\n,3\nx.png,three\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"2 problem\(s\): line 2: empty 'file'; line 3: dex 'three'"):
        read_captions(bad)


def test_not_a_folder_or_no_images(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        folder_records(tmp_path / "absent")
    with pytest.raises(DataError, match="no image in"):
        folder_records(tmp_path)


def test_collect_folder_skips_bad_files_and_leaves_out_the_output_folder(photos):
    out = photos / "dataset"  # inside the input folder: its PNGs must not be read back as input
    summary = collect(DataConfig(source="folder", path=str(photos), out_dir=str(out)))
    assert (summary.found, summary.downloaded, summary.failed) == (3, 2, 1)
    assert summary.failures[0].name == "Broken" and "not an image" in summary.failures[0].reason
    entries = read_metadata(out)
    assert [(e.name, e.image_path, e.source) for e in entries] == [
        ("Charmander", "pokemon_images/0004_charmander.png", "folder"),
        ("Leaf", "pokemon_images/leaf.png", "folder")]
    assert entries[0].caption == "Charmander, a white Pokémon"  # the visual caption of an all-white picture
    rgb = np.asarray(Image.open(out / entries[0].image_path))
    assert rgb.shape == (10, 10, 3) and (rgb == 255).all()  # transparent -> white, padded square

    again = collect(DataConfig(source="folder", path=str(photos), out_dir=str(out)))
    assert (again.found, again.downloaded, again.skipped) == (3, 0, 2)


def test_max_bytes_applies_to_local_files(photos, tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        photos / "noisy.png")  # incompressible: well over 1,000 bytes
    summary = collect(DataConfig(source="folder", path=str(photos), out_dir=str(tmp_path / "o"), max_bytes=1_000))
    noisy = [f for f in summary.failures if f.name == "Noisy"]
    assert noisy and "too large" in noisy[0].reason and "1,000" in noisy[0].reason
