"""The one-call public functions that chain the stages."""

import json

import numpy as np
from PIL import Image

import pokemon_diffusion as pd


class CountingEncoder:
    name, dim = "test:counting", 3

    def __init__(self):
        self.calls = 0

    def encode(self, texts, batch_size=64):
        self.calls += 1
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], np.float32)


def test_scrape_pokemon_images_and_embeddings_collects_then_embeds(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, colour in [("Pikachu", "yellow"), ("Squirtle", "blue"), ("Bulbasaur", "green")]:
        Image.new("RGB", (20, 12), colour).save(src / f"{name}.png")
    encoder = CountingEncoder()
    out = tmp_path / "data"
    collected, embedded = pd.scrape_pokemon_images_and_embeddings(out, source="folder", path=str(src),
                                                                  text_encoder=encoder)
    assert collected.images == 3 and embedded.embedded == 3 and encoder.calls >= 1
    metadata = json.loads((out / "pokemon_metadata.json").read_text())
    assert sorted(item["name"] for item in metadata) == ["Bulbasaur", "Pikachu", "Squirtle"]
    for item in metadata:
        vector = np.load(out / item["embedding_path"])
        assert vector.dtype == np.float32 and vector.shape == (3,)
    # a second call finds everything in place: nothing fetched or embedded again
    calls = encoder.calls
    collected, embedded = pd.scrape_pokemon_images_and_embeddings(out, source="folder", path=str(src),
                                                                  text_encoder=encoder)
    assert collected.downloaded == 0 and embedded.embedded == 0 and encoder.calls == calls


def test_every_lazy_export_resolves():
    for name in pd._LAZY:
        assert getattr(pd, name) is not None, name
