"""``collect``: build ``OUT/pokemon_images/*.png`` + ``OUT/pokemon_metadata.json`` from one source.

Every source (Bulbapedia, the packaged Pokédex, a folder) becomes a list of :class:`Candidate`
items; one loop then names, fetches, checks, converts and writes them the same way:

1. names are made safe and unique in source order (so a rerun finds the same files);
2. a file already present and valid is *skipped* (resume) unless ``force``;
3. anything that fails (HTTP error after retries, not an image, truncated, too large, a
   decompression bomb) is counted and listed, and the run goes on; writes are atomic;
4. the metadata is written atomically at the end; an ``embedding_path`` from an earlier
   ``embed`` is kept when the caption did not change.

A bot block (Cloudflare challenge) or a run of consecutive failures stops the fetching: files
already present are still listed, the metadata is written, and a :class:`ScrapeError` carrying the
summary explains what happened.

Example:
    >>> from pokemon_diffusion.config import DataConfig
    >>> summary = collect(DataConfig(source="pokedex", out_dir="data/pokemon", limit=16))  # doctest: +SKIP
    >>> summary.line()                                                                    # doctest: +SKIP
    'pokedex: found 16, downloaded 16, skipped 0, failed 0 -> data/pokemon/pokemon_metadata.json'
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..caption_templates import MAIN_FORM, caption_template_text
from ..config import DataConfig
from ..atomic import atomic_write_bytes
from ..errors import DataError, ScrapeError
from ..locks import folder_lock
from ..logging_utils import progress
from .http import BlockedError, FetchError, HttpClient
from .images import (ImageRejected, NameAllocator, inside, is_valid_png, prepare_image,
                     remove_stale_temp_files, safe_stem, save_png_atomic)
from .captions import size_word
from .captions import tagged_captions
from .metadata import IMAGES_DIR, METADATA_FILE, Entry, read_metadata, write_metadata

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
# After this many failures in a row a web source is probably blocking or down: stop asking.
MAX_CONSECUTIVE_FAILURES = 25


@dataclass(frozen=True)
class Failure:
    """An item that could not be collected: who, from where, and why."""

    name: str
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.where}): {self.reason}"


@dataclass
class CollectSummary:
    """What a ``collect`` run did. ``found`` = items considered (after ``limit``)."""

    source: str
    out_dir: str
    found: int = 0
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    failures: List[Failure] = field(default_factory=list)
    metadata_path: Optional[str] = None
    stopped: Optional[str] = None

    @property
    def images(self) -> int:
        """Images listed in the metadata: downloaded now or already present."""
        return self.downloaded + self.skipped

    def line(self) -> str:
        """One line: ``SOURCE: found N, downloaded N, skipped N, failed N -> METADATA``."""
        target = self.metadata_path or "no metadata written"
        return (f"{self.source}: found {self.found}, downloaded {self.downloaded}, skipped {self.skipped}, "
                f"failed {self.failed} -> {target}")

    def to_dict(self) -> Dict:
        data = asdict(self)
        data["images"] = self.images
        return data


@dataclass(frozen=True)
class Candidate:
    """One image a source offers: what it shows and how to get its bytes."""

    name: str
    source: str
    where: str
    read: Callable[[], bytes]
    dex: Optional[int] = None
    form: Optional[str] = None
    types: Tuple[str, ...] = ()
    caption: Optional[str] = None
    source_url: Optional[str] = None
    height_m: Optional[float] = None
    abilities: Tuple[str, ...] = ()


class CollectStopped(ScrapeError):
    """Fetching stopped early (bot block or too many failures in a row); ``summary`` says what was done."""

    def __init__(self, message: str, summary: CollectSummary):
        super().__init__(message)
        self.summary = summary


# --- sources -> candidates ---------------------------------------------------------------------

def bulbapedia_candidates(config: DataConfig, client: HttpClient, out_dir: Path) -> List[Candidate]:
    """Rows of the Bulbapedia list page as candidates.

    The page is cached under ``OUT/.cache/`` once it parsed, so a rerun asks the site for nothing
    it already has; ``force`` fetches it again.

    Raises:
        ScrapeError: the page cannot be fetched (a Cloudflare challenge or 403 says so and suggests
            ``--source pokedex``) or holds no recognisable Pokémon table.
    """
    from .bulbapedia import parse_list_page

    cache = out_dir / CACHE_DIR / f"bulbapedia-{hashlib.sha256(config.url.encode()).hexdigest()[:16]}.html"
    rows = None
    if cache.is_file() and not config.force:
        try:
            rows = parse_list_page(cache.read_bytes(), config.url, full_size=config.full_size)
            log.info("using the cached list page %s (--force fetches it again)", cache)
        except ScrapeError:
            log.warning("cached page %s is unusable; fetching %s again", cache, config.url)
    if rows is None:
        log.info("fetching %s", config.url)
        page = client.get_page(config.url)
        rows = parse_list_page(page.content, page.url, full_size=config.full_size, encoding=page.encoding)
        atomic_write_bytes(cache, page.content, fsync=False)

    def reader(url: str) -> Callable[[], bytes]:
        return lambda: client.get_bytes(url, max_bytes=config.max_bytes)

    return [Candidate(name=r.name, dex=r.dex, form=r.form, types=r.types, source="bulbapedia",
                      where=r.image_url, source_url=r.image_url, read=reader(r.image_url)) for r in rows]


def _limited_reader(read: Callable[[], bytes], size: Optional[int], max_bytes: int) -> Callable[[], bytes]:
    """Refuse local files over ``max_bytes`` (before reading when the size is known)."""
    def run() -> bytes:
        if size is not None and size > max_bytes:
            raise ImageRejected(f"too large: {size:,} bytes; allowed: at most {max_bytes:,} (--max-bytes)")
        data = read()
        if len(data) > max_bytes:
            raise ImageRejected(f"too large: {len(data):,} bytes; allowed: at most {max_bytes:,} (--max-bytes)")
        return data
    return run


def pokedex_candidates(config: DataConfig) -> List[Candidate]:
    """The packaged Pokédex (PyPI ``pokemon``) as candidates."""
    from .pokedex import pokedex_records

    return [Candidate(name=r.name, dex=r.dex, types=r.types, source="pokedex", where=r.image_name,
                      height_m=r.height_m, abilities=r.abilities,
                      read=_limited_reader(r.read_image, None, config.max_bytes))
            for r in pokedex_records()]


def folder_candidates(config: DataConfig, out_dir: Path) -> List[Candidate]:
    """Images of ``config.path`` as candidates (the output folder is left out if it is inside)."""
    from .folder import folder_records

    records = folder_records(config.path, exclude=[out_dir])
    return [Candidate(name=r.name, dex=r.dex, form=r.form, types=r.types, caption=r.caption,
                      source="folder", where=str(r.path),
                      read=_limited_reader(r.read, r.path.stat().st_size, config.max_bytes))
            for r in records]


# --- candidates -> files + metadata --------------------------------------------------------------

def assign_file_names(candidates: Sequence[Candidate]) -> List[str]:
    """Safe, unique ``.png`` names in candidate order (stable across runs of the same source)."""
    allocator = NameAllocator()
    return [allocator.claim(safe_stem(c.name, c.dex, c.form)) for c in candidates]


def _previous_embeddings(out_dir: Path) -> Dict[str, Tuple[str, str]]:
    """image_path -> (caption, embedding_path) from an existing metadata file, if readable."""
    if not (out_dir / METADATA_FILE).is_file():
        return {}
    try:
        old = read_metadata(out_dir, validate=False)
    except (DataError, TypeError):
        log.warning("existing %s is unreadable; it will be replaced", out_dir / METADATA_FILE)
        return {}
    return {e.image_path: (e.caption, e.embedding_path) for e in old if e.embedding_path}


def _fetch_one(candidate: Candidate, path: Path) -> None:
    """Read, check, convert and atomically write one image; raises on any failure."""
    save_png_atomic(prepare_image(candidate.read()), path)


def _captions(candidate: Candidate, path: Path, template: str, forms: Sequence[str]) -> List[Tuple[str, str]]:
    """The source's own caption, else the main template and each form filled from the metadata
    and the picture (``captions.tagged_captions``); ``(caption, form)`` pairs, the main caption first."""
    if candidate.caption:
        return [(candidate.caption, MAIN_FORM)]
    colours: Sequence[str] = ()
    if any("{colours}" in caption_template_text(t, need_name=False) for t in (template, *forms)):
        from PIL import Image

        from .captions import image_colours
        with Image.open(path) as image:
            colours = image_colours(image)
    return tagged_captions(candidate.name, candidate.types, candidate.form, colours=colours,
                         size=size_word(candidate.height_m), abilities=candidate.abilities,
                         template=template, forms=forms)


def _entry(candidate: Candidate, file_name: str, out_dir: Path, previous: Dict[str, Tuple[str, str]],
           template: str = "plain", forms: Sequence[str] = ()) -> Entry:
    image_path = f"{IMAGES_DIR}/{file_name}"
    tagged = _captions(candidate, out_dir / image_path, template, forms)
    captions, caption_forms = [c for c, _ in tagged], [f for _, f in tagged]
    embedding_path = None
    old = previous.get(image_path)
    if old and old[0] == captions[0] and (out_dir / old[1]).is_file():
        embedding_path = old[1]  # the text did not change, so its embedding still holds
    return Entry(name=candidate.name, image_path=image_path, caption=captions[0], source=candidate.source,
                 dex=candidate.dex, form=candidate.form, types=list(candidate.types),
                 source_url=candidate.source_url, embedding_path=embedding_path,
                 captions=captions if len(captions) > 1 else [], abilities=list(candidate.abilities),
                 caption_forms=caption_forms if len(captions) > 1 else [])


def materialise(candidates: Sequence[Candidate], out_dir: os.PathLike | str, *, source: str,
                force: bool = False, stop_after: Optional[int] = None,
                caption_template: str = "plain",
                caption_forms: Sequence[str] = ()) -> Tuple[List[Entry], CollectSummary]:
    """Write every candidate's image under ``out_dir/pokemon_images`` and make its entry.

    Args:
        candidates: what to collect, in a stable order.
        out_dir: the dataset folder.
        source: the source's name for the summary.
        force: fetch again even when a valid file is present.
        stop_after: stop fetching after this many consecutive failures (None: never).
        caption_template: ``DataConfig.caption_template`` for entries without a caption of their own.
        caption_forms: ``DataConfig.caption_forms``, their extra captions (none by default).

    Returns:
        (entries of the images now present, the summary). ``summary.stopped`` is set when fetching
        stopped early; the remaining items then count as skipped (valid file present) or failed.
    """
    out_dir = Path(out_dir)
    images_dir = out_dir / IMAGES_DIR
    try:
        images_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the dataset folder {images_dir}: {exc.strerror}; "
                        f"allowed: a writable folder path for --out") from None
    removed = remove_stale_temp_files(images_dir)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)
    names = assign_file_names(candidates)
    previous = _previous_embeddings(out_dir)
    summary = CollectSummary(source=source, out_dir=str(out_dir), found=len(candidates))
    entries: List[Entry] = []
    in_a_row = 0
    bar = progress(total=len(candidates), desc=f"collect {source}", unit="img")
    try:
        for candidate, file_name in zip(candidates, names):
            bar.update(1)
            path = inside(images_dir, file_name)
            if not force and is_valid_png(path):
                summary.skipped += 1
                entries.append(_entry(candidate, file_name, out_dir, previous, caption_template, caption_forms))
                continue
            if summary.stopped:
                reason = f"not fetched: {summary.stopped}"
            else:
                try:
                    _fetch_one(candidate, path)
                except BlockedError as exc:
                    summary.stopped = f"the site blocked the scraper ({exc.reason})"
                    reason = exc.reason
                except (FetchError, DataError, OSError) as exc:
                    reason = getattr(exc, "reason", None) or str(exc)
                else:
                    summary.downloaded += 1
                    in_a_row = 0
                    entries.append(_entry(candidate, file_name, out_dir, previous, caption_template, caption_forms))
                    continue
                in_a_row += 1
                if stop_after and in_a_row >= stop_after and not summary.stopped:
                    summary.stopped = f"{in_a_row} failures in a row, the last: {reason}"
            summary.failed += 1
            summary.failures.append(Failure(candidate.name, candidate.where, reason))
            log.warning("skipped %s (%s): %s", candidate.name, candidate.where, reason)
    finally:
        bar.close()
    return entries, summary


def gather_candidates(config: DataConfig, out_dir: Path, client: Optional[HttpClient] = None) -> List[Candidate]:
    """The configured source's candidates, cut to ``config.limit``.

    ``client`` is needed for Bulbapedia, and must stay open while the candidates are read
    (:func:`collect` owns it).
    """
    if config.source == "bulbapedia":
        if client is None:
            raise ValueError("gather_candidates: source 'bulbapedia' needs an open HttpClient")
        candidates = bulbapedia_candidates(config, client, out_dir)
    elif config.source == "pokedex":
        candidates = pokedex_candidates(config)
    else:
        candidates = folder_candidates(config, out_dir)
    return candidates[:config.limit] if config.limit else candidates


def collect(config: DataConfig, *, client: Optional[HttpClient] = None) -> CollectSummary:
    """Collect a dataset into ``config.out_dir`` from ``config.source``.

    Args:
        config: source, output folder, limit, force, and the HTTP settings (url, delay, timeout,
            retries, max_bytes, full_size) or the folder (path).
        client: the HTTP client for Bulbapedia (default: one built from ``config``; tests pass one
            with no backoff).

    Returns:
        The :class:`CollectSummary` (also logged as one line).

    Raises:
        ScrapeError: the Bulbapedia page cannot be fetched or parsed; :class:`CollectStopped` when
            fetching stopped early (the metadata of what is present is written first).
        DataError: the Pokédex package or the folder cannot be read.
        FolderBusyError: another process is writing ``config.out_dir`` (collect or embed).
    """
    out_dir = Path(config.out_dir)
    own = client is None and config.source == "bulbapedia"
    if own:
        client = HttpClient(timeout=config.timeout, delay=config.delay, retries=config.retries)
    try:
        with folder_lock(out_dir, "collect"):
            candidates = gather_candidates(config, out_dir, client)
            stop_after = MAX_CONSECUTIVE_FAILURES if config.source == "bulbapedia" else None
            entries, summary = materialise(candidates, out_dir, source=config.source, force=config.force,
                                           stop_after=stop_after, caption_template=config.caption_template,
                                           caption_forms=config.caption_forms)
            if entries:
                summary.metadata_path = str(write_metadata(out_dir, entries))
    finally:
        if own and client is not None:
            client.close()
    log.info("%s", summary.line())
    if summary.stopped:
        raise CollectStopped(f"collect stopped early: {summary.stopped}. {summary.line()}. Rerun later to "
                             f"resume (files present are kept), or use --source pokedex (offline)", summary)
    return summary
