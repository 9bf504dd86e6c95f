"""Runs on the Hugging Face Hub (hf://owner/repo[@revision]), offline against a pre-filled cache."""

import socket

import numpy as np
import pytest

from pokemon_diffusion.cli import main
from pokemon_diffusion.errors import CheckpointError
from pokemon_diffusion.hub import hub_name, parse_hub_ref
from pokemon_diffusion.run_dir import load_run
from test_sample_cli import encoder, make_run, one_line_error  # noqa: F401 (fixtures)
from tiny_text_models import put_in_hub_cache

COMMIT = "0" * 40  # put_in_hub_cache's snapshot


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("hub_run"))


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny_run):
    """A Hugging Face cache holding owner/tiny-run at main = COMMIT, offline, every socket refused."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    put_in_hub_cache(cache, "owner/tiny-run", tiny_run)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield cache
    assert attempts == [], "the hub was contacted"


@pytest.mark.parametrize("text, expected", [
    ("hf://owner/repo", ("owner/repo", "main")),
    ("hf://owner/repo@v1.2", ("owner/repo", "v1.2")),
    (f"hf://o-1/r_2.x@{COMMIT}", ("o-1/r_2.x", COMMIT)),
    ("hf://owner/repo@refs/pr/3", ("owner/repo", "refs/pr/3")),
])
def test_hub_refs_are_parsed(text, expected):
    assert parse_hub_ref(text) == expected


@pytest.mark.parametrize("text", ["hf://", "hf://repo", "hf://a/b/c", "hf://owner/repo@", "hf://../x",
                                  "hf://owner/re po", "hf://owner/repo@../../etc", "owner/repo"])
def test_a_malformed_hub_ref_is_one_line_naming_the_form(text):
    with pytest.raises(CheckpointError, match=r"allowed: hf://OWNER/REPO or hf://OWNER/REPO@REVISION"):
        parse_hub_ref(text)


def test_load_run_from_the_hub_cache_at_a_branch_or_a_pinned_commit(hub, tiny_run, caplog):
    import logging

    logger = logging.getLogger("pokemon_diffusion")
    attach = not logger.propagate  # the CLI's setup_logging stops propagation; else caplog sees records already
    if attach:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="pokemon_diffusion")
    local = load_run(tiny_run)
    for ref in ("hf://owner/tiny-run", f"hf://owner/tiny-run@{COMMIT}"):
        run = load_run(ref)
        assert run.path == hub / "models--owner--tiny-run" / "snapshots" / COMMIT
        assert run.config == local.config and run.encoder == local.encoder
        for a, b in zip(run.model.get_weights(), local.model.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert hub_name(run.path) == f"hf://owner/tiny-run@{COMMIT[:12]}"
    if attach:
        logger.removeHandler(caplog.handler)
    pins = [r.getMessage() for r in caplog.records if "to pin it" in r.getMessage()]
    assert pins == [f"run hf://owner/tiny-run is commit {COMMIT} (pass hf://owner/tiny-run@{COMMIT} to pin it)"]


@pytest.mark.parametrize("ref, message", [
    ("hf://owner/tiny-run@v2", "not in the local Hugging Face cache and the Hub cannot be reached"),
    ("hf://owner/other", "not in the local Hugging Face cache"),
])
def test_a_run_not_in_the_cache_offline_is_a_checkpoint_error(hub, ref, message):
    with pytest.raises(CheckpointError, match=message):
        load_run(ref)


def test_sample_run_hf_writes_the_hub_name_into_the_pngs(hub, encoder, tmp_path, capsys):  # noqa: F811
    from PIL import Image

    out = tmp_path / "pngs"
    assert main(["sample", "--run", "hf://owner/tiny-run", "--prompt", "a ghost", "--steps", "2", "--seed", "1",
                 "--out-dir", str(out)]) == 0
    png, = out.iterdir()
    with Image.open(png) as image:
        assert image.text["model"] == f"hf://owner/tiny-run@{COMMIT[:12]}"
    capsys.readouterr()
    assert main(["sample", "--run", "hf://owner/tiny-run@nope", "--prompt", "a ghost", "--out-dir", str(out)]) == 2
    assert "run hf://owner/tiny-run@nope: not in the local Hugging Face cache" in one_line_error(capsys)
