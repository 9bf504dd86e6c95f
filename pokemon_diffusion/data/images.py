"""Moved to :mod:`pokemon_diffusion.collection.images`; this import path keeps working (same module object)."""

import sys
from importlib import import_module

sys.modules[__name__] = import_module("pokemon_diffusion.collection.images")
