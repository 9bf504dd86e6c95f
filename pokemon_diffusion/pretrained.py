"""The shipped reference model: generate Pokémon without training first.

The package carries one run folder, ``pokemon_diffusion/pretrained/`` (config.json, encoder.json,
ema_model.keras), trained by the project's own ``train`` command, and a ``manifest.json`` that
records how (command, steps, wall time, machine, losses) and the SHA-256 of every file. Loading
checks the checksums first, so a damaged or partial copy is a clear error, not a strange picture.

A shipped cascade keeps the base's files where they are and adds ``cascade.json`` (``"base": "."``)
and one sub-folder per upsampler stage (``up128/config.json``, ``up128/encoder.json``,
``up128/ema_model.keras``); the manifest lists every file by its path relative to the folder and
describes the stages (``"stages"``). :func:`load_pretrained` then gives a ``run_dir.CascadeRun``.
:func:`export_pretrained` writes either kind, from a run folder or from a cascade folder of runs.

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
from typing import Any, Dict, List, Optional, Tuple, Union

from .atomic import atomic_write_text
from .errors import CheckpointError
from .prompts import NAMES_FILE
from .run_dir import (CASCADE_FILE, CONFIG_FILE, EMA_MODEL_FILE, ENCODER_FILE, LoadedRun, keras_file_damage,
                      load_cascade, load_run)

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
    if not isinstance(checksums, dict):
        raise CheckpointError(f"cannot read {path}: 'sha256' is not a mapping of file -> checksum")
    needed = list(SHIPPED_FILES) + [n for n in OPTIONAL_FILES if n in checksums]
    if (folder / CASCADE_FILE).is_file():
        needed += [CASCADE_FILE] + [_inside(stage, name) for stage in _stage_folders(folder) for name in SHIPPED_FILES]
    for name in needed + sorted(set(checksums) - set(needed)):  # every listed file, stage files included
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts:
            raise CheckpointError(f"{path}: file {name!r}; allowed: paths inside the folder")
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


def _inside(folder: str, name: str) -> str:
    """``name`` in the sub-folder ``folder`` as the manifest lists it (posix, relative)."""
    return name if folder in (".", "") else f"{Path(folder).as_posix()}/{name}"


def _stage_folders(folder: Path) -> List[str]:
    """The stage folders ``folder/cascade.json`` names (each must lie inside ``folder``)."""
    path = folder / CASCADE_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        stages = spec["stages"]
        if spec.get("base") != "." or not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
            raise ValueError("wrong values")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: {exc}; allowed in a pretrained folder: {{\"base\": \".\", \"stages\": "
                              "[FOLDER, ...]}} with the stage folders inside it") from None
    for stage in stages:
        if Path(stage).is_absolute() or ".." in Path(stage).parts or Path(stage) == Path("."):
            raise CheckpointError(f"{path}: stage {stage!r}; allowed in a pretrained folder: a sub-folder of it")
    return stages


def load_pretrained(folder: Optional[PathLike] = None, *, mixed_precision: Union[bool, str] = False) -> LoadedRun:
    """Load the shipped reference model (or a folder made by :func:`export_pretrained`): a
    ``run_dir.CascadeRun`` when the folder holds ``cascade.json``, else a single run.
    ``mixed_precision``: as in ``run_dir.load_run`` (pass ``SampleConfig().mixed_precision`` to sample).

    Raises:
        CheckpointError: missing files or a checksum mismatch (see :func:`read_manifest`).
    """
    folder = Path(folder) if folder is not None else pretrained_dir()
    manifest = read_manifest(folder)
    val = manifest.get("val_loss")
    sizes = manifest.get("sizes")
    log.info("pretrained model %s: %s steps, held-out loss %s%s", manifest.get("name", folder.name),
             manifest.get("steps"), f"{val:.4f}" if isinstance(val, (int, float)) else val,
             f"; a cascade, sizes {' -> '.join(map(str, sizes))}" if isinstance(sizes, list) else "")
    return load_run(folder, mixed_precision=mixed_precision)


def _export_parts(source: Path) -> Tuple[List[Tuple[Path, str]], Optional[Dict[str, Any]]]:
    """``[(run folder, its folder in the export), ...]`` (the base's is "."), and the cascade's spec or None."""
    if not (source / CASCADE_FILE).is_file():
        return [(source, ".")], None
    try:
        cascade = load_cascade(source)  # checked: the stages chain up from the base, one text encoder
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; nothing exported") from None
    parts = [(Path(cascade.base.path), ".")]
    parts += [(Path(stage.path), f"up{stage.config.model.image_size}") for stage in cascade.stages]
    spec = {"base": ".", "stages": [folder for _, folder in parts[1:]], "stage_steps": cascade.stage_steps,
            "aug_level": cascade.aug_level, "stage_guidance": cascade.stage_guidance}
    stages = [{"folder": folder, "image_size": stage.config.model.image_size, "low_res": stage.config.model.low_res}
              for (_, folder), stage in zip(parts[1:], cascade.stages)]
    return parts, {"spec": spec, "stages": stages, "sizes": cascade.sizes}


def export_pretrained(run_dir: PathLike, dest: PathLike, **facts: Any) -> Dict[str, Any]:
    """Copy a run's sampling files to ``dest`` and write their manifest with ``facts``.

    ``run_dir`` is a run folder, or a cascade folder (``cascade.json`` naming its base and stage
    runs, anywhere): then the base's files go to ``dest`` itself, each stage's to ``dest/upSIZE/``,
    ``dest/cascade.json`` names them (``"base": "."``) and the manifest's ``"stages"`` describes
    each (folder, image_size, low_res; merged over ``facts["stages"][i]`` when given, e.g. the
    stage's training steps and losses) and ``"sizes"`` lists the sizes. ``dest`` may be the base's
    own folder (its files are then left in place): how a trained cascade joins the shipped model.

    ``facts`` are recorded as given (command, steps, wall time, machine, losses, ...).

    Raises:
        CheckpointError: a run's model file is damaged (its checksum would be recorded as good), or
            the cascade does not load (see ``run_dir.load_cascade``).
    """
    run_dir, dest = Path(run_dir), Path(dest)
    parts, cascade = _export_parts(run_dir)
    for source, _ in parts:
        damage = keras_file_damage(source / EMA_MODEL_FILE)
        if damage:
            raise CheckpointError(f"{source / EMA_MODEL_FILE} is damaged: {damage}; nothing exported")
    names = []
    for source, folder in parts:
        optional = tuple(n for n in OPTIONAL_FILES if (source / n).is_file()) if folder == "." else ()
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for name in SHIPPED_FILES + optional:
            target = dest / _inside(folder, name)
            if not (target.exists() and target.samefile(source / name)):
                shutil.copyfile(source / name, target)
            names.append(_inside(folder, name))
    if cascade is not None:
        atomic_write_text(dest / CASCADE_FILE, json.dumps(cascade["spec"], indent=2) + "\n")
        names.append(CASCADE_FILE)
        given = facts.get("stages") if isinstance(facts.get("stages"), list) else []
        facts = {**facts, "sizes": cascade["sizes"],
                 "stages": [{**(given[i] if i < len(given) and isinstance(given[i], dict) else {}), **stage}
                            for i, stage in enumerate(cascade["stages"])]}
    elif (dest / CASCADE_FILE).is_file():  # a single run over an earlier cascade export: not a cascade now
        (dest / CASCADE_FILE).unlink()
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
