"""The packaged MiniLM on Keras ops: parity with the transformers path, and running without torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pokemon_diffusion.collection.captions import make_captions
from pokemon_diffusion.errors import EncoderError
from pokemon_diffusion.text.encoders import MINILM_IDENTITY, EncoderLoadError, packaged_minilm_path
from pokemon_diffusion.text.minilm_keras import KerasMiniLMTextEncoder, read_safetensors
from pokemon_diffusion.text.wordpiece import WordPieceTokenizer

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_LIZARD_FIRST4 = [-0.05631, 0.018978, -0.065087, 0.047715]  # as in test_text.py
ODD_TEXTS = ["Flabébé, a tiny café ñ Ünown\tx\u200by 日本語 Mr. Mime!!", "a" * 150, "", "  ",
             "Farfetch'd (Galarian form), a Fighting-type Pokémon", "Type: Null / Porygon-Z"]


def _captions(count=200):
    """Dataset-style captions made by the collector's own caption function (every form)."""
    names = ["Bulbasaur", "Charizard", "Pikachu", "Mr. Mime", "Farfetch'd", "Flabébé", "Type: Null",
             "Porygon-Z", "Nidoran♀", "Ho-Oh", "Jangmo-o", "Kommo-o", "Sirfetch'd", "Mime Jr."]
    types = [("Grass", "Poison"), ("Fire", "Flying"), ("Electric",), ("Psychic", "Fairy"), ("Normal", "Flying")]
    colours = [("green",), ("orange",), ("yellow",), ("pink",), ("brown", "white")]
    out = []
    for i in range(1000):
        out += make_captions(names[i % len(names)], types[i % len(types)], "Galarian" if i % 7 == 0 else None,
                             colours=colours[(i // 3) % len(colours)], size=("small", "large", "")[i % 3],
                             abilities=("overgrow", "static") if i % 2 else ())
        if len(set(out)) >= count:
            break
    return sorted(set(out))[:count]


@pytest.fixture(scope="module")
def keras_minilm():
    return KerasMiniLMTextEncoder(device="cpu")


def test_identity_shape_and_unit_length(keras_minilm):
    vectors = keras_minilm.encode(["a red fire lizard", "Pikachu", ""])
    assert keras_minilm.name == MINILM_IDENTITY and keras_minilm.dim == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0, :4], GOLDEN_LIZARD_FIRST4, atol=1e-5)


def test_batch_equals_one_by_one(keras_minilm):
    texts = ["a red fire lizard", "a small blue Water-type Pokémon with a hard shell", "x"]
    together = keras_minilm.encode(texts, batch_size=3)
    alone = np.concatenate([keras_minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_parity_with_the_transformers_path(keras_minilm):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from pokemon_diffusion.text.encoders import MiniLMTextEncoder

    texts = _captions(200) + ODD_TEXTS
    assert len(texts) >= 200
    ours = keras_minilm.encode(texts)
    reference = MiniLMTextEncoder(device="cpu").encode(texts)
    cosine = np.sum(ours * reference, axis=1)
    assert cosine.min() >= 0.9999, f"lowest cosine {cosine.min():.6f} for {texts[int(cosine.argmin())]!r}"
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_wordpiece_matches_the_tokenizers_library():
    tokenizers = pytest.importorskip("tokenizers")
    folder = packaged_minilm_path()
    reference = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    ours = WordPieceTokenizer(folder / "vocab.txt")
    for text in _captions(200) + ODD_TEXTS:
        assert ours.ids(text, 10**6) == reference.encode(text).ids, text
    assert len(ours.ids("word " * 600, 256)) == 256


def test_encode_runs_with_torch_and_transformers_blocked(tmp_path):
    """A fresh process where importing torch or transformers fails still encodes, through the spec."""
    # A finder that refuses the names, as if they were not installed (``sys.modules[name] = None``
    # would break scipy, which looks torch up in sys.modules).
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in ('torch', 'transformers', 'sentence_transformers', 'tokenizers'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)')\n"
        "sys.meta_path.insert(0, Block())\n", encoding="utf-8")
    code = ("import json, sys\n"
            "from pokemon_diffusion.text.registry import load_text_encoder\n"
            "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    sys.exit('torch imported')\n"
            "out = {}\n"
            "for spec in ('minilm', 'auto', 'minilm:all-MiniLM-L6-v2'):\n"
            "    enc = load_text_encoder(spec, device='cpu')\n"
            "    out[spec] = [type(enc).__name__, enc.name, enc.encode(['a red fire lizard'])[0, :4].tolist()]\n"
            "out['loaded'] = [m for m in ('torch', 'transformers') if sys.modules.get(m) is not None]\n"
            "print(json.dumps(out))\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.pop("loaded") == []
    for spec, (kind, name, first4) in out.items():
        assert kind == "KerasMiniLMTextEncoder" and name == MINILM_IDENTITY, spec
        np.testing.assert_allclose(first4, GOLDEN_LIZARD_FIRST4, atol=1e-5)


def test_bad_inputs_are_one_line_errors(keras_minilm, tmp_path):
    with pytest.raises(EncoderError, match="device: got 'tpu'; allowed: cpu"):
        KerasMiniLMTextEncoder(device="tpu")
    with pytest.raises(TypeError, match="list of strings"):
        keras_minilm.encode("a red fire lizard")
    with pytest.raises(ValueError, match="batch_size"):
        keras_minilm.encode(["x"], batch_size=0)
    with pytest.raises(EncoderLoadError, match="cannot load the packaged MiniLM"):
        KerasMiniLMTextEncoder(folder=tmp_path)


def test_read_safetensors_round_trip_and_refusals(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]}, "__metadata__": {"format": "pt"}}
    blob = json.dumps(header).encode()
    body = np.arange(4, dtype="<f4").tobytes() + np.array([1.5, -2], dtype="<f2").tobytes()
    path = tmp_path / "w.safetensors"
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + body)
    tensors = read_safetensors(path)
    np.testing.assert_array_equal(tensors["a"], [[0, 1], [2, 3]])
    assert tensors["b"].dtype == np.float32 and tensors["b"].tolist() == [1.5, -2.0]
    header["a"]["dtype"] = "BF16"
    blob = json.dumps(header).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + body)
    with pytest.raises(ValueError, match="dtype BF16; allowed"):
        read_safetensors(path)
