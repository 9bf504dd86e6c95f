"""``train --init SOURCE``: start a run from trained weights (fine-tuning) instead of random ones.

SOURCE is ``reference`` (the shipped model, ``pretrained.py``) or a run folder. The new run gets
the source's model AND EMA weights; its optimizer, step (0), learning-rate schedule, data stream
and random generator start fresh, as when a pretrained diffusion model is adapted to new images.

* A run folder with checkpoints gives its newest checkpoint's raw and EMA weights.
* A folder with only ``ema_model.keras`` (the shipped reference) gives the EMA weights to both.

The model config must be the source's (``text_dim`` included) and the dataset's text encoder the
source's; anything else is refused with one line naming the difference. One architectural change
is allowed: **adding self-attention** (``attention_resolutions`` a superset of the source's). The
new attention blocks keep their initialisation, whose output projection is zero, so the grown
model computes exactly the source's function at step 0; every source layer's weights are copied
by layer name. The diffusion config may differ (a new schedule is a legitimate fine-tuning
choice); it is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError
from ..run_dir import CHECKPOINT_DIR, CONFIG_FILE, EMA_MODEL_FILE, ENCODER_FILE, EncoderInfo, read_encoder_info

logger = logging.getLogger(__name__)

REFERENCE = "reference"


def init_dir(source: Any) -> Path:
    """The folder ``--init`` names: the shipped reference (checksums verified) or a run folder.

    Raises:
        CheckpointError: no such folder, or it holds no config.json / model to start from.
    """
    if str(source) == REFERENCE:
        from ..pretrained import pretrained_dir, read_manifest

        read_manifest()  # a damaged copy fails here, in one line
        return pretrained_dir()
    folder = Path(source)
    if not folder.is_dir():
        raise CheckpointError(f"--init: got {str(source)!r}, which is not a folder; allowed: reference | a run "
                              "folder written by `train`")
    has_weights = (folder / EMA_MODEL_FILE).is_file() or (folder / CHECKPOINT_DIR).is_dir()
    if not (folder / CONFIG_FILE).is_file() or not has_weights:
        raise CheckpointError(f"--init: {folder} holds no trained run (needs {CONFIG_FILE} and "
                              f"{EMA_MODEL_FILE} or {CHECKPOINT_DIR}/); allowed: reference | a run folder")
    return folder


def init_config(source: Any) -> RunConfig:
    """The RunConfig the source was trained with (``train`` starts from its model and diffusion parts)."""
    folder = init_dir(source)
    try:
        return RunConfig.load(folder / CONFIG_FILE)
    except ConfigError as exc:
        raise CheckpointError(f"--init: cannot read {folder / CONFIG_FILE}: {exc}") from None


def check_init(source: Any, config: RunConfig, encoder: EncoderInfo) -> Path:
    """The source folder, after checking that ``config`` and the dataset's encoder fit it.

    Raises:
        ConfigError: the model config differs (one line listing each differing field).
        EncoderError: the dataset was embedded with another encoder than the source.
        CheckpointError: see :func:`init_dir`.
    """
    folder = init_dir(source)
    saved = init_config(folder)
    if (folder / ENCODER_FILE).is_file():
        read_encoder_info(folder / ENCODER_FILE).check(encoder.name, encoder.dim, "the dataset's text encoder")
    diff = _differences(_model_fields(saved.model), _model_fields(config.model))
    if _adds_attention_only(diff):
        old, new = diff.pop("attention_resolutions")
        logger.info("--init: adding self-attention at %s to the source's %s (zero-initialised output: the "
                    "model starts as the source)", sorted(set(new) - set(old)), list(old) or "none")
    if diff:
        shown = ", ".join(f"model.{k}: {a!r} in {folder.name}, {b!r} now" for k, (a, b) in diff.items())
        raise ConfigError(f"--init {source}: the model config differs ({shown}); allowed: the source's model "
                          "config, or it with self-attention added (drop those options, or train from scratch "
                          "without --init)")
    changed = _differences(saved.diffusion.to_dict(), config.diffusion.to_dict())
    if changed:
        logger.info("--init: diffusion config changed from the source: %s",
                    ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    return folder


def _model_fields(model: Any) -> Dict[str, Any]:
    """A model config as a dict; the attention resolutions as a sorted list (their order builds the same model)."""
    fields = model.to_dict()
    fields["attention_resolutions"] = sorted(fields.get("attention_resolutions") or (), reverse=True)
    return fields


def _adds_attention_only(diff: Dict[str, Tuple[Any, Any]]) -> bool:
    if set(diff) != {"attention_resolutions"}:
        return False
    old, new = diff["attention_resolutions"]
    return set(old or ()) < set(new or ())


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def load_init_weights(trainer: Any, folder: Optional[Path]) -> Optional[str]:
    """Copy the source's weights into ``trainer.model`` and ``trainer.ema_model``; returns what was used.

    ``folder`` None (no ``--init``) does nothing and returns None.

    Raises:
        CheckpointError: the weights cannot be read or do not fit the model.
    """
    if folder is None:
        return None
    saved = init_config(folder).model
    if _model_fields(saved) != _model_fields(trainer.config.model):  # grown (check_init allowed only added attention)
        return _load_grown(trainer, folder, saved)

    checkpoint = _newest_checkpoint(folder)
    if checkpoint:
        _restore_weights(checkpoint, trainer.model, trainer.ema_model, "this model")
        logger.info("--init: model and EMA weights from %s", checkpoint)
        return checkpoint
    from ..run_dir import load_run

    weights = load_run(folder).model.get_weights()
    try:
        trainer.model.set_weights(weights)
        trainer.ema_model.set_weights(weights)
    except ValueError as exc:
        raise CheckpointError(f"--init: {folder / EMA_MODEL_FILE} does not fit this model: "
                              f"{str(exc).splitlines()[0]}") from None
    logger.info("--init: model and EMA weights from %s", folder / EMA_MODEL_FILE)
    return str(folder / EMA_MODEL_FILE)


def _source_models(folder: Path, saved: Any) -> Tuple[Any, Any, str]:
    """The source's raw and EMA models, built from its own config: (raw, ema, what was read)."""
    from ..model.unet import build_unet

    checkpoint = _newest_checkpoint(folder)
    if not checkpoint:
        from ..run_dir import load_run

        ema = load_run(folder).model
        return ema, ema, str(folder / EMA_MODEL_FILE)
    raw, ema = build_unet(saved), build_unet(saved)
    _restore_weights(checkpoint, raw, ema, "the source's model")
    return raw, ema, checkpoint


def _newest_checkpoint(folder: Path) -> Optional[str]:
    """The source's newest readable checkpoint, through the same damaged-skip path as ``--resume``.

    Raises:
        CheckpointError: it has checkpoints and every one is damaged.
    """
    from .checkpoint import newest_readable_checkpoint

    try:
        return newest_readable_checkpoint(folder / CHECKPOINT_DIR, advice="allowed: --init from a run with a "
                                          "readable checkpoint, or from reference")
    except CheckpointError as exc:
        raise CheckpointError(f"--init: {exc}") from None


def _restore_weights(checkpoint: str, model: Any, ema_model: Any, what: str) -> None:
    """Only the two weight lists of a training checkpoint (see checkpoint.py) into these models."""
    import tensorflow as tf

    partial = tf.train.Checkpoint(model_variables=list(model.variables), ema_variables=list(ema_model.variables))
    try:
        partial.restore(checkpoint).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        raise CheckpointError(f"--init: cannot restore {checkpoint} into {what}: {str(exc).splitlines()[0]}") from None


def _copy_by_layer_name(source: Any, target: Any) -> int:
    """Copy every weighted layer of ``source`` into the same-named layer of ``target``; returns the count."""
    copied = 0
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            target.get_layer(layer.name).set_weights(weights)
        except ValueError as exc:
            raise CheckpointError(f"--init: layer {layer.name!r} of the source does not fit the grown model: "
                                  f"{str(exc).splitlines()[0]}") from None
        copied += 1
    return copied


def _load_grown(trainer: Any, folder: Path, saved: Any) -> str:
    raw, ema, used = _source_models(folder, saved)
    copied = _copy_by_layer_name(raw, trainer.model)
    _copy_by_layer_name(ema, trainer.ema_model)
    known = {layer.name for layer in raw.layers}
    added = [layer.name for layer in trainer.model.layers if layer.weights and layer.name not in known]
    logger.info("--init: %d layers' model and EMA weights from %s; new, at their initialisation: %s",
                copied, used, ", ".join(added))
    return used
