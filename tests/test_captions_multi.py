"""Several captions per image: the forms, their embeddings, and one drawn per example per step."""

import json

import numpy as np
import pytest
from PIL import Image

from pokemon_diffusion.collection.captions import make_captions
from pokemon_diffusion.collection.metadata import Entry, read_metadata, write_metadata
from pokemon_diffusion.caption_templates import CAPTION_FORMS
from pokemon_diffusion.config import DataConfig
from pokemon_diffusion.data.dataset import load_examples, make_dataset
from pokemon_diffusion.errors import ConfigError, DataError
from pokemon_diffusion.text.embeddings import embed_dataset, load_text_encoder
from pokemon_diffusion.training.jax_data import BatchStream, TrainingData
from helpers_training import take_batches
from tiny_text_models import build_tiny_clip

PIKACHU = dict(name="Pikachu", types=["Electric"], colours=["yellow"], size="small",
               abilities=["static", "lightning rod"])


def test_every_form_once_main_caption_first():
    captions = make_captions(**PIKACHU)
    assert captions == ["Pikachu, a small yellow Electric-type Pokémon",  # the main (visual) caption
                        "Pikachu",                                         # the name alone
                        "Pikachu, an Electric-type Pokémon",               # the README/app example form
                        "a small yellow Electric-type Pokémon",            # the description without the name
                        "a yellow Pokémon",                                # colour only
                        "an Electric-type Pokémon",                        # type only
                        "Pikachu, a yellow Pokémon with Static and Lightning Rod"]  # what else the source knows
    assert make_captions(**PIKACHU) == captions  # pure


def test_forms_without_their_facts_are_left_out_and_repeats_dropped():
    # no types, colours or abilities: only the forms that say something remain
    assert make_captions("Eevee", []) == ["Eevee, a Pokémon", "Eevee"]
    # a form equal to the main caption is not repeated
    assert make_captions("Eevee", ["Normal"], template="plain", forms=["plain", "name"]) == \
        ["Eevee, a Normal-type Pokémon", "Eevee"]
    # a Bulbapedia form name stays in the name
    assert make_captions("Vulpix", ["Ice"], "Alolan Form", forms=["name"]) == \
        ["Vulpix (Alolan Form), an Ice-type Pokémon", "Vulpix (Alolan Form)"]


def test_forms_are_configurable_and_checked():
    assert DataConfig().caption_forms == CAPTION_FORMS
    custom = make_captions(**PIKACHU, forms=["{colours} {name}"])
    assert custom == ["Pikachu, a small yellow Electric-type Pokémon", "yellow Pikachu"]
    assert DataConfig(caption_forms=()).caption_forms == ()  # one caption per image, as before
    with pytest.raises(ConfigError, match=r"DataConfig.caption_forms: got '\{nmae\}'"):
        DataConfig(caption_forms=("{nmae}",))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_text_encoder(str(build_tiny_clip(tmp_path_factory.mktemp("multi_clip") / "c", seed=0)))


def _dataset(root, counts=(3, 1, 2)):
    (root / "pokemon_images").mkdir(parents=True)
    entries = []
    for dex, count in enumerate(counts, start=1):
        path = f"pokemon_images/{dex:04d}_p{dex}.png"
        Image.fromarray(np.full((8, 8, 3), dex * 40, np.uint8)).save(root / path)
        captions = [f"pokemon {dex} caption {k}" for k in range(count)]
        entries.append(Entry(name=f"P{dex}", image_path=path, caption=captions[0], source="test", dex=dex,
                             captions=captions if count > 1 else []))
    write_metadata(root, entries)
    return root


def test_embed_writes_every_caption_and_reembeds_only_what_changed(tmp_path, clip, monkeypatch):
    root = _dataset(tmp_path)
    summary = embed_dataset(root, clip)
    assert (summary.embedded, summary.skipped) == (3, 0)
    entries = read_metadata(root)  # validates the new paths too
    assert [e.captions_embedding_path for e in entries] == ["embeddings/0001_p1.captions.npy", None,
                                                            "embeddings/0003_p3.captions.npy"]
    rows = np.load(root / entries[0].captions_embedding_path)
    np.testing.assert_allclose(rows, clip.encode(entries[0].all_captions), atol=1e-6)
    np.testing.assert_array_equal(np.load(root / entries[0].embedding_path), rows[0])  # the seed's (dim,) file
    # a second caption edited: that entry alone is embedded again, and only its new text is encoded
    entries[2].captions[1] = "an edited caption"
    write_metadata(root, entries)
    seen = []
    encode = clip.encode
    monkeypatch.setattr(clip, "encode", lambda texts, **kw: (seen.extend(texts), encode(texts, **kw))[1])
    summary = embed_dataset(root, clip)
    assert (summary.embedded, summary.skipped) == (1, 2)
    assert sorted(seen) == ["an edited caption", "pokemon 3 caption 0"]
    np.testing.assert_allclose(np.load(root / "embeddings/0003_p3.captions.npy")[1],
                               encode(["an edited caption"])[0], atol=1e-6)
    assert embed_dataset(root, clip).embedded == 0


def test_load_examples_pads_caption_embeddings_and_refuses_a_wrong_file(tmp_path, clip):
    root = _dataset(tmp_path)
    embed_dataset(root, clip)
    examples = load_examples(root, (8, 8))
    assert examples.caption_embeddings.shape == (3, 3, 8) and examples.caption_counts.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(examples.caption_embeddings[:, 0], examples.embeddings)
    np.testing.assert_array_equal(examples.caption_embeddings[1, 1:], examples.embeddings[[1, 1]])  # padding
    sub = examples.subset([2])
    assert sub.caption_counts.tolist() == [2] and sub.caption_embeddings.shape == (1, 3, 8)
    np.save(root / "embeddings/0001_p1.captions.npy", np.zeros((2, 8), np.float32))  # 2 rows for 3 captions
    examples = load_examples(root, (8, 8))
    assert len(examples) == 2 and "0001_p1.captions.npy" in examples.skipped[0]


def test_make_dataset_draws_one_caption_per_element_from_the_stream_position():
    n, k = 4, 5
    images = np.zeros((n, 2, 2, 3), np.float32)
    # row j of image i holds (i, j): the drawn row is readable from the embedding
    rows = np.stack(np.meshgrid(np.arange(n), np.arange(k), indexing="ij"), -1).astype(np.float32)
    counts = np.array([5, 1, 3, 2])
    full = take_batches(make_dataset(images, rows, 4, seed=3, repeat=True, with_index=True, caption_counts=counts), 50)
    drawn = np.concatenate([b[1] for b in full]).astype(int)  # (200, 2): image, caption row
    assert np.all(drawn[:, 1] < counts[drawn[:, 0]])  # only real captions, never the padding
    for i, c in enumerate(counts):  # every caption of every image gets drawn, about equally
        got = np.bincount(drawn[drawn[:, 0] == i, 1], minlength=c)
        assert np.all(got > 0) and got.max() <= 4 * got.min() + 3
    # resume at element 20: exactly the same captions as the uninterrupted stream
    resumed = take_batches(make_dataset(images, rows, 4, seed=3, repeat=True, with_index=True, start_index=20,
                                     caption_counts=counts), 10)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in resumed]), np.concatenate([b[1] for b in full[5:15]]))
    # another seed draws other captions for the same positions
    other = take_batches(make_dataset(images, rows, 4, seed=4, repeat=True, with_index=True, caption_counts=counts), 50)
    assert not np.array_equal(np.concatenate([b[1] for b in other]), np.concatenate([b[1] for b in full]))
    with pytest.raises(DataError, match="caption_counts"):
        make_dataset(images, rows, 4)
    with pytest.raises(DataError, match="caption_counts"):
        make_dataset(images, rows, 4, caption_counts=np.array([6, 1, 1, 1]))


def test_the_jax_stream_draws_captions_the_same_way_and_resumes():
    n, k = 4, 3
    rows = np.stack(np.meshgrid(np.arange(n), np.arange(k), indexing="ij"), -1).astype(np.float32)
    counts = np.array([3, 1, 2, 3])
    data = TrainingData(np.zeros((n, 2, 2, 3), np.uint8), rows[:, 0], np.arange(n), np.zeros(0, np.int64),
                        None, rows, counts)
    stream = BatchStream(data, 4, seed=1, flip=True)
    batches = [stream.next() for _ in range(40)]
    drawn = np.concatenate([b[2] for b in batches]).astype(int)
    assert np.all(drawn[:, 1] < counts[drawn[:, 0]])
    assert all(len(set(drawn[drawn[:, 0] == i, 1])) == c for i, c in enumerate(counts))
    later = BatchStream(data, 4, seed=1, flip=True, start=60)
    np.testing.assert_array_equal(later.next()[2], np.concatenate([b[2] for b in batches])[60:64])


def test_collect_writes_the_captions_of_the_packaged_pokedex(tmp_path):
    from pokemon_diffusion.collection.pipeline import collect

    collect(DataConfig(source="pokedex", out_dir=str(tmp_path), limit=30))
    entries = {e.name: e for e in read_metadata(tmp_path)}
    pikachu = entries["Pikachu"]
    assert pikachu.captions[:4] == ["Pikachu, a small yellow Electric-type Pokémon", "Pikachu",
                                    "Pikachu, an Electric-type Pokémon", "a small yellow Electric-type Pokémon"]
    assert pikachu.caption == pikachu.captions[0] and pikachu.abilities == ["static", "lightning rod"]
    raw = json.loads((tmp_path / "pokemon_metadata.json").read_text(encoding="utf-8"))
    assert raw[0]["caption"] == raw[0]["captions"][0]  # the seed's code reads "caption"
