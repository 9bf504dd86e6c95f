"""`pokemon-diffusion evaluate`: placeholder until its stage lands."""

from __future__ import annotations

from ..errors import PokemonDiffusionError


def add_parser(subparsers):
    parser = subparsers.add_parser("evaluate", help="evaluate (not built yet)", description="evaluate (not built yet)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    raise PokemonDiffusionError("'evaluate' is not built yet")
