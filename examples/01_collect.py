"""Collect a small dataset from the offline Pokédex, rerun it (resume), and inspect the metadata.

    python examples/01_collect.py [OUT_DIR] [--limit N]

Then, for the web source (needs internet and a polite delay):

    pokemon-diffusion collect --source bulbapedia --out data/bulba --delay 1.5 --limit 50
"""

from __future__ import annotations

import argparse

from pokemon_diffusion.config import DataConfig
from pokemon_diffusion.collection.pipeline import collect
from pokemon_diffusion.collection.metadata import read_metadata
from pokemon_diffusion.logging_utils import setup_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", default="outputs/example_collect")
    parser.add_argument("--limit", type=int, default=24)
    args = parser.parse_args()
    setup_logging(0)  # the library logs the summary line and any failure

    config = DataConfig(source="pokedex", out_dir=args.out_dir, limit=args.limit)
    first = collect(config)
    print("first run: ", first.line())
    second = collect(config)  # everything present and valid: nothing is converted again
    print("second run:", second.line())

    entries = read_metadata(args.out_dir)  # validates every entry and checks the files exist
    for entry in entries[:5]:
        print(f"{entry.image_path:<36} {entry.caption}")
    print(f"{len(entries)} entries in {args.out_dir}/pokemon_metadata.json")


if __name__ == "__main__":
    main()
