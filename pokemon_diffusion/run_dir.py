"""A training run's folder: what ``train`` writes and ``sample`` / ``evaluate`` read.

Layout::

    RUN/config.json        RunConfig (model, diffusion, train)
    RUN/encoder.json       {"name": ..., "dim": ...}: the text encoder the captions were embedded with
    RUN/ema_model.keras    the EMA weights as a whole Keras model (what sampling uses)
    RUN/checkpoints/       tf.train.CheckpointManager files (model, EMA, optimizer, step, RNG)
    RUN/metrics.jsonl      one JSON object per logged step
    RUN/tensorboard/       TensorBoard event files

A cascade folder holds ``cascade.json`` instead, naming the base run and the upsampler stages'
runs (folders relative to it), e.g. ``{"base": "base", "stages": ["up64", "up128"]}``, with
optional ``"stage_steps"``, ``"aug_level"`` and ``"stage_guidance"`` (default
``config.CASCADE_STAGE_STEPS`` / ``CASCADE_AUG_LEVEL`` / ``CASCADE_STAGE_GUIDANCE``, None: the
request's guidance): :func:`load_run` gives a :class:`CascadeRun` for it. The base may be the
cascade folder itself (``"base": "."``: its run files beside ``cascade.json``, as the shipped
model keeps them, stages in sub-folders).
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .atomic import atomic_path, atomic_write_text
from .config import CASCADE_AUG_LEVEL, CASCADE_STAGE_GUIDANCE, CASCADE_STAGE_STEPS, RunConfig
from .errors import CheckpointError, EncoderError, PokemonDiffusionError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
ENCODER_FILE = "encoder.json"
EMA_MODEL_FILE = "ema_model.keras"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CASCADE_FILE = "cascade.json"


@dataclass(frozen=True)
class EncoderInfo:
    """Identity of a text encoder: ``name`` is what :func:`load_text_encoder` accepts back."""

    name: str
    dim: int

    def check(self, name: str, dim: int, what: str = "text encoder") -> None:
        """Raise :class:`EncoderError` unless ``name``/``dim`` match this encoder."""
        if dim != self.dim:
            raise EncoderError(f"{what} gives {dim}-d embeddings but the model expects {self.dim}-d "
                               f"({self.name}); use --text-encoder {self.name}")
        if name != self.name:
            raise EncoderError(f"{what} is {name!r} but the model was trained with {self.name!r}; "
                               f"use --text-encoder {self.name}")


@dataclass
class LoadedRun:
    """A run ready for sampling: the EMA model, its configs and its encoder's identity."""

    path: Path
    config: RunConfig
    encoder: EncoderInfo
    model: Any  # keras.Model

    @property
    def name_table(self):
        """The run's prompt-enrichment table (``prompts.NameTable``), or None for a run without one."""
        if not hasattr(self, "_name_table"):
            from .prompts import read_name_table

            object.__setattr__(self, "_name_table", read_name_table(self.path))
        return self._name_table

    @property
    def schedule(self):
        from .diffusion.schedule import make_schedule

        return make_schedule(self.config.diffusion)

    @property
    def sizes(self) -> List[int]:
        """The image sizes it gives: its own (a :class:`CascadeRun` adds each stage's)."""
        return [self.config.model.image_size]


@dataclass
class CascadeRun(LoadedRun):
    """A cascade (``cascade.json``): the base run, then upsampler stages; ``config``, ``encoder`` and
    ``model`` are the base's. ``samplers.sample`` given one samples the whole cascade (``sample``)."""

    base: Optional[LoadedRun] = None
    stages: Tuple[LoadedRun, ...] = ()
    stage_steps: int = CASCADE_STAGE_STEPS
    aug_level: float = CASCADE_AUG_LEVEL
    stage_guidance: Optional[float] = CASCADE_STAGE_GUIDANCE  # None: the request's guidance scale

    @property
    def name_table(self):
        return self.base.name_table

    @property
    def sizes(self) -> List[int]:
        """The sizes it gives: the base's, then each stage's."""
        return [self.config.model.image_size] + [s.config.model.image_size for s in self.stages]

    def sample(self, text_emb, shape, **options):
        from .diffusion.cascade import sample_cascade

        return sample_cascade(self, text_emb, shape, **options)


def load_cascade(folder: Path, mixed_precision: Union[bool, str] = False) -> CascadeRun:
    """Read ``folder/cascade.json`` and load its runs (see the module docstring).

    Raises:
        CheckpointError: a malformed file, a missing run, a stage that does not take the previous
            size, or runs with different text encoders.
    """
    path = folder / CASCADE_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        base_dir, stage_dirs = spec["base"], spec["stages"]
        steps, aug = int(spec.get("stage_steps", CASCADE_STAGE_STEPS)), float(spec.get("aug_level", CASCADE_AUG_LEVEL))
        guidance = spec.get("stage_guidance", CASCADE_STAGE_GUIDANCE)
        guidance = None if guidance is None else float(guidance)
        if not (isinstance(base_dir, str) and isinstance(stage_dirs, list) and stage_dirs
                and all(isinstance(s, str) for s in stage_dirs) and steps >= 1 and 0.0 <= aug <= 1.0
                and (guidance is None or 0.0 <= guidance <= 20.0)):
            raise ValueError("wrong types or values")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: {exc}; allowed: {{\"base\": RUN, \"stages\": [RUN, ...], \"stage_steps\": "
                              f"N >= 1, \"aug_level\": 0 to 1, \"stage_guidance\": null or 0 to 20}} with run folders "
                              "relative to it") from None
    base = load_run(folder / base_dir, single=True, mixed_precision=mixed_precision)
    stages = tuple(load_run(folder / s, single=True, mixed_precision=mixed_precision) for s in stage_dirs)
    size = base.config.model.image_size
    for name, stage in zip(stage_dirs, stages):
        model = stage.config.model
        if model.low_res != size:
            raise CheckpointError(f"{path}: stage {name!r} upsamples from {model.low_res}; allowed: an upsampler "
                                  f"from {size} (the previous stage's size)")
        if stage.encoder != base.encoder:
            raise CheckpointError(f"{path}: stage {name!r} was trained with text encoder {stage.encoder.name!r} "
                                  f"({stage.encoder.dim}-d); allowed: the base's, {base.encoder.name!r} ({base.encoder.dim}-d)")
        size = model.image_size
    return CascadeRun(folder, base.config, base.encoder, base.model, base=base, stages=stages, stage_steps=steps,
                      aug_level=aug, stage_guidance=guidance)


def write_encoder_info(run_dir: os.PathLike | str, info: EncoderInfo) -> None:
    atomic_write_text(Path(run_dir) / ENCODER_FILE, json.dumps({"name": info.name, "dim": info.dim}) + "\n")


def read_encoder_info(path: os.PathLike | str) -> EncoderInfo:
    """Read ``encoder.json`` from a run or ``embeddings.json`` from a dataset (same two keys)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return EncoderInfo(str(data["name"]), int(data["dim"]))
    except FileNotFoundError:
        raise CheckpointError(f"missing {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot read encoder identity from {path}: {exc!r}") from None


def _differences(old: Any, new: Any) -> Dict[str, Tuple[Any, Any]]:
    a, b = old.to_dict(), new.to_dict()
    return {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}


def check_resume(run_dir: Path, config: RunConfig, encoder: EncoderInfo) -> None:
    """On ``train --resume``: the model, diffusion and encoder must be the ones the checkpoints were made with.

    Raises:
        CheckpointError: the run's config differs in its model or diffusion part, or is unreadable.
        EncoderError: the dataset's encoder is not the run's.
    """
    if (run_dir / ENCODER_FILE).is_file():
        read_encoder_info(run_dir / ENCODER_FILE).check(encoder.name, encoder.dim, "the dataset's text encoder")
    if not (run_dir / CONFIG_FILE).is_file():
        return
    try:
        saved = RunConfig.load(run_dir / CONFIG_FILE)
    except PokemonDiffusionError as exc:
        raise CheckpointError(f"cannot resume {run_dir}: {exc}") from None
    for part in ("model", "diffusion"):
        diff = _differences(getattr(saved, part), getattr(config, part))
        if diff:
            shown = ", ".join(f"{part}.{k}: {a!r} in the run, {b!r} now" for k, (a, b) in diff.items())
            raise CheckpointError(f"cannot resume {run_dir} with a different {part} config ({shown}); "
                                  "drop those options or train into a new --out")
    diff = _differences(saved.train, config.train)
    if diff:
        logger.info("resuming with changed training options: %s",
                    ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items()))


def save_model_atomic(model: Any, path: os.PathLike | str) -> None:
    """``model.save`` to a temporary ``.keras`` file beside ``path``, then rename it over ``path``."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_run(run_dir: os.PathLike | str, model_file: Optional[str] = None, *, single: bool = False,
             mixed_precision: Union[bool, str] = False) -> LoadedRun:
    """Load a run folder written by ``train`` (see the module docstring), or one on the Hugging
    Face Hub: ``"hf://owner/repo[@revision]"`` (downloaded once into the local cache, ``hub.py``).
    A folder with ``cascade.json`` gives a :class:`CascadeRun`, unless ``single`` (its own run files only:
    how a cascade loads its base and stages).

    ``mixed_precision`` (``SampleConfig.mixed_precision``: true, false or "auto", bfloat16 where
    the CPU runs it natively) gives a model computing in bfloat16, for sampling; the default, false,
    loads the saved float32 network as it is (training, evaluation, export).

    Raises:
        CheckpointError: the folder or one of its files is missing or unreadable; a Hub run that
            cannot be had (see ``hub.download_run``).
    """
    import keras

    from .model import layers  # noqa: F401  (registers the custom layers for deserialisation)

    if isinstance(run_dir, str) and run_dir.startswith("hf://"):
        from .hub import download_run

        run_dir = download_run(run_dir)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder not found: {run_dir} (train one with `pokemon-diffusion train`)")
    if not single and (run_dir / CASCADE_FILE).is_file():
        return load_cascade(run_dir, mixed_precision)
    model_path = run_dir / (model_file or EMA_MODEL_FILE)
    if not model_path.is_file():
        raise CheckpointError(f"{run_dir} has no {model_path.name}: training has not saved a model yet")
    try:
        config = RunConfig.load(run_dir / CONFIG_FILE)
    except Exception as exc:  # ConfigError, missing file
        raise CheckpointError(f"{run_dir}: {exc}") from None
    encoder = read_encoder_info(run_dir / ENCODER_FILE)
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # keras says "File not found" for a cut-short file: say what it is
        damage = keras_file_damage(model_path)
        if damage:
            fix = (f"delete it and run `pokemon-diffusion train --resume --out {run_dir} --data DIR` to write it "
                   "again from the newest checkpoint" if (run_dir / CHECKPOINT_DIR / "checkpoint").is_file()
                   else "copy it again from where it came from")
            raise CheckpointError(f"{model_path} is damaged: {damage}; {fix}") from None
        raise CheckpointError(f"cannot load {model_path}: {str(exc).strip().splitlines()[0]}") from None
    if _sample_in_bfloat16(mixed_precision):
        from .model.unet import mixed_copy

        model = mixed_copy(model, config.model)
    return LoadedRun(run_dir, config, encoder, model)


def _sample_in_bfloat16(setting: Union[bool, str]) -> bool:
    """Whether sampling runs in mixed_bfloat16 for this setting on this machine (``hardware.py``)."""
    if setting is False:  # the default of every load that does not sample: nothing to ask the machine
        return False
    import keras

    from .hardware import tensorflow_gpu, use_mixed_precision

    backend = keras.backend.backend()
    gpu = backend == "tensorflow" and tensorflow_gpu()
    return use_mixed_precision(setting, gpu, backend=backend, quiet=True)


def keras_file_damage(path: os.PathLike | str) -> Optional[str]:
    """Why ``path`` is not a whole ``.keras`` archive (cut short, or a member failing its CRC), or None.

    A ``.keras`` file is a zip; a truncated one has lost its central directory, which is at the end.
    """
    try:
        if not zipfile.is_zipfile(path):
            return f"not a complete .keras (zip) archive ({os.path.getsize(path):,} bytes; cut short?)"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        return f"unreadable archive ({exc})"
    return f"its member {bad} fails its CRC check" if bad else None
