"""The dataset's ``pokemon_metadata.json``: one entry per image, read, written and validated.

The file is a JSON list (the seed's ``for item in metadata`` keeps working) of objects::

    {"name": "Charmander", "dex": 4, "form": null, "types": ["Fire"],
     "caption": "Charmander, a Fire-type Pokémon", "image_path": "pokemon_images/0004_charmander.png",
     "source": "pokedex", "source_url": null, "embedding_path": "embeddings/0004_charmander.npy",
     "captions": ["Charmander, a small orange Fire-type Pokémon", "Charmander", ...],
     "abilities": ["blaze", "solar power"],
     "captions_embedding_path": "embeddings/0004_charmander.captions.npy",
     "caption_forms": ["main", "name", ...]}

``caption`` is the main caption (the first of ``captions``; what the seed's code reads) and
``embedding_path`` its embedding, shape (dim,). ``captions`` lists every caption of the image
(``collection/captions.make_captions``) and ``captions_embedding_path`` their embeddings, shape
(len(captions), dim); both are optional (an entry without them has the one caption).
``caption_forms`` (optional, parallel to ``captions``) names the form that made each caption
(``captions.tagged_captions``: ``"main"``, ``"name"``, ``"plain"``, ...); training weighs its caption
draw by it (``TrainConfig.caption_weights``).

Paths are relative to the folder holding the metadata file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..atomic import atomic_write_text
from ..caption_templates import MAIN_FORM
from ..errors import DataError

METADATA_FILE = "pokemon_metadata.json"
IMAGES_DIR = "pokemon_images"
EMBEDDINGS_DIR = "embeddings"
EMBEDDINGS_INFO_FILE = "embeddings.json"  # the encoder identity + caption hashes (text/embeddings.py)


def make_caption(name: str, types: Sequence[str], form: Optional[str] = None, *,
                 colours: Sequence[str] = (), size: str = "", template: str = "plain") -> str:
    """The text that gets embedded, e.g. ``"Charmander, a Fire-type Pokémon"``.

    ``template`` (``DataConfig.caption_template``: ``plain`` by default here, ``visual`` in
    ``collect``) and the picture's ``colours`` and ``size`` are filled in by
    :func:`.captions.make_caption`.

    Example:
        >>> make_caption("Vulpix", ["Ice"], "Alolan Form")
        'Vulpix (Alolan Form), an Ice-type Pokémon'
        >>> make_caption("Bulbasaur", ["Grass", "Poison"])
        'Bulbasaur, a Grass/Poison-type Pokémon'
        >>> make_caption("Pikachu", ["Electric"], colours=["yellow"], size="small", template="visual")
        'Pikachu, a small yellow Electric-type Pokémon'
    """
    from .captions import make_caption as fill

    return fill(name, types, form, colours=colours, size=size, template=template)


@dataclass
class Entry:
    """One image of the dataset and what is known about it."""

    name: str
    image_path: str
    caption: str
    source: str
    dex: Optional[int] = None
    form: Optional[str] = None
    types: List[str] = field(default_factory=list)
    source_url: Optional[str] = None
    embedding_path: Optional[str] = None
    captions: List[str] = field(default_factory=list)
    abilities: List[str] = field(default_factory=list)
    captions_embedding_path: Optional[str] = None
    caption_forms: List[str] = field(default_factory=list)

    @property
    def all_captions(self) -> List[str]:
        """Every caption, the main one first (``[caption]`` for an entry without a list)."""
        rest = [c for c in self.captions if c != self.caption]
        return [self.caption] + rest

    @property
    def all_caption_forms(self) -> Optional[List[str]]:
        """The form of each of :attr:`all_captions` (from ``caption_forms``), or None when unknown."""
        captions = self.all_captions
        if len(captions) == 1:
            return [MAIN_FORM]
        if self.caption_forms and len(self.caption_forms) == len(self.captions) and self.captions == captions:
            return list(self.caption_forms)
        return None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Entry":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_FIELD_TYPES = {
    "name": (str,), "image_path": (str,), "caption": (str,), "source": (str,),
    "dex": (int, type(None)), "form": (str, type(None)), "types": (list,),
    "source_url": (str, type(None)), "embedding_path": (str, type(None)),
    "captions": (list,), "abilities": (list,), "captions_embedding_path": (str, type(None)),
    "caption_forms": (list,),
}
_REQUIRED = ("name", "image_path", "caption", "source")


def metadata_problems(items: Any, root: os.PathLike | str, check_files: bool = True) -> List[str]:
    """Every problem in a parsed metadata list, as human-readable lines (empty list = valid)."""
    root = Path(root)
    if not isinstance(items, list):
        return [f"top level: got {type(items).__name__}; allowed: a JSON list of objects"]
    problems: List[str] = []
    seen: Dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"entry {i}"
        if not isinstance(item, dict):
            problems.append(f"{where}: got {type(item).__name__}; allowed: an object")
            continue
        where = f"entry {i} ({item.get('name', '?')!s})"
        for key in _REQUIRED:
            if key not in item:
                problems.append(f"{where}: missing field {key!r}")
        for key, value in item.items():
            allowed = _FIELD_TYPES.get(key)
            if allowed and (not isinstance(value, allowed) or isinstance(value, bool)):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
                problems.append(f"{where}: field {key!r} got {type(value).__name__}; allowed: {names}")
        for key in ("types", "captions", "abilities", "caption_forms"):
            if isinstance(item.get(key), list) and not all(isinstance(t, str) for t in item[key]):
                problems.append(f"{where}: field {key!r} must be a list of strings")
        for key in ("image_path", "embedding_path", "captions_embedding_path"):
            rel = item.get(key)
            if not isinstance(rel, str):
                continue
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                problems.append(f"{where}: {key} {rel!r} must be relative and inside the dataset folder")
            elif check_files and not (root / rel).is_file():
                problems.append(f"{where}: {key} {rel!r} does not exist")
        path = item.get("image_path")
        if isinstance(path, str):
            if path in seen:
                problems.append(f"{where}: image_path {path!r} duplicates entry {seen[path]}")
            else:
                seen[path] = i
    return problems


def read_metadata(path: os.PathLike | str, *, validate: bool = True, check_files: bool = True) -> List[Entry]:
    """Load ``pokemon_metadata.json`` (or a folder holding it) into entries.

    Raises:
        DataError: the file is missing or not JSON, or (with ``validate``) lists every problem found.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METADATA_FILE
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"metadata file not found: {path} (run `pokemon-diffusion collect` first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read metadata {path}: {exc}") from None
    if validate:
        problems = metadata_problems(items, path.parent, check_files=check_files)
        if problems:
            shown = "; ".join(problems[:20])
            more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
            raise DataError(f"{path}: {len(problems)} problem(s): {shown}{more}")
    return [Entry.from_dict(item) for item in items]


def write_metadata(path: os.PathLike | str, entries: Sequence[Entry]) -> Path:
    """Write entries atomically (temp file + rename); ``path`` may be the dataset folder."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / METADATA_FILE
    atomic_write_text(path, json.dumps([e.to_dict() for e in entries], indent=2, ensure_ascii=False) + "\n")
    return path
