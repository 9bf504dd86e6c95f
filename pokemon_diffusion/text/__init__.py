"""Stage 2, embed: text encoders (CLIP, the packaged MiniLM) and caption embeddings on disk.

``encoders`` (loading Hugging Face text towers without waiting on the network), ``registry``
(encoder specs, ``load_text_encoder``, ``get_text_embedding``), ``embeddings`` (``embed_dataset``:
the ``.npy`` files and ``embeddings.json``). torch loads only inside an encoder.
"""
