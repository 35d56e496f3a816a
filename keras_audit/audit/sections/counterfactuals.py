"""Section "counterfactuals": the smallest changes that make the model predict another class.

For each explained sample (at most ``max_samples``), ``n`` changed inputs aimed at its runner-up
class: DiCE on tables (the changed features), a gradient search on images (the change map);
the distance and whether the model really predicts the target (``valid``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from keras_audit.audit.context import AuditContext
from keras_audit.audit.section import Section, new_section, requested
from keras_audit.audit.serialize import records

KEY = "counterfactuals"
TITLE = "Counterfactual explanations"
OPTIONS = {"counterfactuals": {"n": 3, "max_samples": 8, "method": None, "steps": 200}}

VALIDITY_WARNING = 0.5  # fewer valid candidates than this share: flagged


def build(ctx: AuditContext, options: dict) -> Section:
    """Counterfactuals of the explained samples, their table, figure and findings."""
    sec = new_section(KEY, ctx)
    if not requested(ctx, "counterfactuals", sec.content):
        return sec
    if not ctx.classifier:
        reason = "counterfactuals move a sample to another class; the model is a regression model"
    elif ctx.kind not in ("tabular", "image"):
        reason = f"counterfactuals take tables or images; x is {ctx.kind} data"
    else:
        reason = None
    if reason:
        sec.content.update({"status": "skipped", "reason": reason})
        return sec
    with sec.step("counterfactuals", sec.content) as _bar:
        _counterfactuals(ctx, options["counterfactuals"], sec)
    return sec


def _counterfactuals(ctx: AuditContext, opts: dict, sec: Section) -> None:
    from keras_audit.audit.counterfactual_analysis import counterfactuals
    from keras_audit.audit.counterfactual_plots import counterfactual_figure

    pick = ctx.explain_idx[: int(opts["max_samples"])]
    x = ctx.x[pick].astype(np.float32, copy=False)
    res = counterfactuals(ctx.model, x, n=int(opts["n"]), reference=ctx.reference,
                          feature_names=ctx.feature_names, method=opts["method"],
                          steps=int(opts["steps"]), seed=ctx.seed, figures=False)
    sec.add_figure("counterfactuals", counterfactual_figure(res, x, ctx.feature_names,
                                                            ctx.names),
                   "Counterfactuals: the closest valid change per sample")
    table = res.tables["counterfactuals"].copy()
    table["sample"] = pick[table["sample"].to_numpy()]
    for col in ("original", "target", "predicted"):
        table[col] = [ctx.class_name(c) if c >= 0 else "none found" for c in table[col]]
    sec.tables["counterfactuals"] = table
    per_sample = pd.DataFrame({
        "sample": pick, "predicted": [ctx.class_name(c) for c in res.original],
        "target": [ctx.class_name(c) for c in res.targets],
        "valid": res.valid.sum(axis=1), "closest_distance": [
            float(np.nanmin(np.where(v, d, np.nan))) if v.any() else float("nan")
            for v, d in zip(res.valid, res.distances)]})
    sec.tables["counterfactuals_per_sample"] = per_sample
    often = []
    if res.changed is not None and res.valid.any():
        counts = Counter(ctx.feature_names[j] for j in np.nonzero(res.changed[res.valid])[1])
        often = [name for name, _ in counts.most_common(5)]
    sec.content.update({"status": "ok", "method": res.method, "n": int(opts["n"]),
                        "samples": pick.tolist(), **{k: res.metrics.get(k) for k in (
                            "validity", "samples_with_valid", "mean_distance", "n_features",
                            "mean_changed_features")},
                        "most_changed_features": often,
                        "per_sample": records(per_sample)})
    _findings(sec, res, often)


def _findings(sec: Section, res, often: list[str]) -> None:
    validity = res.metrics["validity"]
    if validity < VALIDITY_WARNING:
        sec.finding("warning", f"only {100 * validity:.0f}% of the counterfactual candidates "
                    "reach their target class: the model's decisions are hard to flip with "
                    "small changes, or the search settings are too tight")
    else:
        sec.finding("info", f"{100 * validity:.0f}% of the counterfactual candidates "
                    f"({res.method}) reach the sample's runner-up class")
    mean_changed = res.metrics.get("mean_changed_features")
    if mean_changed is not None:
        sec.finding("info", f"a valid counterfactual changes {mean_changed:.1f} of "
                    f"{res.metrics['n_features']} features on average; most often changed: "
                    f"{', '.join(often[:3])}")
