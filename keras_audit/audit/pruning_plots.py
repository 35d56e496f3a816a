"""Figures of pruning tables: accuracy (or loss) against sparsity, the Δ heatmap per layer
and sparsity, and the explanation drift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_audit.audit.pruning import GLOBAL
from keras_audit.render.figures import new_figure

_REQUIRED = ("scope", "layer", "sparsity", "accuracy", "delta_accuracy")


def pruning_figures(table: pd.DataFrame, dense_accuracy: float | None = None) -> dict:
    """Figures of a ``pruning_impact`` table (or several concatenated).

    Args:
        table: the rows of one or more ``pruning_impact`` calls.
        dense_accuracy: the unpruned model's accuracy, drawn as a reference line; ``None``
            reads it from ``table.attrs`` (``pd.concat`` drops attrs: pass it then).

    Returns:
        ``{"accuracy_vs_sparsity": Figure, "delta_accuracy_heatmap": Figure}`` plus
        ``"explanation_drift"`` when the table has a ``drift_spearman`` column. For a
        regression model (accuracy is NaN) the two figures show the loss and Δloss instead.
        The curves show the global sweep (thick) and one line per layer; the heatmap has one
        row per layer (and ``<global>``) and one column per sparsity, coloured by Δaccuracy.

    Raises:
        ValueError: the table lacks the ``pruning_impact`` columns or is empty.
    """
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ValueError("pruning_figures needs a non-empty DataFrame from pruning_impact")
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; give the result of pruning_impact")
    # a regression model has no accuracy: the same figures then show the loss
    metric = ("accuracy" if table["accuracy"].notna().any() or "loss" not in table.columns
              else "loss")
    if dense_accuracy is None:
        dense_accuracy = table.attrs.get("dense_accuracy")
    figs = {"accuracy_vs_sparsity": _curves(table, metric, metric, dense=dense_accuracy),
            "delta_accuracy_heatmap": _heatmap(table, metric)}
    if "drift_spearman" in table.columns and table["drift_spearman"].notna().any():
        figs["explanation_drift"] = _curves(
            table, "drift_spearman", "Grad-CAM Spearman vs dense", ylim=(-0.2, 1.05))
    return figs


def _series(table: pd.DataFrame):
    """(label, rows) per curve: the global sweep first, then each layer."""
    out = []
    for (scope, layer), g in table.groupby(["scope", "layer"], sort=False):
        method = g["method"].iloc[0] if "method" in g.columns else ""
        label = layer if scope != "global" else f"global ({method})" if method else "global"
        out.append((scope == "global", label, g.sort_values("sparsity")))
    out.sort(key=lambda item: not item[0])
    return out


def _curves(table: pd.DataFrame, column: str, ylabel: str, ylim=None,
            dense: float | None = None):
    fig = new_figure((6.4, 3.8))
    ax = fig.add_subplot()
    for is_global, label, g in _series(table):
        if g[column].isna().all():  # e.g. drift measured for global pruning only
            continue
        ax.plot(g["sparsity"], g[column], marker="o", ms=3,
                lw=2.5 if is_global else 1.2, color="black" if is_global else None,
                label=label)
    if column == "accuracy" and dense is not None:
        ax.axhline(dense, color="grey", ls="--", lw=1, label="dense")
    ax.set_xlabel("sparsity (fraction pruned)")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(ax.lines) > 6 else 1)
    return fig


def _heatmap(table: pd.DataFrame, metric: str = "accuracy"):
    grid = table.pivot_table(index="layer", columns="sparsity", values=f"delta_{metric}",
                             aggfunc="mean", sort=False)
    grid = grid[sorted(grid.columns)]  # per-layer levels join the global ones in order
    if GLOBAL in grid.index:  # global first, then the layers in call order
        grid = grid.loc[[GLOBAL] + [i for i in grid.index if i != GLOBAL]]
    fig = new_figure((max(4.5, 0.55 * grid.shape[1] + 2.5), max(2.2, 0.4 * grid.shape[0] + 1.4)))
    ax = fig.add_subplot()
    values = grid.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    span = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    im = ax.imshow(values, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [f"{s:g}" for s in grid.columns], fontsize=8)
    ax.set_yticks(range(grid.shape[0]), list(grid.index), fontsize=8)
    ax.set_xlabel("sparsity")
    ax.set_title(f"Δ {metric} against the dense model", fontsize=9)
    if values.size <= 200:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(v) > 0.6 * span else "black")
    fig.colorbar(im, ax=ax, label=f"Δ {metric}")
    return fig
