"""The ``pokemon-diffusion`` command line.

Each subcommand lives in ``pokemon_diffusion/commands/<name>.py`` with two functions:
``add_parser(subparsers)`` (argument definitions only, cheap to import) and ``run(args) -> int``
(which imports the heavy libraries it needs). Errors a user can cause become one line on stderr
and exit code 2; ``--help`` never imports TensorFlow or torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, NoReturn, Optional

from ._version import __version__
from .errors import PokemonDiffusionError
from .logging_utils import setup_logging, start_tensorflow_quietly

log = logging.getLogger(__name__)

COMMANDS = ("collect", "embed", "train", "sample", "evaluate", "demo", "app")
TENSORFLOW_COMMANDS = ("train", "sample", "evaluate", "demo", "app")
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line ``error: ...`` (exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = OneLineErrorParser(
        prog="pokemon-diffusion",
        description="Collect Pokémon images, embed captions, train a text-conditioned DDPM, "
                    "and generate new Pokémon from a prompt.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="more log output (-vv for debug)")
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="warnings and errors only, no progress bars")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND",
                                       parser_class=OneLineErrorParser)
    subparsers.required = True
    for name in COMMANDS:
        import_module(f".commands.{name}", __package__).add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        on_jax = getattr(args, "backend", None) == "jax"  # `train --backend jax` never imports TensorFlow
        if args.command in TENSORFLOW_COMMANDS and not args.verbose and not on_jax:
            start_tensorflow_quietly()  # -v keeps TensorFlow's own start-up lines
        return int(args.func(args) or 0)
    except PokemonDiffusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
