"""Pack a collected dataset into one .npz (uint8 images, embeddings, the trainer's split).

For copying the data to a machine that has no copy of it (see bench_gpu_torch.py):
    python benchmarks/pack_dataset.py --data data/pokemon --size 64 --out packed64.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pokemon_diffusion.data.dataset import load_examples, split_by_pokemon  # noqa: E402
from pokemon_diffusion.collection.metadata import METADATA_FILE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    examples = load_examples(args.data / METADATA_FILE, (args.size, args.size))
    train, val = split_by_pokemon(examples.entries, args.val_fraction, args.seed)
    images = np.clip(np.rint((examples.images + 1.0) * 127.5), 0, 255).astype(np.uint8)
    np.savez(args.out, images=images, embeddings=examples.embeddings.astype(np.float32), train=train, val=val)
    print(f"{args.out}: {len(images)} images {images.shape[1:]}, {len(train)} train / {len(val)} held out")


if __name__ == "__main__":
    main()
