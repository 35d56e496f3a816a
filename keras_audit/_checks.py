"""Argument checks shared by every part of the package (a leaf module: it imports only NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np


def positive_int(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (Python or NumPy integers, not bools).

    Raises:
        ValueError: ``"<what> must be a positive integer; got <value>"`` (or ``an integer >=
            <minimum>`` when ``minimum`` is not 1).
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{what} must be {need}; got {value!r}")
    return int(value)
