"""Prompt-form robustness in evaluate: a rigged model with a known answer per form."""

import numpy as np

from pokemon_diffusion.collection.metadata import Entry
from pokemon_diffusion.evaluation.eval_data import EvalData
from pokemon_diffusion.evaluation.report import format_prompt_forms
from pokemon_diffusion.evaluation.prompt_forms import choose_pokemon, form_prompts, \
    prompt_form_report
from pokemon_diffusion.prompts import NameTable

COLOURS = {"Redmon": (230, 30, 30), "Greenmon": (40, 180, 40), "Bluemon": (30, 60, 220), "Yellowmon": (240, 220, 20)}


def _data():
    entries, images = [], []
    for dex, (name, rgb) in enumerate(COLOURS.items(), start=1):
        colour = name[:-3].lower()
        entries.append(Entry(name=name, image_path=f"p/{dex}.png", source="test", dex=dex, types=["Normal"],
                             caption=f"{name}, a small {colour} Normal-type Pokémon"))
        image = np.full((16, 16, 3), 255, np.uint8)
        image[3:13, 3 + dex:11 + dex] = rgb  # a coloured figure on white, each in its own place
        images.append(image.astype(np.float32) / 127.5 - 1.0)
    return EvalData(entries, np.stack(images), np.zeros((4, 3), np.float32))


class _Rigged:
    """A 'model' that draws the real Pokémon when the prompt has its colour word, else the next one:
    it follows descriptions and captions, and does not know names on their own."""

    def __init__(self, data):
        self.data = data

    def encode(self, texts):
        out = []
        for text in texts:
            hit = [i for i, name in enumerate(COLOURS) if name[:-3].lower() in text.split()]
            named = [i for i, name in enumerate(COLOURS) if name in text]
            out.append(hit[0] if hit else (named[0] + 1) % 4)
        return np.asarray(out, np.float32)[:, None]

    def generate(self, embeddings, seed, texts=None):
        rng = np.random.default_rng(seed)
        images = self.data.images[embeddings[:, 0].astype(int)]
        return np.clip(images + rng.normal(0, 0.02, images.shape), -1, 1).astype(np.float32)


class _Run:
    name_table = None


def test_every_form_scored_with_and_without_enrichment():
    data = _data()
    rigged = _Rigged(data)
    table = NameTable.from_entries(data.entries)
    report = prompt_form_report(_Run(), data, [0, 1, 2], [3], encode=rigged.encode, generate=rigged.generate,
                                num_pokemon=3, seeds=2, seed=0, k=1, table=table)
    got = {(r["split"], r["form"], r["enriched"]): r for r in report["results"]}
    assert set(got) == {(s, f, e) for s in ("train", "heldout") for f in ("name", "example", "caption", "description")
                        for e in (False,)} | {(s, f, True) for s in ("train", "heldout") for f in ("name", "example")}
    for key, result in got.items():
        follows = key[1] in ("caption", "description") or key[2]  # the colour word reaches the model
        assert result["colour"]["mean"] == (1.0 if follows else 0.0), key
        assert result["top1"]["mean"] == (1.0 if follows else 0.0), key
        assert result["num_samples"] == 2 * (3 if key[0] == "train" else 1)
        assert 0.0 < result["variety_ratio"] < 0.5  # seeds differ a little, far less than two Pokémon
    assert got[("train", "name", True)]["example"] == "Redmon, a small red Normal-type Pokémon"
    assert got[("train", "example", False)]["example"] == "Redmon, a Normal-type Pokémon"
    assert got[("train", "description", False)]["example"] == "a small red Normal-type Pokémon"
    assert 0.0 < got[("train", "name", False)]["colour_chance"] < 1.0
    assert report["pokemon"] == {"train": ["Redmon", "Greenmon", "Bluemon"], "heldout": ["Yellowmon"]}
    text = format_prompt_forms(report)
    assert "heldout  name         yes" in text and "chance: colour" in text


def test_choose_pokemon_is_seeded_one_per_name():
    entries = [Entry(name=f"P{i // 2}", image_path=f"{i}.png", caption="c", source="t", dex=i // 2,
                     form=None if i % 2 == 0 else "Mega") for i in range(40)]
    first = choose_pokemon(entries, list(range(30)), list(range(30, 40)), 5, seed=1)
    assert first["train"].size == 5 and first["heldout"].size == 5
    assert all(entries[i].form is None for i in np.concatenate(list(first.values())))  # base forms first
    assert len({entries[i].name for i in first["train"]}) == 5
    again = choose_pokemon(entries, list(range(30)), list(range(30, 40)), 5, seed=1)
    other = choose_pokemon(entries, list(range(30)), list(range(30, 40)), 5, seed=2)
    assert np.array_equal(first["train"], again["train"]) and not np.array_equal(first["train"], other["train"])


def test_form_prompts_of_an_entry_with_a_form():
    entry = Entry(name="Vulpix", image_path="v.png", caption="Vulpix (Alolan Form), a small white Ice-type Pokémon",
                  source="t", form="Alolan Form", types=["Ice"])
    assert form_prompts(entry) == {"name": "Vulpix (Alolan Form)",
                                   "example": "Vulpix (Alolan Form), an Ice-type Pokémon",
                                   "caption": "Vulpix (Alolan Form), a small white Ice-type Pokémon",
                                   "description": "a small white Ice-type Pokémon"}


def test_module_entry_point_refuses_bad_flags_with_one_line(capsys):
    """``python -m ...prompt_forms`` checks its flags as `evaluate` does: exit 2, the allowed values named."""
    import pytest

    from pokemon_diffusion.evaluation.prompt_forms import main

    for flags, allowed in ((["--cads-range", "0.9,0.1"], "0 <= LOW < HIGH <= 1"), (["--seeds", "1"], "from 2 to 64"),
                           (["--guidance-interval", "x"], "LOW,HIGH"), (["--cads", "-1"], "allowed")):
        with pytest.raises(SystemExit) as stop:
            main(["reference", "--data", "nowhere", *flags])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert flags[0] in err and allowed in err, err
