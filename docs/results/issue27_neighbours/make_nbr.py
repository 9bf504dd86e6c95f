"""Experiment (issue 27, variety): each training image also carries the name-free descriptions of
its K nearest same-colour training Pokémon (MiniLM cosine), tagged form "neighbour"."""
import json, os, shutil, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pokemon_diffusion.collection.metadata import Entry  # noqa
from pokemon_diffusion.data.dataset import split_by_pokemon

K = int(sys.argv[1]) if len(sys.argv) > 1 else 4
src, dst = Path("data/pokemon_tagged"), Path(sys.argv[2] if len(sys.argv) > 2 else "data/pokemon_nbr")
meta = json.loads((src / "pokemon_metadata.json").read_text())
entries = [Entry.from_dict(m) if hasattr(Entry, "from_dict") else Entry(**m) for m in meta]
train, _ = split_by_pokemon(entries, 0.05, 0)
train = set(int(i) for i in train)
rows = [np.load(src / m["captions_embedding_path"]) for m in meta]
form = lambda m, f: m["caption_forms"].index(f)
desc = np.stack([r[form(m, "description")] for r, m in zip(rows, meta)])
desc /= np.linalg.norm(desc, axis=1, keepdims=True)
colour = [m["captions"][form(m, "colour")] for m in meta]
if dst.exists():
    shutil.rmtree(dst)
(dst / "embeddings").mkdir(parents=True)
shutil.copytree(src / "pokemon_images", dst / "pokemon_images", copy_function=os.link)
shutil.copy(src / "embeddings.json", dst / "embeddings.json")
counts = []
for i, m in enumerate(meta):
    os.link(src / m["embedding_path"], dst / m["embedding_path"])
    extra = []
    if i in train:
        cand = [j for j in train if j != i and meta[j]["dex"] != m["dex"] and colour[j] == colour[i]
                and meta[j]["captions"][form(meta[j], "description")] != m["captions"][form(m, "description")]]
        cand.sort(key=lambda j: -float(desc[i] @ desc[j]))
        extra = cand[:K]
    counts.append(len(extra))
    m = dict(m)
    m["captions"] = m["captions"] + [meta[j]["captions"][form(meta[j], "description")] for j in extra]
    m["caption_forms"] = m["caption_forms"] + ["neighbour"] * len(extra)
    new = np.concatenate([rows[i]] + [rows[j][form(meta[j], "description")][None] for j in extra])
    np.save(dst / m["captions_embedding_path"], new.astype(np.float32))
    meta[i] = m
(dst / "pokemon_metadata.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))
print("neighbours per image:", np.bincount(counts))
