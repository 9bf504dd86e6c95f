"""load_data (cv2), split_by_pokemon and make_dataset (tf.data) on tiny files in tmp dirs."""

import json
import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers_training import take_batches, write_tiny_dataset
from pokemon_diffusion.data.dataset import load_data, load_examples, make_dataset, split_by_pokemon
from pokemon_diffusion.data.images import read_image
from pokemon_diffusion.collection.metadata import Entry, read_metadata, write_metadata
from pokemon_diffusion.errors import DataError


def _png(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_read_image_is_rgb_in_minus_one_to_one(tmp_path):
    bgr_red = np.zeros((8, 8, 3), np.uint8)
    bgr_red[..., 2] = 255  # OpenCV stores red last
    image = read_image(_png(tmp_path / "red.png", bgr_red), (8, 8))
    assert image.dtype == np.float32 and image.shape == (8, 8, 3)
    np.testing.assert_array_equal(image[0, 0], [1.0, -1.0, -1.0])


def test_alpha_is_composited_on_white_not_black(tmp_path):
    bgra = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent...
    bgra[0, 0] = [0, 0, 255, 255]  # ...except one opaque red pixel
    bgra[0, 1] = [0, 0, 0, 128]  # and one half-transparent black one
    image = read_image(_png(tmp_path / "rgba.png", bgra), (4, 4))
    np.testing.assert_array_equal(image[3, 3], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(image[0, 0], [1.0, -1.0, -1.0])
    np.testing.assert_allclose(image[0, 1], [127 / 127.5 - 1] * 3, atol=1 / 127.5)


def test_palette_png_with_transparency_and_grey_and_16_bit(tmp_path):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.info["transparency"] = 0  # index 0 (black) is transparent
    palette.save(tmp_path / "p.png", transparency=0)
    image = read_image(tmp_path / "p.png", (4, 4))
    np.testing.assert_array_equal(image[0, 0], [-1.0, 1.0, -1.0])
    np.testing.assert_array_equal(image[2, 2], [1.0, 1.0, 1.0])

    grey = read_image(_png(tmp_path / "g.png", np.full((4, 4), 255, np.uint8)), (4, 4))
    np.testing.assert_array_equal(grey, np.ones((4, 4, 3), np.float32))
    deep = read_image(_png(tmp_path / "d.png", np.full((4, 4, 3), 65535, np.uint16)), (4, 4))
    np.testing.assert_array_equal(deep, np.ones((4, 4, 3), np.float32))


def test_shrinking_averages_with_inter_area(tmp_path):
    # one white pixel per 4x4 block: INTER_AREA keeps 1/16 of its light, point sampling would lose it
    array = np.zeros((16, 16, 3), np.uint8)
    array[::4, ::4] = 255
    image = read_image(_png(tmp_path / "dots.png", array), (4, 4))
    expected = round(255 / 16) / 127.5 - 1
    np.testing.assert_allclose(image, expected, atol=1 / 127.5)


def test_non_square_images_are_padded_with_white_not_stretched(tmp_path):
    wide = np.zeros((4, 8, 3), np.uint8)  # black 8 wide x 4 high
    image = read_image(_png(tmp_path / "wide.png", wide), (8, 8))
    np.testing.assert_array_equal(image[0], np.ones((8, 3)))  # white band above
    np.testing.assert_array_equal(image[4], -np.ones((8, 3)))  # black in the middle
    np.testing.assert_array_equal(image[7], np.ones((8, 3)))  # white band below


def test_read_image_errors_name_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image .*bad.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match=r"shape: got \(0, 4\)"):
        read_image(tmp_path / "bad.png", (0, 4))


def test_load_data_returns_aligned_float32_arrays(tmp_path):
    root = write_tiny_dataset(tmp_path, n=6, size=20, dim=8)
    images, embeddings = load_data(root / "pokemon_metadata.json", shape=(16, 16))
    assert images.shape == (6, 16, 16, 3) and embeddings.shape == (6, 8)
    assert images.dtype == np.float32 and embeddings.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    entries = read_metadata(root)
    np.testing.assert_array_equal(embeddings[0], np.load(root / entries[0].embedding_path))
    # a folder works as well as the file
    assert load_data(root, shape=(16, 16))[0].shape == (6, 16, 16, 3)


def test_unusable_entries_are_skipped_with_one_warning(tmp_path, caplog):
    root = write_tiny_dataset(tmp_path, n=6, dim=8)
    entries = read_metadata(root)
    (root / entries[0].image_path).unlink()  # missing image
    (root / entries[1].image_path).write_bytes(b"garbage")  # unreadable image
    (root / entries[2].embedding_path).unlink()  # missing embedding
    np.save(root / entries[3].embedding_path, np.zeros(5, np.float32))  # wrong size (embeddings.json says 8)
    entries[4].embedding_path = None  # never embedded
    write_metadata(root, entries)
    with caplog.at_level(logging.WARNING, logger="pokemon_diffusion"):
        examples = load_examples(root, (8, 8))
    assert len(examples) == 1 and examples.entries[0].image_path == entries[5].image_path
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "skipped 5 of 6" in text
    for entry in entries[:5]:
        assert entry.image_path in text
    assert "shape (5,); expected (8,)" in text and "run `pokemon-diffusion embed`" in text


def test_no_usable_entry_is_a_clear_error(tmp_path):
    root = write_tiny_dataset(tmp_path, n=2)
    for path in (root / "embeddings").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="no usable entries out of 2"):
        load_data(root)
    with pytest.raises(DataError, match="run `pokemon-diffusion collect` first"):
        load_data(tmp_path / "nowhere")


def _entries(dexes):
    return [Entry(name=f"P{d}", image_path=f"{i}.png", caption="c", source="s", dex=d) for i, d in enumerate(dexes)]


def test_split_keeps_each_pokemon_on_one_side_and_is_seeded():
    entries = _entries([1, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10, 10])
    train, val = split_by_pokemon(entries, 0.25, seed=3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(entries)))
    assert not {entries[i].dex for i in train} & {entries[i].dex for i in val}
    assert len(val) >= 0.25 * len(entries) and len(train) > 0
    again_train, again_val = split_by_pokemon(entries, 0.25, seed=3)
    np.testing.assert_array_equal(val, again_val)
    assert any(not np.array_equal(val, split_by_pokemon(entries, 0.25, seed=s)[1]) for s in range(4, 10))


def test_split_edge_cases():
    entries = _entries([1, 1, 2])
    assert split_by_pokemon(entries, 0.0)[1].size == 0
    train, val = split_by_pokemon(entries, 0.9)
    assert train.size > 0  # the training side always keeps a Pokémon
    assert split_by_pokemon(_entries([5, 5]), 0.5)[1].size == 0  # one Pokémon: nothing to hold out
    nameless = [Entry(name=n, image_path=f"{i}.png", caption="c", source="s") for i, n in enumerate("aAb")]
    train, val = split_by_pokemon(nameless, 0.3, seed=0)
    assert {0, 1} <= set(train.tolist()) or {0, 1} <= set(val.tolist())  # grouped by name, case-insensitive
    with pytest.raises(ValueError, match="val_fraction: got 1.0"):
        split_by_pokemon(entries, 1.0)


def test_make_dataset_batches_shuffles_by_seed_and_flips():
    n = 10
    images = np.zeros((n, 4, 4, 3), np.float32)
    images[:, :, :2] = 1.0  # left half white: a flip moves it right
    embeddings = np.arange(n, dtype=np.float32)[:, None].repeat(2, 1)
    batches = take_batches(make_dataset(images, embeddings, 4, seed=1), 10)
    assert [len(b[0]) for b in batches] == [4, 4, 2]  # one epoch, remainder kept
    order = np.concatenate([b[1][:, 0] for b in batches])
    assert sorted(order.tolist()) == list(range(n)) and order.tolist() != list(range(n))
    again = np.concatenate([b[1][:, 0] for b in take_batches(make_dataset(images, embeddings, 4, seed=1), 10)])
    np.testing.assert_array_equal(order, again)
    other = np.concatenate([b[1][:, 0] for b in take_batches(make_dataset(images, embeddings, 4, seed=2), 10)])
    assert other.tolist() != order.tolist()
    flipped = np.concatenate([b[0][:, 0, 0, 0] for b in batches]) == 0.0
    assert 0 < flipped.sum() < n
    plain = take_batches(make_dataset(images, embeddings, 4, shuffle=False, flip=False), 10)
    np.testing.assert_array_equal(np.concatenate([b[1][:, 0] for b in plain]), np.arange(n))
    assert all((b[0][:, :, :2] == 1.0).all() for b in plain)


def test_repeated_stream_reshuffles_and_resumes_at_any_element():
    n = 6
    images = np.random.default_rng(0).uniform(-1, 1, (n, 4, 4, 3)).astype(np.float32)
    embeddings = np.arange(n, dtype=np.float32)[:, None]
    full = take_batches(make_dataset(images, embeddings, 4, seed=5, repeat=True, with_index=True), 6)  # 4 epochs
    ids = np.concatenate([b[1][:, 0] for b in full])
    epochs = ids.reshape(4, n)
    assert all(sorted(e.tolist()) == list(range(n)) for e in epochs)  # each epoch a permutation
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled between epochs
    np.testing.assert_array_equal(np.concatenate([b[2] for b in full]), np.arange(24))
    # resuming at step 3 (element 12) gives exactly the rest of the stream, flips included
    resumed = take_batches(make_dataset(images, embeddings, 4, seed=5, repeat=True, with_index=True, start_index=12), 3)
    for a, b in zip(full[3:], resumed):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_make_dataset_rejects_bad_input():
    with pytest.raises(DataError, match=r"got images \(2, 4, 4, 3\) and embeddings \(3, 2\)"):
        make_dataset(np.zeros((2, 4, 4, 3)), np.zeros((3, 2)))
    with pytest.raises(DataError, match="batch_size: got 0"):
        make_dataset(np.zeros((2, 4, 4, 3)), np.zeros((2, 2)), 0)


def test_embeddings_json_must_be_valid(tmp_path):
    root = write_tiny_dataset(tmp_path, n=2)
    (root / "embeddings.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(DataError, match="'dim' \\(integer\\)"):
        load_data(root)


def test_a_non_numeric_embedding_is_skipped(tmp_path, caplog):
    root = write_tiny_dataset(tmp_path, n=2)
    entries = read_metadata(root)
    np.save(root / entries[0].embedding_path, np.array(["a"] * 8))
    with caplog.at_level(logging.WARNING, logger="pokemon_diffusion"):
        images, _ = load_data(root, (8, 8))
    assert len(images) == 1 and "holds <U1 values; expected numbers" in caplog.text
