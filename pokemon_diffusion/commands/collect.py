"""`pokemon-diffusion collect`: placeholder until its stage lands."""

from __future__ import annotations

from ..errors import PokemonDiffusionError


def add_parser(subparsers):
    parser = subparsers.add_parser("collect", help="collect (not built yet)", description="collect (not built yet)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    raise PokemonDiffusionError("'collect' is not built yet")
