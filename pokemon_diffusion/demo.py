"""The end-to-end demo: collect, embed, train for a time budget, sample, and draw the figures.

``run_demo`` is what ``make demo`` / ``pokemon-diffusion demo`` run on the offline defaults (the
packaged Pokédex and the ``auto`` text encoder). The demo's own run fine-tunes the shipped
reference model on the dataset's (visual) captions (``train --init reference``): twelve minutes
from scratch end at step ~500 in pure noise, twelve minutes from the reference start from a model
that draws; ``init=None`` (``--from-scratch``) trains from random weights as before. The report
gives the held-out loss before and after the run. A second run reuses the dataset and embeddings
and continues training the same run. When the package ships its reference model, the same
prompts are also sampled from it, so a fresh machine shows what a longer training gives.

Outputs (``OUT/``): samples.png, denoising_steps.png, denoising.gif, training_curve.png,
pretrained_samples.png, pretrained_denoising_steps.png, pretrained_denoising.gif, report.json
and the training run in ``OUT/run/``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from .atomic import atomic_write_text
from .config import DataConfig, RunConfig, SampleConfig
from .errors import CheckpointError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: What people type, in the forms the model was trained on: Pokémon names (enriched with the run's
#: description of each, prompts.py) and descriptions without a name (type, colour, size).
DEMO_PROMPTS = (
    "Pikachu",
    "Charmander",
    "Squirtle",
    "Bulbasaur",
    "a large orange Fire-type Pokémon",
    "a small blue Water-type Pokémon",
    "a green Grass-type Pokémon",
    "a purple Ghost-type Pokémon",
)
DEFAULT_MINUTES = 12.0  # with the install, collect and embed: about 20 minutes on a 2-core CPU
FINETUNE_LEARNING_RATE = 1e-4  # the default run's peak rate when it starts from trained weights (5e-4 from scratch)


def _timed(report: Dict[str, Any], key: str, fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    report["timings_s"][key] = round(time.perf_counter() - start, 2)
    return value


def _sample_and_save(run, prompts, out: Path, prefix: str, config: SampleConfig, encoder) -> Dict[str, Any]:
    from .generate import generate, save_outputs

    result, labels = generate(run, prompts, config=config, encoder=encoder)
    files = save_outputs(result, labels, out / f"{prefix}samples.png",
                         steps_figure=out / f"{prefix}denoising_steps.png", gif=out / f"{prefix}denoising.gif")
    return {"files": [p.name for p in files], "seconds": round(result.seconds, 2), "seed": result.seed,
            "sampler": result.sampler, "steps": result.steps, "guidance_scale": result.guidance_scale}


def _run_config(run_config: Optional[RunConfig], minutes: float,
                init: Optional[PathLike]) -> Tuple[RunConfig, Optional[PathLike], Optional[str]]:
    """(the run's config, the init source or None, why the init was dropped or None)."""
    base = run_config or RunConfig()
    skipped = None
    if init is not None:
        from .training.init_from import init_config

        try:
            source = init_config(init)
        except CheckpointError as exc:
            log.warning("training from scratch: cannot start from %s (%s)", init, exc)
            init, skipped = None, str(exc)
        else:
            train = base.train if run_config else base.train.replace(learning_rate=FINETUNE_LEARNING_RATE)
            base = base.replace(model=source.model, diffusion=source.diffusion, train=train)
    return base.replace(train=base.train.replace(time_limit_minutes=minutes)), init, skipped


def _encoder_of_source(init: PathLike) -> Optional[str]:
    """The text encoder a run to fine-tune was trained with, or None when it cannot be read."""
    from .run_dir import ENCODER_FILE, read_encoder_info
    from .training.init_from import init_dir

    try:
        return read_encoder_info(init_dir(init) / ENCODER_FILE).name
    except CheckpointError:
        return None


def _heldout_before(config: RunConfig, data: Path, start: Optional[PathLike]) -> Optional[float]:
    """The held-out loss of the EMA model the run starts from (None from random weights)."""
    import dataclasses

    from .evaluation.eval_data import load_eval_data
    from .evaluation.evaluate import heldout_loss
    from .run_dir import load_run
    from .training.init_from import init_dir

    if start is None:
        return None
    loaded = dataclasses.replace(load_run(init_dir(start)), config=config)  # the demo run's split and t grid
    return heldout_loss(loaded, load_eval_data(data, config.model.image_size)).get("loss")


def run_demo(out_dir: PathLike = "outputs/demo", *, data_dir: PathLike = "data/pokemon",
             minutes: float = DEFAULT_MINUTES, text_encoder: str = "auto", limit: Optional[int] = None,
             run_config: Optional[RunConfig] = None, prompts: Sequence[str] = DEMO_PROMPTS,
             sample_config: SampleConfig = SampleConfig(seed=0), use_pretrained: bool = True,
             init: Optional[PathLike] = "reference") -> Dict[str, Any]:
    """Run the whole pipeline and write the figures and ``report.json`` to ``out_dir``.

    Args:
        out_dir: where the figures, the report and the training run (``run/``) go.
        data_dir: the dataset folder (reused when already collected and embedded).
        minutes: training time budget; a second call continues the same run for as long again.
        text_encoder: encoder spec for ``embed`` (``auto``: the ``init`` source's encoder; without
            one, CLIP when cached, else packaged MiniLM).
        limit: collect only the first N Pokémon (tests); None = all 1,008.
        run_config: model/diffusion/training settings (default: the library defaults at 32x32);
            the time budget is applied on top.
        prompts: what to draw (Pokémon names are enriched with the run's descriptions, prompts.py).
        sample_config: sampler settings (default DDIM-50, guidance 3, seed 0).
        use_pretrained: also sample the shipped reference model when it is installed.
        init: start the run from these trained weights (``"reference"`` or a run folder; its model
            and diffusion configs replace ``run_config``'s); None trains from scratch. A missing
            reference falls back to scratch with a warning.

    Returns:
        The report (also written to ``OUT/report.json``).
    """
    from .collection.pipeline import collect
    from .text.embeddings import embed_dataset
    from .text.registry import load_encoder_matching
    from .run_dir import CHECKPOINT_DIR, CONFIG_FILE, load_run
    from .training.loop import train
    from .viz import plot_training_curves, save_figure

    out, data = Path(out_dir), Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    report: Dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "timings_s": {},
                              "machine": {"processor": platform.processor() or platform.machine(),
                                          "python": platform.python_version()},
                              "prompts": list(prompts)}

    # 1. data: the packaged Pokédex, then its captions embedded (both reuse what is there)
    collected = _timed(report, "collect", collect, DataConfig(source="pokedex", out_dir=str(data), limit=limit))
    if init is not None and text_encoder == "auto":  # fine-tuning needs the source's encoder
        text_encoder = _encoder_of_source(init) or text_encoder
    embedded = _timed(report, "embed", embed_dataset, data, text_encoder)
    report["data"] = {"dir": str(data), "images": collected.images, "downloaded": collected.downloaded,
                      "encoder": embedded.encoder, "embedded": embedded.embedded}

    # 2. train for the time budget: from the reference (or scratch), or continuing an earlier demo run
    resume = (run_dir / CHECKPOINT_DIR).is_dir() and any((run_dir / CHECKPOINT_DIR).iterdir())
    if resume:  # the run's own settings, with a new time budget
        init, skipped, config = None, None, RunConfig.load(run_dir / CONFIG_FILE)
        config = config.replace(train=config.train.replace(time_limit_minutes=minutes))
    else:
        config, init, skipped = _run_config(run_config, minutes, init)
    before = _timed(report, "heldout_before", _heldout_before, config, data, run_dir if resume else init)
    trained = _timed(report, "train", train, data, run_dir, config, resume=resume, init=init)
    report["train"] = {"resumed": resume, "init": None if init is None else str(init), "step": trained.step,
                       "stopped": trained.stopped, "loss": trained.loss, "val_loss": trained.val_loss,
                       "images_per_s": trained.images_per_s, "elapsed_s": round(trained.elapsed_s, 1),
                       "image_size": config.model.image_size, "learning_rate": config.train.learning_rate}
    if skipped:
        report["train"]["init_skipped"] = skipped
    report["heldout_loss"] = {"before": before, "after": trained.val_loss,
                              "note": "EMA model on the held-out Pokémon, fixed t grid and noise (val_loss)"}
    save_figure(plot_training_curves(run_dir), out / "training_curve.png")

    # 3. sample the demo's own run, then the shipped reference model, with the same prompts
    run = load_run(run_dir, mixed_precision=sample_config.mixed_precision)
    encoder = load_encoder_matching(run.encoder)
    report["samples"] = _timed(report, "sample", _sample_and_save, run, prompts, out, "", sample_config, encoder)
    report["pretrained"] = None
    if use_pretrained:
        from .pretrained import MANIFEST_FILE, load_pretrained, pretrained_dir

        try:
            reference = load_pretrained(mixed_precision=sample_config.mixed_precision)
        except CheckpointError as exc:
            log.warning("no reference model sampled: %s", exc)
            report["pretrained"] = {"skipped": str(exc)}
        else:
            if reference.encoder.name != encoder.name:
                encoder = load_encoder_matching(reference.encoder)
            manifest = json.loads((pretrained_dir() / MANIFEST_FILE).read_text(encoding="utf-8"))  # checked
            report["pretrained"] = {key: manifest.get(key) for key in ("name", "steps", "wall_time_s", "val_loss")}
            report["pretrained"].update(_timed(report, "sample_pretrained", _sample_and_save, reference, prompts,
                                               out, "pretrained_", sample_config, encoder))
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    log.info("demo done: %s (own run: %d steps, held-out loss %s -> %s)", out, trained.step, before,
             trained.val_loss)
    return report
