"""Tiny random transformers text models saved with save_pretrained, for tests without internet.

They go through the same loading code as the real ones (config, weights and tokenizer files in a
folder), so only their size and their random weights differ.
"""

from __future__ import annotations

import json
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def write_clip_vocab(folder: Path) -> None:
    """A byte-level BPE vocabulary of single letters plus a few merges ("fire", "water")."""
    vocab = {c: i for i, c in enumerate(LETTERS)}
    vocab.update({f"{c}</w>": len(LETTERS) + i for i, c in enumerate(LETTERS)})
    merges = ["f i", "fi r", "fir e</w>", "w a", "wa t", "wat e", "wate r</w>"]
    for merged in ("fi", "fir", "fire</w>", "wa", "wat", "wate", "water</w>"):
        vocab[merged] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def build_tiny_clip(folder: Path, *, seed: int = 0, max_positions: int = 16, projection_dim: int = 8,
                    vocab_size: int | None = None) -> Path:
    """Save a tiny random ``CLIPModel`` (text and vision towers) and its tokenizer in ``folder``.

    Args:
        folder: where to save (created).
        seed: torch seed of the random weights (two seeds = two different encoders).
        max_positions: the text tower's maximum length in tokens (captions are truncated to it).
        projection_dim: the embedding size the encoder reports.
        vocab_size: override the model's vocabulary size (to build a mismatching tokenizer).

    Returns:
        ``folder``.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    write_clip_vocab(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    text = dict(vocab_size=vocab_size or len(tokenizer), hidden_size=16, intermediate_size=32,
                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=max_positions,
                bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=8, patch_size=4)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # config checks of the tiny vocabulary are expected noise
    try:
        config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    finally:
        hf_logging.set_verbosity(verbosity)
    return folder


def put_in_hub_cache(cache: Path, repo_id: str, model_folder: Path) -> Path:
    """Lay ``model_folder``'s files out as the Hugging Face hub cache does for ``repo_id``."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in model_folder.iterdir():
        if path.is_file():
            (snapshot / path.name).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot
