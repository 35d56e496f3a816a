"""The one result type every audit analysis returns (its typed fields come on top).

``AnalysisResult`` carries what a report section needs from any analysis: ``metrics`` (plain
numbers and strings), ``tables`` (DataFrames), ``figures`` (matplotlib Figures) and
``metadata`` (how it was computed). Analyses that return a table directly (``pruning_impact``,
``sanity``, ``faithfulness``, as the public contract says) keep doing so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np


@dataclass(kw_only=True, repr=False)
class AnalysisResult:
    """Common fields of every analysis result.

    Attributes:
        metrics: plain numbers, strings and lists (JSON-serialisable).
        tables: ``{name: pandas.DataFrame}``.
        figures: ``{name: matplotlib Figure}``.
        metadata: how the analysis ran (settings, sizes, explainer classes).
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """A one-line summary: arrays and tables by shape, dicts by their keys."""
        common = ("metrics", "tables", "figures", "metadata")
        names = [f.name for f in fields(self) if f.name not in common] + list(common)
        parts = [f"{n}={_short(getattr(self, n))}" for n in names]
        return f"{type(self).__name__}({', '.join(parts)})"


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<array {value.shape} {value.dtype}>"
    if hasattr(value, "shape") and hasattr(value, "columns"):  # a DataFrame
        return f"<table {value.shape[0]}x{value.shape[1]}>"
    if isinstance(value, dict):
        keys = list(value)
        return "{" + ", ".join(map(str, keys[:6])) + (", ..." if len(keys) > 6 else "") + "}"
    if isinstance(value, list | tuple):
        return f"<{len(value)} items>"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
