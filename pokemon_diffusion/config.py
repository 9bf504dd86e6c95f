"""Frozen configuration dataclasses, one per stage, with validation and a JSON round trip.

Every config validates itself on construction and raises :class:`ConfigError` naming the field,
the value received and what is allowed::

    >>> ModelConfig(image_size=33)
    Traceback (most recent call last):
    ...
    ConfigError: ModelConfig.image_size: got 33; allowed: a multiple of 8 (2 ** (levels - 1)) from 16 to 128

Configs are saved next to what they describe (``run/config.json``) and read back with
:meth:`BaseConfig.from_dict` / :meth:`BaseConfig.load`, which refuse unknown keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union

from ._config_types import type_name, value_has_type
from .caption_templates import CAPTION_FORMS, caption_template_text
from .atomic import atomic_write_text
from .errors import ConfigError
from .hardware import AUTO

BULBAPEDIA_URL = "https://bulbapedia.bulbagarden.net/wiki/List_of_Pok%C3%A9mon_by_National_Pok%C3%A9dex_number"
SOURCES = ("pokedex", "bulbapedia", "folder")
NORMS = ("batch", "group")
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
SAMPLERS = ("ddim", "ddpm")
LR_SCHEDULES = ("cosine", "constant")
LOSS_WEIGHTINGS = ("none", "min_snr")
EXPORT_FORMATS = ("folder", "saved_model")  # `export --format`; the first is the default
SAMPLE_GRID_IMAGES = 8  # images (and --validation-prompt prompts) of the training sample grid
# the choices of each string field, by field name (config checks and CLI flags read them here)
CHOICES: Dict[str, Tuple[str, ...]] = {"source": SOURCES, "norm": NORMS, "schedule": SCHEDULES, "prediction": PREDICTIONS,
                                       "strategy": STRATEGIES, "sampler": SAMPLERS, "lr_schedule": LR_SCHEDULES,
                                       "loss_weighting": LOSS_WEIGHTINGS}
MAX_SEED = 2**31 - 1  # the largest seed every seeded command and function accepts
CASCADE_STAGE_STEPS, CASCADE_AUG_LEVEL = 25, 0.05  # a cascade stage at sampling: DDIM steps, fixed aug level
CASCADE_STAGE_GUIDANCE = None  # a stage's guidance scale (None: the request's, as the base)
CADS_RANGE = (0.3, 0.7)  # noise levels (t + 1) / T over which condition annealing fades out (docs/SAMPLING.md)
EVAL_MAX_IMAGES = 256  # held-out images of the validation loss (a fixed subset: the first ones)
C = TypeVar("C", bound="BaseConfig")


@dataclass(frozen=True)
class BaseConfig:
    """Shared behaviour: type checks, per-field checks, dict/JSON round trip, atomic save."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # JSON gives lists where tuples are meant
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if isinstance(value, int) and not isinstance(value, bool) and hints[f.name] is float:
                object.__setattr__(self, f.name, float(value))
            if not value_has_type(value, hints[f.name]):
                self._fail(f.name, value, f"a value of type {type_name(hints[f.name])}")
        self.validate()

    def validate(self) -> None:
        """Per-class checks; raise through :meth:`_fail`."""

    def _fail(self, name: str, value: Any, allowed: str) -> None:
        raise ConfigError(f"{type(self).__name__}.{name}: got {value!r}; allowed: {allowed}")

    def _check(self, name: str, ok: bool, allowed: str) -> None:
        if not ok:
            self._fail(name, getattr(self, name), allowed)

    def _choice(self, name: str) -> None:
        self._check(name, getattr(self, name) in CHOICES[name], " | ".join(CHOICES[name]))

    def _range(self, name: str, low: float, high: float, *, optional: bool = False) -> None:
        value = getattr(self, name)
        if optional and value is None:
            return
        self._check(name, value is not None and low <= value <= high, f"{low} to {high}")

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls: Type[C], data: Dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: got {type(data).__name__}; allowed: a JSON object")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(names)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls: Type[C], text: str) -> C:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__}: invalid JSON ({exc})") from None
        return cls.from_dict(data)

    def save(self, path: os.PathLike | str) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls: Type[C], path: os.PathLike | str) -> C:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{cls.__name__}: cannot read {path} ({exc.strerror})") from None
        return cls.from_json(text)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DataConfig(BaseConfig):
    """Collecting a dataset (``collect``) and embedding its captions (``embed``)."""

    source: str = "pokedex"
    out_dir: str = "data/pokemon"
    url: str = BULBAPEDIA_URL
    path: Optional[str] = None
    limit: Optional[int] = None
    force: bool = False
    delay: float = 1.0
    timeout: float = 30.0
    retries: int = 5
    max_bytes: int = 10_000_000
    full_size: bool = False
    text_encoder: str = "auto"
    embed_batch_size: int = 64
    caption_template: str = "visual"  # see CAPTION_TEMPLATES and docs/DATA.md
    caption_forms: Tuple[str, ...] = CAPTION_FORMS  # extra captions per image; () for one caption

    def validate(self) -> None:
        self._choice("source")
        self._check("out_dir", bool(self.out_dir), "a non-empty folder path")
        self._check("url", self.url.startswith(("http://", "https://")), "an http(s) URL")
        self._check("path", self.source != "folder" or bool(self.path),
                    "a folder of images (required when source is 'folder')")
        self._range("limit", 1, 100_000, optional=True)
        self._range("delay", 0.0, 60.0)
        self._range("timeout", 0.1, 600.0)
        self._range("retries", 0, 20)
        self._range("max_bytes", 1_000, 1_000_000_000)
        self._check("text_encoder", bool(self.text_encoder.strip()),
                    "auto | clip | minilm | a hub id or local path")
        self._range("embed_batch_size", 1, 4096)
        try:
            caption_template_text(self.caption_template)
        except ConfigError as exc:
            raise ConfigError(f"DataConfig.{exc}") from None
        for form in self.caption_forms:
            try:
                caption_template_text(form, need_name=False)
            except ConfigError as exc:
                raise ConfigError(f"DataConfig.caption_forms{str(exc)[len('caption_template'):]}") from None


@dataclass(frozen=True)
class ModelConfig(BaseConfig):
    """The U-Net: input size, widths, depth, normalisation and conditioning."""

    image_size: int = 32
    channels: int = 3
    base_width: int = 32
    channel_mults: Tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_resolutions: Tuple[int, ...] = ()
    dropout: float = 0.1
    norm: str = "batch"
    norm_groups: int = 8
    text_dim: int = 384
    low_res: Optional[int] = None  # an upsampler from this size (None: the base model; docs/MODEL.md)

    @property
    def levels(self) -> int:
        return len(self.channel_mults)

    @property
    def widths(self) -> Tuple[int, ...]:
        return tuple(self.base_width * m for m in self.channel_mults)

    def validate(self) -> None:
        self._check("channel_mults", 1 <= len(self.channel_mults) <= 6
                    and all(1 <= m <= 16 for m in self.channel_mults),
                    "1 to 6 multipliers, each from 1 to 16")
        step = 2 ** (self.levels - 1)
        self._check("image_size", 16 <= self.image_size <= 128 and self.image_size % step == 0,
                    f"a multiple of {step} (2 ** (levels - 1)) from 16 to 128")
        self._range("channels", 1, 4)
        self._range("base_width", 4, 1024)
        self._range("num_res_blocks", 1, 8)
        resolutions = [self.image_size // 2 ** i for i in range(self.levels)]
        self._check("attention_resolutions", all(r in resolutions for r in self.attention_resolutions),
                    f"a subset of the U-Net's resolutions {resolutions}")
        self._check("dropout", 0.0 <= self.dropout < 1.0, "0 <= dropout < 1")
        self._choice("norm")
        self._range("norm_groups", 1, 64)
        if self.norm == "group":
            self._check("norm_groups", all(w % self.norm_groups == 0 for w in self.widths),
                        f"a divisor of every level width {list(self.widths)}")
        self._range("text_dim", 1, 8192)
        self._check("low_res", self.low_res is None or (8 <= self.low_res < self.image_size and not
                                                        self.attention_resolutions and self.image_size % self.low_res == 0),
                    f"None (the base model) or, without attention_resolutions, a divisor of image_size "
                    f"{self.image_size} from 8 to {self.image_size // 2}")

    def to_dict(self) -> Dict[str, Any]:  # a base model's config.json stays as before upsamplers existed
        return {k: v for k, v in super().to_dict().items() if k != "low_res" or v is not None}


@dataclass(frozen=True)
class DiffusionConfig(BaseConfig):
    """The forward process: noise schedule, number of steps and what the network predicts.

    ``prediction`` defaults to ``"v"`` (v = √ᾱ·ε − √(1−ᾱ)·x₀, Salimans & Ho 2022): on this project's 32×32
    Pokémon the same U-Net trained with ε drew blobs and with v draws creatures (docs/RESULTS.md, reference v3
    and its control). ``"epsilon"``: the DDPM paper's, runs before 2026-12-03; a run records its own value.
    """

    timesteps: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "v"

    def validate(self) -> None:
        self._range("timesteps", 2, 10_000)
        self._choice("schedule")
        self._check("beta_start", 0.0 < self.beta_start < 1.0, "0 < beta_start < 1")
        self._check("beta_end", self.beta_start < self.beta_end < 1.0, "beta_start < beta_end < 1")
        self._choice("prediction")


@dataclass(frozen=True)
class TrainConfig(BaseConfig):
    """The training loop: optimisation, EMA, guidance dropout, checkpoints and logging."""

    steps: Optional[int] = 10_000
    epochs: Optional[int] = None
    batch_size: int = 32
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    lr_schedule: str = "cosine"
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.999
    cond_drop: float = 0.1
    val_fraction: float = 0.05
    flip: bool = True
    seed: int = 0
    mixed_precision: Union[bool, str] = AUTO  # bfloat16 where measured faster (hardware.py), else float32
    strategy: str = "auto"
    # the step's batch as this many independent branches, each on its own CPU cores (hardware.train_branches)
    branches: Union[int, str] = AUTO
    checkpoint_every: int = 500
    max_checkpoints: int = 3
    eval_every: int = 500
    log_every: int = 50
    time_limit_minutes: Optional[float] = None
    deterministic: bool = False  # TensorFlow's deterministic ops: bit-exact resumes, a little slower
    eval_timesteps: int = 8  # points of the fixed t grid of the held-out loss
    sample_every: int = 1000  # steps between TensorBoard sample grids (0 = never)
    remat: bool = False  # recompute each ResBlock in the backward pass: less memory, a slower step
    loss_weighting: str = "none"  # "min_snr": Min-SNR-γ weights per timestep (NoiseSchedule.loss_weights)
    min_snr_gamma: float = 5.0
    crop_size: Optional[int] = None  # an upsampler trains on random crops this big (None: whole images)
    aug_max: float = 0.2  # an upsampler's conditioning augmentation: noise std s ~ U[0, aug_max] per example
    # the draw of one caption per example (images with several): a weight per caption form (metadata
    # caption_forms: "main", "name", "plain", ...; unnamed forms weigh 1); {} = uniform
    caption_weights: Dict[str, float] = field(default_factory=dict)
    embedding_noise: float = 0.0  # Gaussian noise on the drawn caption embedding, its norm ≈ this × the embedding's
    # each training image also draws the descriptions of its K nearest same-colour training Pokémon
    # (caption form "neighbour", data/neighbours.py): a description is trained with every Pokémon it fits
    caption_neighbours: int = 0

    def validate(self) -> None:
        self._check("steps", (self.steps is None) != (self.epochs is None),
                    "exactly one of steps and epochs set")
        self._range("steps", 1, 10_000_000, optional=True)
        self._range("epochs", 1, 100_000, optional=True)
        self._range("batch_size", 1, 4096)
        self._check("learning_rate", 0.0 < self.learning_rate <= 1.0, "0 < learning_rate <= 1")
        self._range("weight_decay", 0.0, 1.0)
        self._range("warmup_steps", 0, 10_000_000)
        self._choice("lr_schedule")
        self._check("grad_clip_norm", self.grad_clip_norm > 0, "a positive number")
        self._check("ema_decay", 0.0 <= self.ema_decay < 1.0, "0 <= ema_decay < 1")
        self._check("cond_drop", 0.0 <= self.cond_drop < 1.0, "0 <= cond_drop < 1")
        self._check("val_fraction", 0.0 <= self.val_fraction < 1.0, "0 <= val_fraction < 1")
        self._range("seed", 0, MAX_SEED)
        self._choice("strategy")
        self._check("mixed_precision", self.mixed_precision in (True, False, AUTO),
                    f'true | false | "{AUTO}"')
        self._check("branches", self.branches == AUTO or (type(self.branches) is int and 1 <= self.branches <= 64),
                    f'an integer from 1 to 64, or "{AUTO}"')
        self._range("checkpoint_every", 1, 10_000_000)
        self._range("max_checkpoints", 1, 1000)
        self._range("eval_every", 1, 10_000_000)
        self._range("log_every", 1, 10_000_000)
        self._check("time_limit_minutes", self.time_limit_minutes is None or self.time_limit_minutes > 0,
                    "a positive number of minutes")
        self._range("eval_timesteps", 1, 1000)
        self._range("sample_every", 0, 10_000_000)
        self._choice("loss_weighting")
        self._check("min_snr_gamma", 0.0 < self.min_snr_gamma <= 1e6, "a positive number (the paper uses 5)")
        self._range("crop_size", 16, 128, optional=True)
        self._range("aug_max", 0.0, 1.0)
        weights = self.caption_weights
        self._check("caption_weights", isinstance(weights, dict) and all(
            isinstance(k, str) and k and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1000
            for k, v in weights.items()), 'an object of caption form -> weight from 0 to 1000, e.g. {"name": 3}')
        self._range("embedding_noise", 0.0, 2.0)
        self._range("caption_neighbours", 0, 64)


@dataclass(frozen=True)
class SampleConfig(BaseConfig):
    """Sampling: which sampler, how many steps, guidance and what to keep for the figures."""

    sampler: str = "ddim"
    steps: int = 50
    guidance_scale: float = 3.0
    eta: float = 0.0
    num_intermediates: int = 10
    clip_x0: bool = True
    seed: Optional[int] = None
    enrich: bool = True  # a Pokémon's name in a prompt gets its known description (prompts.py)
    negative_prompt: Optional[str] = None  # guidance steps away from it (None: the null condition, zeros)
    # the network in bfloat16 where the CPU runs it natively (hardware.py; applied by load_run)
    mixed_precision: Union[bool, str] = AUTO
    # condition-annealed sampling (CADS, diffusion/steps.py): noise on the prompt above these noise levels
    cads_strength: float = 0.5  # 0: off; relative to the embedding's RMS (steps.ConditionAnnealing)
    cads_range: Tuple[float, float] = CADS_RANGE  # (ConditionAnnealing.from_config builds the settings)
    cads_names: bool = False  # also anneal prompts that name a Pokémon the run knows (generate.prompt_annealing)
    # guide only at noise levels (t + 1) / T in (low, high]; None: at every step (samplers.check_interval)
    guidance_interval: Optional[Tuple[float, float]] = None

    def validate(self) -> None:
        self._check("mixed_precision", self.mixed_precision in (True, False, AUTO),
                    f'true | false | "{AUTO}"')
        self._check("negative_prompt", self.negative_prompt is None or bool(self.negative_prompt.strip()),
                    "None or a non-empty text")
        self._choice("sampler")
        self._range("steps", 1, 10_000)
        self._range("guidance_scale", 0.0, 50.0)
        self._range("eta", 0.0, 1.0)
        self._range("num_intermediates", 2, 1000)
        self._range("seed", 0, MAX_SEED, optional=True)
        self._range("cads_strength", 0.0, 10.0)
        for name in ("cads_range", "guidance_interval"):
            value = getattr(self, name)
            self._check(name, value is None and name != "cads_range" or 0.0 <= value[0] < value[1] <= 1.0,
                        "two noise levels 0 <= low < high <= 1")


@dataclass(frozen=True)
class RunConfig(BaseConfig):
    """Everything a training run was made with, saved as ``RUN/config.json``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    _PARTS = {"model": ModelConfig, "diffusion": DiffusionConfig, "train": TrainConfig}

    def __post_init__(self) -> None:
        for name, cls in self._PARTS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                self._fail(name, value, f"a {cls.__name__} or a JSON object")

    def to_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in self._PARTS}
