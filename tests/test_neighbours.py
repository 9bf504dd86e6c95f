"""Neighbour captions (data/neighbours.py): a description trained with the Pokémon it fits."""

import dataclasses
import json

import numpy as np
import pytest

from pokemon_diffusion.collection.metadata import Entry, read_metadata, write_metadata
from pokemon_diffusion.config import TrainConfig
from pokemon_diffusion.data.caption_draw import caption_draw_weights
from pokemon_diffusion.data.dataset import Examples
from pokemon_diffusion.data.neighbours import NEIGHBOUR_FORM, add_neighbour_captions, neighbour_indices
from pokemon_diffusion.errors import ConfigError, DataError
from helpers_training import tiny_config, write_tiny_dataset

FORMS = ["main", "name", "description", "colour"]
# name, colour, description vector (2-d, so the cosine order is plain to read)
MONS = [("Amon", "red", (1.0, 0.0)), ("Bmon", "red", (0.9, 0.1)), ("Cmon", "red", (0.0, 1.0)),
        ("Dmon", "red", (0.95, 0.05)), ("Emon", "blue", (1.0, 0.0)), ("Amon", "red", (1.0, 0.0))]


def _examples():
    """Six images; the last is a second picture of Amon (the same Pokémon: never its own neighbour)."""
    entries, rows = [], []
    for i, (name, colour, vec) in enumerate(MONS):
        desc = f"a {colour} thing {i}"
        entries.append(Entry(name=name, image_path=f"p/{i}.png", caption=f"{name}, {desc}", source="test",
                             dex=ord(name[0]), captions=[f"{name}, {desc}", name, desc, f"a {colour} Pokémon"],
                             caption_forms=list(FORMS)))
        vectors = np.zeros((4, 3), np.float32)
        vectors[:, 2] = i  # row identity for the main/name/colour rows
        vectors[2] = (*vec, 0.0)
        rows.append(vectors)
    embeddings = np.stack(rows)
    return Examples(np.zeros((6, 4, 4, 3), np.float32), embeddings[:, 0], entries, caption_embeddings=embeddings,
                    caption_counts=np.full(6, 4, np.int32))


def test_neighbours_share_the_colour_are_other_pokemon_and_come_nearest_first():
    examples = _examples()
    near = neighbour_indices(examples, [0, 1, 2, 3, 4, 5], k=2)
    assert near[0] == [3, 1]  # red, by cosine to (1, 0); not Cmon's far one; never Amon's other picture (5)
    assert near[4] == []  # the only blue Pokémon: no neighbour
    assert near[2] == [1, 3]
    assert neighbour_indices(examples, [0, 1, 2, 3, 4, 5], k=10)[0] == [3, 1, 2]
    # the held-out side (here 1 and 3) neither gets rows nor gives them
    assert neighbour_indices(examples, [0, 2, 4, 5], k=2)[0] == [2]


def test_added_rows_are_the_neighbours_descriptions_tagged_and_held_out_images_are_untouched():
    examples = _examples()
    out = add_neighbour_captions(examples, [0, 2, 3, 4, 5], k=2)  # 1 is held out
    assert out.caption_embeddings.shape == (6, 6, 3)
    assert out.caption_counts.tolist() == [6, 4, 6, 6, 4, 6]
    np.testing.assert_array_equal(out.caption_embeddings[0, 4], examples.caption_embeddings[3, 2])
    np.testing.assert_array_equal(out.caption_embeddings[0, 5], examples.caption_embeddings[2, 2])
    np.testing.assert_array_equal(out.caption_embeddings[1, :4], examples.caption_embeddings[1])  # held out
    entry = out.entries[0]
    assert entry.all_captions[4:] == ["a red thing 3", "a red thing 2"]
    assert entry.all_caption_forms == FORMS + [NEIGHBOUR_FORM] * 2
    assert out.entries[1] == examples.entries[1]
    assert examples.entries[0].all_caption_forms == FORMS  # the input is not changed
    assert add_neighbour_captions(examples, [0, 2], k=0) is examples
    # the draw weighs each neighbour row by the form's weight
    cumulative = caption_draw_weights(out.entries, out.caption_counts, {"name": 2, NEIGHBOUR_FORM: 0.5})
    np.testing.assert_allclose(np.diff(cumulative[0], prepend=0.0) * 6, [1, 2, 1, 1, 0.5, 0.5], rtol=1e-5)


def test_untagged_or_single_captions_are_refused_with_the_way_out():
    examples = _examples()
    untagged = dataclasses.replace(examples, entries=[dataclasses.replace(e, caption_forms=[])
                                                      for e in examples.entries])
    with pytest.raises(DataError, match="no 'description' and 'colour' forms.*caption_neighbours 0"):
        add_neighbour_captions(untagged, [0, 1], k=2)
    single = dataclasses.replace(examples, caption_embeddings=None, caption_counts=None)
    with pytest.raises(DataError, match="several captions per image"):
        add_neighbour_captions(single, [0, 1], k=2)
    with pytest.raises(ConfigError, match="caption_neighbours"):
        TrainConfig(caption_neighbours=-1)
    assert TrainConfig().caption_neighbours == 0


def _tag(data):
    """Tag four captions per image of a tiny dataset; its Pokémon in two colour groups."""
    entries = read_metadata(data)
    for entry in entries:
        vector = np.load(data / entry.embedding_path)
        colour = "a red Pokémon" if entry.dex % 2 else "a blue Pokémon"
        entry.captions = [entry.caption, entry.name, f"a thing {entry.dex}", colour]
        entry.caption_forms = list(FORMS)
        entry.captions_embedding_path = entry.embedding_path.replace(".npy", ".captions.npy")
        np.save(data / entry.captions_embedding_path, np.stack([vector, -vector, vector * 0.5, vector * 2]))
    write_metadata(data, entries)


def test_a_run_trains_with_neighbour_rows_and_refuses_untagged_data_before_writing(tmp_path):
    """Two tiny TensorFlow steps on a tagged dataset with neighbours; an untagged one fails first."""
    from pokemon_diffusion.training.loop import train

    data = write_tiny_dataset(tmp_path / "data", n=8, pokemon=4)
    with pytest.raises(DataError, match="caption_neighbours"):
        train(data, tmp_path / "bad", tiny_config(steps=2, caption_neighbours=2))
    assert not (tmp_path / "bad" / "config.json").exists()
    _tag(data)
    result = train(data, tmp_path / "run", tiny_config(steps=2, val_fraction=0.25, caption_neighbours=2,
                                                       caption_weights={NEIGHBOUR_FORM: 0.5}))
    assert result.step == 2 and result.stopped == "completed" and np.isfinite(result.loss)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["caption_neighbours"] == 2


def test_the_jax_data_gets_the_same_rows_and_a_pack_is_refused(tmp_path):
    from pokemon_diffusion.data.dataset import load_examples, split_by_pokemon
    from pokemon_diffusion.training.jax_data import load_training_data

    data = write_tiny_dataset(tmp_path / "data", n=8, pokemon=4)
    _tag(data)
    config = tiny_config(steps=2, val_fraction=0.25, caption_neighbours=2)
    training = load_training_data(data, config)
    examples = load_examples(data, (16, 16))
    train_idx, _ = split_by_pokemon(examples.entries, 0.25, config.train.seed)
    expected = add_neighbour_captions(examples, train_idx, 2)
    np.testing.assert_array_equal(training.caption_counts, expected.caption_counts)
    np.testing.assert_array_equal(training.caption_embeddings, expected.caption_embeddings)
    assert (training.caption_counts[training.train] > 4).any() and (training.caption_counts[training.val] == 4).all()
    pack = tmp_path / "data.npz"
    np.savez(pack, images=np.zeros(1))
    with pytest.raises(DataError, match="packed .npz has one caption per image"):
        load_training_data(pack, config)


def test_the_train_flag_sets_the_count(tmp_path):
    from pokemon_diffusion.cli import build_parser
    from pokemon_diffusion.commands.train import resolve_config

    args = build_parser().parse_args(["train", "--data", "d", "--out", str(tmp_path / "r"), "--caption-neighbours", "4",
                                      "--caption-weights", "neighbour=0.5"])
    config = resolve_config(args).train
    assert config.caption_neighbours == 4 and config.caption_weights == {NEIGHBOUR_FORM: 0.5}
