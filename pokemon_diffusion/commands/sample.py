"""`pokemon-diffusion sample`: placeholder until its stage lands."""

from __future__ import annotations

from ..errors import PokemonDiffusionError


def add_parser(subparsers):
    parser = subparsers.add_parser("sample", help="sample (not built yet)", description="sample (not built yet)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    raise PokemonDiffusionError("'sample' is not built yet")
