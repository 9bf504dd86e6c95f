"""The seed's one-call dataset builder: :func:`collect` then :func:`embed_dataset`.

It sits above both stages (``collect`` -> ``text``), so neither imports the other's caller.
"""

from __future__ import annotations

from typing import Optional, Tuple

from .collection.pipeline import CollectSummary, collect
from .config import DataConfig
from .text.embeddings import EmbedSummary, embed_dataset

__all__ = ["scrape_pokemon_images_and_embeddings"]


def scrape_pokemon_images_and_embeddings(out_dir: str = "data/pokemon", *, source: str = "pokedex",
                                         text_encoder="auto", limit: Optional[int] = None, force: bool = False,
                                         **options) -> Tuple[CollectSummary, EmbedSummary]:
    """The seed's one-call function: collect a dataset, then embed its captions.

    Args:
        out_dir: dataset folder to write (``pokemon_images/``, ``pokemon_metadata.json``, ``embeddings/``).
        source: "pokedex" (offline default) | "bulbapedia" | "folder" (then pass ``path=``).
        text_encoder: an encoder spec (auto | clip | minilm | hub id | path) or a loaded encoder.
        limit: only the first N Pokémon.
        force: fetch and embed everything again.
        **options: other :class:`DataConfig` fields (``url``, ``delay``, ``path``, ``max_bytes`` ...).

    Returns:
        ``(CollectSummary, EmbedSummary)``.

    Example:
        >>> collected, embedded = scrape_pokemon_images_and_embeddings("data/pokemon", limit=10)  # doctest: +SKIP
    """
    spec = text_encoder if isinstance(text_encoder, str) else "auto"
    config = DataConfig(source=source, out_dir=str(out_dir), limit=limit, force=force, text_encoder=spec,
                        **options)
    collected = collect(config)
    embedded = embed_dataset(config.out_dir, text_encoder, batch_size=config.embed_batch_size, force=force)
    return collected, embedded
