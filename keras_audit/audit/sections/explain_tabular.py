"""The explanations section's model-level parts for tables: permutation importance and a
shallow surrogate decision tree (how far a readable tree reproduces the model)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section
from keras_audit.audit.serialize import records

OPTIONS = {"tabular": {"n_repeats": 5, "max_depth": 3}}

FIDELITY_WARNING = 0.9   # surrogate-tree agreement below this is flagged


def build_part(ctx: AuditContext, options: dict, sec: Section) -> None:
    """Fill ``sec.content["permutation_importance"]`` and ``["surrogate_tree"]``."""
    opts = options["tabular"]
    perm: dict[str, Any] = {}
    sec.content["permutation_importance"] = perm
    with sec.step("permutation importance", perm):
        _permutation(ctx, opts, sec, perm)
    tree: dict[str, Any] = {}
    sec.content["surrogate_tree"] = tree
    with sec.step("surrogate tree", tree):
        _surrogate(ctx, opts, sec, tree)


def _permutation(ctx: AuditContext, opts: dict, sec: Section, part: dict) -> None:
    from keras_audit.audit.tabular import permutation_importance

    table = permutation_importance(ctx.view, ctx.x, ctx.y, feature_names=ctx.feature_names,
                                   n_repeats=int(opts["n_repeats"]), seed=ctx.seed)
    sec.tables["permutation_importance"] = table
    part.update({"n_repeats": int(opts["n_repeats"]), "importance": records(table)})
    fig = importance_figure(table)
    if fig is not None:
        sec.add_figure("permutation_importance", fig,
                       "Permutation importance (drop in score when a feature is shuffled)")


def _surrogate(ctx: AuditContext, opts: dict, sec: Section, part: dict) -> None:
    from keras_audit.audit.tabular import surrogate_tree

    depth = int(opts["max_depth"])
    res = surrogate_tree(ctx.view, ctx.x, feature_names=ctx.feature_names, max_depth=depth,
                         class_names=ctx.names, seed=ctx.seed)
    fidelity = float(res.fidelity)
    part.update({"max_depth": depth, "fidelity": fidelity, "rules": str(res.rules)})
    if res.figure is not None:
        sec.add_figure("surrogate_tree", res.figure,
                       f"Surrogate decision tree (fidelity {fidelity:.3f})")
    part["fidelity_measure"] = ("R² against the model's predictions" if not ctx.classifier
                                else "share of rows where the tree predicts the model's class")
    if ctx.classifier:
        text = (f"a depth-{depth} surrogate tree agrees with the model on "
                f"{100 * fidelity:.1f}% of the samples")
    else:
        text = (f"a depth-{depth} surrogate tree reproduces the model's predictions with "
                f"R² {fidelity:.3f}")
    sec.finding("warning" if fidelity < FIDELITY_WARNING else "info", text)


def importance_figure(table: pd.DataFrame):
    """Horizontal bars of a permutation-importance table (mean ± std), top 20 features."""
    from keras_audit.render.figures import new_figure

    cols = [c for c in table.columns if "mean" in c]
    if "feature" not in table.columns or not cols:
        return None
    t = table.sort_values(cols[0], ascending=False, kind="stable").head(20).iloc[::-1]
    std_cols = [c for c in table.columns if "std" in c]
    fig = new_figure((6, 0.25 * len(t) + 1.2))
    ax = fig.add_subplot()
    ax.barh(t["feature"].astype(str), t[cols[0]], xerr=t[std_cols[0]] if std_cols else None,
            color="tab:blue", alpha=0.8)
    ax.set_xlabel(cols[0].replace("_", " "))
    ax.tick_params(axis="y", labelsize=7)
    return fig
