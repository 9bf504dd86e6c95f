"""`embed`: embeddings written beside a small dataset, re-runs, edits, mismatches and the CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.cli import main
from pokemon_diffusion.text import registry as text
from pokemon_diffusion.collection.metadata import Entry, make_caption, read_metadata, write_metadata
from pokemon_diffusion.text.embeddings import dataset_encoder_info, embed_dataset, load_text_encoder
from pokemon_diffusion.errors import DataError, EncoderError
from tiny_text_models import build_tiny_clip

POKEMON = [("Charmander", ["Fire"]), ("Squirtle", ["Water"]), ("Bulbasaur", ["Grass", "Poison"])]


@pytest.fixture(scope="session")
def clip_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed_clips")
    return build_tiny_clip(root / "a", seed=0), build_tiny_clip(root / "b", seed=1)


@pytest.fixture(scope="session")
def clip(clip_dirs):
    return load_text_encoder(str(clip_dirs[0]))


def _write_dataset(root, pokemon=POKEMON, folder="pokemon_images"):
    (root / folder).mkdir(parents=True, exist_ok=True)
    entries = []
    for dex, (name, types) in enumerate(pokemon, start=1):
        path = f"{folder}/{dex:04d}_{name.lower()}.png"
        Image.fromarray(np.full((8, 8, 3), dex * 40, np.uint8)).save(root / path)
        entries.append(Entry(name=name, image_path=path, caption=make_caption(name, types), source="test",
                             dex=dex, types=types))
    write_metadata(root, entries)
    return entries


@pytest.fixture
def dataset(tmp_path):
    _write_dataset(tmp_path)
    return tmp_path


def _mtimes(root):
    # the lock file (locks.py) records each writer's pid: it is not dataset content
    return {p.name: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_embed_writes_npy_metadata_and_identity(dataset, clip):
    summary = embed_dataset(dataset, clip.name)
    assert (summary.total, summary.embedded, summary.skipped, summary.dim) == (3, 3, 0, 8)
    entries = read_metadata(dataset)  # validates: every embedding_path exists
    assert [e.embedding_path for e in entries] == ["embeddings/0001_charmander.npy",
                                                   "embeddings/0002_squirtle.npy",
                                                   "embeddings/0003_bulbasaur.npy"]
    expected = clip.encode([e.caption for e in entries])
    for entry, row in zip(entries, expected):
        vector = np.load(dataset / entry.embedding_path)
        assert vector.shape == (8,) and vector.dtype == np.float32
        np.testing.assert_allclose(vector, row, atol=1e-6)
    info = json.loads((dataset / "embeddings.json").read_text())
    assert (info["name"], info["dim"], info["count"]) == (clip.name, 8, 3)
    info = dataset_encoder_info(dataset)
    assert (info.name, info.dim) == (clip.name, 8)


def test_rerun_is_a_noop_and_loads_no_model(dataset, clip, monkeypatch):
    embed_dataset(dataset, clip.name)
    before = _mtimes(dataset)

    def must_not_load(*args, **kwargs):
        raise AssertionError("the encoder was loaded for a no-op re-run")

    monkeypatch.setattr(text, "ClipTextEncoder", must_not_load)
    summary = embed_dataset(dataset, clip.name)
    assert (summary.embedded, summary.skipped) == (0, 3)
    assert _mtimes(dataset) == before


def test_only_edited_or_missing_entries_are_embedded_again(dataset, clip):
    embed_dataset(dataset, clip)
    entries = read_metadata(dataset)
    entries[0].caption = "fire lizard"
    write_metadata(dataset, entries)
    (dataset / entries[1].embedding_path).unlink()
    (dataset / entries[2].embedding_path).write_bytes(b"not an npy file")
    untouched = (dataset / entries[0].embedding_path).read_bytes()
    summary = embed_dataset(dataset, clip)
    assert (summary.embedded, summary.skipped) == (3, 0)
    assert (dataset / entries[0].embedding_path).read_bytes() != untouched
    np.testing.assert_allclose(np.load(dataset / entries[0].embedding_path),
                               clip.encode(["fire lizard"])[0], atol=1e-6)
    assert embed_dataset(dataset, clip).embedded == 0


def test_metadata_rewritten_without_embedding_paths_is_repaired_without_encoding(dataset, clip):
    embed_dataset(dataset, clip)
    entries = read_metadata(dataset)
    for entry in entries:
        entry.embedding_path = None  # e.g. `collect` wrote the metadata again
    write_metadata(dataset, entries)
    assert embed_dataset(dataset, clip).embedded == 0
    assert all(e.embedding_path for e in read_metadata(dataset))


def test_another_encoder_is_refused_unless_forced(dataset, clip, clip_dirs):
    embed_dataset(dataset, clip)
    before = _mtimes(dataset)
    other = f"clip:{clip_dirs[1].resolve()}"
    with pytest.raises(EncoderError, match=r"was embedded with 'clip:.*/a'.*not 'clip:.*/b'.*--force"):
        embed_dataset(dataset, other)
    assert _mtimes(dataset) == before
    summary = embed_dataset(dataset, other, force=True)
    assert (summary.encoder, summary.embedded) == (other, 3)
    assert dataset_encoder_info(dataset).name == other


def test_force_re_embeds_everything_with_the_same_encoder(dataset, clip):
    embed_dataset(dataset, clip)
    assert embed_dataset(dataset, clip, force=True).embedded == 3


def test_encoder_objects_are_checked(dataset):
    class Broken:
        name, dim = "test:broken", 4

        def __init__(self, value, shape=None):
            self.value, self.shape = value, shape

        def encode(self, texts, batch_size=64):
            return np.full(self.shape or (len(texts), self.dim), self.value, np.float32)

    with pytest.raises(EncoderError, match="non-finite"):
        embed_dataset(dataset, Broken(np.nan))
    with pytest.raises(EncoderError, match=r"returned shape \(1, 4\); expected \(3, 4\)"):
        embed_dataset(dataset, Broken(0.5, shape=(1, 4)))
    assert not (dataset / "embeddings.json").exists()
    assert embed_dataset(dataset, Broken(0.5)).embedded == 3


def test_dataset_problems_are_data_errors(tmp_path, clip):
    with pytest.raises(DataError, match="run `pokemon-diffusion collect` first"):
        embed_dataset(tmp_path, clip)
    with pytest.raises(DataError, match="run `pokemon-diffusion embed"):
        dataset_encoder_info(tmp_path)
    write_metadata(tmp_path, [])
    with pytest.raises(DataError, match="no entries"):
        embed_dataset(tmp_path, clip)
    _write_dataset(tmp_path, POKEMON[:1])
    entries = read_metadata(tmp_path) + _write_dataset(tmp_path, POKEMON[:1], folder="more")
    write_metadata(tmp_path, entries)
    with pytest.raises(DataError, match="would share embeddings/0001_charmander.npy"):
        embed_dataset(tmp_path, clip)


def test_cli_embed(dataset, clip_dirs, capsys):
    assert main(["embed", "--data", str(dataset), "--text-encoder", str(clip_dirs[0]), "--batch-size", "2"]) == 0
    assert len(list((dataset / "embeddings").glob("*.npy"))) == 3
    capsys.readouterr()
    assert main(["embed", "--data", str(dataset), "--text-encoder", str(clip_dirs[1])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err, err
    with pytest.raises(SystemExit) as info:
        main(["embed", "--data", str(dataset), "--batch-size", "0"])
    assert info.value.code == 2
    assert "allowed: an integer from 1 to 4096" in capsys.readouterr().err
