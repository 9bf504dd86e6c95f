"""Pack a collected dataset into one .npz: uint8 images, embeddings, the trainer's split, the encoder.

For a machine that has no copy of the data, no OpenCV and no TensorFlow (the GPU machine):
``pokemon-diffusion train --backend jax --data packed64.npz`` reads it with NumPy only
(``training/jax_data.py``), and ``bench_gpu_torch.py`` / ``gpu_jax.py`` read it too.

    python benchmarks/pack_dataset.py --data data/pokemon --size 64 --out packed64.npz

The split is ``split_by_pokemon(entries, val_fraction, seed)``, as ``train`` makes it; the JAX
loop refuses a pack whose (seed, val_fraction) differ from the run's. 1,008 images at 64x64 with
384-d embeddings: about 14 MB (uncompressed; the copy limit is 64 MiB).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pokemon_diffusion.atomic import atomic_path  # noqa: E402
from pokemon_diffusion.collection.metadata import METADATA_FILE  # noqa: E402
from pokemon_diffusion.data.dataset import load_examples, read_embeddings_info, split_by_pokemon  # noqa: E402


def pack(data: Path, size: int, out: Path, val_fraction: float = 0.05, seed: int = 0) -> dict:
    """Write the pack; returns its meta (encoder, dim, size, seed, val_fraction, counts)."""
    info = read_embeddings_info(data)
    if info is None:
        raise SystemExit(f"{data} has no embeddings.json: run `pokemon-diffusion embed --data {data}` first")
    examples = load_examples(data / METADATA_FILE, (size, size))
    train, val = split_by_pokemon(examples.entries, val_fraction, seed)
    images = np.clip(np.rint((examples.images + 1.0) * 127.5), 0, 255).astype(np.uint8)  # exact: pixel/127.5 - 1
    meta = {"encoder": info["name"], "dim": int(info["dim"]), "size": size, "seed": seed,
            "val_fraction": val_fraction, "images": len(images), "train": len(train), "val": len(val)}
    with atomic_path(out) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, images=images, embeddings=examples.embeddings.astype(np.float32), train=train, val=val,
                 meta=np.array(json.dumps(meta)))
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    meta = pack(args.data, args.size, args.out, args.val_fraction, args.seed)
    print(f"{args.out}: {meta['images']} images of {args.size}x{args.size}, {meta['train']} train / {meta['val']} "
          f"held out, {args.out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
