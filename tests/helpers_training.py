"""Tiny datasets and configs for the data-pipeline and training tests (no network, seconds to run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pokemon_diffusion.config import DiffusionConfig, ModelConfig, RunConfig, TrainConfig
from pokemon_diffusion.collection.metadata import Entry, make_caption, write_metadata

ENCODER = {"name": "test-encoder", "dim": 8}
TYPES = ["Fire", "Water", "Grass", "Electric"]


def write_tiny_dataset(root: Path, n: int = 12, size: int = 20, dim: int = 8, pokemon: int = 4,
                       seed: int = 0) -> Path:
    """A dataset folder: ``n`` RGB PNGs (a coloured disc per Pokémon on white), metadata,
    ``.npy`` caption embeddings (one vector per Pokémon) and ``embeddings.json``.

    Images are ``size`` x ``size`` (not the training size, so loading resizes them).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "pokemon_images").mkdir(parents=True, exist_ok=True)
    (root / "embeddings").mkdir(exist_ok=True)
    vectors = rng.standard_normal((pokemon, dim)).astype(np.float32)
    colours = rng.integers(0, 200, (pokemon, 3))
    entries = []
    for i in range(n):
        p = i % pokemon
        image = np.full((size, size, 3), 255, np.uint8)
        centre = (int(rng.integers(size // 3, 2 * size // 3)), int(rng.integers(size // 3, 2 * size // 3)))
        cv2.circle(image, centre, size // 4, tuple(int(c) for c in colours[p]), -1)
        stem = f"{p + 1:04d}_mon{p}_{i}"
        cv2.imwrite(str(root / "pokemon_images" / f"{stem}.png"), image)
        np.save(root / "embeddings" / f"{stem}.npy", vectors[p])
        entries.append(Entry(name=f"Mon{p}", dex=p + 1, types=[TYPES[p % 4]],
                             caption=make_caption(f"Mon{p}", [TYPES[p % 4]]), source="test",
                             image_path=f"pokemon_images/{stem}.png", embedding_path=f"embeddings/{stem}.npy"))
    write_metadata(root, entries)
    (root / "embeddings.json").write_text(json.dumps({**ENCODER, "dim": dim}))
    return root


def tiny_config(image_size: int = 16, norm: str = "batch", dropout: float = 0.0, timesteps: int = 100,
                channel_mults: tuple = (1,), prediction: str = "v", **train: Any) -> RunConfig:
    """A U-Net of a few thousand parameters and a short schedule; ``train`` overrides TrainConfig.

    One level by default (no down/up path): tracing the train step costs seconds per level, and
    the loop tests are about the loop. Pass ``channel_mults=(1, 2)`` for a real U shape.
    """
    defaults = dict(steps=4, batch_size=4, learning_rate=1e-3, warmup_steps=1, log_every=1, eval_every=2,
                    checkpoint_every=2, sample_every=0, val_fraction=0.25, eval_timesteps=2,
                    mixed_precision=False)  # float32: the mechanics' exact equivalences hold on every CPU
    defaults.update(train)  # (the default, "auto", is bfloat16 where native: tests/test_hardware.py)
    return RunConfig(
        model=ModelConfig(image_size=image_size, base_width=8, channel_mults=channel_mults, num_res_blocks=1,
                          dropout=dropout, norm=norm, norm_groups=4, text_dim=ENCODER["dim"]),
        diffusion=DiffusionConfig(timesteps=timesteps, prediction=prediction),
        train=TrainConfig(**defaults),
    )


def take_batches(ds, batches):
    """The first ``batches`` batches of a tf.data stream, as lists of NumPy arrays."""
    out = []
    for i, batch in enumerate(ds):
        if i == batches:
            break
        out.append([b.numpy() for b in batch])
    return out
