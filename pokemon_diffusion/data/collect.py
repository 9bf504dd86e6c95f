"""Moved: :mod:`pokemon_diffusion.collection.pipeline` (``collect``) and :mod:`pokemon_diffusion.scrape`
(``scrape_pokemon_images_and_embeddings``); this import path keeps working."""

from ..collection.pipeline import (Candidate, CollectStopped, CollectSummary, Failure, collect,  # noqa: F401
                                gather_candidates, materialise)
from ..scrape import scrape_pokemon_images_and_embeddings  # noqa: F401
