"""Visual captions: what the picture shows (main colours, size) computed from the image itself.

* :func:`figure_mask` separates the Pokémon from its background. Images of the dataset are RGB
  with transparency composited on white and padded white (``images.py``), so the background is
  the near-white region *connected to the border*; white parts of the figure (Togepi, Lugia)
  are enclosed by an outline and stay in the figure.
* :func:`colour_names` maps every figure pixel to one of the 11 basic colour terms (Berlin & Kay:
  black, white, grey, red, orange, yellow, green, blue, purple, pink, brown) from its HSV
  coordinates: low saturation is black / grey / white by brightness, dark orange-to-yellow is
  brown, light red and magenta are pink, the rest is named by hue.
* :func:`main_colours` counts them and returns the one or two that cover most of the figure.
* :func:`size_word` turns a height in metres (the Pokédex gives one) into tiny/small/large/huge.
* :func:`make_caption` fills a template (``DataConfig.caption_template``) with ``{name}``
  ``{size}`` ``{colours}`` ``{types}`` ``{abilities}`` and ``{a}`` (the article agreeing with the
  next word).
* :func:`make_captions` gives every caption of one image: the main one first, then one per
  caption form (``DataConfig.caption_forms``: the name alone, "NAME, a TYPE-type Pokémon", the
  description without the name, colour-only, type-only, abilities), without repeats or empties.

Example:
    >>> make_caption("Pikachu", ["Electric"], colours=["yellow"], size="small")
    'Pikachu, a small yellow Electric-type Pokémon'
    >>> make_caption("Eevee", [], template=PLAIN_TEMPLATE)
    'Eevee, a Pokémon'
    >>> make_captions("Pikachu", ["Electric"], colours=["yellow"], size="small")[:4]
    ['Pikachu, a small yellow Electric-type Pokémon', 'Pikachu', 'Pikachu, an Electric-type Pokémon', \
'a small yellow Electric-type Pokémon']
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..caption_templates import CAPTION_FORMS, CAPTION_TEMPLATES, MAIN_FORM, caption_template_text

BASIC_COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink",
                 "brown")
#: ``"Pikachu, a small yellow Electric-type Pokémon"``: the default since captions describe pictures.
VISUAL_TEMPLATE = CAPTION_TEMPLATES["visual"]
#: ``"Pikachu, an Electric-type Pokémon"``: the captions before visual ones (the reference model's).
PLAIN_TEMPLATE = CAPTION_TEMPLATES["plain"]

# A pixel this close to white (every channel) may be background; JPEG artefacts stay below 255.
BACKGROUND_MIN = 232
# The second colour is named when it covers at least this share of the figure...
SECOND_MIN_SHARE = 0.22
# ... and at least this fraction of the first colour's pixels.
SECOND_MIN_RATIO = 0.45
# Height (m) upper bounds of the size words; Pikachu 0.4 m is small, Charizard 1.7 m large.
SIZE_WORDS = ((0.3, "tiny"), (1.0, "small"), (2.5, "large"), (float("inf"), "huge"))


# ----------------------------------------------------------------------------- the figure

def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image; got {rgb.dtype} {rgb.shape}")
    return rgb


def figure_mask(rgb_uint8: np.ndarray, background_min: int = BACKGROUND_MIN) -> np.ndarray:
    """True on the figure's pixels: everything but the near-white region touching the border.

    Args:
        rgb_uint8: (H, W, 3) uint8 image on white.
        background_min: channels all at least this are near-white.

    Returns:
        bool (H, W). When the whole image is near-white, every pixel (a white blob is white).
    """
    from scipy import ndimage

    rgb = _as_rgb(rgb_uint8)
    light = np.all(rgb >= background_min, axis=-1)
    labels, _ = ndimage.label(light)  # 4-connected regions of near-white
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border > 0])
    figure = ~background
    if not figure.any():
        return np.ones_like(figure)
    return figure


# ----------------------------------------------------------------------------- naming

def _hsv(rgb: np.ndarray) -> tuple:
    """Hue in degrees [0, 360), saturation and value in [0, 1], float arrays of rgb's shape[:-1]."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    c = v - x.min(axis=-1)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0.0)
    safe = np.maximum(c, 1e-6)
    h = np.where(v == r, ((g - b) / safe) % 6.0,
                 np.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) * 60.0
    return np.where(c > 0, h, 0.0) % 360.0, s, v


def colour_names(rgb_uint8: np.ndarray) -> np.ndarray:
    """The basic colour term of every pixel, as indices into :data:`BASIC_COLOURS`.

    Args:
        rgb_uint8: (..., 3) uint8 pixels.

    Returns:
        int8 array of shape ``rgb_uint8.shape[:-1]``.
    """
    rgb = np.asarray(rgb_uint8)
    if rgb.shape[-1:] != (3,) or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 (..., 3) RGB pixels; got {rgb.dtype} {rgb.shape}")
    h, s, v = _hsv(rgb)
    index = {name: i for i, name in enumerate(BASIC_COLOURS)}
    # chromatic names by hue first, then the dark / light / grey exceptions override them
    hue_edges = np.array([12, 40, 66, 165, 255, 335, 360])
    hue_names = np.array([index[n] for n in ("red", "orange", "yellow", "green", "blue", "purple", "red")])
    out = hue_names[np.searchsorted(hue_edges, h, side="right").clip(0, len(hue_names) - 1)].astype(np.int8)
    red, violet = out == index["red"], (h >= 255) & (h < 335)
    warm = (h >= 12) & (h < 50)
    out[warm & ((v < 0.62) | ((s < 0.45) & (v < 0.85)))] = index["brown"]  # dark or dull orange / yellow
    out[red & (((v < 0.55) & (s < 0.7)) | ((v < 0.75) & (s < 0.45)))] = index["brown"]  # dull dark red: taupe
    out[red & (s < 0.45) & (v > 0.75)] = index["pink"]            # light red
    out[violet & (h >= 285) & (s >= 0.2) & (v > 0.85)] = index["pink"]  # light magenta
    out[(h >= 232) & (h < 255) & (s < 0.4)] = index["purple"]     # slate / lavender reads as purple (Gengar)
    # low saturation: black / grey / white by brightness; violet tints stay coloured longer
    grey = s < np.where(violet, np.where(v < 0.4, 0.45, 0.1), 0.16 + 0.1 * (v < 0.35))
    out[grey] = np.where(v[grey] > 0.75, index["white"], index["grey"])  # shaded white is still white
    out[((h >= 300) | (h < 20)) & (s >= 0.08) & (s < 0.45) & (v > 0.86)] = index["pink"]  # pink-white (Jigglypuff)
    out[(v < 0.2) | ((v < 0.36) & (s < 0.5))] = index["black"]
    return out


def colour_shares(rgb_uint8: np.ndarray, mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Share of the figure's pixels (``mask``; default :func:`figure_mask`) per basic colour, largest first."""
    rgb = _as_rgb(rgb_uint8)
    mask = figure_mask(rgb) if mask is None else np.asarray(mask, bool)
    names = colour_names(rgb[mask])
    counts = np.bincount(names.astype(np.int64), minlength=len(BASIC_COLOURS))
    total = max(int(counts.sum()), 1)
    order = np.argsort(-counts, kind="stable")
    return {BASIC_COLOURS[i]: counts[i] / total for i in order if counts[i] > 0}


def main_colours(rgb_uint8: np.ndarray, max_colours: int = 2) -> List[str]:
    """The figure's one or two main basic colours, most frequent first.

    Outline pixels (black) are not named unless black covers a big share on its own. The second
    colour is named when it covers :data:`SECOND_MIN_SHARE` of the figure and at least
    :data:`SECOND_MIN_RATIO` of the first colour's pixels.

    Args:
        rgb_uint8: (H, W, 3) uint8 RGB image on a white background.
        max_colours: 1 or 2.

    Returns:
        One or two names from :data:`BASIC_COLOURS`.

    Raises:
        ValueError: not a uint8 RGB image.
    """
    shares = list(colour_shares(rgb_uint8).items())
    if not shares:
        return ["white"]
    first, first_share = shares[0]
    out = [first]
    for name, share in shares[1:max_colours]:
        if share >= SECOND_MIN_SHARE and share >= SECOND_MIN_RATIO * first_share:
            out.append(name)
    return out


def image_colours(image, max_side: int = 64) -> List[str]:
    """:func:`main_colours` of a PIL image, first reduced to at most ``max_side`` pixels.

    Box-averaged, as seen from a distance: thin outlines blend into the colours they bound (and
    the picture is closer to the 32 x 32 images the model trains on and draws).
    """
    from PIL import Image

    image = image.convert("RGB")
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return main_colours(np.asarray(image, dtype=np.uint8))


def size_word(height_m: Optional[float]) -> str:
    """``tiny`` (< 0.3 m), ``small`` (< 1 m), ``large`` (< 2.5 m) or ``huge``; ``""`` without a height.

    Example:
        >>> size_word(0.4), size_word(1.7), size_word(None)
        ('small', 'large', '')
    """
    if height_m is None or not height_m > 0:
        return ""
    return next(word for limit, word in SIZE_WORDS if height_m < limit)


# ----------------------------------------------------------------------------- the caption

def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


def _listing(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    words = [w for w in words if w]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1] if words else ""


def make_caption(name: str, types: Sequence[str] = (), form: Optional[str] = None, *,
                 colours: Sequence[str] = (), size: str = "", abilities: Sequence[str] = (),
                 template: str = VISUAL_TEMPLATE, need_name: bool = True) -> str:
    """Fill a caption template; empty parts vanish with their spaces, ``{a}`` agrees with the next word.

    Args:
        name, types, form: who it is (``{name}`` is ``"Vulpix (Alolan Form)"`` with a form).
        colours: main colours (``{colours}``: ``"yellow"`` or ``"green and blue"``).
        size: a :func:`size_word` (``{size}``).
        abilities: ability names (``{abilities}``: ``"Static and Lightning Rod"``).
        template: a template text or name (``caption_templates.caption_template_text``).
        need_name: refuse a template without ``{name}`` (the main caption; extra forms may omit it).

    Raises:
        ConfigError: an invalid template.
    """
    text = caption_template_text(template, need_name=need_name)
    values = {"name": f"{name} ({form})" if form else name, "size": size or "",
              "colours": " and ".join(colours), "types": f"{'/'.join(types)}-type" if types else "",
              "abilities": _listing([a.strip().title() for a in abilities]),
              "a": "\0"}  # the article is chosen once the next word is known
    caption = re.sub(r"\s+", " ", text.format(**values)).strip()
    caption = re.sub(r" ([,.;:])", r"\1", caption)
    return re.sub(r"\0 ?(\S*)", lambda m: f"{_article(m.group(1))} {m.group(1)}".rstrip(), caption)


def make_captions(name: str, types: Sequence[str] = (), form: Optional[str] = None, *,
                  colours: Sequence[str] = (), size: str = "", abilities: Sequence[str] = (),
                  template: str = VISUAL_TEMPLATE, forms: Sequence[str] = CAPTION_FORMS) -> List[str]:
    """Every caption of one image: the main one (``template``) first, then one per form.

    A form whose placeholders are all unknown (``{types}`` of an image without types, ``{abilities}``
    where the source knows none) is left out; so are repeats (the first one is kept). Pure: the
    same arguments give the same list. :func:`tagged_captions` also says which form gave each.

    Args:
        name, types, form, colours, size, abilities: as in :func:`make_caption`.
        template: the main caption's template (``DataConfig.caption_template``).
        forms: the extra forms (``DataConfig.caption_forms``; names of ``CAPTION_TEMPLATES`` or texts).

    Raises:
        ConfigError: an invalid template or form.
    """
    return [caption for caption, _ in tagged_captions(name, types, form, colours=colours, size=size,
                                                      abilities=abilities, template=template, forms=forms)]


def tagged_captions(name: str, types: Sequence[str] = (), form: Optional[str] = None, *,
                    colours: Sequence[str] = (), size: str = "", abilities: Sequence[str] = (),
                    template: str = VISUAL_TEMPLATE, forms: Sequence[str] = CAPTION_FORMS) -> List[Tuple[str, str]]:
    """:func:`make_captions` as ``(caption, form)`` pairs: the form is ``MAIN_FORM`` for the main
    caption, else the entry of ``forms`` that made it (a template name such as ``"name"``, or the
    template text). ``TrainConfig.caption_weights`` weighs the training draw by these tags.

    Example:
        >>> tagged_captions("Pikachu", ["Electric"], colours=["yellow"], size="small")[:2]
        [('Pikachu, a small yellow Electric-type Pokémon', 'main'), ('Pikachu', 'name')]
    """
    parts = dict(colours=colours, size=size, abilities=abilities)
    tagged = [(make_caption(name, types, form, template=template, **parts), MAIN_FORM)]
    for text in forms:
        caption = make_caption(name, types, form, template=text, need_name=False, **parts)
        if _placeholders_known(text, types, colours, abilities) and all(caption != c for c, _ in tagged):
            tagged.append((caption, text))
    return tagged


def _placeholders_known(template: str, types: Sequence[str], colours: Sequence[str],
                        abilities: Sequence[str]) -> bool:
    """A form that names types, colours or abilities says something only when they are known."""
    import string

    text = caption_template_text(template, need_name=False)
    fields = {f for _, f, _, _ in string.Formatter().parse(text) if f}
    known = {"types": bool(types), "colours": bool(colours), "abilities": bool(abilities)}
    return all(known.get(f, True) for f in fields)
