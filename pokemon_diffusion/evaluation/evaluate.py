"""``evaluate(run_dir, data_dir)``: sample from a trained run and measure it against its dataset.

The report (a JSON-ready dict) holds:

1. ``heldout_loss``: the denoising loss of the run's EMA model on the validation split the
   training run held out, on a fixed grid of t with fixed noise (the training code's own function
   and split, so the number is comparable with ``val_loss`` in ``metrics.jsonl``).
2. ``conditioning``: N captions of the dataset chosen with the seed, half from the training split
   and half held out (``conditioning.choose_split_prompts``), one image sampled per caption (the
   dataset's own embedding of that caption), each image's nearest real images in the pixel
   feature space (``features.PIXEL_FEATURES_DESCRIPTION``): top-1 / top-5 "is the prompted Pokémon"
   (same name, so another form of it counts), type agreement, and the chance levels; for all
   prompts and, under ``train`` / ``heldout``, per split.
3. ``colour_following``: "a {colour} Pokémon" for the 11 basic colours, several seeds each,
   scored by the captions' own colour function (``prompt_following.py``), with chance levels.
4. ``colour``: :func:`metrics.colour_distance` between the N samples and all real images.
5. ``inception``: FID and KID on InceptionV3 pool features, or ``{"skipped": reason}``.
6. ``guidance_sweep``: figures 2, 3 and 8 for each guidance weight asked for (e.g. 1, 3, 6).
7. ``reconstruction``: held-out images noised to 1/4, 1/2 and 3/4 of T and denoised back: how
   often the result is still the original Pokémon (``reconstruction.py``), a figure about shapes.
8. ``silhouette``: the N samples' figure area and solidity against the real images'
   (``silhouette.py``): blobs are larger and more convex than Pokémon.
9. ``variety``: several seeds of the first few headline prompts, how far apart they are against two
   different real images (``variety.py``): 0 means every seed draws the same picture.
10. ``prompt_forms``: the name alone, "NAME, a TYPE-type Pokémon", the caption and the name-free
    description, as typed and enriched, scored by colour, identity and variety (``prompt_forms.py``).

See docs/EVALUATION.md.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config import EVAL_MAX_IMAGES, SAMPLERS, SampleConfig
from ..errors import ConfigError, DataError, EncoderError
from ..generate import prompt_annealing
from . import features as feats
from . import metrics
from .eval_data import EvalData, check_dataset_encoder, load_eval_data
from .conditioning import choose_split_prompts, nearest_neighbour_accuracy, split_accuracy
from .reconstruction import reconstruction
from .silhouette import silhouette_features, silhouette_report
from .variety import variety_report
from .prompt_following import colour_following, colour_prompts
from .prompt_forms import POKEMON_PER_SPLIT, SEEDS
from .report import jsonable
from .samples import colour_embeddings, generate_from_embeddings

log = logging.getLogger(__name__)

TOP_K = 5
FID_NOTE = ("FID is biased upwards for small sample counts (it compares {n} samples in {d} dimensions); "
            "compare FIDs only at the same N. KID is unbiased; its std is over {s} random subsets.")


# ------------------------------------------------------------------------------------ sampling

def choose_prompts(num_entries: int, num: int, seed: int) -> np.ndarray:
    """Indices of the ``num`` entries whose captions prompt the samples (seeded; distinct while possible).

    Raises:
        DataError: the dataset is empty.
    """
    if num_entries < 1:
        raise DataError("the dataset has no entries; allowed: at least 1 image with an embedding")
    rng = np.random.default_rng(seed)
    if num <= num_entries:
        return np.sort(rng.choice(num_entries, num, replace=False))
    # more samples than captions: every caption once, the rest drawn again
    extra = rng.choice(num_entries, num - num_entries, replace=True)
    return np.sort(np.concatenate([np.arange(num_entries), extra]))


# ------------------------------------------------------------------------------------ metrics

def conditioning_accuracy(generated: np.ndarray, data: EvalData, prompt_index: Sequence[int],
                          k: int = TOP_K, heldout: Optional[Sequence[bool]] = None) -> Dict[str, Any]:
    """Nearest-neighbour conditioning accuracy in the pixel feature space (see module docstring).

    With ``heldout`` (one flag per sample), ``train`` and ``heldout`` give the figures per split.
    """
    gen_f = feats.pixel_features(generated)
    real_f = feats.pixel_features(data.images)
    out = nearest_neighbour_accuracy(gen_f, real_f, prompt_index, data.types,
                                     real_labels=data.names, k=k)
    names = data.names
    neighbours = out.pop("neighbours")
    if heldout is not None:
        out.update(split_accuracy(gen_f, real_f, prompt_index, heldout, data.types, real_labels=names, k=k))
    out["feature_space"] = feats.PIXEL_FEATURES_DESCRIPTION.format(size=feats.PIXEL_FEATURE_SIZE)
    out["hit_means"] = "a nearest real image has the prompted entry's name (any form of that Pokémon)"
    out["samples"] = [{"prompt": data.entries[p].caption, "name": names[p],
                       "nearest": [names[j] for j in row]} for p, row in zip(prompt_index, neighbours)]
    return out


def inception_metrics(extractor, generated: np.ndarray, real: np.ndarray, *, seed: int = 0,
                      kid_subsets: int = 100, kid_subset_size: int = 1000,
                      cache_dir: Optional[os.PathLike | str] = None) -> Dict[str, Any]:
    """FID and KID between ``generated`` and ``real`` images on ``extractor``'s features.

    The real images' features are kept in ``cache_dir`` when given (see ``features.cached_features``).
    """
    started = time.perf_counter()
    gen_f = extractor(generated)
    real_f = feats.cached_features(extractor, real, cache_dir)
    kid = metrics.kernel_inception_distance(gen_f, real_f, num_subsets=kid_subsets,
                                            subset_size=kid_subset_size, seed=seed)
    return {
        "fid": metrics.fid_from_features(gen_f, real_f),
        "kid": kid.to_dict(),
        "features": extractor.name,
        "num_generated": int(gen_f.shape[0]),
        "num_real": int(real_f.shape[0]),
        "note": FID_NOTE.format(n=gen_f.shape[0], d=gen_f.shape[1], s=kid.num_subsets),
        "seconds": round(time.perf_counter() - started, 2),
    }


def heldout_loss(loaded_run, data: EvalData) -> Dict[str, Any]:
    """The run's validation loss, computed exactly as training computes ``val_loss``.

    The same split (``split_by_pokemon`` with the run's ``val_fraction`` and seed: whole Pokémon
    held out), the same first ``EVAL_MAX_IMAGES`` held-out images, the same t grid
    (``eval_timesteps`` points over [0, T − 1]) and fixed noise, through the trainer's
    ``held_out_error_fn`` on the EMA model (no optimizer is built); so it matches the last
    ``val_loss`` in ``RUN/metrics.jsonl`` when the model is the one saved at that step.

    Returns:
        ``{"loss", "per_t", "num_images", "timesteps", "split"}``, or ``{"skipped": reason}`` when
        the run held nothing out.
    """
    from ..data.dataset import split_by_pokemon
    from ..training.objective import held_out_loss
    from ..training.trainer import held_out_error_fn

    tc = loaded_run.config.train
    _, val_idx = split_by_pokemon(data.entries, tc.val_fraction, tc.seed)
    if len(val_idx) == 0:
        return {"skipped": f"the run held out no images (train.val_fraction = {tc.val_fraction}, "
                           f"{len(data)} images)"}
    val_idx = val_idx[:EVAL_MAX_IMAGES]
    # the trainer's evaluation function on the loaded EMA model: no optimizer, no second model
    loss, per_t = held_out_loss(held_out_error_fn(loaded_run.model, loaded_run.config), data.images[val_idx],
                                data.embeddings[val_idx], timesteps=loaded_run.config.diffusion.timesteps,
                                points=tc.eval_timesteps, seed=tc.seed, batch_size=tc.batch_size)
    return {"loss": loss, "per_t": {str(t): v for t, v in per_t.items()}, "num_images": int(len(val_idx)),
            "timesteps": int(len(per_t)),
            "split": f"whole Pokémon held out: train.val_fraction = {tc.val_fraction}, seed {tc.seed}"}


# ------------------------------------------------------------------------------------ report

def evaluate(run_dir: os.PathLike | str, data_dir: os.PathLike | str, *, num: int = 64, seed: int = 0,
             sampler: str = "ddim", steps: Optional[int] = None, guidance_scale: float = 3.0, eta: float = 0.0,
             inception_weights: Optional[str] = None, offline: Optional[bool] = None, batch_size: int = 16,
             kid_subsets: int = 100, inception_input_size: int = feats.INCEPTION_INPUT_SIZE,
             cache_dir: Optional[os.PathLike | str] = None, progress: Optional[bool] = None,
             guidance_scales: Sequence[float] = (), colour_seeds: int = 4,
             prompt_encoder: Any = None, variety_seeds: int = 4, variety_prompts: int = 8,
             prompt_forms: int = POKEMON_PER_SPLIT, prompt_form_seeds: int = SEEDS,
             variety_options: Optional[SampleConfig] = None) -> Dict[str, Any]:
    """Sample ``num`` images from a run with the dataset's captions and measure them.

    Args:
        run_dir: a run folder written by ``train`` (see ``run_dir.py``).
        data_dir: the dataset folder the run was trained on (its embeddings must come from the
            run's text encoder).
        num: samples to generate, one per caption chosen with ``seed`` (2 or more).
        seed: seeds the caption choice, the sampling noise (batch i: seed + i) and KID's subsets.
        variety_options: its ``cads_*`` and ``guidance_interval`` apply to every sample (default: SampleConfig()'s).
        sampler, steps, guidance_scale, eta: as in ``diffusion.samplers.sample``. ``steps=None``
            means 50 DDIM steps (T if T < 50); DDPM always runs all T steps (``steps`` None or T,
            ``eta`` 0).
        inception_weights: see :func:`features.resolve_inception_weights` (None = ``"auto"``).
        offline: forbid downloads (default: ``HF_HUB_OFFLINE``).
        batch_size: images per sampling and feature batch.
        kid_subsets: KID subsets (of min(1000, N) images each).
        inception_input_size: 299 for real FID; tests use 75 (the smallest InceptionV3 accepts).
        cache_dir: keep the real images' Inception features here between evaluations (None: don't).
        progress: progress bars; None follows ``logging_utils.progress_enabled()``.
        guidance_scales: more guidance weights for ``guidance_sweep`` (``guidance_scale`` is always in it).
        colour_seeds: samples per colour of the colour prompt-following test (0: skip it).
        prompt_encoder: embeds the colour prompts (default: the run's encoder, loaded).
        variety_seeds: images per prompt of the variety figure, at the headline guidance (0: skip
            it; else 2 to 64).
        variety_prompts: how many of the headline prompts (the first ones) it uses, 1 to 64.
        prompt_forms: Pokémon per split of the prompt-form figures (0: skip them); prompt_form_seeds:
            images per prompt there (2 or more).

    Returns:
        The JSON-ready report (see the module docstring and docs/EVALUATION.md).

    Raises:
        ConfigError: an argument outside what is allowed (checked before any sampling).
        CheckpointError, DataError, EncoderError: unreadable run or dataset, or mismatched encoders.
    """
    from ..run_dir import load_run

    timings: Dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    # 1. cheap checks first, then the run, its schedule and the dataset's encoder
    if num < 2:
        raise ConfigError(f"num: got {num}; allowed: 2 or more samples")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler: got {sampler!r}; allowed: {' | '.join(SAMPLERS)}")
    scales = list(dict.fromkeys([float(guidance_scale), *map(float, guidance_scales)]))
    if not all(0.0 <= w <= 50.0 for w in scales) or not 0 <= colour_seeds <= 1000:
        raise ConfigError(f"guidance_scales: got {scales}, colour_seeds {colour_seeds}; allowed: weights from 0 "
                          "to 50 and 0 to 1000 seeds per colour")
    if not 0 <= prompt_forms <= 256 or not 2 <= prompt_form_seeds <= 64:
        raise ConfigError(f"prompt_forms: got {prompt_forms}, prompt_form_seeds {prompt_form_seeds}; allowed: 0 "
                          "(skip) to 256 Pokémon per split and 2 to 64 seeds")
    if not (variety_seeds == 0 or 2 <= variety_seeds <= 64) or not 1 <= variety_prompts <= 64:
        raise ConfigError(f"variety_seeds: got {variety_seeds}, variety_prompts {variety_prompts}; allowed: 0 "
                          "(skip) or 2 to 64 seeds, and 1 to 64 prompts")
    try:
        weights = feats.resolve_inception_weights(inception_weights, offline=offline)
        skipped: Optional[str] = None
    except feats.FeatureUnavailable as exc:
        weights, skipped = None, str(exc)
    loaded = load_run(run_dir)
    timesteps = loaded.config.diffusion.timesteps
    steps = _check_steps(sampler, steps, eta, timesteps)
    check_dataset_encoder(data_dir, loaded.encoder)
    model_cfg = loaded.config.model
    data = load_eval_data(data_dir, model_cfg.image_size)
    log.info("evaluating %s on %s: %d real images, %d samples", run_dir, data_dir, len(data), num)
    # weights that do not fit InceptionV3 fail here, not after minutes of sampling
    extractor = None
    if skipped is None:
        try:
            extractor = feats.InceptionFeatures.load(weights, input_size=inception_input_size,
                                                     batch_size=batch_size, seed=seed)
        except feats.FeatureUnavailable as exc:
            skipped = str(exc)
    lap("load")

    # 2. held-out denoising loss (the training code's own measure)
    heldout = heldout_loss(loaded, data)
    lap("heldout_loss")

    # 3. samples prompted by the dataset's own caption embeddings (half training split, half held out),
    #    and by the colour prompts, at every guidance weight; the first weight is the headline
    from ..data.dataset import split_by_pokemon

    train_idx, val_idx = split_by_pokemon(data.entries, loaded.config.train.val_fraction, loaded.config.train.seed)
    prompt_index, held = choose_split_prompts(train_idx, val_idx, num, seed)
    rebuilt = reconstruction(loaded, data, val_idx[:64], seed=seed)
    lap("reconstruction")
    colour_vectors, colours, colour_skip = (colour_embeddings(loaded, colour_seeds, prompt_encoder)
                                            if colour_seeds else (None, [], "colour_seeds = 0"))
    real_uint8 = feats.to_uint8(data.images)
    real_shapes = silhouette_features(real_uint8)
    variety_options = variety_options or SampleConfig()
    draw = dict(sampler=sampler, steps=steps, eta=eta, seed=seed, batch_size=batch_size, progress=progress,
                guidance_interval=variety_options.guidance_interval)

    def anneal(texts):  # condition annealing per prompt, as `sample` decides it (generate.prompt_annealing)
        return prompt_annealing(loaded, texts, variety_options)

    captions = [data.entries[i].caption for i in prompt_index]
    sweep, generated, colour_following_report = [], None, {"skipped": colour_skip}
    for w in scales:
        images = generate_from_embeddings(loaded, data.embeddings[prompt_index], guidance_scale=w,
                                          annealing=anneal(captions), **draw)
        point: Dict[str, Any] = {"guidance_scale": w, "conditioning": _headline(conditioning_accuracy(
            images, data, prompt_index, heldout=held)),
            "silhouette": silhouette_report(feats.to_uint8(images), real_shapes)}
        if colour_vectors is not None:
            drawn = generate_from_embeddings(loaded, colour_vectors, guidance_scale=w,
                                             annealing=anneal(colour_prompts(seeds=colour_seeds)), **draw)
            point["colour_following"] = colour_following(feats.to_uint8(drawn), colours)
        if generated is None:
            generated, colour_following_report = images, point.get("colour_following", colour_following_report)
        else:
            point.get("colour_following", {}).pop("drawn", None)  # the headline keeps the full table
        sweep.append(point)
    variety: Dict[str, Any] = {"skipped": "variety_seeds = 0"}
    if variety_seeds:
        chosen = np.asarray(prompt_index)[:variety_prompts]
        drawn = generate_from_embeddings(loaded, np.repeat(data.embeddings[chosen], variety_seeds, axis=0),
                                         guidance_scale=scales[0], annealing=anneal(
                                             [c for c in captions[:variety_prompts] for _ in range(variety_seeds)]),
                                         **draw)
        variety = variety_report(feats.to_uint8(drawn), variety_seeds, real_uint8, seed=seed)
        variety["prompts"] = [data.names[i] for i in chosen]
    forms: Dict[str, Any] = {"skipped": "prompt_forms = 0"}
    if prompt_forms:
        from ..generate import encode_prompts
        from .prompt_forms import prompt_form_report

        def encode(texts):  # the run's own encoder, or the stand-in the colour prompts use
            return (np.asarray(prompt_encoder.encode(texts), np.float32) if prompt_encoder is not None
                    else encode_prompts(loaded, texts))

        try:
            forms = prompt_form_report(
                loaded, data, train_idx, val_idx, seeds=prompt_form_seeds, seed=seed, k=TOP_K,
                num_pokemon=prompt_forms, encode=encode,
                generate=lambda emb, seed, texts: generate_from_embeddings(
                    loaded, emb, guidance_scale=scales[0], annealing=anneal(texts), **{**draw, "seed": seed}))
        except EncoderError as exc:
            forms = {"skipped": f"the run's text encoder cannot be loaded: {exc}"}
    lap("sampling")

    # 4. pixel-space metrics of the headline samples
    conditioning = conditioning_accuracy(generated, data, prompt_index, heldout=held)
    colour = metrics.colour_distance(feats.to_uint8(generated), real_uint8)
    silhouette = sweep[0]["silhouette"]
    lap("conditioning_and_colour")

    # 5. Inception metrics, or why not
    if extractor is not None:
        inception = inception_metrics(extractor, generated, data.images, seed=seed, kid_subsets=kid_subsets,
                                      cache_dir=cache_dir)
        if weights == feats.RANDOM:
            inception["warning"] = "random InceptionV3 weights: these FID/KID values only check the code path"
    else:
        log.warning("FID/KID skipped: %s", skipped)
        inception = {"skipped": skipped}
    lap("inception")

    return jsonable({
        "run": str(run_dir),
        "data": str(data_dir),
        "num_samples": num,
        "num_real": len(data),
        "seed": seed,
        "sampling": {"sampler": sampler, "steps": steps, "guidance_scale": guidance_scale,
                     "eta": 1.0 if sampler == "ddpm" else eta, "cads_strength": variety_options.cads_strength,
                     "cads_range": variety_options.cads_range, "cads_names": variety_options.cads_names,
                     "guidance_interval": variety_options.guidance_interval,
                     "image_size": model_cfg.image_size, "text_encoder": loaded.encoder.name},
        "heldout_loss": heldout,
        "conditioning": conditioning,
        "colour_following": colour_following_report,
        "colour": colour,
        "silhouette": silhouette,
        "variety": variety,
        "prompt_forms": forms,
        "inception": inception,
        "guidance_sweep": sweep,
        "reconstruction": rebuilt,
        "seconds": timings,
    })


def _headline(conditioning: Dict[str, Any]) -> Dict[str, Any]:
    """The sweep's share of a conditioning result: accuracies per split, no per-sample lists."""
    keys = ("top1", "top_k", "type_exact", "type_overlap")
    out = {"all": {k: conditioning[k] for k in keys}}
    for split in ("train", "heldout"):
        if split in conditioning:
            out[split] = {k: conditioning[split].get(k) for k in (*keys, "num_samples")}
    return out


def _check_steps(sampler: str, steps: Optional[int], eta: float, timesteps: int) -> int:
    """The number of reverse steps to run; ConfigError for combinations the samplers refuse."""
    if sampler == "ddpm":
        if steps not in (None, timesteps):
            raise ConfigError(f"steps: got {steps}; ddpm runs all T = {timesteps} steps of the run's schedule "
                              "(use sampler ddim for fewer)")
        if eta:
            raise ConfigError(f"eta: got {eta}; allowed: 0 for ddpm (eta applies to ddim only)")
        return timesteps
    steps = min(SampleConfig().steps, timesteps) if steps is None else steps
    if not 1 <= steps <= timesteps:
        raise ConfigError(f"steps: got {steps}; allowed: 1 to the run's T = {timesteps}")
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(f"eta: got {eta}; allowed: 0 to 1")
    return steps
