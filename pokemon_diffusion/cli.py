"""The ``pokemon-diffusion`` command line.

Each subcommand lives in ``pokemon_diffusion/commands/<name>.py`` with two functions:
``add_parser(subparsers)`` (argument definitions only, cheap to import) and ``run(args) -> int``
(which imports the heavy libraries it needs). Errors a user can cause become one line on stderr
and exit code 2; ``--help`` never imports TensorFlow or torch.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import List, NoReturn, Optional

from ._version import __version__
from .errors import WRITE_FAILURES, PokemonDiffusionError
from .logging_utils import setup_logging, start_tensorflow_quietly

log = logging.getLogger(__name__)

COMMANDS = ("collect", "embed", "train", "sample", "evaluate", "demo", "app", "export")
TENSORFLOW_COMMANDS = ("train", "sample", "evaluate", "demo", "app")
SAMPLING_COMMANDS = ("sample", "evaluate", "app")  # their thread pools are set for sampling (threads.py)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``), raised where the program is so that ``finally`` blocks remove temp files."""


def _terminate(signum, frame) -> NoReturn:
    raise Terminated()


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
    for sub in subparsers.choices.values():  # the same flags after the subcommand: `collect ... --quiet`
        after = sub.add_argument_group("global options (also accepted before the command)")
        after.add_argument("-v", "--verbose", dest="verbose_after", action="count", default=0,
                           help="more log output (-vv for debug)")
        after.add_argument("-q", "--quiet", dest="quiet_after", action="store_true",
                           help="warnings and errors only, no progress bars")
    return parser


def _merge_global_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """-v counts wherever it is given (`-v sample ... -v` is -vv); -q and -v together are refused."""
    args.verbose += vars(args).pop("verbose_after", 0)
    args.quiet = bool(vars(args).pop("quiet_after", False)) or args.quiet
    if args.quiet and args.verbose:
        parser.error("-q/--quiet and -v/--verbose: got both; allowed: one of them")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the console script. Returns the process exit code."""
    parser = build_parser()
    args = _merge_global_flags(parser, parser.parse_args(argv))
    setup_logging(-1 if args.quiet else args.verbose)
    on_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM like Ctrl-C: temp files are removed on the way out (train and app install their own handlers)
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main_thread else None
    try:
        return _run(args)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        on_jax = getattr(args, "backend", None) == "jax"  # `train --backend jax` never imports TensorFlow
        if args.command in TENSORFLOW_COMMANDS and not args.verbose and not on_jax:
            start_tensorflow_quietly()  # -v keeps TensorFlow's own start-up lines
        if args.command in SAMPLING_COMMANDS:  # before TensorFlow starts (train sets its own, from its branches)
            from .threads import configure_for_sampling

            configure_for_sampling()
        return int(args.func(args) or 0)
    except PokemonDiffusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print("error: terminated (SIGTERM); nothing half-written was left", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a full disk, read-only folder or no permission that no writer translated: one line
        if exc.errno not in WRITE_FAILURES:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{WRITE_FAILURES[exc.errno]}; free space or choose another folder", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
