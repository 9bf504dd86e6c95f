"""Text-encoder figures as JSON: import cost, model load time, and embedding the 1,008 Pokédex captions.

Usage:
    HF_HUB_OFFLINE=1 python benchmarks/bench_text.py [--encoder minilm] [--batch-size 64] [--repeat 3]

Each import is timed in a fresh interpreter, so the numbers include the cost a user pays once per
process. Captions come from the ``pokemon`` package's database, written as the dataset writes them
(``make_caption``: "Charmander, a Fire-type Pokémon").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pokedex_captions() -> list:
    """The 1,008 captions of the packaged Pokédex (names and types of the ``pokemon`` package)."""
    from pokemon_diffusion.collection.metadata import make_caption

    spec = find_spec("pokemon")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the `pokemon` package is not installed")
    database = Path(list(spec.submodule_search_locations)[0]) / "database" / "pokemons.json"
    items = json.loads(database.read_text(encoding="utf-8"))
    ordered = sorted(items.values(), key=lambda item: int(item["id"]))
    return [make_caption(item["name"], [t.title() for t in item["type"]]) for item in ordered]


def timed_import(statement: str) -> float:
    """Seconds for ``statement`` in a fresh interpreter, interpreter start-up excluded."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core)")
    args = parser.parse_args()

    figures = {
        "import_pokemon_diffusion_data_text_s": timed_import("import pokemon_diffusion.text.embeddings"),
        "import_torch_transformers_s": timed_import("import torch, transformers; "
                                                    "from transformers import AutoModel, AutoTokenizer"),
    }
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from pokemon_diffusion.text.embeddings import load_text_encoder

    start = time.perf_counter()
    encoder = load_text_encoder(args.encoder, device="cpu")
    figures["load_encoder_s"] = time.perf_counter() - start
    captions = pokedex_captions()
    encoder.encode(captions[:8])  # warm-up: first-call allocations
    runs = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        encoder.encode(captions, batch_size=args.batch_size)
        runs.append(time.perf_counter() - start)
    figures.update({
        "encoder": encoder.name, "dim": encoder.dim, "captions": len(captions),
        "batch_size": args.batch_size, "embed_s_runs": [round(r, 3) for r in runs],
        "embed_s_median": statistics.median(runs),
        "captions_per_s": len(captions) / statistics.median(runs),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
    })
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
