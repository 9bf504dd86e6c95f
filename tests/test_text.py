"""Text encoders: a tiny random CLIP through the real loading path, the packaged MiniLM, specs."""

import logging
import subprocess
import sys

import numpy as np
import pytest

from pokemon_diffusion.text import registry as text
from pokemon_diffusion.text.encoders import MINILM_IDENTITY, EncoderLoadError
from pokemon_diffusion.text.embeddings import (EncoderSpec, get_text_embedding, load_encoder_matching,
                                         load_text_encoder, null_text_embedding, parse_spec)
from pokemon_diffusion.errors import EncoderError
from pokemon_diffusion.run_dir import EncoderInfo
from tiny_text_models import build_tiny_clip, put_in_hub_cache

CAPTIONS = ["Charmander, a Fire-type Pokémon", "Squirtle, a Water-type Pokémon", "fire water", ""]


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), max_positions=16)


@pytest.fixture(scope="session")
def clip(clip_dir):
    return load_text_encoder(str(clip_dir))


@pytest.fixture(scope="session")
def minilm():
    return load_text_encoder("minilm")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache for this test (transformers reads the constant at call time)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def package_log(caplog):
    """caplog for the package logger, also after the CLI's setup_logging stopped propagation."""
    logger = logging.getLogger("pokemon_diffusion")
    attach = not logger.propagate  # else records reach caplog's root handler already
    if attach:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="pokemon_diffusion")
    yield caplog
    if attach:
        logger.removeHandler(caplog.handler)


# --- tiny CLIP through ClipTextEncoder ----------------------------------------------------------

def test_clip_shapes_dtype_identity(clip, clip_dir):
    vectors = clip.encode(CAPTIONS)
    assert clip.name == f"clip:{clip_dir.resolve()}" and clip.dim == 8
    assert vectors.shape == (len(CAPTIONS), 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert clip.encode([]).shape == (0, 8)


def test_clip_is_deterministic_and_batch_equals_one_by_one(clip):
    batched = clip.encode(CAPTIONS, batch_size=3)
    one_by_one = np.stack([clip.encode([c])[0] for c in CAPTIONS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(clip.encode(CAPTIONS, batch_size=3), batched)
    assert np.abs(batched[0] - batched[1]).max() > 1e-3  # different captions, different vectors


def test_clip_truncates_long_captions_to_the_model_length(clip):
    long = "fire " * 200
    assert len(clip.tokenizer(long)["input_ids"]) > clip.max_length == 16
    a, b = clip.encode([long, long + "water water"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # the tail past 16 tokens is cut off


def test_clip_text_tower_matches_the_full_models_text_features(clip, clip_dir):
    import torch
    from transformers import CLIPModel

    full = CLIPModel.from_pretrained(str(clip_dir)).eval()
    batch = clip.tokenizer(CAPTIONS, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        features = full.get_text_features(**batch)
    features = getattr(features, "pooler_output", features)  # an output object in transformers 5
    expected = torch.nn.functional.normalize(features, dim=-1).numpy()
    np.testing.assert_allclose(clip.encode(CAPTIONS), expected, atol=1e-5)


def test_identity_loads_the_same_encoder_again(clip):
    again = load_text_encoder(clip.name)
    assert again.name == clip.name
    np.testing.assert_allclose(again.encode(CAPTIONS), clip.encode(CAPTIONS), atol=1e-6)


def test_a_different_seed_is_a_different_encoder(tmp_path, clip):
    other = load_text_encoder(str(build_tiny_clip(tmp_path / "other", seed=1)))
    assert other.name != clip.name
    assert np.abs(other.encode(CAPTIONS[:1]) - clip.encode(CAPTIONS[:1])).max() > 1e-3


def test_tokenizer_that_does_not_match_the_model_is_a_load_error(tmp_path):
    folder = build_tiny_clip(tmp_path / "big_vocab", vocab_size=1000)  # tokenizer has 63 tokens
    with pytest.raises(EncoderLoadError, match=r"tokenizer has \d+ tokens but the model's vocab_size is 1000"):
        load_text_encoder(str(folder))


def test_checkpoint_without_the_text_projection_is_refused(tmp_path, clip_dir):
    from transformers import CLIPTextModel

    folder = tmp_path / "text_only"
    CLIPTextModel.from_pretrained(str(clip_dir)).save_pretrained(str(folder))  # no projection weights
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((clip_dir / name).read_bytes())
    with pytest.raises(EncoderLoadError, match="lacks or mismatches weights text_projection.weight"):
        load_text_encoder(f"clip:{folder}")


def test_folder_without_tokenizer_files_is_refused(tmp_path):
    folder = build_tiny_clip(tmp_path / "no_tokenizer")
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(EncoderError) as info:
        load_text_encoder(str(folder))
    assert "\n" not in str(info.value) and "Fix:" in str(info.value)


def test_encode_rejects_a_bare_string_and_bad_batch_size(clip):
    with pytest.raises(TypeError, match="list of strings"):
        clip.encode("a fire lizard")
    with pytest.raises(ValueError, match="batch_size"):
        clip.encode(["a"], batch_size=0)


# --- choosing an encoder ---------------------------------------------------------------------

def test_auto_uses_clip_when_it_is_in_the_local_cache(hub_cache, clip_dir, package_log):
    put_in_hub_cache(hub_cache, "openai/clip-vit-base-patch32", clip_dir)
    encoder = load_text_encoder("auto")
    assert encoder.name == "clip:openai/clip-vit-base-patch32" and encoder.dim == 8
    assert not [r for r in package_log.records if r.levelno >= logging.WARNING]


def test_auto_falls_back_to_minilm_with_one_warning(hub_cache, minilm, monkeypatch, package_log):
    monkeypatch.setattr(text, "MiniLMTextEncoder", lambda device=None: minilm)  # loaded once per session
    assert load_text_encoder("auto") is minilm
    warnings = [r.getMessage() for r in package_log.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert MINILM_IDENTITY in warnings[0] and "not in the local Hugging Face cache" in warnings[0]


def test_auto_never_touches_the_network_even_when_online(hub_cache, minilm, monkeypatch):
    import socket

    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    attempts = []

    def record(*args, **kwargs):  # the hub client swallows exceptions, so record, then fail
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", record)
    monkeypatch.setattr(socket.socket, "connect", record)
    monkeypatch.setattr(text, "MiniLMTextEncoder", lambda device=None: minilm)
    assert load_text_encoder("auto") is minilm
    assert attempts == []
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored after the cache-only attempt


@pytest.mark.parametrize("spec", ["clip", "openai/clip-vit-base-patch32", "clip:someone/some-model"])
def test_explicit_encoder_offline_and_not_cached_is_a_one_line_error(hub_cache, spec):
    with pytest.raises(EncoderError) as info:
        load_text_encoder(spec)
    message = str(info.value)
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message and "--text-encoder minilm" in message


@pytest.mark.parametrize("spec, expected", [
    ("auto", EncoderSpec("auto")),
    (" MiniLM ", EncoderSpec("minilm")),
    ("minilm:all-MiniLM-L6-v2", EncoderSpec("minilm")),
    ("sentence-transformers/all-MiniLM-L6-v2", EncoderSpec("minilm")),
    ("clip", EncoderSpec("clip", "openai/clip-vit-base-patch32")),
    ("clip:openai/clip-vit-large-patch14", EncoderSpec("clip", "openai/clip-vit-large-patch14")),
    ("sentence:org/model", EncoderSpec("sentence", "org/model")),
    ("org/model", EncoderSpec("hub", "org/model")),
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "allowed: auto | clip | minilm"),
    ("clipp", "got 'clipp'; allowed: auto"),
    ("./no/such/folder", "folder not found"),
    ("clip:/no/such/folder", "neither an existing folder nor a hub id"),
])
def test_bad_specs_name_what_is_allowed(spec, message):
    with pytest.raises(EncoderError, match=message):
        parse_spec(spec)


def test_local_folders_are_recognised_by_their_config(clip_dir, tmp_path):
    assert parse_spec(str(clip_dir)) == EncoderSpec("clip", str(clip_dir.resolve()))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    assert parse_spec(str(bert)).identity == f"sentence:{bert.resolve()}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match="cannot read config.json"):
        parse_spec(str(tmp_path / "empty"))


def test_bad_device_is_refused(clip_dir):
    for device in ("tpu", "cuda:99"):
        with pytest.raises(EncoderError, match="device: got"):
            load_text_encoder(str(clip_dir), device=device)


# --- the packaged MiniLM ---------------------------------------------------------------------

def test_minilm_similar_captions_are_closer(minilm):
    lizard, salamander, turtle = minilm.encode(["a red fire lizard", "a fire-type salamander",
                                                "a blue water turtle"])
    assert minilm.name == MINILM_IDENTITY and minilm.dim == 384
    assert lizard @ salamander > lizard @ turtle + 0.1
    assert lizard @ salamander > salamander @ turtle + 0.1


def test_minilm_matches_sentence_transformers(minilm):
    # Golden values from SentenceTransformer(<packaged folder>).encode(..., normalize_embeddings=True)
    vector = minilm.encode(["a red fire lizard"])[0]
    np.testing.assert_allclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    np.testing.assert_allclose(vector[:4], GOLDEN_LIZARD_FIRST4, atol=1e-5)
    # and every dimension of several texts (short, long, padded in one batch) against the library itself
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # the golden values above still hold the line
        pytest.skip(f"sentence-transformers is not importable here ({exc})")
    from pokemon_diffusion.text.encoders import packaged_minilm_path

    texts = ["a red fire lizard", "Pikachu", "a small blue Water-type Pokémon with a hard shell and a curled tail, "
             "drawn in the style of the official artwork"]
    reference = SentenceTransformer(str(packaged_minilm_path()), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.encode(texts), reference, atol=1e-5)


# --- get_text_embedding, null embedding, matching a run's encoder ----------------------------

def test_get_text_embedding(clip, clip_dir):
    vector = get_text_embedding("a fire lizard", clip)
    assert vector.shape == (8,) and vector.dtype == np.float32
    np.testing.assert_allclose(vector, clip.encode(["a fire lizard"])[0], atol=1e-6)
    text._cached_encoder.cache_clear()
    try:
        np.testing.assert_allclose(get_text_embedding("a fire lizard", str(clip_dir)), vector, atol=1e-6)
        get_text_embedding("water", str(clip_dir))
        assert text._cached_encoder.cache_info().hits == 1  # the model was loaded once
    finally:
        text._cached_encoder.cache_clear()
    with pytest.raises(TypeError):
        get_text_embedding(["a list"], clip)


def test_null_embedding_is_zeros():
    null = null_text_embedding(8)
    assert null.shape == (8,) and null.dtype == np.float32 and not null.any()
    with pytest.raises(ValueError, match="positive integer"):
        null_text_embedding(0)


def test_load_encoder_matching(clip, monkeypatch):
    expected = EncoderInfo(clip.name, clip.dim)
    assert load_encoder_matching(expected).name == clip.name
    assert load_encoder_matching(expected, "auto").name == clip.name

    def must_not_load(*args, **kwargs):
        raise AssertionError("a mismatching encoder was loaded")

    monkeypatch.setattr(text, "MiniLMTextEncoder", must_not_load)
    with pytest.raises(EncoderError, match="trained with 'clip:.*'.*use --text-encoder clip:"):
        load_encoder_matching(expected, "minilm")
    monkeypatch.undo()
    with pytest.raises(EncoderError, match="8-d embeddings but the model expects 384-d"):
        load_encoder_matching(EncoderInfo(clip.name, 384))


def test_importing_the_text_module_loads_no_framework():
    code = ("import sys, pokemon_diffusion, pokemon_diffusion.text.embeddings, pokemon_diffusion.commands.embed\n"
            "print([m for m in ('torch', 'transformers', 'tensorflow') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


GOLDEN_LIZARD_FIRST4 = [-0.05631, 0.018978, -0.065087, 0.047715]
