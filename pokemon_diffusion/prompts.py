"""Prompt enrichment: a Pokémon's name in a prompt gets that Pokémon's known visual description.

Text-to-image systems rewrite short prompts before encoding them; here the rewrite comes from the
data the run was trained on. Every run folder (and the shipped reference) holds a name table,
``prompt_names.json``, written by ``train`` from its dataset's metadata::

    {"version": 1, "names": [
    {"name": "Pikachu", "caption": "Pikachu, a small yellow Electric-type Pokémon", "description": "a small yellow Electric-type Pokémon"},
    ...]}

:func:`enrich_prompt` finds the names in a prompt (any case, accents optional, ``’`` or ``'``,
whole words only, the longest name first: "Mr. Mime", "Farfetch'd", "Mewtwo" before "Mew"):

* a prompt that names one Pokémon and says nothing its caption does not ("pikachu", "Pikachu, an
  Electric-type Pokémon", "a yellow Pikachu") becomes that caption:
  ``"pikachu"`` -> ``"Pikachu, a small yellow Electric-type Pokémon"``;
* any other prompt keeps its words and gets the description of each named Pokémon appended:
  ``"Pikachu in the snow"`` -> ``"Pikachu in the snow, a small yellow Electric-type Pokémon"``
  (unless the prompt already holds it);
* a prompt without a known name is left as it is.

``enrich=False`` (``--no-enrich`` on the command line, a checkbox in the app) turns it off; the
rewritten prompt is logged and shown.

Example:
    >>> table = NameTable.from_entries([Entry("Pikachu", "p.png", "Pikachu, a small yellow Electric-type Pokémon",
    ...                                       "pokedex", types=["Electric"])])
    >>> enrich_prompt("pikachu in the snow", table).text
    'pikachu in the snow, a small yellow Electric-type Pokémon'
"""

from __future__ import annotations

import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .atomic import atomic_write_text
from .collection.metadata import Entry
from .errors import CheckpointError

log = logging.getLogger(__name__)

NAMES_FILE = "prompt_names.json"
VERSION = 1


def normalise(text: str) -> str:
    """Case-folded, accents dropped, typographic apostrophes and spaces unified (for matching only)."""
    text = unicodedata.normalize("NFKD", text.replace("’", "'").replace("‘", "'"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return re.sub(r"\s+", " ", text).strip(" .!")


@dataclass(frozen=True)
class Known:
    """One Pokémon of the table: its name, main caption and name-free description."""

    name: str
    caption: str
    description: str


def name_free_description(entry: Entry) -> str:
    """The main caption without the leading name ("a small yellow Electric-type Pokémon")."""
    for prefix in (f"{entry.name} ({entry.form})" if entry.form else None, entry.name):
        if prefix and entry.caption.startswith(prefix):
            rest = entry.caption[len(prefix):].lstrip(" ,:;-")
            if rest:
                return rest
    return entry.caption


@dataclass
class NameTable:
    """Known Pokémon by normalised name; :meth:`find` lists the ones a prompt names."""

    known: List[Known] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_key: Dict[str, Known] = {}
        for item in self.known:  # the first entry of a name wins (the base form before the others)
            self._by_key.setdefault(normalise(item.name), item)
        keys = sorted(self._by_key, key=len, reverse=True)
        self._pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, keys)) + r")(?!\w)") if keys else None

    def __len__(self) -> int:
        return len(self._by_key)

    @classmethod
    def from_entries(cls, entries: Sequence[Entry]) -> "NameTable":
        """The table of a dataset's entries (with forms: "Vulpix (Alolan Form)" and, if first, "Vulpix")."""
        known = []
        for entry in sorted(entries, key=lambda e: (e.form is not None, e.dex if e.dex is not None else 1 << 30)):
            full = f"{entry.name} ({entry.form})" if entry.form else entry.name
            item = Known(full, entry.caption, name_free_description(entry))
            known.append(item)
            if entry.form:
                known.append(Known(entry.name, item.caption, item.description))
        return cls(known)

    def find(self, prompt: str) -> List[Known]:
        """The Pokémon named in ``prompt``, in order of appearance, each once."""
        if self._pattern is None:
            return []
        found: List[Known] = []
        for match in self._pattern.finditer(normalise(prompt)):
            item = self._by_key[match.group(1)]
            if item not in found:
                found.append(item)
        return found

    def to_json(self) -> str:
        lines = [json.dumps({"name": k.name, "caption": k.caption, "description": k.description},
                            ensure_ascii=False) for k in self.known]
        return f'{{"version": {VERSION}, "names": [\n' + ",\n".join(lines) + "\n]}\n"

    @classmethod
    def from_json(cls, text: str) -> "NameTable":
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("names"), list):
            raise ValueError("expected an object with a 'names' list")
        known = []
        for item in data["names"]:
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item[k]
                                                     for k in ("name", "caption", "description")):
                raise ValueError(f"bad entry {item!r}: needs non-empty 'name', 'caption', 'description'")
            known.append(Known(item["name"], item["caption"], item["description"]))
        return cls(known)


@dataclass(frozen=True)
class Enriched:
    """A prompt after enrichment: the text to encode, the prompt as typed and the names found."""

    text: str
    prompt: str
    names: Sequence[str] = ()

    @property
    def changed(self) -> bool:
        return self.text != self.prompt


_FILLER = {"a", "an", "the", "pokemon"}


def _words(text: str) -> List[str]:
    return re.findall(r"[\w']+", text)


def _says_nothing_new(typed: str, known: Known) -> bool:
    """The normalised prompt holds the name and only words of the caption (or articles)."""
    rest = typed.replace(normalise(known.name), " ", 1)
    return set(_words(rest)) <= set(_words(normalise(known.caption))) | _FILLER


def enrich_prompt(prompt: str, table: Optional[NameTable]) -> Enriched:
    """Rewrite ``prompt`` with the table's descriptions (rules in the module docstring)."""
    found = table.find(prompt) if table is not None else []
    if not found:
        return Enriched(prompt, prompt)
    names = [k.name for k in found]
    typed = normalise(prompt)
    if len(found) == 1 and _says_nothing_new(typed, found[0]):
        return Enriched(found[0].caption, prompt, names)
    missing = [k.description for k in found if normalise(k.description) not in typed]
    if not missing:
        return Enriched(prompt, prompt, names)
    return Enriched(f"{prompt.strip().rstrip(' .,;')}, {' and '.join(missing)}", prompt, names)


def enrich_prompts(prompts: Sequence[str], table: Optional[NameTable], enrich: bool = True) -> List[Enriched]:
    """:func:`enrich_prompt` of each prompt (unchanged when ``enrich`` is False), each change logged."""
    out = [enrich_prompt(p, table) if enrich else Enriched(p, p) for p in prompts]
    for item in out:
        if item.changed:
            log.info("prompt %r -> %r (the run's description of %s; --no-enrich keeps the prompt as typed)",
                     item.prompt, item.text, ", ".join(item.names))
    return out


def write_name_table(run_dir: os.PathLike | str, entries: Sequence[Entry]) -> Path:
    """Write ``RUN/prompt_names.json`` from a dataset's entries (atomically); returns its path."""
    path = Path(run_dir) / NAMES_FILE
    atomic_write_text(path, NameTable.from_entries(entries).to_json())
    return path


def read_name_table(run_dir: os.PathLike | str) -> Optional[NameTable]:
    """The run's name table, or None for a run written before tables existed.

    Raises:
        CheckpointError: the file exists but is not a valid table.
    """
    path = Path(run_dir) / NAMES_FILE
    try:
        return NameTable.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; delete it to sample without prompt enrichment") from None
