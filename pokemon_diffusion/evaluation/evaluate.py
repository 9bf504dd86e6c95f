"""``evaluate(run_dir, data_dir)``: sample from a trained run and measure it against its dataset.

The report (a JSON-ready dict) holds:

1. ``heldout_loss``: the denoising loss of the run's EMA model on the validation split the
   training run held out, on a fixed grid of t with fixed noise (the training code's own function
   and split, so the number is comparable with ``val_loss`` in ``metrics.jsonl``).
2. ``conditioning``: N captions of the dataset chosen with the seed, one image sampled per caption
   (the dataset's own embedding of that caption), each image's nearest real images in the pixel
   feature space (``features.PIXEL_FEATURES_DESCRIPTION``): top-1 / top-5 "is the prompted Pokémon"
   (same name, so another form of it counts), type agreement, and the chance levels.
3. ``colour``: :func:`metrics.colour_distance` between the N samples and all real images.
4. ``inception``: FID and KID on InceptionV3 pool features, or ``{"skipped": reason}``.

See docs/EVALUATION.md.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config import SAMPLERS, SampleConfig
from ..errors import ConfigError, DataError
from . import features as feats
from . import metrics

log = logging.getLogger(__name__)

TOP_K = 5
FID_NOTE = ("FID is biased upwards for small sample counts (it compares {n} samples in {d} dimensions); "
            "compare FIDs only at the same N. KID is unbiased; its std is over {s} random subsets.")


# ------------------------------------------------------------------------------------ dataset

class EvalData:
    """The dataset as evaluation needs it: entries, images at the run's size, caption embeddings."""

    def __init__(self, entries: List[Any], images: np.ndarray, embeddings: np.ndarray):
        self.entries = entries
        self.images = images          # float32 (R, H, W, 3) in [-1, 1], composited on white
        self.embeddings = embeddings  # float32 (R, text_dim)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> List[str]:
        return [e.name for e in self.entries]

    @property
    def types(self) -> List[List[str]]:
        return [list(e.types) for e in self.entries]


def load_eval_data(data_dir: os.PathLike | str, image_size: int) -> EvalData:
    """Read the dataset with the training loader (``data.dataset.load_examples``), at ``image_size``.

    The same loader as training means the same entries, order and pixels, hence the same held-out split.

    Raises:
        DataError: missing metadata, or no entry with a readable image and embedding.
    """
    from ..data.dataset import load_examples

    examples = load_examples(data_dir, (image_size, image_size))
    return EvalData(list(examples.entries), examples.images, examples.embeddings)


def check_dataset_encoder(data_dir: os.PathLike | str, run_encoder) -> None:
    """The dataset's captions must be embedded with the encoder the run was trained with.

    Raises:
        EncoderError: another encoder or size (names both and says how to fix it).
        CheckpointError: ``DIR/embeddings.json`` is missing or unreadable.
    """
    from ..run_dir import read_encoder_info

    info = read_encoder_info(Path(data_dir) / "embeddings.json")
    run_encoder.check(info.name, info.dim, what=f"the dataset's embeddings ({data_dir}/embeddings.json)")


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


def generate_from_embeddings(loaded_run, embeddings: np.ndarray, *, sampler: str = "ddim", steps: Optional[int] = 50,
             guidance_scale: float = 3.0, eta: float = 0.0, seed: int = 0, batch_size: int = 16,
             progress: Optional[bool] = None) -> np.ndarray:
    """One image per embedding row with the run's EMA model and schedule, in fixed-size batches.

    The last batch is padded with repeats of its first row and trimmed, so every batch has the
    same shape and the compiled sampling loop is traced once. Batch i uses seed ``(seed + i) mod 2³¹``.

    Returns:
        float32 (N, H, W, C) in [-1, 1].
    """
    from ..diffusion.samplers import sample

    cfg = loaded_run.config.model
    n = embeddings.shape[0]
    batch = min(batch_size, n)
    out = []
    for i, start in enumerate(range(0, n, batch)):
        chunk = embeddings[start:start + batch]
        real = chunk.shape[0]
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - real, axis=0)])
        ddim = sampler == "ddim"  # ddpm refuses steps and eta: it runs all T steps with its own variance
        result = sample(loaded_run.model, chunk, (batch, cfg.image_size, cfg.image_size, cfg.channels),
                        schedule=loaded_run.schedule, sampler=sampler, steps=steps if ddim else None,
                        eta=eta if ddim else 0.0,
                        guidance_scale=guidance_scale, seed=(seed + i) % 2**31, num_intermediates=2,
                        progress=progress)
        out.append(result.images[:real])
    return np.concatenate(out).astype(np.float32)


# ------------------------------------------------------------------------------------ metrics

def conditioning_accuracy(generated: np.ndarray, data: EvalData, prompt_index: Sequence[int],
                          k: int = TOP_K) -> Dict[str, Any]:
    """Nearest-neighbour conditioning accuracy in the pixel feature space (see module docstring)."""
    gen_f = feats.pixel_features(generated)
    real_f = feats.pixel_features(data.images)
    out = metrics.nearest_neighbour_accuracy(gen_f, real_f, prompt_index, data.types,
                                             real_labels=data.names, k=k)
    names = data.names
    neighbours = out.pop("neighbours")
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
    (``eval_timesteps`` points over [0, T − 1]) and fixed noise, through ``Trainer.held_out_loss``
    on the EMA model; so it matches the last ``val_loss`` in ``RUN/metrics.jsonl`` when the model
    is the one saved at that step.

    Returns:
        ``{"loss", "per_t", "num_images", "timesteps", "split"}``, or ``{"skipped": reason}`` when
        the run held nothing out.
    """
    import tensorflow as tf

    from ..data.dataset import split_by_pokemon
    from ..training.trainer import EVAL_MAX_IMAGES, Trainer

    tc = loaded_run.config.train
    _, val_idx = split_by_pokemon(data.entries, tc.val_fraction, tc.seed)
    if len(val_idx) == 0:
        return {"skipped": f"the run held out no images (train.val_fraction = {tc.val_fraction}, "
                           f"{len(data)} images)"}
    val_idx = val_idx[:EVAL_MAX_IMAGES]
    # the Trainer's evaluation function on the loaded EMA model (as both its models): no training
    # happens, the optimizer only gets built; the default strategy keeps it on this device
    trainer = Trainer(loaded_run.config, total_steps=1, strategy=tf.distribute.get_strategy(),
                      model_fn=lambda _config: loaded_run.model)
    loss, per_t = trainer.held_out_loss(data.images[val_idx], data.embeddings[val_idx], which="ema",
                                        timesteps=tc.eval_timesteps, seed=tc.seed, batch_size=tc.batch_size)
    return {"loss": loss, "per_t": {str(t): v for t, v in per_t.items()}, "num_images": int(len(val_idx)),
            "timesteps": int(len(per_t)),
            "split": f"whole Pokémon held out: train.val_fraction = {tc.val_fraction}, seed {tc.seed}"}


# ------------------------------------------------------------------------------------ report

def evaluate(run_dir: os.PathLike | str, data_dir: os.PathLike | str, *, num: int = 64, seed: int = 0,
             sampler: str = "ddim", steps: Optional[int] = None, guidance_scale: float = 3.0, eta: float = 0.0,
             inception_weights: Optional[str] = None, offline: Optional[bool] = None, batch_size: int = 16,
             kid_subsets: int = 100, inception_input_size: int = feats.INCEPTION_INPUT_SIZE,
             cache_dir: Optional[os.PathLike | str] = None, progress: Optional[bool] = None) -> Dict[str, Any]:
    """Sample ``num`` images from a run with the dataset's captions and measure them.

    Args:
        run_dir: a run folder written by ``train`` (see ``run_dir.py``).
        data_dir: the dataset folder the run was trained on (its embeddings must come from the
            run's text encoder).
        num: samples to generate, one per caption chosen with ``seed`` (2 or more).
        seed: seeds the caption choice, the sampling noise (batch i: seed + i) and KID's subsets.
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

    # 3. samples prompted by the dataset's own caption embeddings
    prompt_index = choose_prompts(len(data), num, seed)
    generated = generate_from_embeddings(loaded, data.embeddings[prompt_index], sampler=sampler, steps=steps,
                                         guidance_scale=guidance_scale, eta=eta, seed=seed,
                                         batch_size=batch_size, progress=progress)
    lap("sampling")

    # 4. pixel-space metrics
    conditioning = conditioning_accuracy(generated, data, prompt_index)
    colour = metrics.colour_distance(feats.to_uint8(generated), feats.to_uint8(data.images))
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

    return _jsonable({
        "run": str(run_dir),
        "data": str(data_dir),
        "num_samples": num,
        "num_real": len(data),
        "seed": seed,
        "sampling": {"sampler": sampler, "steps": steps, "guidance_scale": guidance_scale,
                     "eta": 1.0 if sampler == "ddpm" else eta,
                     "image_size": model_cfg.image_size, "text_encoder": loaded.encoder.name},
        "heldout_loss": heldout,
        "conditioning": conditioning,
        "colour": colour,
        "inception": inception,
        "seconds": timings,
    })


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


def _jsonable(value: Any) -> Any:
    """NumPy scalars/arrays to Python, NaN/inf to None, so ``json.dumps(allow_nan=False)`` works."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_report(report: Dict[str, Any]) -> str:
    """A short plain-text table of a report's headline figures (what the CLI prints)."""
    def num(x: Any, fmt: str = "{:.4f}") -> str:
        return "n/a" if x is None else fmt.format(x)

    cond, colour, inc = report["conditioning"], report["colour"], report["inception"]
    chance = cond["chance"]
    s = report["sampling"]
    rows = [
        ("samples", f"{report['num_samples']} ({s['sampler']}, {s['steps']} steps, guidance {s['guidance_scale']:g}, "
                    f"seed {report['seed']}) vs {report['num_real']} real"),
        ("held-out loss", _heldout_text(report["heldout_loss"])),
        ("top-1 / top-5", f"{num(cond['top1'], '{:.3f}')} / {num(cond['top_k'], '{:.3f}')}"
                          f"   (chance {num(chance['top1'], '{:.3f}')} / {num(chance['top_k'], '{:.3f}')})"),
        ("type exact / overlap", f"{num(cond['type_exact'], '{:.3f}')} / {num(cond['type_overlap'], '{:.3f}')}"
                                 f"   (chance {num(chance['type_exact'], '{:.3f}')} / "
                                 f"{num(chance['type_overlap'], '{:.3f}')})"),
        ("colour moments L2", f"{num(colour['moments_l2'], '{:.2f}')} (0-255)   histogram TV "
                              f"{num(colour['histogram_tv'], '{:.3f}')}"),
    ]
    if "skipped" in inc:
        rows.append(("FID / KID", f"skipped: {inc['skipped']}"))
    else:
        kid = inc["kid"]
        text = f"{num(inc['fid'], '{:.2f}')} / {num(kid['mean'], '{:.5f}')} ± {num(kid['std'], '{:.5f}')}"
        if "warning" in inc:
            text += "   (random weights: code path only)"
        rows.append(("FID / KID", text))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _heldout_text(heldout: Dict[str, Any]) -> str:
    if "skipped" in heldout:
        return f"skipped: {heldout['skipped']}"
    value = heldout.get("loss")
    return "n/a" if value is None else f"{value:.5f}"
