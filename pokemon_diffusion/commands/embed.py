"""`pokemon-diffusion embed`: placeholder until its stage lands."""

from __future__ import annotations

from ..errors import PokemonDiffusionError


def add_parser(subparsers):
    parser = subparsers.add_parser("embed", help="embed (not built yet)", description="embed (not built yet)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    raise PokemonDiffusionError("'embed' is not built yet")
