"""Stage 2, embed: text encoders (CLIP, the packaged MiniLM) and caption embeddings on disk.

``encoders`` (loading Hugging Face text towers without waiting on the network), ``embeddings``
(encoder specs, ``get_text_embedding``, ``embed_dataset``). torch loads only inside an encoder.
"""
