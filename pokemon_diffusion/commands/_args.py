"""argparse ``type=`` helpers: each rejects a bad value with a message naming what is allowed."""

from __future__ import annotations

import argparse
from typing import Callable, Sequence


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


def int_range(low: int, high: int):
    """An integer from ``low`` to ``high`` inclusive."""
    return _number(int, low, high, f"an integer from {low} to {high}")


def float_range(low: float, high: float):
    """A number from ``low`` to ``high`` inclusive."""
    return _number(float, low, high, f"a number from {low} to {high}")


positive_int = int_range(1, 10**9)
non_negative_float = float_range(0.0, 1e9)


def choice_help(choices: Sequence[str]) -> str:
    return " | ".join(choices)
