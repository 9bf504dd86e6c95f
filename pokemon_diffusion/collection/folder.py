"""The ``folder`` source: any folder of images, named by their file names or by ``captions.csv``.

Images are found recursively (``.png .jpg .jpeg .gif .webp .bmp .tif .tiff``; hidden files and
folders are skipped). Without a captions file a name comes from the file name: a leading number
becomes the national number and the rest the name (``0004_charmander.png`` -> 4, "Charmander";
``mr._mime.png`` -> "Mr. Mime").

An optional ``captions.csv`` in the folder (UTF-8, header row) overrides that per file::

    file,name,types,caption
    fire_lizard.png,Charmander,Fire,
    sub/leaf.jpg,Bulbasaur,Grass/Poison,"a small green Pokémon with a bulb on its back"

``file`` is required (a path relative to the folder, or a bare file name); ``name``, ``dex``,
``form``, ``types`` (separated by ``/``, ``;`` or ``|``) and ``caption`` are optional; an empty
caption is made from name, form and types.

A ``metadata.jsonl`` (Hugging Face ImageFolder's convention, one JSON object a line with
``file_name`` and ``text``) is read as well: ``text`` is the caption. Where both files name the
same image, ``captions.csv``'s row wins.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import DataError

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.csv"
METADATA_JSONL = "metadata.jsonl"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
CAPTION_COLUMNS = ("file", "name", "dex", "form", "types", "caption")


@dataclass(frozen=True)
class FolderRecord:
    """One image file of the folder and what is known about it."""

    path: Path
    relative: str
    name: str
    dex: Optional[int] = None
    form: Optional[str] = None
    types: Tuple[str, ...] = ()
    caption: Optional[str] = None
    root: Optional[Path] = None  # the folder read: the file must stay inside it

    def read(self) -> bytes:
        """The file's bytes: a regular file inside the folder (``imageio.read_file``), else ImageRejected."""
        from ..imageio import read_file

        return read_file(self.path, root=self.root, max_bytes=None)


def name_from_file(stem: str) -> Tuple[Optional[int], str]:
    """``"0004_charmander"`` -> ``(4, "Charmander")``; ``"ho-oh"`` -> ``(None, "Ho-oh")``.

    Example:
        >>> name_from_file("025-pikachu"), name_from_file("mr._mime"), name_from_file("1234")
        ((25, 'Pikachu'), (None, 'Mr. Mime'), (None, '1234'))
    """
    match = re.match(r"^(\d{1,5})[ _\-.]+(.+)$", stem)
    dex, rest = (int(match.group(1)), match.group(2)) if match else (None, stem)
    words = rest.replace("_", " ").split()
    if rest == rest.lower():  # all lower case: capitalise words; otherwise keep the user's casing
        words = [w[:1].upper() + w[1:] for w in words]
    return dex, " ".join(words) or stem


def _split_types(text: str) -> Tuple[str, ...]:
    return tuple(t.strip() for t in re.split(r"[/;|]", text or "") if t.strip())


def read_captions(path: os.PathLike | str) -> Dict[str, Dict[str, str]]:
    """Rows of a ``captions.csv`` keyed by their ``file`` value (``/``-separated).

    Raises:
        DataError: unreadable file, no ``file`` column, or rows with a bad ``dex`` or no file
            (every problem listed at once).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
            if "file" not in header:
                raise DataError(f"{path}: got columns {header or 'none'}; required: a 'file' column "
                                f"(allowed columns: {', '.join(CAPTION_COLUMNS)})")
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()
                     if isinstance(v, str)} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    problems: List[str] = []
    by_file: Dict[str, Dict[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        file = row.get("file", "").replace("\\", "/")
        if not file:
            problems.append(f"line {line}: empty 'file'")
            continue
        if row.get("dex") and not row["dex"].lstrip("#").isdigit():
            problems.append(f"line {line}: dex {row['dex']!r} is not a whole number")
        by_file[file] = row
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems))
    return by_file


def read_metadata_jsonl(path: os.PathLike | str) -> Dict[str, Dict[str, str]]:
    """Rows of an ImageFolder ``metadata.jsonl`` as captions.csv rows (``file``, ``caption``).

    Raises:
        DataError: unreadable file, or lines that are not a JSON object with a ``file_name``
            (every problem listed at once).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    problems: List[str] = []
    by_file: Dict[str, Dict[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        file = row.get("file_name") if isinstance(row, dict) else None
        if not isinstance(file, str) or not file.strip():
            problems.append(f"line {number}: not a JSON object with a 'file_name'")
            continue
        text = row.get("text", "")
        by_file[file.strip().replace("\\", "/")] = {"file": file.strip(), "caption": str(text or "").strip()}
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems[:10])
                        + "; allowed: one JSON object a line with 'file_name' and 'text'")
    return by_file


def _image_files(folder: Path, exclude: Iterable[Path]) -> List[Path]:
    """Image files under ``folder``; a name that is not UTF-8, or a symbolic link leading out of the
    folder, is skipped with one warning naming each (metadata is UTF-8 JSON, and a data folder
    must not pull in files from elsewhere on the machine)."""
    from ..imageio import inside

    excluded = [p.resolve() for p in exclude]
    files: List[Path] = []
    undecodable: List[str] = []
    outside: List[str] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        try:
            str(relative).encode("utf-8")
        except UnicodeEncodeError:
            undecodable.append(repr(os.fsencode(relative))[1:])
            continue
        if not inside(path, folder):
            outside.append(f"{relative.as_posix()} -> {os.path.realpath(path)}")
            continue
        resolved = path.resolve()
        if any(resolved == e or e in resolved.parents for e in excluded):
            continue  # e.g. the output folder lives inside the input folder
        files.append(path)
    if undecodable:
        log.warning("skipped %d file(s) whose names are not UTF-8: %s; rename them to collect them",
                    len(undecodable), ", ".join(undecodable[:5]) + (" ..." if len(undecodable) > 5 else ""))
    if outside:
        log.warning("skipped %d symbolic link(s) leading out of %s: %s; copy the files into the folder instead",
                    len(outside), folder, ", ".join(outside[:5]) + (" ..." if len(outside) > 5 else ""))
    return files


def folder_records(folder: os.PathLike | str, *, exclude: Iterable[os.PathLike | str] = ()) -> List[FolderRecord]:
    """Every image under ``folder`` (sorted by path), named from ``captions.csv`` or its file name.

    Args:
        folder: the folder to read.
        exclude: folders to leave out (the output folder, when it is inside ``folder``).

    Raises:
        DataError: ``folder`` is not a folder, holds no image, or ``captions.csv`` is invalid.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--path {str(folder)!r} is not a folder; allowed: a folder of images "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    captions = read_metadata_jsonl(folder / METADATA_JSONL) if (folder / METADATA_JSONL).is_file() else {}
    if (folder / CAPTIONS_FILE).is_file():
        captions.update(read_captions(folder / CAPTIONS_FILE))
    files = _image_files(folder, [Path(e) for e in exclude])
    if not files:
        raise DataError(f"no image in {folder}; allowed: files ending in {', '.join(sorted(IMAGE_SUFFIXES))}")
    names = {}
    for path in files:
        names.setdefault(path.name, []).append(path)
    records, used = [], set()
    for path in files:
        relative = path.relative_to(folder).as_posix()
        key = relative if relative in captions else path.name if (
            path.name in captions and len(names[path.name]) == 1) else None
        row = captions.get(key, {}) if key else {}
        if key:
            used.add(key)
        dex, name = name_from_file(path.stem)
        if row.get("dex"):
            dex = int(row["dex"].lstrip("#"))
        records.append(FolderRecord(
            path=path, relative=relative, name=row.get("name") or name, dex=dex,
            form=row.get("form") or None, types=_split_types(row.get("types", "")),
            caption=row.get("caption") or None, root=folder))
    unused = sorted(set(captions) - used)
    if unused:
        log.warning("%s: %d row(s) name no image found in the folder: %s", " / ".join(
            n for n in (METADATA_JSONL, CAPTIONS_FILE) if (folder / n).is_file()), len(unused),
                    ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else ""))
    return records
