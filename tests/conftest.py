"""Shared test set-up: offline, quiet, tiny, and ../shared fixtures when present."""

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("POKEMON_DIFFUSION_PROGRESS", "0")

ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    for candidate in (ROOT.parent / "shared", ROOT / "shared"):
        if candidate.is_dir():
            return candidate
    return ROOT.parent / "shared"


SHARED = _shared_dir()


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the checkout; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def package_log(caplog):
    """caplog that also sees the package logger after the CLI turned its propagation off."""
    logger = logging.getLogger("pokemon_diffusion")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def one_pass(monkeypatch):
    """The guided step as one batched pass over [cond; uncond] (a GPU's form;
    a multi-core CPU splits it): tests that count the model's calls per step."""
    from pokemon_diffusion.diffusion import compiled

    monkeypatch.setattr(compiled, "split_guided_pass", lambda **kwargs: False)
