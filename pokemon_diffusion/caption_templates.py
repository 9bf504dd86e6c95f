"""Caption templates: the named templates, their placeholders, the extra caption forms every image
gets, and the check of a template text (``collect``'s captions, ``collection/captions.py``)."""

from __future__ import annotations

from .errors import ConfigError

#: Caption templates by name (collection/captions.py fills them): the visual one describes the picture.
CAPTION_TEMPLATES = {"visual": "{name}, {a} {size} {colours} {types} Pokémon", "plain": "{name}, {a} {types} Pokémon",
                     "name": "{name}", "description": "{a} {size} {colours} {types} Pokémon",
                     "colour": "{a} {colours} Pokémon", "type": "{a} {types} Pokémon",
                     "abilities": "{name}, {a} {colours} Pokémon with {abilities}"}
CAPTION_PLACEHOLDERS = ("name", "size", "colours", "types", "a", "abilities")
#: The extra captions every image gets besides its main one (``caption_template``), in this order;
#: names of CAPTION_TEMPLATES or template texts. Training draws one caption per example per step.
CAPTION_FORMS = ("name", "plain", "description", "colour", "type", "abilities")
#: The tag of an image's main caption (``caption_template``) among its caption forms (metadata
#: ``caption_forms``); the extra ones are tagged with their entry of ``caption_forms``.
MAIN_FORM = "main"


def caption_template_text(template: str, *, need_name: bool = True) -> str:
    """A caption template by name (a key of CAPTION_TEMPLATES) or as given, checked.

    Args:
        template: a name or a template text.
        need_name: the main caption must say who it is; extra caption forms need not.

    Raises:
        ConfigError: unknown placeholders, unbalanced braces, or (``need_name``) no ``{name}``.
    """
    import string

    text = CAPTION_TEMPLATES.get(template, template)
    allowed = (f"{' | '.join(CAPTION_TEMPLATES)} | a text with {'{name} and ' if need_name else ''}any of "
               f"{', '.join('{' + p + '}' for p in CAPTION_PLACEHOLDERS[int(need_name):])}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"caption_template: got {template!r} ({exc}); allowed: {allowed}") from None
    unknown = sorted({f for f in fields if f not in CAPTION_PLACEHOLDERS})
    if unknown or (need_name and "name" not in fields):
        what = f"unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)}" if unknown else "no {name}"
        raise ConfigError(f"caption_template: got {template!r} ({what}); allowed: {allowed}")
    return text
