"""The shipped reference model: generate Pokémon without training first.

The package carries one run folder, ``pokemon_diffusion/pretrained/`` (config.json, encoder.json,
ema_model.keras), trained by the project's own ``train`` command, and a ``manifest.json`` that
records how (command, steps, wall time, machine, losses) and the SHA-256 of every file. Loading
checks the checksums first, so a damaged or partial copy is a clear error, not a strange picture.

Example:
    >>> run = load_pretrained()                    # doctest: +SKIP
    >>> result, labels = generate(run, ["Pikachu, an Electric-type Pokémon"])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .atomic import atomic_write_text
from .errors import CheckpointError
from .prompts import NAMES_FILE
from .run_dir import CONFIG_FILE, EMA_MODEL_FILE, ENCODER_FILE, LoadedRun, keras_file_damage, load_run

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
SHIPPED_FILES = (CONFIG_FILE, ENCODER_FILE, EMA_MODEL_FILE)
OPTIONAL_FILES = (NAMES_FILE,)  # shipped and checked when the run has one (runs before it did not)
PathLike = Union[str, os.PathLike]


def pretrained_dir() -> Path:
    """Folder of the shipped reference model inside the installed package."""
    from importlib.resources import files

    return Path(str(files("pokemon_diffusion") / "pretrained"))


def sha256_of(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Optional[PathLike] = None) -> Dict[str, Any]:
    """The manifest of a pretrained folder (default: the shipped one), checksums verified.

    Raises:
        CheckpointError: the folder, the manifest or a listed file is missing, or a checksum differs.
    """
    folder = Path(folder) if folder is not None else pretrained_dir()
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        checksums = manifest["sha256"]
    except FileNotFoundError:
        raise CheckpointError(f"no pretrained model at {folder} (missing {MANIFEST_FILE}); "
                              "train one with `pokemon-diffusion train` and pass --run") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc!r}") from None
    for name in SHIPPED_FILES + tuple(n for n in OPTIONAL_FILES if n in checksums):
        file = folder / name
        if name not in checksums:
            raise CheckpointError(f"{path} lists no checksum for {name}")
        if not file.is_file():
            raise CheckpointError(f"pretrained model is incomplete: {file} is missing")
        actual = sha256_of(file)
        if actual != checksums[name]:
            raise CheckpointError(f"pretrained file {file} is damaged: sha256 {actual[:12]}… but the manifest "
                                  f"says {checksums[name][:12]}…; reinstall the package")
    return manifest


def load_pretrained(folder: Optional[PathLike] = None) -> LoadedRun:
    """Load the shipped reference model (or a folder made by :func:`export_pretrained`).

    Raises:
        CheckpointError: missing files or a checksum mismatch (see :func:`read_manifest`).
    """
    folder = Path(folder) if folder is not None else pretrained_dir()
    manifest = read_manifest(folder)
    val = manifest.get("val_loss")
    log.info("pretrained model %s: %s steps, held-out loss %s", manifest.get("name", folder.name),
             manifest.get("steps"), f"{val:.4f}" if isinstance(val, (int, float)) else val)
    return load_run(folder)


def export_pretrained(run_dir: PathLike, dest: PathLike, **facts: Any) -> Dict[str, Any]:
    """Copy a run's sampling files to ``dest`` and write their manifest with ``facts``.

    ``facts`` are recorded as given (command, steps, wall time, machine, losses, ...).

    Raises:
        CheckpointError: the run's model file is damaged (its checksum would be recorded as good).
    """
    run_dir, dest = Path(run_dir), Path(dest)
    damage = keras_file_damage(run_dir / EMA_MODEL_FILE)
    if damage:
        raise CheckpointError(f"{run_dir / EMA_MODEL_FILE} is damaged: {damage}; nothing exported")
    dest.mkdir(parents=True, exist_ok=True)
    names = SHIPPED_FILES + tuple(n for n in OPTIONAL_FILES if (run_dir / n).is_file())
    for name in names:
        shutil.copyfile(run_dir / name, dest / name)
    manifest = {**facts, "sha256": {name: sha256_of(dest / name) for name in names},
                "bytes": sum((dest / name).stat().st_size for name in names)}
    atomic_write_text(dest / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def model_name(run: LoadedRun) -> str:
    """What a run is called in the files it makes: the manifest's name (the shipped model's), else
    ``hf://owner/repo@commit`` for a Hub run, else its folder's name."""
    from .hub import hub_name

    try:
        return str(json.loads((Path(run.path) / MANIFEST_FILE).read_text(encoding="utf-8"))["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return hub_name(run.path) or Path(run.path).name or str(run.path)
