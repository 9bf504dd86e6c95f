"""The offline source: the Pokédex shipped in the PyPI package ``pokemon`` (0.36: 1,008 entries).

The package keeps its data under ``pokemon/database/``: ``pokemons.json`` maps the national
number (a string, ``"1"``..``"1008"``) to an object with ``id``, ``name``, ``type`` (lower-case
type names) and more, and ``images/<id>.jpg`` holds the official artwork. Both are read through
:mod:`importlib.resources`, so no install location is assumed and zipped installs work too.

Example:
    >>> records = pokedex_records()
    >>> len(records), records[3].name, records[3].types
    (1008, 'Charmander', ('Fire',))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

from ..errors import DataError

try:  # Python >= 3.11; importlib.abc.Traversable is deprecated there
    from importlib.resources.abc import Traversable
except ImportError:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

log = logging.getLogger(__name__)

PACKAGE = "pokemon"
DATABASE = "database"
INDEX_FILE = "pokemons.json"
IMAGES_DIR = "images"
_IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".webp", ".gif")
_INSTALL_HINT = ("install it with `pip install pokemon==0.36` (it is in requirements.txt), or use "
                 "--source bulbapedia or --source folder")


@dataclass(frozen=True)
class PokedexRecord:
    """One Pokémon of the packaged Pokédex and where its artwork lies inside the package."""

    dex: int
    name: str
    types: Tuple[str, ...]
    image: Traversable
    height_m: Optional[float] = None  # the index's ``height`` (metres), for the caption's size word
    abilities: Tuple[str, ...] = ()  # the index's ``abilities`` ("static"), for a caption form

    @property
    def image_name(self) -> str:
        """The artwork's name inside the package, e.g. ``database/images/4.jpg`` (for messages)."""
        return f"{PACKAGE}/{DATABASE}/{IMAGES_DIR}/{self.image.name}"

    def read_image(self) -> bytes:
        return self.image.read_bytes()


def database_root(package: str = PACKAGE) -> Traversable:
    """The package's ``database`` folder.

    Raises:
        DataError: the package is not installed or has no database folder.
    """
    try:
        root = resources.files(package) / DATABASE
    except ModuleNotFoundError:
        raise DataError(f"the offline Pokédex needs the Python package {package!r}, which is not "
                        f"installed; {_INSTALL_HINT}") from None
    if not root.is_dir():
        raise DataError(f"package {package!r} has no {DATABASE}/ folder; expected the PyPI package "
                        f"'pokemon' 0.36; {_INSTALL_HINT}")
    return root


def _image_for(images: Traversable, dex: int) -> Optional[Traversable]:
    for suffix in _IMAGE_SUFFIXES:
        candidate = images / f"{dex}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _record(key: str, meta: Any, images: Traversable) -> Optional[PokedexRecord]:
    """One index entry -> record; None (logged) when the entry or its image is unusable."""
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"].strip():
        log.warning("pokedex entry %r has no name; skipped", key)
        return None
    raw_id = meta.get("id", key)
    try:
        dex = int(raw_id)
    except (TypeError, ValueError):
        log.warning("pokedex entry %r has id %r, not a number; skipped", key, raw_id)
        return None
    raw_types = meta.get("type") or []
    if isinstance(raw_types, str):
        raw_types = [raw_types]
    # The package stores "fire"; captions and the other sources say "Fire".
    types = tuple(t.strip().capitalize() for t in raw_types if isinstance(t, str) and t.strip())
    image = _image_for(images, dex)
    if image is None:
        log.warning("pokedex entry %d (%s) has no image under %s/; skipped", dex, meta["name"], IMAGES_DIR)
        return None
    height = meta.get("height")
    height_m = float(height) if isinstance(height, (int, float)) and not isinstance(height, bool) else None
    raw_abilities = meta.get("abilities") or []
    abilities = tuple(a.strip() for a in raw_abilities if isinstance(a, str) and a.strip()) \
        if isinstance(raw_abilities, list) else ()
    return PokedexRecord(dex=dex, name=meta["name"].strip(), types=types, image=image, height_m=height_m,
                         abilities=abilities)


def pokedex_records(package: str = PACKAGE) -> List[PokedexRecord]:
    """Every Pokémon of the packaged Pokédex that has artwork, sorted by national number.

    Args:
        package: the package holding ``database/`` (for tests; default ``pokemon``).

    Raises:
        DataError: package missing, index missing or not the expected JSON object.
    """
    root = database_root(package)
    try:
        index: Dict[str, Any] = json.loads((root / INDEX_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{package}/{DATABASE}/{INDEX_FILE} is missing; {_INSTALL_HINT}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {package}/{DATABASE}/{INDEX_FILE}: {exc}") from None
    if not isinstance(index, dict):
        raise DataError(f"{package}/{DATABASE}/{INDEX_FILE}: got a JSON {type(index).__name__}; "
                        f"expected an object mapping national numbers to entries")
    images = root / IMAGES_DIR
    records = [r for key, meta in index.items() if (r := _record(key, meta, images)) is not None]
    records.sort(key=lambda r: r.dex)
    log.debug("packaged Pokédex: %d of %d entries usable", len(records), len(index))
    return records
