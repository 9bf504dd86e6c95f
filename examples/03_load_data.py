"""Load a dataset folder with OpenCV and turn it into tf.data batches.

Usage:
    python examples/03_load_data.py [DATA_DIR] [--size 32]

DATA_DIR is made by `pokemon-diffusion collect` and `pokemon-diffusion embed` (default data/pokemon).
"""

import argparse
import logging

from pokemon_diffusion.data.dataset import load_data, load_examples, make_dataset, split_by_pokemon
from pokemon_diffusion.logging_utils import setup_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="data/pokemon")
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    setup_logging()
    log = logging.getLogger("pokemon_diffusion.example")  # shown by setup_logging

    # the seed's two arrays: images in [-1, 1] and caption embeddings
    images, embeddings = load_data(f"{args.data}/pokemon_metadata.json", shape=(args.size, args.size))
    log.info("images %s %s in [%.2f, %.2f]; embeddings %s", images.shape, images.dtype, images.min(),
             images.max(), embeddings.shape)

    # the entries too, to hold out whole Pokémon for validation
    examples = load_examples(args.data, (args.size, args.size))
    train_idx, val_idx = split_by_pokemon(examples.entries, val_fraction=0.05, seed=0)
    held_out = sorted({examples.entries[i].name for i in val_idx})
    log.info("%d training images, %d held out (%d Pokémon, e.g. %s)", len(train_idx), len(val_idx),
             len(held_out), ", ".join(held_out[:5]))

    train = examples.subset(train_idx)
    dataset = make_dataset(train.images, train.embeddings, batch_size=16, seed=0)
    batch_images, batch_embeddings = next(iter(dataset))
    log.info("one batch: %s %s", tuple(batch_images.shape), tuple(batch_embeddings.shape))


if __name__ == "__main__":
    main()
