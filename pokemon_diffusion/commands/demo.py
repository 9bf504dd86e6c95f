"""`pokemon-diffusion demo`: placeholder until the end-to-end demo lands."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_parser(subparsers):
    parser = subparsers.add_parser("demo", help="run the whole pipeline on the offline defaults",
                                   description="Run the whole pipeline on the offline defaults.")
    parser.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    log.warning("the end-to-end demo is not built yet; nothing to run")
    return 0
