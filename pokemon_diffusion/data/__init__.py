"""Stage 3a, read: a dataset folder (made by ``collect`` and ``embed``) as arrays and training batches.

``dataset`` (``load_data`` / ``load_examples`` with cv2, ``make_dataset`` with tf.data, the
held-out split by whole Pokémon). The JAX path reads the same folder with NumPy only
(``training/jax_data.py``).
"""
