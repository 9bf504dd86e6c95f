"""The type checks of the configuration dataclasses (``config.BaseConfig``) against their annotations."""

from __future__ import annotations

import typing
from typing import Any, Tuple


def value_has_type(value: Any, annotation: Any) -> bool:
    """Check ``value`` against the simple annotations of the config dataclasses."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        return any(value_has_type(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (tuple, Tuple):
        args = typing.get_args(annotation)
        if len(args) > 1 and args[-1] is not Ellipsis:  # Tuple[X, Y]: exactly these items
            return isinstance(value, tuple) and len(value) == len(args) and all(map(value_has_type, value, args))
        item = args[0] if args else Any
        return isinstance(value, tuple) and all(value_has_type(v, item) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    return True


def type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    return {"<class 'int'>": "int", "<class 'float'>": "float", "<class 'str'>": "str",
            "<class 'bool'>": "bool"}.get(text, text)
