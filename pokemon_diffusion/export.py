"""A run as a model folder to share: the sampling files, their manifest and a model card.

``export_run("runs/r1", "share/r1")`` (``pokemon-diffusion export RUN DIR``) writes::

    DIR/config.json  encoder.json  ema_model.keras  [prompt_names.json]   the run's sampling files
    DIR/manifest.json        SHA-256 of each file, and what is known of how it was trained
    DIR/README.md            the model card (Hugging Face front matter: text-to-image, keras)
    [DIR/training_curve.png, DIR/evaluation.json]   when the run has metrics / an evaluation

The folder loads with ``load_run(DIR)``, ``load_pretrained(DIR)`` (checksums verified) and
``app --model DIR``; uploaded as a Hub model repo it loads with ``--run hf://OWNER/REPO``.

``RUN`` may be a cascade folder (``cascade.json``): ``DIR`` then holds the base's files, each
stage's in ``DIR/upSIZE/`` and ``DIR/cascade.json`` (``pretrained.export_pretrained``); the card,
metrics and name table are the base's, and the card lists the sizes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ._version import __version__
from .atomic import atomic_write_text
from .config import RunConfig
from .errors import CheckpointError
from .pretrained import MANIFEST_FILE, export_pretrained
from .prompts import NAMES_FILE
from .run_dir import CASCADE_FILE, CONFIG_FILE, EMA_MODEL_FILE, ENCODER_FILE, METRICS_FILE, load_run, read_encoder_info

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
CARD_FILE = "README.md"
CURVE_FILE = "training_curve.png"
EVALUATION_FILE = "evaluation.json"
LICENCE_NOTE = ("The code that trained and samples this model is MIT-licensed (pokemon-diffusion). The weights "
                "were trained on Pokémon artworks © Nintendo / Creatures Inc. / GAME FREAK inc. / The Pokémon "
                "Company; that licence does not extend to them. For research and education; not affiliated "
                "with or endorsed by the rights holders.")
# facts of a source manifest shown in the card, and their labels
_FACTS = {"command": "Command", "recipe": "Recipe", "wall_time_s": "Wall time (s)", "machine": "Machine",
          "final_loss": "Final training loss (manifest)", "val_loss": "Held-out loss (manifest)"}


def _metrics(run_dir: Path) -> Dict[str, Any]:
    """The last logged step, training loss and held-out loss of ``RUN/metrics.jsonl`` (empty if none)."""
    found: Dict[str, Any] = {}
    try:
        lines = (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for key in ("step", "loss", "val_loss"):
            if isinstance(record.get(key), (int, float)):
                found[key] = record[key]
    return found


def _source_facts(run_dir: Path) -> Dict[str, Any]:
    """What a run's own manifest (the shipped model's, an earlier export's) says of its training."""
    try:
        manifest = json.loads((run_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in manifest.items() if k not in ("sha256", "bytes")} if isinstance(manifest, dict) else {}


def model_card(name: str, config: RunConfig, encoder_name: str, encoder_dim: int, *, facts: Dict[str, Any],
               metrics: Dict[str, Any], pokemon: Optional[int], files: List[str],
               sizes: Optional[List[int]] = None) -> str:
    """The README.md of an exported model folder (Markdown with Hugging Face front matter)."""
    model, diffusion, train = config.model, config.diffusion, config.train
    data = facts.get("dataset") or (f"{pokemon} Pokémon, as named in {NAMES_FILE} (the run's prompt-enrichment "
                                    "table)" if pokemon else "not recorded in the run folder")
    loss = [f"training loss {metrics['loss']:.4f}" if "loss" in metrics else "",
            f"held-out loss {metrics['val_loss']:.4f} (ε-space)" if "val_loss" in metrics else ""]
    loss_line = ", ".join(x for x in loss if x) or "no metrics.jsonl in the run folder"
    lines = [
        "---", "license: other", "library_name: keras", "pipeline_tag: text-to-image",
        "tags: [text-to-image, diffusion, ddpm, keras, pokemon, pokemon-diffusion]", "---", "",
        f"# {name}", "",
        f"A text-conditioned pixel-space DDPM ({model.image_size}×{model.image_size}, {model.channels} channels) "
        f"trained with [pokemon-diffusion](https://pypi.org/project/pokemon-diffusion/) {__version__}."
        + (f" A cascade: this base, then upsampler stages to {', '.join(f'{s}×{s}' for s in sizes[1:])} "
           f"(`cascade.json`); `--size` picks one of {', '.join(map(str, sizes))} (default: the largest)."
           if sizes and len(sizes) > 1 else ""), "",
        "## Use", "", "```bash", 'pip install "pokemon-diffusion[app,hub]"',
        'pokemon-diffusion sample --run hf://OWNER/REPO --prompt "Pikachu" --num 4 --out-dir pikachu/',
        "pokemon-diffusion sample --run THIS_FOLDER --prompt \"a blue Water-type Pokémon\" --out grid.png",
        "```", "",
        "```python", "import pokemon_diffusion as pd", 'run = pd.load_run("hf://OWNER/REPO")  # or this folder',
        'result, labels = pd.generate(run, ["Pikachu"], num=4)', "```", "",
        "## Model", "",
        f"- U-Net widths {list(model.widths)}, {model.num_res_blocks} residual blocks per level, {model.norm} norm, "
        + (f"self-attention at resolutions {list(model.attention_resolutions)}" if model.attention_resolutions
           else "no self-attention"),
        f"- Diffusion: T = {diffusion.timesteps}, {diffusion.schedule} schedule, predicts {diffusion.prediction}",
        f"- Text encoder: `{encoder_name}` ({encoder_dim}-d); prompts are encoded with it (another is refused)",
        f"- Sampling: DDIM or DDPM with classifier-free guidance (trained with {train.cond_drop:g} caption dropout)",
        "",
        "## Training", "",
        f"- Data: {data}",
        f"- Steps: {metrics.get('step', facts.get('steps', train.steps))}, batch {train.batch_size}, "
        f"learning rate {train.learning_rate:g} ({train.lr_schedule}), EMA {train.ema_decay:g}",
        f"- Last logged: {loss_line}",
    ]
    lines += [f"- {label}: {facts[key]}" for key, label in _FACTS.items() if key in facts]
    if CURVE_FILE in files:
        lines += ["", "## Figures", "", f"![training curves]({CURVE_FILE})"]
    if EVALUATION_FILE in files:
        lines += ["", f"The run's evaluation report (`pokemon-diffusion evaluate`) is in [{EVALUATION_FILE}]"
                      f"({EVALUATION_FILE})."]
    lines += ["", "## Files", "", *[f"- `{f}`" for f in files], "",
              f"`{MANIFEST_FILE}` holds each sampling file's SHA-256; `load_pretrained(folder)` checks them.", "",
              "## Licence", "", LICENCE_NOTE, ""]
    return "\n".join(lines)


def export_run(run_dir: PathLike, dest: PathLike, *, name: Optional[str] = None, force: bool = False) -> Path:
    """Write ``run_dir``'s model folder with its model card to ``dest`` (see the module docstring).

    Args:
        run_dir: a run folder written by ``train`` (or the shipped model's folder).
        dest: a new or empty folder (any folder with ``force``: its files of the same names are replaced).
        name: the model's name in the card and manifest (default: the source manifest's, else ``dest``'s name).

    Returns:
        ``dest``.

    Raises:
        CheckpointError: the run folder or one of its sampling files is missing, unreadable or damaged,
            or ``dest`` holds files and ``force`` is False.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    source, sizes = run_dir, None  # the folder whose config, metrics and name table the card describes
    if (run_dir / CASCADE_FILE).is_file():
        cascade = load_run(run_dir)  # CheckpointError: a malformed cascade
        source, sizes = Path(cascade.base.path), cascade.sizes
    for needed in (CONFIG_FILE, ENCODER_FILE, EMA_MODEL_FILE):
        if not (source / needed).is_file():
            raise CheckpointError(f"cannot export {run_dir}: it has no {needed}; allowed: a run folder written "
                                  "by `pokemon-diffusion train`")
    if dest.resolve() == run_dir.resolve():
        raise CheckpointError(f"export: got the run folder {run_dir} as the destination; allowed: another folder")
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not force)):
        raise CheckpointError(f"export: {dest} exists and is not an empty folder; allowed: a new or empty "
                              "folder, or --force to replace its files")
    try:
        config = RunConfig.load(source / CONFIG_FILE)
    except Exception as exc:  # ConfigError, unreadable file
        raise CheckpointError(f"{source}: {exc}") from None
    encoder = read_encoder_info(source / ENCODER_FILE)
    facts = _source_facts(run_dir) or _source_facts(source)
    name = name or str(facts.get("name") or dest.resolve().name)
    metrics = _metrics(source)
    manifest = export_pretrained(run_dir, dest, **{**facts, "name": name, "exported_with": f"pokemon-diffusion "
                                                   f"{__version__}"})
    files = list(manifest["sha256"]) + [MANIFEST_FILE]
    if (source / EVALUATION_FILE).is_file():
        shutil.copyfile(source / EVALUATION_FILE, dest / EVALUATION_FILE)
        files.append(EVALUATION_FILE)
    if "loss" in metrics or "val_loss" in metrics:
        from .viz import plot_training_curves, save_figure

        save_figure(plot_training_curves(source), dest / CURVE_FILE)
        files.append(CURVE_FILE)
    pokemon = None
    try:
        pokemon = len(json.loads((source / NAMES_FILE).read_text(encoding="utf-8")).get("names", []) or []) or None
    except (OSError, ValueError, AttributeError):
        pass
    card = model_card(name, config, encoder.name, encoder.dim, facts=facts, metrics=metrics, pokemon=pokemon,
                      files=files + [CARD_FILE], sizes=sizes)
    atomic_write_text(dest / CARD_FILE, card)
    log.info("exported %s to %s (%s)", run_dir, dest, ", ".join(files + [CARD_FILE]))
    return dest
