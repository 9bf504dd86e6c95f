"""Stage 1, collect: Pokémon images and names from Bulbapedia, the packaged Pokédex or a folder.

``http`` (one polite requests session), ``bulbapedia`` / ``pokedex`` / ``folder`` (the sources),
``images`` (decode, check, name safely), ``metadata`` (the dataset's JSON index and captions),
``pipeline`` (:func:`~pokemon_diffusion.collection.pipeline.collect`, the one loop over any source).
"""
