"""The one result type every audit analysis returns (its typed fields come on top).

``AnalysisResult`` carries what a report section needs from any analysis: ``metrics`` (plain
numbers and strings), ``tables`` (DataFrames), ``figures`` (matplotlib Figures) and
``metadata`` (how it was computed). Analyses that return a table directly (``pruning_impact``,
``sanity``, ``faithfulness``, as the public contract says) keep doing so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from keras_audit.audit._repr import describe


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
        parts = [f"{n}={describe(getattr(self, n))}" for n in names]
        return f"{type(self).__name__}({', '.join(parts)})"
