"""One PNG per generated image, with how it was made written into the file.

``save_images(result, prompts, out_dir, ...)`` writes ``out_dir/000_a-fire-dragon_seed5.png``, ...
(prompt-major, as ``generate`` orders the images). Each PNG carries text chunks the way diffusers
users and the Stable Diffusion web UIs read them: one ``parameters`` chunk with the whole recipe
in the web UI's layout::

    a fire dragon
    Negative prompt: blurry
    Steps: 50, Sampler: DDIM, CFG scale: 3, Seed: 5, Size: 32x32, Model: pokemon-32px-minilm-reference-v6

and one chunk per key (:data:`PNG_KEYS`: ``prompt`` as typed, ``encoded_prompt`` as encoded,
``negative_prompt``, ``seed``, ``batch_index``, ``batch_size``, ``steps``, ``sampler``, ``eta``,
``guidance_scale``, ``model``, ``software``), read back with ``PIL.Image.open(path).text``.
The images of one call share its seed: ``seed`` with the same prompts and ``--num`` gives the
same batch again, and ``batch_index`` says which image of it this is.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ._version import __version__
from .atomic import atomic_path
from .errors import ConfigError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PNG_KEYS = ("parameters", "prompt", "encoded_prompt", "negative_prompt", "seed", "batch_index", "batch_size",
            "steps", "sampler", "eta", "guidance_scale", "model", "software")
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
SLUG_CHARS = 40  # of the prompt in a file name


def to_pil(images) -> list:
    """Float images (B, H, W, C) or (H, W, C) in [-1, 1] as PIL images (L, LA, RGB or RGBA), ready
    to ``.save(path)``."""
    from PIL import Image

    from .viz import to_uint8

    pixels = to_uint8(images)
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[-1] not in _MODES:
        raise ConfigError(f"images: got shape {np.shape(images)}; allowed: (B, H, W, C) or (H, W, C), 1 to 4 channels")
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p, _MODES[p.shape[-1]]) for p in pixels]


def slug(text: str, limit: int = SLUG_CHARS) -> str:
    """A file-name-safe short form of ``text``: ASCII letters and digits joined by ``-``.

    Example:
        >>> slug("Pikachu, a small yellow Électric-type Pokémon!")
        'pikachu-a-small-yellow-electric-type-pok'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:limit].strip("-") or "image"


def image_metadata(result, index: int, prompt: str, *, encoded: Optional[str] = None, model: str = "",
                   negative_prompt: Optional[str] = None, extra: Optional[Mapping[str, object]] = None) -> Dict[str, str]:
    """The text chunks of image ``index`` of ``result`` (a ``SampleResult``), as str -> str."""
    batch, height, width = result.images.shape[:3]
    sampler = str(result.sampler)
    line = [f"Steps: {result.steps}", f"Sampler: {sampler.upper()}", f"CFG scale: {result.guidance_scale:g}",
            f"Seed: {result.seed}", f"Size: {width}x{height}"]
    if sampler == "ddim" and result.eta:
        line.append(f"Eta: {result.eta:g}")
    if model:
        line.append(f"Model: {model}")
    line += [f"{key}: {value}" for key, value in (extra or {}).items()]
    head = [prompt] + ([f"Negative prompt: {negative_prompt}"] if negative_prompt else [])
    chunks = {"parameters": "\n".join(head + [", ".join(line)]), "prompt": prompt,
              "encoded_prompt": prompt if encoded is None else encoded, "negative_prompt": negative_prompt or "",
              "seed": str(result.seed), "batch_index": str(index), "batch_size": str(batch),
              "steps": str(result.steps), "sampler": sampler, "eta": f"{result.eta:g}",
              "guidance_scale": f"{result.guidance_scale:g}", "model": model,
              "software": f"pokemon-diffusion {__version__}"}
    chunks.update({str(key): str(value) for key, value in (extra or {}).items()})
    return chunks


def save_images(result, prompts: Sequence[str], out_dir: PathLike, *, encoded: Optional[Sequence[str]] = None,
                model: str = "", negative_prompt: Optional[str] = None,
                extra: Optional[Mapping[str, object]] = None) -> List[Path]:
    """Write each image of ``result`` as ``out_dir/NNN_PROMPT_seedS.png`` (atomically) with its metadata.

    Args:
        result: a ``SampleResult`` (``generate``, ``edit``, ``samplers.sample``).
        prompts: one prompt per image, as typed (``generate``'s order: prompt-major).
        encoded: one prompt per image as encoded (``generate``'s labels); None: as typed.
        model: the model's name (``pretrained.model_name``).
        negative_prompt: the negative prompt used, if any.
        extra: more ``key: value`` pairs for the ``parameters`` line and their own chunks
            (an image edit's ``strength`` and ``init_image``).

    Returns:
        The paths written, in image order.

    Raises:
        ConfigError: the number of prompts is not the number of images.
        WriteError: the folder cannot be written (full disk, read-only, no permission).
    """
    from PIL.PngImagePlugin import PngInfo

    images = to_pil(result.images)
    encoded = list(prompts) if encoded is None else list(encoded)
    if not len(prompts) == len(encoded) == len(images):
        raise ConfigError(f"prompts: got {len(prompts)} prompts and {len(encoded)} encoded ones for "
                          f"{len(images)} images; allowed: one of each per image")
    written = []
    for index, (image, prompt, as_encoded) in enumerate(zip(images, prompts, encoded)):
        info = PngInfo()
        for key, value in image_metadata(result, index, prompt, encoded=as_encoded, model=model,
                                         negative_prompt=negative_prompt, extra=extra).items():
            info.add_text(key, value)  # Pillow writes an iTXt chunk for text beyond Latin-1
        path = Path(out_dir) / f"{index:03d}_{slug(prompt)}_seed{result.seed}.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", pnginfo=info)
        written.append(path)
    log.info("wrote %d image(s) to %s", len(written), out_dir)
    return written
