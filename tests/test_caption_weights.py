"""Caption forms tagged in the metadata, the weighted caption draw and the embedding noise."""

import json

import numpy as np
import pytest

from pokemon_diffusion.collection.captions import make_captions, tagged_captions
from pokemon_diffusion.collection.metadata import Entry, metadata_problems, read_metadata
from pokemon_diffusion.config import DataConfig, TrainConfig
from pokemon_diffusion.data.caption_draw import caption_draw_weights
from pokemon_diffusion.data.dataset import make_dataset
from pokemon_diffusion.errors import ConfigError, DataError
from pokemon_diffusion.training.jax_data import BatchStream, TrainingData
from helpers_training import take_batches, tiny_config, write_tiny_dataset

PIKACHU = dict(name="Pikachu", types=["Electric"], colours=["yellow"], size="small", abilities=["static"])
FORMS = ["main", "name", "plain", "description"]


def test_every_caption_is_tagged_with_the_form_that_made_it():
    tagged = tagged_captions(**PIKACHU)
    assert [c for c, _ in tagged] == make_captions(**PIKACHU)
    assert [f for _, f in tagged] == ["main", "name", "plain", "description", "colour", "type", "abilities"]
    # a repeat keeps the first form's tag; a text form is tagged with its text
    assert tagged_captions("Eevee", ["Normal"], template="plain", forms=["plain", "name", "{name}!"]) == \
        [("Eevee, a Normal-type Pokémon", "main"), ("Eevee", "name"), ("Eevee!", "{name}!")]


def _entry(captions, forms):
    return Entry(name="P", image_path="p.png", caption=captions[0], source="test", captions=captions,
                 caption_forms=forms)


def test_the_entry_knows_its_caption_forms_only_when_they_match_its_captions():
    assert _entry(["a", "b"], ["main", "name"]).all_caption_forms == ["main", "name"]
    assert _entry(["a", "b"], []).all_caption_forms is None  # collected before forms were tagged
    assert _entry(["a", "b"], ["main"]).all_caption_forms is None  # not parallel to the captions
    assert Entry(name="P", image_path="p.png", caption="a", source="test").all_caption_forms == ["main"]
    item = {"name": "P", "image_path": "p.png", "caption": "a", "source": "t", "caption_forms": ["main", 3]}
    assert metadata_problems([item], ".", check_files=False) == \
        ["entry 0 (P): field 'caption_forms' must be a list of strings"]


def test_the_draw_weights_follow_the_forms_and_refuse_untagged_or_all_zero_rows():
    entries = [_entry(["a", "b", "c", "d"], FORMS), _entry(["a", "b"], ["main", "name"])]
    counts = np.array([4, 2])
    assert caption_draw_weights(entries, counts, {}) is None  # uniform: the stream of before
    cumulative = caption_draw_weights(entries, counts, {"name": 3, "plain": 0})
    np.testing.assert_allclose(cumulative, [[0.2, 0.8, 0.8, 1.0], [0.25, 1.0, 1.0, 1.0]], rtol=1e-6)
    with pytest.raises(DataError, match="no form tags.*collect the dataset again"):
        caption_draw_weights([_entry(["a", "b"], [])], np.array([2]), {"name": 3})
    with pytest.raises(DataError, match="weight 0"):
        caption_draw_weights(entries, counts, {"main": 0, "name": 0})


def _rows(n, k):
    """Row j of image i holds (i, j): the drawn caption is readable from the embedding."""
    return np.stack(np.meshgrid(np.arange(n), np.arange(k), indexing="ij"), -1).astype(np.float32) + 1.0


def test_make_dataset_draws_by_weight_and_resumes_exactly_with_noise():
    n, k = 4, 4
    images, rows, counts = np.zeros((n, 2, 2, 3), np.float32), _rows(n, k), np.array([4, 4, 4, 2])
    entries = [_entry(list("abcd"), FORMS)] * 3 + [_entry(["a", "b"], ["main", "name"])]
    cumulative = caption_draw_weights(entries, counts, {"name": 5, "description": 0})
    full = take_batches(make_dataset(images, rows, 8, seed=2, repeat=True, with_index=True, caption_counts=counts,
                                     caption_weights=cumulative), 250)
    drawn = np.concatenate([b[1] for b in full]).astype(int) - 1
    assert np.all(drawn[:, 1] < counts[drawn[:, 0]])
    four = np.bincount(drawn[drawn[:, 0] < 3, 1], minlength=4) / np.sum(drawn[:, 0] < 3)
    np.testing.assert_allclose(four, [1 / 7, 5 / 7, 1 / 7, 0], atol=0.04)  # description never drawn
    two = np.bincount(drawn[drawn[:, 0] == 3, 1], minlength=2) / np.sum(drawn[:, 0] == 3)
    np.testing.assert_allclose(two, [1 / 6, 5 / 6], atol=0.05)
    with pytest.raises(DataError, match="caption_weights"):
        make_dataset(images, rows, 8, caption_counts=counts, caption_weights=cumulative[:2])

    # noise: about the asked share of the embedding's norm, the same at the same stream position
    noisy = take_batches(make_dataset(images, rows, 8, seed=2, repeat=True, with_index=True, caption_counts=counts,
                                      caption_weights=cumulative, embedding_noise=0.1), 30)
    clean = np.concatenate([b[1] for b in full[:30]])
    got = np.concatenate([b[1] for b in noisy])
    ratio = np.linalg.norm(got - clean, axis=-1) / np.linalg.norm(clean, axis=-1)
    assert 0.02 < ratio.mean() < 0.25 and np.all(np.abs(got - clean) < 1)  # the same captions, jittered
    resumed = take_batches(make_dataset(images, rows, 8, seed=2, repeat=True, with_index=True, start_index=80,
                                        caption_counts=counts, caption_weights=cumulative, embedding_noise=0.1), 5)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in resumed]), got[80:120])
    # one caption per image: the noise applies all the same
    single = take_batches(make_dataset(images, rows[:, 0], 8, seed=2, repeat=True, embedding_noise=0.1), 1)[0][1]
    assert not np.allclose(single, np.round(single))


def test_the_jax_stream_draws_by_weight_with_noise_and_resumes():
    n, k = 4, 4
    rows, counts = _rows(n, k), np.array([4, 4, 4, 2])
    entries = [_entry(list("abcd"), FORMS)] * 3 + [_entry(["a", "b"], ["main", "name"])]
    data = TrainingData(np.zeros((n, 2, 2, 3), np.uint8), rows[:, 0], np.arange(n), np.zeros(0, np.int64),
                        None, rows, counts, entries)
    stream = BatchStream(data, 8, seed=1, flip=True, caption_weights={"name": 5, "description": 0})
    drawn = np.concatenate([stream.next()[2] for _ in range(250)]).astype(int) - 1
    four = np.bincount(drawn[drawn[:, 0] < 3, 1], minlength=4) / np.sum(drawn[:, 0] < 3)
    np.testing.assert_allclose(four, [1 / 7, 5 / 7, 1 / 7, 0], atol=0.04)
    noisy = BatchStream(data, 8, seed=1, flip=True, caption_weights={"name": 5}, embedding_noise=0.1)
    batches = [noisy.next()[2] for _ in range(10)]
    later = BatchStream(data, 8, seed=1, flip=True, start=40, caption_weights={"name": 5}, embedding_noise=0.1)
    np.testing.assert_array_equal(later.next()[2], batches[5])
    assert not np.allclose(batches[0], np.round(batches[0]))


def test_the_config_checks_weights_and_noise():
    assert TrainConfig().caption_weights == {} and TrainConfig().embedding_noise == 0.0
    config = TrainConfig(caption_weights={"name": 3, "plain": 2.5}, embedding_noise=0.05)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match=r"TrainConfig.caption_weights: got \{'name': -1\}"):
        TrainConfig(caption_weights={"name": -1})
    with pytest.raises(ConfigError, match="TrainConfig.caption_weights"):
        TrainConfig(caption_weights=["name"])
    with pytest.raises(ConfigError, match="TrainConfig.embedding_noise"):
        TrainConfig(embedding_noise=-0.1)


def test_training_refuses_weights_on_untagged_captions_before_writing_anything(tmp_path):
    from pokemon_diffusion.training.loop import train

    data = write_tiny_dataset(tmp_path / "data")
    entries = read_metadata(data)
    for entry in entries:  # two captions each, with the second's embedding, but no form tags
        vector = np.load(data / entry.embedding_path)
        entry.captions = [entry.caption, entry.name]
        entry.captions_embedding_path = entry.embedding_path.replace(".npy", ".captions.npy")
        np.save(data / entry.captions_embedding_path, np.stack([vector, -vector]))
    from pokemon_diffusion.collection.metadata import write_metadata

    write_metadata(data, entries)
    with pytest.raises(DataError, match="no form tags"):
        train(data, tmp_path / "run", tiny_config(caption_weights={"name": 3}))
    assert not (tmp_path / "run" / "config.json").exists()


def test_collect_tags_the_captions_of_the_packaged_pokedex(tmp_path):
    from pokemon_diffusion.collection.pipeline import collect

    collect(DataConfig(source="pokedex", out_dir=str(tmp_path), limit=3))
    entry = read_metadata(tmp_path)[0]
    assert entry.all_caption_forms == ["main", "name", "plain", "description", "colour", "type", "abilities"]
    assert len(entry.all_caption_forms) == len(entry.all_captions)


def test_the_train_flags_set_weights_and_noise(tmp_path, capsys):
    from pokemon_diffusion.cli import build_parser
    from pokemon_diffusion.commands.train import resolve_config

    args = build_parser().parse_args(["train", "--data", "d", "--out", str(tmp_path / "r"),
                                      "--caption-weights", "name=3, plain=2.5", "--embedding-noise", "0.05"])
    train = resolve_config(args).train
    assert train.caption_weights == {"name": 3.0, "plain": 2.5} and train.embedding_noise == 0.05
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--data", "d", "--out", "r", "--caption-weights", "name3"])
    assert exit_info.value.code == 2 and "FORM=WEIGHT pairs" in capsys.readouterr().err
