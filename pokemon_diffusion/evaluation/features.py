"""Feature extractors for evaluation: download-free pixel features and InceptionV3 pool features.

Images come in as float arrays in [-1, 1], shape (N, H, W, 3) or RGBA (N, H, W, 4); RGBA is
composited on white first, the way the dataset shows Pokémon.

- :func:`pixel_features`: what nearest-neighbour conditioning accuracy compares. Needs nothing
  downloaded and is described by :data:`PIXEL_FEATURES_DESCRIPTION` in the report.
- :class:`InceptionFeatures`: 2048-d average-pool features of ``keras.applications.InceptionV3``
  at 299×299, the feature space of FID and KID. Weights come from :func:`resolve_inception_weights`,
  which never waits on the network (see its docstring).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..atomic import atomic_path
from ..errors import ConfigError, PokemonDiffusionError
from ..logging_utils import progress

log = logging.getLogger(__name__)

#: Side of the downscaled image that pixel features are made of.
PIXEL_FEATURE_SIZE = 16
PIXEL_FEATURES_DESCRIPTION = (
    "pixels: RGB composited on white, area-downscaled to {size}x{size}, inverted (1 - rgb in [0,1]) so "
    "the white background is 0, flattened and L2-normalised; nearest = smallest Euclidean distance "
    "(= largest cosine similarity)")

#: File name Keras caches InceptionV3's ImageNet weights (no top) under, in ``$KERAS_HOME/models``.
INCEPTION_CACHE_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_INPUT_SIZE = 299
INCEPTION_DIM = 2048
#: Values of ``inception_weights`` besides a file path.
RANDOM, IMAGENET, AUTO = "random", "imagenet", "auto"


class FeatureUnavailable(PokemonDiffusionError):
    """A feature extractor's weights are not available here (FID/KID are then skipped, not failed)."""


# ------------------------------------------------------------------------------------- images

def to_rgb_on_white(images: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] -> RGB float32 in [0, 1], alpha (if any) composited on white.

    Args:
        images: (N, H, W, 3) or (N, H, W, 4) in [-1, 1].

    Raises:
        ValueError: not 4-D with 3 or 4 channels.
    """
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"images: got shape {arr.shape}; allowed: (N, H, W, 3) or (N, H, W, 4) in [-1, 1]")
    unit = np.clip((arr + 1.0) / 2.0, 0.0, 1.0)
    if unit.shape[-1] == 4:
        alpha = unit[..., 3:]
        unit = unit[..., :3] * alpha + (1.0 - alpha)
    return unit


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] -> uint8 RGB on [0, 255] ((x + 1) · 127.5, rounded and clipped)."""
    return np.clip(np.rint(to_rgb_on_white(images) * 255.0), 0, 255).astype(np.uint8)


def _area_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Downscale (N, H, W, C) to (N, size, size, C) by area averaging (block mean when it divides)."""
    n, h, w, c = images.shape
    if h == size and w == size:
        return images
    if h % size == 0 and w % size == 0:
        return images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    import cv2

    return np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) for img in images])


# ------------------------------------------------------------------------------ pixel features

def pixel_features(images: np.ndarray, size: int = PIXEL_FEATURE_SIZE) -> np.ndarray:
    """Download-free features for nearest-neighbour search (see :data:`PIXEL_FEATURES_DESCRIPTION`).

    Inverting the colours makes the white background zero, so the L2 normalisation and the
    distances weigh the Pokémon's own shape and colours rather than how much background there is.

    Args:
        images: (N, H, W, 3|4) in [-1, 1].
        size: side of the downscaled image (feature size = size² · 3).

    Returns:
        float32 (N, size² · 3); an all-white image gives the zero vector.
    """
    if not 1 <= size <= 256:
        raise ValueError(f"pixel_features: got size={size}; allowed: 1 to 256")
    ink = 1.0 - _area_resize(to_rgb_on_white(images), size)
    flat = ink.reshape(ink.shape[0], -1).astype(np.float32)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, 1e-12)


# -------------------------------------------------------------------------- InceptionV3 weights

def keras_cache_candidates() -> list:
    """Where Keras may have cached downloads: ``$KERAS_HOME/models``, ``~/.keras/models``, ``/tmp/.keras/models``."""
    homes = [os.environ.get("KERAS_HOME"), os.path.join("~", ".keras"), os.path.join("/tmp", ".keras")]
    return [Path(os.path.expanduser(h)) / "models" for h in homes if h]


def cached_inception_weights() -> Optional[Path]:
    """The cached InceptionV3 ImageNet (no top) weights file, if Keras has downloaded it before."""
    for folder in keras_cache_candidates():
        path = folder / INCEPTION_CACHE_FILE
        if path.is_file():
            return path
    return None


def is_offline() -> bool:
    """Whether the environment asks for no network (``HF_HUB_OFFLINE`` or ``POKEMON_DIFFUSION_OFFLINE``)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "POKEMON_DIFFUSION_OFFLINE"))


def resolve_inception_weights(spec: Optional[str] = None, *, offline: Optional[bool] = None) -> str:
    """Decide which InceptionV3 weights to use, without touching the network.

    Args:
        spec: ``None``/``"auto"``: Keras' cached ImageNet file if present (never downloads);
            ``"imagenet"``: the cached file, else Keras' download unless offline;
            ``"random"``: random weights (tests: runs the FID/KID code path, meaningless values);
            anything else: a path to a ``.h5`` / ``.weights.h5`` / ``.keras`` weights file.
        offline: forbid downloads; default: :func:`is_offline`.

    Returns:
        A file path, ``"random"`` or ``"imagenet"`` (= let Keras download).

    Raises:
        FeatureUnavailable: no weights without a download, or a download is forbidden (skip FID/KID).
        ConfigError: ``spec`` is a path that does not exist or has another extension.
    """
    offline = is_offline() if offline is None else offline
    spec = AUTO if spec is None else str(spec).strip()
    if spec == RANDOM:
        return RANDOM
    if spec in (AUTO, IMAGENET):
        cached = cached_inception_weights()
        if cached is not None:
            return str(cached)
        where = ", ".join(str(p) for p in keras_cache_candidates())
        if spec == AUTO:
            raise FeatureUnavailable(
                f"no InceptionV3 weights: {INCEPTION_CACHE_FILE} is not cached in {where}; pass "
                "--inception-weights PATH (a .h5 file) or --inception-weights imagenet to let Keras download it")
        if offline:
            raise FeatureUnavailable(
                "InceptionV3 weights would need a download but the network is off (HF_HUB_OFFLINE/--offline); "
                f"put {INCEPTION_CACHE_FILE} in {where} or pass --inception-weights PATH")
        return IMAGENET
    path = Path(os.path.expanduser(spec))
    if not path.name.endswith((".h5", ".keras")):
        raise ConfigError(f"--inception-weights: got {spec!r}; allowed: auto | imagenet | random | "
                          "a path to a .h5 / .weights.h5 / .keras file")
    if not path.is_file():
        raise ConfigError(f"--inception-weights: file not found: {spec!r}; allowed: an existing "
                          ".h5 / .weights.h5 / .keras file, auto, imagenet or random")
    check_weights_file(path)
    return str(path)


def check_weights_file(path: os.PathLike | str) -> None:
    """Cheaply check that ``path`` is an HDF5 (``.h5``) or zip (``.keras``) file before building a network.

    Raises:
        ConfigError: the file cannot be opened as what its extension says.
    """
    import zipfile

    path = Path(path)
    if path.suffix == ".keras":
        ok = zipfile.is_zipfile(path)
    else:
        import h5py

        try:
            with h5py.File(path, "r"):
                ok = True
        except OSError:
            ok = False
    if not ok:
        kind = "a zip (.keras)" if path.suffix == ".keras" else "an HDF5 (.h5)"
        raise ConfigError(f"--inception-weights: {str(path)!r} is not {kind} file; allowed: Keras "
                          f"InceptionV3 weights such as {INCEPTION_CACHE_FILE}")


# ------------------------------------------------------------------------- InceptionV3 features

@dataclass
class InceptionFeatures:
    """InceptionV3 average-pool features (2048-d) of images resized to ``input_size``².

    Build with :meth:`load`; call on images in [-1, 1] (InceptionV3's own input scale, so no
    further preprocessing is needed).
    """

    model: object      # keras.Model
    weights: str       # what :func:`resolve_inception_weights` returned
    input_size: int = INCEPTION_INPUT_SIZE
    batch_size: int = 16
    seed: int = 0      # of the "random" weights

    @property
    def identity(self) -> str:
        """What determines the features besides the images: weights (file size and time), size, seed."""
        if self.weights == RANDOM:
            source = f"random:{self.seed}"
        elif self.weights == IMAGENET:
            source = IMAGENET
        else:
            stat = Path(self.weights).stat()
            source = f"{Path(self.weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return f"inception_v3:{source}:{self.input_size}"

    @property
    def name(self) -> str:
        source = "random weights" if self.weights == RANDOM else "ImageNet" if self.weights == IMAGENET \
            else Path(self.weights).name
        return f"InceptionV3 avg-pool {INCEPTION_DIM}-d at {self.input_size}x{self.input_size} ({source})"

    @classmethod
    def load(cls, weights: str, *, input_size: int = INCEPTION_INPUT_SIZE, batch_size: int = 16,
             seed: int = 0) -> "InceptionFeatures":
        """Build InceptionV3 (no top, average pooling) with resolved ``weights``.

        Args:
            weights: a value returned by :func:`resolve_inception_weights`.
            input_size: side of the network input; 299 is the standard for FID (75 is the minimum,
                useful in tests only).
            seed: seeds the ``"random"`` weights, so tests are reproducible.

        Raises:
            ConfigError: ``input_size`` below 75 or above 1024, or a weights file that is damaged or
                does not fit InceptionV3 (no top).
            FeatureUnavailable: the ImageNet weights could not be downloaded.
        """
        if not 75 <= input_size <= 1024:
            raise ConfigError(f"InceptionV3 input_size: got {input_size}; allowed: 75 to 1024 (299 for FID)")
        if weights not in (RANDOM, IMAGENET):
            check_weights_file(weights)  # seconds cheaper than finding out after building the network
        import keras

        shape = (input_size, input_size, 3)
        try:
            model = keras.applications.InceptionV3(include_top=False, pooling="avg",
                                                   weights=None if weights == RANDOM else weights,
                                                   input_shape=shape)
        except Exception as exc:  # download failure (URLError, ...) or weights of another network
            if weights == IMAGENET:
                raise FeatureUnavailable(f"cannot download InceptionV3 ImageNet weights: {exc}") from None
            raise ConfigError(f"--inception-weights: cannot load {weights!r} into InceptionV3 (no top): "
                              f"{exc}; allowed: weights of keras.applications.InceptionV3(include_top=False)") from None
        if weights == RANDOM:
            seed_random_kernels(model, seed)
        log.info("InceptionV3 feature extractor ready (%s)", weights)
        return cls(model, weights, input_size, batch_size, seed)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features of ``images`` (N, H, W, 3|4) in [-1, 1]: float64 (N, 2048)."""
        import tensorflow as tf

        rgb = to_rgb_on_white(images) * 2.0 - 1.0
        out = []
        starts = range(0, rgb.shape[0], self.batch_size)
        for start in progress(starts, desc="inception features", unit="batch", leave=False):
            batch = tf.image.resize(rgb[start:start + self.batch_size], (self.input_size, self.input_size),
                                    method="bilinear", antialias=True)
            out.append(np.asarray(self.model(batch, training=False), dtype=np.float64))
        if not out:
            return np.zeros((0, INCEPTION_DIM), np.float64)
        return np.concatenate(out)


def cached_features(extractor, images: np.ndarray, cache_dir: Optional[os.PathLike | str]) -> np.ndarray:
    """``extractor(images)``, kept in ``cache_dir`` under a hash of the images and ``extractor.identity``.

    The real images of a dataset are the same at every evaluation of a run; at ~0.2-0.5 s per image
    for InceptionV3 on a 2-core CPU, computing their features once saves minutes per evaluation.
    ``cache_dir=None`` computes without caching. A damaged cache file is recomputed.
    """
    if cache_dir is None:
        return extractor(images)
    import hashlib
    
    arr = np.ascontiguousarray(images, dtype=np.float32)
    digest = hashlib.sha256(f"{extractor.identity}|{arr.shape}".encode())
    digest.update(arr.tobytes())
    path = Path(cache_dir) / f"features_{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        try:
            cached = np.load(path)
            if cached.shape[0] == arr.shape[0]:
                log.info("features of %d images read from %s", arr.shape[0], path)
                return cached
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable feature cache %s (%s)", path, exc)
    out = extractor(arr)
    with atomic_path(path, suffix="") as tmp, open(tmp, "wb") as fh:
        np.save(fh, out)
    return out


def seed_random_kernels(model, seed: int = 0) -> None:
    """Give every convolution kernel He-normal values from a seeded NumPy RNG.

    Keras' own initialisers draw from global state; this keeps "random" features reproducible
    without touching global seeds. The network's BatchNorm layers keep their identity statistics
    (mean 0, variance 1), so He scaling keeps activations from vanishing or exploding.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) == 4:  # (kh, kw, in, out)
            fan_in = shape[0] * shape[1] * shape[2]
            variable.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32))
