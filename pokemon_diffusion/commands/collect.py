"""`pokemon-diffusion collect`: build a dataset folder of RGB PNGs + ``pokemon_metadata.json``."""

from __future__ import annotations

from ..config import SOURCES, DataConfig
from ..errors import ConfigError
from ..cli_args import choice_help, float_range, int_range

_DEFAULTS = DataConfig()
# flag -> DataConfig field, for the flags that are only passed on when given
_FIELDS = ("source", "out_dir", "url", "path", "limit", "delay", "timeout", "retries", "max_bytes",
           "caption_template")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "collect", help="collect Pokémon images and names (Bulbapedia, packaged Pokédex or a folder)",
        description="Collect Pokémon images and names into OUT/pokemon_images/*.png (RGB, on white, "
                    "square) and OUT/pokemon_metadata.json. A rerun skips images already present "
                    "and valid; --force fetches everything again.")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help=f"{choice_help(SOURCES)}; pokedex is offline (default {_DEFAULTS.source})")
    parser.add_argument("--out", dest="out_dir", metavar="DIR", default=None,
                        help=f"dataset folder (default {_DEFAULTS.out_dir})")
    parser.add_argument("--limit", type=int_range(1, 100_000), default=None, metavar="N",
                        help="collect only the first N items of the source")
    parser.add_argument("--force", action="store_true", help="fetch and convert again what is already present")
    parser.add_argument("--caption-template", default=None, metavar="T",
                        help="visual | plain | a text with {name} {size} {colours} {types} {a} (default "
                             f"{_DEFAULTS.caption_template}: 'Pikachu, a small yellow Electric-type Pokémon'; "
                             "see docs/DATA.md)")
    web = parser.add_argument_group("bulbapedia")
    web.add_argument("--url", default=None, help="the list page (default: Bulbapedia's National Pokédex list)")
    web.add_argument("--delay", type=float_range(0.0, 60.0), default=None, metavar="S",
                     help=f"seconds between requests (default {_DEFAULTS.delay:g})")
    web.add_argument("--timeout", type=float_range(0.1, 600.0), default=None, metavar="S",
                     help=f"seconds to connect and per read (default {_DEFAULTS.timeout:g})")
    web.add_argument("--retries", type=int_range(0, 20), default=None, metavar="N",
                     help=f"retries on errors, timeouts, 429 and 5xx (default {_DEFAULTS.retries})")
    web.add_argument("--max-bytes", dest="max_bytes", type=int_range(1_000, 1_000_000_000), default=None,
                     metavar="N", help=f"largest accepted image file (default {_DEFAULTS.max_bytes:,})")
    web.add_argument("--full-size", action="store_true",
                     help="download the original files instead of the page's thumbnails")
    folder = parser.add_argument_group("folder")
    folder.add_argument("--path", default=None, metavar="DIR",
                        help="folder of images for --source folder (optional captions.csv inside)")
    parser.set_defaults(func=run)
    return parser


def config_from_args(args) -> DataConfig:
    """DataConfig from the parsed flags: given flags override the defaults.

    Raises:
        ConfigError: a value DataConfig refuses (e.g. --source folder without --path).
    """
    values = {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
    if values.get("source") == "folder" and not values.get("path"):
        raise ConfigError("--source folder needs --path DIR; got no --path (allowed: a folder of images, "
                          "optionally with a captions.csv)")
    config = DataConfig(force=bool(args.force), full_size=bool(args.full_size), **values)
    _warn_unused(config, values)
    return config


def _warn_unused(config: DataConfig, given) -> None:
    """Say so when a flag is given that the chosen source does not use."""
    import logging

    unused = []
    if config.source != "bulbapedia":
        unused += [f"--{n.replace('_', '-')}" for n in ("url", "delay", "timeout", "retries") if n in given]
        unused += ["--full-size"] if config.full_size else []
    if config.source != "folder" and "path" in given:
        unused.append("--path")
    if unused:
        logging.getLogger(__name__).warning("%s not used with --source %s", ", ".join(unused), config.source)


def run(args) -> int:
    import logging

    from ..collection.pipeline import collect

    summary = collect(config_from_args(args))
    print(summary.line())  # the result, on stdout for scripts; each failure was logged as a warning
    if summary.images == 0:
        logging.getLogger(__name__).error("no image could be collected (%d failed)", summary.failed)
        return 1
    return 0
