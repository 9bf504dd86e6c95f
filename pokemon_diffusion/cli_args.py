"""argparse helpers: ``type=`` checkers that name what is allowed, and flags shared by the commands (and by
the evaluation modules' own ``python -m`` entry points, which must not import ``commands``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Optional, Sequence


def _number(kind: Callable[[str], float], low: float, high: float, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {what}")
        return value

    parse.__name__ = what  # argparse shows the type's name in some messages
    return parse


class OnOffAuto(argparse.Action):
    """``--flag`` (true), ``--flag auto`` ("auto") and ``--no-flag`` (false)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings + ["--no-" + option_strings[0][2:]], dest, nargs="?", metavar="auto", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from .hardware import AUTO

        if option_string.startswith("--no-") and values is not None:
            parser.error(f"{option_string}: got {values!r}; allowed: no value")
        if values not in (None, AUTO):
            parser.error(f"{option_string}: got {values!r}; allowed: auto, or no value (on)")
        setattr(namespace, self.dest, False if option_string.startswith("--no-") else values or True)


def int_range(low: int, high: int):
    """An integer from ``low`` to ``high`` inclusive."""
    return _number(int, low, high, f"an integer from {low} to {high}")


def float_range(low: float, high: float):
    """A number from ``low`` to ``high`` inclusive."""
    return _number(float, low, high, f"a number from {low} to {high}")


positive_int = int_range(1, 10**9)
non_negative_float = float_range(0.0, 1e9)


def add_seed_argument(parser: argparse.ArgumentParser, *, default: Optional[int], help: str) -> None:
    """``--seed S``: an integer from 0 to ``MAX_SEED`` (what every seeded command accepts)."""
    from .config import MAX_SEED

    parser.add_argument("--seed", type=int_range(0, MAX_SEED), default=default, metavar="S", help=help)


def choice_help(choices: Sequence[str]) -> str:
    return " | ".join(choices)


def add_sampler_arguments(parser: argparse.ArgumentParser, *, steps_help: str) -> None:
    """``--sampler``, ``--steps`` and ``--guidance`` with :class:`SampleConfig`'s defaults (sample, evaluate)."""
    from .config import SAMPLERS, SampleConfig

    defaults = SampleConfig()
    parser.add_argument("--sampler", choices=SAMPLERS, default=defaults.sampler,
                        help=f"{choice_help(SAMPLERS)} (default: %(default)s)")
    parser.add_argument("--steps", type=int_range(1, 10_000), default=None, metavar="N",
                        help=steps_help.format(default=defaults.steps))
    parser.add_argument("--guidance", type=float_range(0.0, 50.0), default=defaults.guidance_scale,
                        metavar="W", help="classifier-free guidance weight: 1 = conditional only, "
                                          "0 = unconditional (default: %(default)s)")


def level_pair(text: str):
    """``LOW,HIGH``: two noise levels 0 <= LOW < HIGH <= 1 (1 = pure noise)."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        low = high = float("nan")
    if not 0.0 <= low < high <= 1.0:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: LOW,HIGH with 0 <= LOW < HIGH <= 1 (noise levels, "
                                         "1 = pure noise)")
    return low, high


def level_interval(text: str):
    """:func:`level_pair`, or ``all``: None (every level)."""
    return None if text.strip().lower() == "all" else level_pair(text)


def add_variety_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cads``, ``--cads-range``, ``--cads-names`` and ``--guidance-interval`` with :class:`SampleConfig`'s defaults."""
    from .config import SampleConfig

    defaults = SampleConfig()
    parser.add_argument("--cads", type=float_range(0.0, 10.0), default=defaults.cads_strength, metavar="S",
                        help="condition-annealed sampling: noise of strength S on the prompt at the noisiest "
                             "steps, so that seeds differ more; 0 = off (default: %(default)s)")
    parser.add_argument("--cads-range", type=level_pair, default=defaults.cads_range, metavar="LOW,HIGH",
                        help="noise levels over which --cads fades out: the prompt is pure noise above HIGH "
                             "and clean below LOW (default: %s)" % ",".join(map(str, defaults.cads_range)))
    parser.add_argument("--cads-names", action="store_true", default=defaults.cads_names,
                        help="also anneal prompts that name a Pokémon the run knows (by default they keep a clean "
                             "embedding, so that the named Pokémon is drawn)")
    interval = defaults.guidance_interval
    parser.add_argument("--guidance-interval", type=level_interval, default=interval, metavar="LOW,HIGH|all",
                        help="guide only at noise levels in (LOW, HIGH] (1 = pure noise), the conditional "
                             "output elsewhere; 'all' = every step (default: %s)"
                             % ("all" if interval is None else ",".join(map(str, interval))))


def variety_options(args) -> dict:
    """The SampleConfig fields of :func:`add_variety_arguments`' flags."""
    return {"cads_strength": args.cads, "cads_range": tuple(args.cads_range), "cads_names": args.cads_names,
            "guidance_interval": args.guidance_interval}


def add_enrich_argument(parser: argparse.ArgumentParser) -> None:
    """``--enrich/--no-enrich``: a Pokémon name in a prompt gets the run's description (``prompts.py``)."""
    from .config import SampleConfig

    parser.add_argument("--enrich", action=argparse.BooleanOptionalAction, default=SampleConfig().enrich,
                        help="add the run's known description of a Pokémon named in a prompt (\"Pikachu\" -> "
                             "\"Pikachu, a small yellow Electric-type Pokémon\"; the rewrite is logged); "
                             "--no-enrich encodes the prompt as typed (default: enrich)")


def suffix_path(suffixes):
    """argparse type: a file path ending in one of ``suffixes``."""

    def parse(text: str) -> Path:
        if Path(text).suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: a file name ending in "
                                             f"{' | '.join(suffixes)}")
        return Path(text)

    parse.__name__ = "file name"
    return parse
