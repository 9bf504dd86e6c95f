"""Captions -> text embeddings on disk: :func:`embed_dataset` over a dataset folder.

Choosing an encoder (:func:`load_text_encoder`, :func:`get_text_embedding`) lives in
:mod:`pokemon_diffusion.text.registry` and is re-exported here. Specs (``auto``, ``clip``,
``minilm``, a hub id, a folder, an identity string) are listed there.

A dataset folder DIR gets ``DIR/embeddings/<image stem>.npy`` (float32, shape (dim,)) per entry,
the main caption's; for an entry with several captions also ``<image stem>.captions.npy`` (float32,
shape (len(captions), dim), the main caption's row first); ``embedding_path`` and
``captions_embedding_path`` filled in ``DIR/pokemon_metadata.json``, and ``DIR/embeddings.json`` =
``{"name", "dim", "count", "caption_sha256": {path: hash}}`` (the hashes find edited captions; a
captions file's hash covers its whole list). Each distinct text is encoded once per run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from ..collection.metadata import (EMBEDDINGS_DIR, EMBEDDINGS_INFO_FILE, METADATA_FILE, Entry,
                                   read_metadata, write_metadata)
from ..errors import DataError, EncoderError
from ..locks import folder_lock
from ..run_dir import EncoderInfo
from .registry import (SPEC_HELP, EncoderSpec, TextEncoder, get_text_embedding,  # noqa: F401  (re-exported)
                       load_encoder_matching, load_text_encoder, null_text_embedding, parse_spec)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Embedding a dataset folder


@dataclass(frozen=True)
class EmbedSummary:
    """What :func:`embed_dataset` did."""

    data_dir: Path
    encoder: str
    dim: int
    total: int
    embedded: int
    skipped: int
    seconds: float

    def __str__(self) -> str:
        return (f"embedded {self.embedded} of {self.total} captions with {self.encoder} ({self.dim}-d) in "
                f"{self.seconds:.1f} s; {self.skipped} already up to date -> {self.data_dir / EMBEDDINGS_DIR}")


def dataset_encoder_info(data_dir: Union[str, os.PathLike]) -> EncoderInfo:
    """The encoder a dataset was embedded with, from ``DIR/embeddings.json``.

    Raises:
        DataError: the dataset has not been embedded, or the file is unreadable.
    """
    info = _read_info(Path(data_dir))
    if info is None:
        raise DataError(f"{Path(data_dir) / EMBEDDINGS_INFO_FILE} not found: run "
                        f"`pokemon-diffusion embed --data {data_dir}` first")
    return EncoderInfo(info["name"], info["dim"])


def embedding_rel_path(entry: Entry) -> str:
    """Where an entry's embedding goes, relative to the dataset: ``embeddings/<image stem>.npy``."""
    return str(PurePosixPath(EMBEDDINGS_DIR) / f"{PurePosixPath(entry.image_path).stem}.npy")


def captions_rel_path(entry: Entry) -> Optional[str]:
    """Where the embeddings of all of an entry's captions go (``embeddings/<stem>.captions.npy``);
    None for an entry with one caption."""
    if len(entry.all_captions) < 2:
        return None
    return str(PurePosixPath(EMBEDDINGS_DIR) / f"{PurePosixPath(entry.image_path).stem}.captions.npy")


def _texts(entry: Entry, target: str) -> List[str]:
    """The captions a target file holds: the main one, or all of them (a ``.captions.npy``)."""
    return entry.all_captions if target.endswith(".captions.npy") else [entry.caption]


def embed_dataset(data_dir: Union[str, os.PathLike], encoder: Union[TextEncoder, str] = "auto", *,
                  batch_size: int = 64, force: bool = False, device: Optional[str] = None) -> EmbedSummary:
    """Embed every caption of a dataset folder (layout in the module docstring).

    Entries already embedded by the same encoder, with an unchanged caption and a readable file,
    are skipped; a re-run with nothing new writes nothing and, when the spec names its encoder
    without loading (e.g. "minilm"), loads no model.

    Args:
        data_dir: the folder holding ``pokemon_metadata.json``.
        encoder: a spec string or a :class:`TextEncoder`.
        batch_size: captions per forward pass.
        force: re-embed everything, also when the dataset was embedded with another encoder.
        device: as in :func:`load_text_encoder` (ignored when ``encoder`` is an object).

    Returns:
        An :class:`EmbedSummary`.

    Raises:
        ValueError: ``batch_size`` is not a positive integer.
        DataError: missing or invalid metadata, or two images with the same file stem.
        EncoderError: the dataset was embedded with another encoder (and not ``force``), or
            the encoder cannot be loaded or returns vectors of the wrong shape or non-finite values.
        FolderBusyError: another process is writing ``data_dir`` (collect or embed).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size!r}; allowed: an integer >= 1")
    with folder_lock(data_dir, "embed", create=False):
        return _embed(Path(data_dir), encoder, batch_size, force, device)


def _embed(root: Path, encoder: Union[TextEncoder, str], batch_size: int, force: bool,
           device: Optional[str]) -> EmbedSummary:
    start = time.perf_counter()
    entries = read_metadata(root, check_files=False)  # embeddings may be missing; that is our job
    if not entries:
        raise DataError(f"{root / METADATA_FILE} lists no entries; nothing to embed")
    main = [embedding_rel_path(e) for e in entries]
    _check_unique_targets(entries, main)
    # every file to write: (entry index, target); a target holds one caption or all of them
    files = [(i, t) for i, t in enumerate(main)]
    files += [(i, t) for i, e in enumerate(entries) if (t := captions_rel_path(e)) is not None]
    previous = _read_info(root, ignore_errors=force)

    model = None if isinstance(encoder, str) else encoder
    wanted = model.name if model is not None else parse_spec(encoder).identity
    todo: Optional[List[int]] = None
    if previous and wanted is not None and not force:
        _check_same_encoder(root, previous, wanted)
        todo = _stale_indices(root, entries, files, previous)
        if not todo:  # nothing to embed: skip loading the model
            _finish(root, entries, files, wanted, previous["dim"], previous)
            return _report(EmbedSummary(root, wanted, previous["dim"], len(entries), 0, len(entries),
                                        time.perf_counter() - start))
    if model is None:
        model = load_text_encoder(encoder, device=device)
    if previous and not force:
        _check_same_encoder(root, previous, model.name)
    keep = previous is not None and not force and previous["dim"] == model.dim
    if not keep:
        todo = list(range(len(files)))
    elif todo is None:  # not known before loading (the spec did not name the encoder)
        todo = _stale_indices(root, entries, files, previous)
    if not keep and (root / EMBEDDINGS_INFO_FILE).exists():
        # While files of two encoders coexist, the dataset must not claim to be embedded.
        (root / EMBEDDINGS_INFO_FILE).unlink()
        previous = None

    texts = list(dict.fromkeys(c for k in todo for c in _texts(entries[files[k][0]], files[k][1])))
    vectors = dict(zip(texts, _encode_checked(model, texts, batch_size)))
    (root / EMBEDDINGS_DIR).mkdir(parents=True, exist_ok=True)
    for k in todo:
        i, target = files[k]
        rows = [vectors[c] for c in _texts(entries[i], target)]
        _save_npy(root / target, rows[0] if target == main[i] else np.stack(rows))
    done = {files[k][0] for k in todo}
    _finish(root, entries, files, model.name, model.dim, previous)
    return _report(EmbedSummary(root, model.name, model.dim, len(entries), len(done),
                                len(entries) - len(done), time.perf_counter() - start))


def _report(summary: EmbedSummary) -> EmbedSummary:
    log.info("%s", summary)
    return summary


def _caption_hash(caption: str) -> str:
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()[:16]


def _check_unique_targets(entries: List[Entry], targets: List[str]) -> None:
    seen: Dict[str, int] = {}
    for i, target in enumerate(targets):
        if target in seen:
            raise DataError(f"entries {seen[target]} ({entries[seen[target]].image_path}) and {i} "
                            f"({entries[i].image_path}) would share {target}; allowed: unique image file names")
        seen[target] = i


def _check_same_encoder(root: Path, previous: Dict[str, Any], name: str) -> None:
    if previous["name"] != name:
        raise EncoderError(f"{root} was embedded with {previous['name']!r} ({previous['dim']}-d), not {name!r}; "
                           f"use --text-encoder {previous['name']}, or --force to re-embed everything with {name}")


def _read_info(root: Path, ignore_errors: bool = False) -> Optional[Dict[str, Any]]:
    path = root / EMBEDDINGS_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        info["name"], info["dim"] = str(info["name"]), int(info["dim"])
        if not isinstance(info.get("caption_sha256", {}), dict):
            raise TypeError("caption_sha256 is not an object")
        return info
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if ignore_errors:
            return None
        raise DataError(f"cannot read {path} ({exc!r}); re-run with --force to re-embed everything") from None


def _stale_indices(root: Path, entries: List[Entry], files: List[Tuple[int, str]],
                   info: Optional[Dict[str, Any]]) -> List[int]:
    """Indices into ``files`` whose embedding is missing, unreadable, of another size, or of an
    edited caption."""
    if info is None:
        return list(range(len(files)))
    hashes = info.get("caption_sha256", {})
    stale = []
    for k, (i, target) in enumerate(files):
        texts = _texts(entries[i], target)
        shape = (info["dim"],) if target == embedding_rel_path(entries[i]) else (len(texts), info["dim"])
        if hashes.get(target) != _caption_hash("\n".join(texts)) or not _valid_npy(root / target, shape):
            stale.append(k)
    return stale


def _valid_npy(path: Path, shape: Tuple[int, ...]) -> bool:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return False
    return array.shape == shape and array.dtype == np.float32


def _encode_checked(model: TextEncoder, captions: List[str], batch_size: int) -> np.ndarray:
    if not captions:
        return np.zeros((0, model.dim), dtype=np.float32)
    vectors = np.asarray(model.encode(captions, batch_size=batch_size), dtype=np.float32)
    if vectors.shape != (len(captions), model.dim):
        raise EncoderError(f"encoder {model.name} returned shape {vectors.shape}; "
                           f"expected ({len(captions)}, {model.dim})")
    if not np.isfinite(vectors).all():
        raise EncoderError(f"encoder {model.name} returned non-finite values")
    return vectors


def _save_npy(path: Path, vector: np.ndarray) -> None:
    # no fsync: an embedding lost in a power cut is recomputed by the next run
    with atomic_path(path, suffix="") as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(vector, dtype=np.float32))


def _finish(root: Path, entries: List[Entry], files: List[Tuple[int, str]], name: str, dim: int,
            previous: Optional[Dict[str, Any]]) -> None:
    """Point the metadata at the embeddings, then record the encoder (last, so a crash before it
    leaves a dataset that says it is not embedded). Files are rewritten only when they change."""
    paths = [(embedding_rel_path(e), captions_rel_path(e)) for e in entries]
    if any((e.embedding_path, e.captions_embedding_path) != p for e, p in zip(entries, paths)):
        for entry, (main, captions) in zip(entries, paths):
            entry.embedding_path, entry.captions_embedding_path = main, captions
        write_metadata(root, entries)
    info = {"name": name, "dim": dim, "count": len(entries),
            "caption_sha256": {t: _caption_hash("\n".join(_texts(entries[i], t))) for i, t in files}}
    if previous != info:
        atomic_write_text(root / EMBEDDINGS_INFO_FILE, json.dumps(info, indent=1, ensure_ascii=False) + "\n")
