"""Short ``repr`` for the analyses' result objects: shapes and sizes, never the arrays.

A notebook echoes the last expression; a dataclass's default repr would print every array
and table in full.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def describe(value: Any) -> str:
    """A few characters that say what ``value`` is: shape and dtype, rows and columns, size."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype") and not hasattr(value, "columns"):
        return f"array{tuple(shape)} {value.dtype}"
    if hasattr(value, "columns") and shape is not None:
        return f"DataFrame({shape[0]} rows x {shape[1]} columns)"
    if isinstance(value, dict):
        keys = list(value)
        shown = ", ".join(map(str, keys[:4])) + (", ..." if len(keys) > 4 else "")
        return f"{{{shown}}}" if keys else "{}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__}[{len(value)}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None or isinstance(value, bool | int | str):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "...'"
    return type(value).__name__


def short_repr(self: Any) -> str:
    """``ClassName(field=summary, ...)`` for a dataclass instance."""
    parts = [f"{f.name}={describe(getattr(self, f.name))}"
             for f in dataclasses.fields(self) if f.repr]
    return f"{type(self).__name__}({', '.join(parts)})"
