"""What the web page runs, without the web page: check a request, stream its frames, write the files.

:class:`AppSession` holds the loaded run and its text encoder (loaded once, at start) and turns
one request into a stream of :class:`Update` s: x_t and x̂_0 every few steps, then the final grid
with a PNG and a GIF on disk. A cascade run (``run_dir.CascadeRun``) streams its base and then each
upsampler stage live, at any of its sizes (default: the largest). The Gradio layer (:mod:`.ui`) only maps these to components, so
everything here is testable without a browser or a server.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..config import MAX_SEED, SAMPLERS, SampleConfig
from ..demo import DEMO_PROMPTS
from ..errors import ConfigError
from ..run_dir import LoadedRun

log = logging.getLogger(__name__)

MAX_IMAGES = 16
MAX_GUIDANCE = 20.0
MAX_PROMPT_CHARS = 300
FRAMES_PER_RUN = 10  # live frames per request: one every ceil(steps / 10) steps
DEFAULTS = SampleConfig()  # the variety settings (condition annealing, guidance interval) of `sample`
DEFAULT_STEPS = DEFAULTS.steps
LIVE_TILE = 192  # pixels: each live image is upscaled (nearest) to at least this
# dataset captions (as make_caption writes them) and new descriptions
EXAMPLE_PROMPTS = DEMO_PROMPTS


@dataclass(frozen=True)
class Request:
    """One checked request from the page."""

    prompt: str
    num: int
    sampler: str
    steps: int
    guidance: float
    seed: Optional[int]
    enrich: bool = True  # add the run's description of a named Pokémon (prompts.py)
    negative_prompt: Optional[str] = None  # replaces guidance's null condition; encoded as typed
    size: Optional[int] = None  # the image side, one of the run's sizes; None = the largest


@dataclass(frozen=True)
class Update:
    """One thing to show: live frames while sampling, then the result.

    Attributes:
        x_t, x0: uint8 (H, W, 3) pictures of the current state and of the model's x̂_0, the
            images tiled in a grid and upscaled (nearest) to at least :data:`LIVE_TILE` pixels.
        step, steps, t: reverse steps done, in all, and the noise level of ``x_t``.
        seed: the seed of the run (drawn when the request had none).
        seconds: since the request started.
        grid_png, gif: the captioned grid and the denoising GIF, at the last update only.
        size: the side of the images being made.
        stage, stages: 0 while the base samples, i during a cascade's i-th upsampler stage; the
            upsampler stages of this request (0: a single run, or a cascade at its base size).
        stage_size: the side the current stage samples at.
    """

    x_t: np.ndarray
    x0: np.ndarray
    step: int
    steps: int
    t: int
    seed: int
    seconds: float
    grid_png: Optional[Path] = None
    gif: Optional[Path] = None
    encoded: str = ""  # the prompt as encoded, when enrichment rewrote it
    size: int = 0
    stage: int = 0
    stages: int = 0
    stage_size: int = 0

    @property
    def done(self) -> bool:
        return self.grid_png is not None

    def status(self) -> str:
        """One line for the page's status box."""
        where = f"step {self.step}/{self.steps} · t = {self.t}"
        if self.stages:
            side = f"{self.stage_size}×{self.stage_size}"
            where = (f"upsampler {self.stage}/{self.stages} ({side})" if self.stage else f"base ({side})") + " · " + where
        said = f" · prompt used: “{self.encoded}”" if self.encoded else ""
        if self.done:
            made = f" · {self.size}×{self.size}" if self.size else ""
            return (f"done: {self.steps} steps in {self.seconds:.1f} s{made} · seed {self.seed} "
                    f"(type it in Seed to get the same images again){said}")
        return f"sampling… {where} · seed {self.seed} · {self.seconds:.1f} s{said}"


def _number(value, what: str, low: float, high: float, *, integer: bool) -> float:
    """``value`` (a number, or text from a form) within ``[low, high]``; ConfigError names ``what``."""
    allowed = f"an integer from {int(low)} to {int(high)}" if integer else f"a number from {low:g} to {high:g}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: got {value!r}; allowed: {allowed}") from None
    if not math.isfinite(number) or not low <= number <= high or (integer and number != int(number)):
        raise ConfigError(f"{what}: got {value!r}; allowed: {allowed}")
    return int(number) if integer else number


def parse_request(prompt, num, sampler, steps, guidance, seed, *, timesteps: int, enrich=True,
                  negative=None, size=None, sizes: Sequence[int] = ()) -> Request:
    """Check the page's fields (the browser's limits are not trusted: the API takes anything).

    Args:
        prompt: non-empty text.
        num: images, 1 to :data:`MAX_IMAGES`.
        sampler: "ddim" or "ddpm" (any case).
        steps: DDIM steps, 1 to the run's T; ignored for DDPM, which runs all T steps.
        guidance: 0 to :data:`MAX_GUIDANCE`.
        seed: blank or None for a random seed, else an integer 0 to 2**31−1 (text or number).
        timesteps: the run's T.
        enrich: add the run's description of a Pokémon named in the prompt (a checkbox: true/false).
        negative: the negative prompt; blank or None for none (the null condition).
        size: the image side, one of ``sizes`` (text or number); blank or None for the largest.
        sizes: the run's sizes (a cascade's base and stage sizes); empty: no size is accepted but None.

    Raises:
        ConfigError: a field outside what is allowed; the message names the field.
    """
    text = prompt.strip() if isinstance(prompt, str) else ""
    if not text:
        raise ConfigError(f"Prompt: got {prompt!r}; allowed: a non-empty description, "
                          f"e.g. {EXAMPLE_PROMPTS[0]!r}")
    if len(text) > MAX_PROMPT_CHARS:
        raise ConfigError(f"Prompt: got {len(text)} characters; allowed: at most {MAX_PROMPT_CHARS}")
    kind = str(sampler).strip().lower()
    if kind not in SAMPLERS:
        raise ConfigError(f"Sampler: got {sampler!r}; allowed: DDIM | DDPM")
    steps = timesteps if kind == "ddpm" else _number(steps, "Steps", 1, timesteps, integer=True)
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        seed_value = None
    else:
        seed_value = _number(seed.strip() if isinstance(seed, str) else seed, "Seed", 0, MAX_SEED, integer=True)
    if negative is not None and not isinstance(negative, str):
        raise ConfigError(f"Negative prompt: got {negative!r}; allowed: a text, or blank for none")
    negative = negative.strip() if negative else ""
    if len(negative) > MAX_PROMPT_CHARS:
        raise ConfigError(f"Negative prompt: got {len(negative)} characters; allowed: at most {MAX_PROMPT_CHARS}")
    return Request(prompt=text, num=_number(num, "Images", 1, MAX_IMAGES, integer=True), sampler=kind,
                   steps=steps, guidance=_number(guidance, "Guidance", 0.0, MAX_GUIDANCE, integer=False),
                   seed=seed_value, enrich=_flag(enrich, "Describe named Pokémon"), negative_prompt=negative or None,
                   size=_size(size, sizes))


def _size(size, sizes: Sequence[int]) -> Optional[int]:
    """The Size field: one of ``sizes`` (a number or its text); blank or None for the largest."""
    if size is None or (isinstance(size, str) and not size.strip()):
        return max(sizes) if sizes else None
    try:
        value = float(size.strip() if isinstance(size, str) else size)
    except (TypeError, ValueError):
        value = None
    if isinstance(size, bool) or value not in sizes:
        allowed = " | ".join(map(str, sizes)) or "blank (the run's one size)"
        raise ConfigError(f"Size: got {size!r}; allowed: {allowed}")
    return int(value)


def _flag(value, what: str) -> bool:
    """A checkbox's value: a bool (or None for the default, True); ConfigError names ``what``."""
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ConfigError(f"{what}: got {value!r}; allowed: true | false")
    return value


def frame_picture(images: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) grid of float (B, h, w, C) images in [-1, 1], upscaled like the GIF's frames."""
    from ..viz import denoising_frames

    picture = denoising_frames(np.asarray(images)[None], max_samples=MAX_IMAGES, min_tile=LIVE_TILE)[0]
    return np.repeat(picture[..., None], 3, axis=-1) if picture.ndim == 2 else picture


class AppSession:
    """A loaded run and its encoder, ready to serve requests one after another.

    Args:
        run: the loaded run (``load_run`` / ``load_pretrained``).
        encoder: its text encoder (``text.registry.load_encoder_matching(run.encoder)``).
        label: what the page says the model is.
    """

    def __init__(self, run: LoadedRun, encoder, label: str = "") -> None:
        self.run, self.encoder = run, encoder
        self.label = label or str(run.path)
        self.timesteps = int(run.config.diffusion.timesteps)
        self.default_steps = min(DEFAULT_STEPS, self.timesteps)
        self.sizes = run.sizes  # a cascade: base, then stages
        self.default_size = self.sizes[-1]
        self._files = Path(tempfile.mkdtemp(prefix="pokemon-diffusion-app-"))
        self._last: Optional[Path] = None

    def close(self) -> None:
        """Remove the files written for the page."""
        shutil.rmtree(self._files, ignore_errors=True)

    def warm_up(self) -> float:
        """Trace the default request's loops (1 image, DDIM, guided; a cascade's stages too) now, not at the first click.

        Returns:
            Seconds it took.
        """
        from ..diffusion.streaming import iter_sample

        started = time.perf_counter()
        channels = self.run.config.model.channels
        zeros = np.zeros(self.run.encoder.dim, np.float32)
        for _ in iter_sample(self._model, zeros, (1, self.default_size, self.default_size, channels),
                             schedule=self.run.schedule, steps=1, guidance_scale=3.0, seed=0, every=1):
            pass
        return time.perf_counter() - started

    @property
    def _model(self):
        """What ``iter_sample`` takes: a cascade run itself (base and stages), else the run's model."""
        return self.run if getattr(self.run, "stages", None) is not None else self.run.model

    def parse(self, prompt, num, sampler, steps, guidance, seed, enrich=True, negative=None, size=None) -> Request:
        return parse_request(prompt, num, sampler, steps, guidance, seed, timesteps=self.timesteps, enrich=enrich,
                             negative=negative, size=size, sizes=self.sizes)

    def stream(self, request: Request) -> Iterator[Update]:
        """Sample ``request``: an :class:`Update` every few steps, the last one with the files.

        Raises:
            EncoderError: the encoder returned something the model cannot take.
        """
        from ..diffusion.streaming import iter_sample
        from ..generate import encode_prompts, prompt_annealing, prompt_texts

        started = time.perf_counter()
        text = prompt_texts(self.run, [request.prompt], request.enrich)[0]
        encoded = text if text != request.prompt else ""
        negative = [request.negative_prompt] if request.negative_prompt else []
        embedding = encode_prompts(self.run, [text] + negative, encoder=self.encoder)  # one call
        size = request.size or self.default_size
        shape = (request.num, size, size, self.run.config.model.channels)
        every = max(1, math.ceil(request.steps / FRAMES_PER_RUN))
        sides = self.sizes
        frames = iter_sample(self._model, embedding[:1], shape, schedule=self.run.schedule,
                             negative_emb=embedding[1] if negative else None,
                             sampler=request.sampler, steps=request.steps if request.sampler == "ddim" else None,
                             guidance_scale=request.guidance, seed=request.seed, every=every,
                             num_intermediates=2 * FRAMES_PER_RUN,  # the GIF's frames
                             annealing=prompt_annealing(self.run, [request.prompt], DEFAULTS),
                             guidance_interval=DEFAULTS.guidance_interval)  # as `sample` draws by default
        for frame in frames:
            update = Update(x_t=frame_picture(frame.x), x0=frame_picture(frame.x0), step=frame.step,
                            steps=frame.steps, t=frame.t, seed=frame.seed,
                            seconds=time.perf_counter() - started, encoded=encoded, size=size, stage=frame.stage,
                            stages=frame.stages, stage_size=sides[frame.stage])
            if frame.done:
                png, gif = self._write(frame.result, request, text)
                steps = frame.result.steps  # a cascade's: the base's and its stages'
                update = replace(update, grid_png=png, gif=gif, seconds=time.perf_counter() - started, step=steps,
                                 steps=steps)
                log.info("%r: %d image(s) of %dx%d, %s %d steps, w=%g, seed %d in %.1f s", request.prompt,
                         request.num, size, size, request.sampler, steps, request.guidance, frame.seed, update.seconds)
            yield update

    def _write(self, result, request: Request, text: str):
        """The captioned grid and the GIF of this request, in a fresh folder (the previous one goes)."""
        from ..generate import save_outputs

        folder = Path(tempfile.mkdtemp(dir=self._files))
        side = result.images.shape[1]
        stem = f"pokemon_{side}px_{request.sampler}{result.steps}_w{request.guidance:g}_seed{result.seed}"
        png, gif = folder / f"{stem}.png", folder / f"{stem}.gif"
        save_outputs(result, [text] * request.num, png, gif=gif)
        # the page has been handed the previous request's files already (Gradio copies what it serves)
        if self._last is not None:
            shutil.rmtree(self._last, ignore_errors=True)
        self._last = folder
        return png, gif
