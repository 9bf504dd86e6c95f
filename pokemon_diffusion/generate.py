"""From prompts to pictures with a loaded run: encode, sample, and write the figures.

The ``sample`` command, the demo and users' scripts share these three steps::

    run = load_run("runs/r1")                     # or load_pretrained()
    result, labels = generate(run, ["a fire-type dragon Pokémon"], num=4, config=SampleConfig(seed=0))
    save_outputs(result, labels, "samples.png", steps_figure="steps.png", gif="denoising.gif")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from .config import SampleConfig
from .errors import ConfigError, EncoderError
from .run_dir import CascadeRun, LoadedRun

log = logging.getLogger(__name__)

PathLike = Union[str, Path]


def encode_prompts(run: LoadedRun, prompts: Sequence[str], *, text_encoder: Optional[str] = None,
                   encoder=None) -> np.ndarray:
    """Embed ``prompts`` with the run's own text encoder: float32 ``(len(prompts), dim)``.

    Args:
        run: the loaded run; its ``encoder.json`` names the encoder it was trained with.
        prompts: non-empty texts.
        text_encoder: where to load that encoder from (None = the saved identity); a different
            encoder is refused before anything is loaded.
        encoder: an already loaded encoder to reuse (checked the same way).

    Raises:
        EncoderError: another encoder or dimension than the run's, or a load failure.
    """
    if encoder is None:
        from .text.registry import load_encoder_matching

        encoder = load_encoder_matching(run.encoder, text_encoder)
    run.encoder.check(encoder.name, int(encoder.dim), what=f"text encoder {encoder.name!r}")
    embeddings = np.asarray(encoder.encode(list(prompts)), dtype=np.float32)
    if embeddings.shape != (len(prompts), run.encoder.dim):
        raise EncoderError(f"text encoder {encoder.name!r} returned shape {embeddings.shape} for "
                           f"{len(prompts)} prompts; expected ({len(prompts)}, {run.encoder.dim})")
    return embeddings


def prompt_texts(run: LoadedRun, prompts: Sequence[str], enrich: bool = True) -> List[str]:
    """What gets encoded for each prompt: the prompt enriched with the run's name table
    (``prompts.enrich_prompt``; each rewrite logged), or as typed when ``enrich`` is False or the
    run has no table."""
    from .prompts import enrich_prompts

    return [item.text for item in enrich_prompts(prompts, run.name_table if enrich else None, enrich)]


def prompt_annealing(run: LoadedRun, prompts: Sequence[str], config: SampleConfig) -> Optional[list]:
    """Condition annealing per prompt (``steps.ConditionAnnealing``; None: that prompt sampled as is).

    ``config``'s settings for prompts that name no Pokémon of the run's name table: "a small yellow
    electric mouse" should give different creatures from different seeds. A prompt that names one
    ("Pikachu", "Pikachu in the snow") keeps its embedding clean, because the early, noised steps are
    where the model draws that Pokémon's silhouette; ``config.cads_names`` anneals those too.
    None when annealing is off.
    """
    from .diffusion.steps import ConditionAnnealing

    settings = ConditionAnnealing.from_config(config)
    if settings is None:
        return None
    table = None if config.cads_names else run.name_table
    chosen = [None if table is not None and table.find(p) else settings for p in prompts]
    names = sum(a is None for a in chosen)
    if names:
        log.info("condition annealing (strength %g) on %d of %d prompt(s): those naming a Pokémon keep their "
                 "embedding clean", settings.strength, len(chosen) - names, len(chosen))
    return chosen


def _encode(run: LoadedRun, prompts: List[str], config: SampleConfig, text_encoder: Optional[str], encoder,
            embeddings: Optional[np.ndarray]):
    """(prompts as encoded, their embeddings, the negative prompt's embedding or None), encoded in
    one call with one encoder; the negative prompt is encoded as typed (no enrichment)."""
    negative = config.negative_prompt
    if embeddings is not None:
        texts = [negative] if negative else []
    else:
        prompts = prompt_texts(run, prompts, config.enrich)
        texts = prompts + ([negative] if negative else [])
    if not texts:
        return prompts, embeddings, None
    if encoder is None:
        from .text.registry import load_encoder_matching

        encoder = load_encoder_matching(run.encoder, text_encoder)
    encoded = encode_prompts(run, texts, encoder=encoder)
    if negative:
        log.info("negative prompt: %r (guidance steps away from it)", negative)
    return (prompts, encoded[:len(prompts)] if embeddings is None else embeddings,
            encoded[-1] if negative else None)


def generate(run: LoadedRun, prompts: Sequence[str], *, num: int = 1,
             config: SampleConfig = SampleConfig(), text_encoder: Optional[str] = None, encoder=None,
             embeddings: Optional[np.ndarray] = None, negative_prompt: Optional[str] = None,
             size: Optional[int] = None):
    """Sample ``num`` images per prompt with the run's EMA model and schedule.

    ``size``: the image side; None = the run's (a cascade run's largest stage: ``CascadeRun.sizes``);
    a cascade stops at the stage of that size.

    With ``config.enrich`` (the default) a Pokémon name in a prompt gets the run's description of
    that Pokémon first (:func:`prompt_texts`); ``embeddings`` given skip the text altogether.
    ``negative_prompt`` (or ``config.negative_prompt``; the argument wins when given) is encoded
    as typed with the same encoder and takes the null condition's place in guidance.

    Returns:
        ``(SampleResult, labels)``: images are prompt-major (prompt 0's ``num`` images first);
        ``labels`` repeats each prompt as encoded ``num`` times, ready for :func:`save_outputs`.

    Raises:
        ConfigError: no prompt, or more DDIM steps than the run's T.
        EncoderError: see :func:`encode_prompts`.
    """
    from .diffusion.samplers import sample

    prompts = list(prompts)
    if not prompts:
        raise ConfigError("prompts: got none; allowed: at least one non-empty prompt")
    if negative_prompt is not None:
        config = config.replace(negative_prompt=negative_prompt)  # checked there: a non-empty text
    timesteps = run.config.diffusion.timesteps
    steps = None
    if config.sampler == "ddim":
        steps = min(config.steps, timesteps)
        if config.steps > timesteps:
            log.warning("DDIM steps %d > the run's T = %d: using %d", config.steps, timesteps, steps)
    annealing = prompt_annealing(run, prompts, config)  # decided on the prompts as typed
    prompts, embeddings, negative_emb = _encode(run, prompts, config, text_encoder, encoder, embeddings)
    model = run.config.model
    side = size or run.sizes[-1]
    shape = (len(prompts) * num, side, side, model.channels)
    log.info("sampling %d image(s) of %dx%d with %s (%s steps), guidance %g", shape[0], shape[1], shape[2],
             config.sampler, steps or timesteps, config.guidance_scale)
    result = sample(run if isinstance(run, CascadeRun) else run.model, embeddings, shape, schedule=run.schedule, sampler=config.sampler, steps=steps,
                    eta=config.eta if config.sampler == "ddim" else 0.0, guidance_scale=config.guidance_scale,
                    seed=config.seed, num_intermediates=config.num_intermediates, clip_x0=config.clip_x0,
                    negative_emb=negative_emb, annealing=annealing, guidance_interval=config.guidance_interval)
    log.info("sampled in %.1f s (%.2f s per image); seed %d", result.seconds, result.seconds / shape[0],
             result.seed)
    labels = [p for p in prompts for _ in range(num)]
    return result, labels


def edit(run: LoadedRun, prompts: Sequence[str], image: np.ndarray, *, strength: float = 0.6, num: int = 1,
         config: SampleConfig = SampleConfig(), text_encoder: Optional[str] = None, encoder=None,
         embeddings: Optional[np.ndarray] = None, size: Optional[int] = None):
    """Image-to-image (SDEdit): ``image`` noised to ``strength`` of T, then denoised with each prompt
    (and away from ``config.negative_prompt``, as in :func:`generate`).

    ``strength`` near 0 keeps the picture, 1 starts from (almost) pure noise; in between the
    layout survives and the prompt (with guidance ``config.guidance_scale``) sets the rest. DDIM
    (η = 0) runs ``round(config.steps · strength)`` steps (at least 1); each image of a prompt
    gets its own noise from ``config.seed``. The layout comes from ``image``, so the variety settings
    of sampling (``config.cads_strength``, ``config.guidance_interval``) do not apply.

    A cascade edits at its base's size and then runs its stages on the edited images, up to
    ``size`` (default: its largest), as a cascade sample does (``diffusion.cascade.run_stages``).

    Args:
        image: (H, W, C) float in [-1, 1] at the run's (a cascade's base's) size (``data.images.read_image``).
        size: a cascade's output size (one of its ``sizes``); None: the largest (a single run: its size).

    Returns:
        ``(SampleResult, labels)`` as :func:`generate` (``intermediates`` holds the edited images,
        then each stage's, enlarged to the output size).

    Raises:
        ConfigError: no prompt, ``strength`` outside (0, 1], the DDPM sampler, a wrong image size,
            or a size the run does not give.
        EncoderError: see :func:`encode_prompts`.
    """
    import time

    from .diffusion.reconstruct import reconstruct
    from .diffusion.samplers import SampleResult, _resolve_seed

    prompts = list(prompts)
    if not prompts:
        raise ConfigError("prompts: got none; allowed: at least one non-empty prompt")
    sizes = run.sizes
    size = sizes[-1] if size is None else size
    if size not in sizes:
        raise ConfigError(f"size: got {size}; allowed: {' | '.join(map(str, sizes))} (the run's sizes)")
    if not 0.0 < float(strength) <= 1.0:
        raise ConfigError(f"strength: got {strength}; allowed: a number above 0 and at most 1")
    if config.sampler != "ddim":
        raise ConfigError(f"sampler: got {config.sampler!r} for an image edit; allowed: ddim")
    timesteps = run.config.diffusion.timesteps
    level = int(round(float(strength) * (timesteps - 1)))
    steps = max(1, int(round(min(config.steps, timesteps) * float(strength))))
    seed = _resolve_seed(config.seed)
    prompts, embeddings, negative_emb = _encode(run, prompts, config, text_encoder, encoder, embeddings)
    batch = np.repeat(np.asarray(image, dtype=np.float32)[None], len(prompts) * num, axis=0)
    log.info("editing the image with %d prompt(s) x %d: noised to t = %d of %d, %d DDIM steps, guidance %g",
             len(prompts), num, level, timesteps, steps, config.guidance_scale)
    started = time.perf_counter()
    images = reconstruct(run.model, batch, embeddings, level, schedule=run.schedule, steps=steps,
                         guidance_scale=config.guidance_scale, seed=seed, clip_x0=config.clip_x0,
                         negative_emb=negative_emb)
    result = SampleResult(images=images, intermediates=images[None], timesteps=np.array([0]), seed=seed,
                          sampler="ddim", steps=steps, guidance_scale=config.guidance_scale, eta=0.0,
                          seconds=time.perf_counter() - started)
    if size != sizes[0]:  # a cascade: its stages on the edited images
        from .diffusion.cascade import cascade_result, run_stages

        finals, stage_steps = run_stages(run, images, embeddings, sizes.index(size), seed=seed,
                                         guidance_scale=config.guidance_scale, clip_x0=config.clip_x0,
                                         negative_emb=negative_emb)
        result = cascade_result(result, finals, stage_steps, size, time.perf_counter() - started)
    return result, [p for p in prompts for _ in range(num)]


def save_outputs(result, labels: Sequence[str], out: Optional[PathLike], *, steps_figure: Optional[PathLike] = None,
                 gif: Optional[PathLike] = None) -> List[Path]:
    """Write the captioned grid (unless ``out`` is None), and optionally the denoising-steps figure
    and GIF (atomically). One PNG per image with its metadata: ``image_files.save_images``."""
    from .viz import plot_denoising_steps, plot_samples, save_denoising_gif, save_figure

    written = [save_figure(plot_samples(result.images, list(labels)), out)] if out is not None else []
    if steps_figure:
        written.append(save_figure(plot_denoising_steps(result, prompts=list(labels)), steps_figure))
    if gif:
        written.append(save_denoising_gif(result, gif))
    for path in written:
        log.info("wrote %s", path)
    return written

