"""Stage 2: captions -> text embeddings.

Chooses an encoder (``auto``: CLIP when it is in the local Hugging Face cache, else the packaged
MiniLM, offline), compares a few captions, and, given a dataset folder made by ``collect``,
embeds all of its captions into DIR/embeddings/*.npy::

    python examples/02_embed.py                  # encoders only
    python examples/02_embed.py data/pokemon     # also embed that dataset (same as `pokemon-diffusion embed`)
"""

import sys

import numpy as np

from pokemon_diffusion.text.embeddings import (embed_dataset, get_text_embedding, load_text_encoder,
                                         null_text_embedding)
from pokemon_diffusion.logging_utils import setup_logging

setup_logging(0)  # show which encoder `auto` chose, and why
encoder = load_text_encoder("auto")  # or "minilm", "clip", a hub id, a local folder
print(f"encoder {encoder.name}: {encoder.dim}-d")

captions = ["Charmander, a Fire-type Pokémon", "Vulpix, a Fire-type Pokémon",
            "Squirtle, a Water-type Pokémon", "Bulbasaur, a Grass/Poison-type Pokémon"]
vectors = encoder.encode(captions)  # float32 (4, dim), unit-length rows
prompt = get_text_embedding("a fire-breathing lizard", encoder)  # float32 (dim,)
scores = vectors @ prompt  # cosine similarity, since every vector has length 1
for caption, score in sorted(zip(captions, scores), key=lambda pair: -pair[1]):
    print(f"  {score:+.3f}  {caption}")

# Classifier-free guidance's "no caption" input is the zero vector of the same size.
assert not null_text_embedding(encoder.dim).any() and np.isclose(np.linalg.norm(prompt), 1.0)

if len(sys.argv) > 1:
    print(embed_dataset(sys.argv[1], encoder))  # skips captions already embedded by this encoder
