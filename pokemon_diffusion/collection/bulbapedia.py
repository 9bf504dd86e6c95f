"""Parse Bulbapedia's "List of Pokémon by National Pokédex number" into rows.

Two layouts are understood (see ``shared/fixtures/bulbapedia/README.md``):

* **2022**: one table per generation with no CSS class; header cells ``Kdex`` (regional number),
  ``Ndex``, ``MS`` (menu sprite), ``Pokémon``, ``Type``; three-digit numbers (``#001``); the
  sprite sits in a ``<th>``; regional forms are whole extra rows whose form shows only in the
  image file name (``019Rattata-Alola.png``); unnumbered Generation IX rows show ``#``.
* **2023+**: ``class="roundy"`` tables without the regional column; four-digit numbers
  (``#0001``) in a cell with ``rowspan`` covering the form rows that follow; the sprite in a
  ``<td>``; the form name in ``<small>`` under the Pokémon's name.

Tables are recognised by their header cells, never by a class, and rows are read through a grid
that expands ``rowspan``/``colspan``, so both layouts (and small variations) go through one path.

Example:
    >>> rows = parse_list_page(html, "https://bulbapedia.bulbagarden.net/wiki/List...")  # doctest: +SKIP
    >>> rows[0]                                                                      # doctest: +SKIP
    ListedPokemon(name='Bulbasaur', dex=1, form=None, types=('Grass', 'Poison'), image_url='https://...')
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup, Tag

from ..errors import ScrapeError
from .http import is_http_url

log = logging.getLogger(__name__)

# Form suffixes in 2022 image file names -> the form names Bulbapedia's later layout prints.
REGIONAL_FORMS = {"Alola": "Alolan Form", "Galar": "Galarian Form", "Hisui": "Hisuian Form",
                  "Paldea": "Paldean Form"}
# Placeholder "types" of Pokémon not yet revealed: not a type worth putting in a caption.
PLACEHOLDER_TYPES = frozenset({"unknown", "???", "", "—", "-"})
EXPECTED_LAYOUT = ("a <table> whose header row has a 'Pokémon' (name) cell, a 'Type' cell and an "
                   "'Ndex' (national number) or 'MS' (sprite) cell, as on Bulbapedia's "
                   "'List of Pokémon by National Pokédex number'")
_MAX_SPAN = 1000


@dataclass(frozen=True)
class ListedPokemon:
    """One row of the list: a Pokémon or one of its forms, with its sprite URL."""

    name: str
    dex: Optional[int]
    form: Optional[str]
    types: Tuple[str, ...]
    image_url: str


@dataclass(frozen=True)
class _Columns:
    """Which grid column holds what, from a table's header row."""

    name: int
    types: Tuple[int, ...]
    dex: Optional[int]
    sprite: Optional[int]


def _fold(text: str) -> str:
    """Lower-case ASCII with accents removed and whitespace collapsed, for comparing labels."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(text.lower().split())


def _span(cell: Tag, attr: str) -> int:
    """``rowspan``/``colspan`` as a sane int (HTML is untrusted: "3;", "", "99999" happen)."""
    match = re.match(r"\s*(\d+)", str(cell.get(attr, "1")))
    value = int(match.group(1)) if match else 1
    return min(max(value, 1), _MAX_SPAN)


def _own_rows(table: Tag) -> List[Tag]:
    """The table's rows, not those of tables nested inside its cells."""
    return [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]


def expand_grid(rows: Sequence[Tag]) -> List[List[Tag]]:
    """Lay rows out on a grid: a cell with ``colspan=2`` fills two columns, one with ``rowspan=3``
    reappears in the same column of the next two rows (the HTML table model, simplified)."""
    grid: List[List[Tag]] = []
    carried: Dict[int, Tuple[Tag, int]] = {}  # column -> (cell, rows still covered)
    for tr in rows:
        out: List[Tag] = []

        def take_carried() -> None:
            while len(out) in carried:
                cell, left = carried.pop(len(out))
                if left > 1:
                    carried[len(out)] = (cell, left - 1)
                out.append(cell)

        for cell in tr.find_all(["td", "th"], recursive=False):
            take_carried()
            rowspan = _span(cell, "rowspan")
            for _ in range(_span(cell, "colspan")):
                if rowspan > 1:
                    carried[len(out)] = (cell, rowspan - 1)
                out.append(cell)
        take_carried()
        grid.append(out)
    return grid


def _header_columns(header: List[Tag]) -> Optional[_Columns]:
    """Map a header row's labels to columns, or None when it is not a Pokémon list header."""
    labels = [_fold(cell.get_text(" ", strip=True)) for cell in header]
    name = dex = sprite = None
    types: List[int] = []
    for i, label in enumerate(labels):
        if name is None and label in ("pokemon", "name"):
            name = i
        elif label.startswith("type"):
            types.append(i)
        elif dex is None and label in ("ndex", "#", "no.", "national", "national no.", "national dex"):
            dex = i
        elif sprite is None and label in ("ms", "sprite", "image", "picture", "art"):
            sprite = i
    if name is None or not types or (dex is None and sprite is None):
        return None
    return _Columns(name=name, types=tuple(types), dex=dex, sprite=sprite)


def find_pokemon_tables(soup: BeautifulSoup) -> List[Tuple[List[List[Tag]], _Columns]]:
    """Every table whose header row names the Pokémon-list columns, as (data rows grid, columns)."""
    found = []
    for table in soup.find_all("table"):
        grid = expand_grid(_own_rows(table))
        for index, row in enumerate(grid[:5]):  # the header is the first row or close to it
            if not row or any(cell.name != "th" for cell in row):
                continue
            columns = _header_columns(row)
            if columns is not None:
                found.append((grid[index + 1:], columns))
                break
    return found


def resolve_url(src: str, base_url: str) -> Optional[str]:
    """``src`` made absolute against ``base_url`` (``//host/x`` takes the page's scheme);
    None unless the result is http(s) with a host (``javascript:``, ``data:``, ``file:`` are dropped)."""
    src = (src or "").strip()
    if not src:
        return None
    url = urljoin(base_url, src)
    return urlunsplit(urlsplit(url)._replace(fragment="")) if is_http_url(url) else None


def largest_srcset_entry(srcset: str) -> Optional[str]:
    """The URL with the highest density (``2x``) or width (``140w``) in a ``srcset`` value."""
    best, best_score = None, -1.0
    for item in (srcset or "").split(","):
        bits = item.split()
        if not bits:
            continue
        score = 1.0
        if len(bits) > 1:
            match = re.fullmatch(r"(\d+(?:\.\d+)?)([xw])", bits[1].strip().lower())
            if match:
                # Widths and densities are not comparable; a width descriptor counts per 100 px.
                score = float(match.group(1)) / (100.0 if match.group(2) == "w" else 1.0)
        if score > best_score:
            best, best_score = bits[0], score
    return best


def full_size_url(url: str) -> str:
    """A MediaWiki thumbnail URL turned into its original file's URL; other URLs unchanged.

    Example:
        >>> full_size_url("https://a.net/media/upload/thumb/2/21/001Bulbasaur.png/70px-001Bulbasaur.png")
        'https://a.net/media/upload/2/21/001Bulbasaur.png'
    """
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if "thumb" not in segments or len(segments) < 3:
        return url
    at = len(segments) - 1 - segments[::-1].index("thumb")
    original = segments[-2]
    # Only when the last segment really is a rendition of the segment before it ("70px-NAME").
    if at >= len(segments) - 2 or not segments[-1].endswith(original):
        return url
    path = "/".join(segments[:at] + segments[at + 1:-1])
    return urlunsplit(parts._replace(path=path))


def image_url(img: Tag, page_url: str, *, full_size: bool = False) -> Optional[str]:
    """The best http(s) URL for an ``<img>``: the largest ``srcset`` entry, else ``src``
    (or a lazy-loading ``data-src``); the original file instead when ``full_size``."""
    candidates = [largest_srcset_entry(img.get("srcset", "")), img.get("src"), img.get("data-src")]
    for candidate in candidates:
        url = resolve_url(candidate or "", page_url)
        if url:
            return full_size_url(url) if full_size else url
    return None


def _file_name(url: str) -> str:
    """The uploaded file's name in an image URL (for thumbs, the folder before ``70px-...``)."""
    segments = urlsplit(url).path.split("/")
    name = segments[-2] if "thumb" in segments and len(segments) >= 2 and \
        segments[-1].endswith(segments[-2]) else segments[-1]
    return unquote(name)


def form_from_file_name(url: str, name: str) -> Optional[str]:
    """The form encoded in a 2022-style sprite file name, e.g. ``019Rattata-Alola.png`` -> "Alolan Form".

    Returns None when the file is the Pokémon's plain sprite (``Ho-Oh`` is a name, not a form).
    """
    stem = _file_name(url).rsplit(".", 1)[0]
    stem = re.sub(r"^\d+", "", stem).replace("_", " ").strip()
    # The name's own hyphens (Ho-Oh, Porygon-Z) belong to the name; one more starts the form.
    hyphens = name.count("-")
    parts = stem.split("-", hyphens + 1)
    if len(parts) != hyphens + 2 or _fold("-".join(parts[:-1])) != _fold(name):
        return None
    suffix = parts[-1].strip()
    return REGIONAL_FORMS.get(suffix, suffix) or None


def _cell_name_and_form(cell: Tag) -> Tuple[str, Optional[str]]:
    """The Pokémon's name (first link text, else the cell's text) and a ``<small>`` form name."""
    small = cell.find("small")
    form = small.get_text(" ", strip=True) if small else None
    link = cell.find("a")
    if link is not None and link.get_text(strip=True):
        name = link.get_text(" ", strip=True)
    else:
        texts = [t for t in cell.find_all(string=True) if not (small and t.find_parent("small") is small)]
        name = " ".join("".join(texts).split())
    return " ".join(name.split()), (" ".join(form.split()) or None) if form else None


def _dex_number(cell: Optional[Tag]) -> Optional[int]:
    """``#0001`` / ``#001`` -> 1; ``#``, ``#---`` or nothing -> None (not numbered yet)."""
    if cell is None:
        return None
    match = re.search(r"\d+", cell.get_text(strip=True))
    return int(match.group()) if match else None


def _types(row: List[Tag], columns: Sequence[int]) -> Tuple[str, ...]:
    seen: List[Tag] = []
    types: List[str] = []
    for column in columns:
        if column >= len(row) or any(row[column] is cell for cell in seen):
            continue  # a colspan'd single type fills both columns with the same cell
        seen.append(row[column])
        text = " ".join(row[column].get_text(" ", strip=True).split())
        if _fold(text) not in PLACEHOLDER_TYPES and text not in types:
            types.append(text)
    return tuple(types)


def _parse_row(row: List[Tag], columns: _Columns, page_url: str, full_size: bool) -> Optional[ListedPokemon]:
    """One grid row -> a :class:`ListedPokemon`, or None for rows that are not Pokémon rows."""
    if len(row) <= columns.name or all(cell.name == "th" and not cell.find("img") for cell in row):
        return None  # short row, or a repeated header
    name, form = _cell_name_and_form(row[columns.name])
    if not name:
        return None
    sprite_cell = row[columns.sprite] if columns.sprite is not None and columns.sprite < len(row) else None
    img = sprite_cell.find("img") if sprite_cell is not None else None
    if img is None:  # no sprite column, or an odd row: take the first image outside the name cell
        img = next((cell.find("img") for cell in row if cell is not row[columns.name] and cell.find("img")), None)
    if img is None:
        log.debug("row %r has no image; skipped", name)
        return None
    url = image_url(img, page_url, full_size=full_size)
    if url is None:
        log.debug("row %r: no http(s) image URL in %s; skipped", name, img)
        return None
    if form is None:
        form = form_from_file_name(url, name)
    dex = _dex_number(row[columns.dex] if columns.dex is not None and columns.dex < len(row) else None)
    return ListedPokemon(name=name, dex=dex, form=form, types=_types(row, columns.types), image_url=url)


def parse_list_page(html: str | bytes, page_url: str, *, full_size: bool = False,
                    encoding: Optional[str] = None) -> List[ListedPokemon]:
    """All Pokémon rows of the list page, in page order, one per distinct image.

    Args:
        html: the page (bytes are decoded by BeautifulSoup, honouring ``<meta charset>``).
        page_url: the page's URL, to resolve relative and protocol-relative image URLs.
        full_size: link the original image files instead of the thumbnails shown on the page.
        encoding: the charset from the HTTP header, if any.

    Raises:
        ScrapeError: no table looks like the Pokémon list (the message says what was expected),
            or the tables hold no Pokémon row.
    """
    soup = BeautifulSoup(html, "html.parser", from_encoding=encoding if isinstance(html, bytes) else None)
    tables = find_pokemon_tables(soup)
    if not tables:
        title = soup.title.get_text(strip=True) if soup.title else "no title"
        raise ScrapeError(f"no Pokémon table found on {page_url} (page title {title!r}, "
                          f"{len(soup.find_all('table'))} table(s)); expected {EXPECTED_LAYOUT}. "
                          f"The page layout may have changed; --source pokedex works offline")
    rows: List[ListedPokemon] = []
    seen_urls = set()
    for grid, columns in tables:
        for row in grid:
            item = _parse_row(row, columns, page_url, full_size)
            if item is not None and item.image_url not in seen_urls:
                seen_urls.add(item.image_url)
                rows.append(item)
    if not rows:
        raise ScrapeError(f"found {len(tables)} Pokémon table(s) on {page_url} but no row with a name and "
                          f"an http(s) image; expected {EXPECTED_LAYOUT}")
    log.info("parsed %d Pokémon rows from %d table(s) on %s", len(rows), len(tables), page_url)
    return rows
