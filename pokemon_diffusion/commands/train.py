"""`pokemon-diffusion train`: placeholder until its stage lands."""

from __future__ import annotations

from ..errors import PokemonDiffusionError


def add_parser(subparsers):
    parser = subparsers.add_parser("train", help="train (not built yet)", description="train (not built yet)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    raise PokemonDiffusionError("'train' is not built yet")
